// Private database servers for the app store's end-to-end tests: a
// PostgreSQL (initdb + pg_ctl, as the postgres user when run as root) and
// a MariaDB (mariadb-install-db + mariadbd), each in a temporary directory
// on a free port, never the machine's shared ones.

import { spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';

import { freePort, HERALD_BIN, observeFor, withTimeout } from './helpers.mjs';

const root = userInfo().uid === 0;

/** Runs a program to its end; throws with its output when it fails. */
function run(program, args, { asPostgres = false, env = process.env } = {}) {
  const [command, argv] = asPostgres && root ? ['runuser', ['-u', 'postgres', '--', program, ...args]] : [program, args];
  const result = spawnSync(command, argv, { encoding: 'utf8', timeout: 60000, env });
  if (result.status !== 0) {
    throw new Error(`${program} ${args.join(' ')} failed (${result.status}): ${result.stdout}${result.stderr}${result.error ?? ''}`);
  }
  return result.stdout.trim();
}

/** A PostgreSQL server program: on the PATH or in Debian's /usr/lib/postgresql/<v>/bin. */
function postgresProgram(name) {
  const onPath = (process.env.PATH || '').split(':').some((dir) => existsSync(path.join(dir, name)));
  if (onPath) return name;
  const base = '/usr/lib/postgresql';
  const found = existsSync(base)
    ? readdirSync(base).map((v) => path.join(base, v, 'bin', name)).filter((p) => existsSync(p)).sort()
    : [];
  return found.pop() || name;
}

async function accepting(port, what) {
  const deadline = Date.now() + 30000;
  for (;;) {
    const up = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => { socket.end(); resolve(true); });
      socket.on('error', () => resolve(false));
    });
    if (up) return;
    if (Date.now() > deadline) throw new Error(`${what} did not start on ${port}`);
    await observeFor(50);
  }
}

/** Starts a private PostgreSQL with a `herald` database. Resolves with { url, stop() }. */
export async function startPostgres() {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'herald-e2e-pg-'));
  if (root) chownSync(dir, Number(run('id', ['-u', 'postgres'])), Number(run('id', ['-g', 'postgres'])));
  const data = path.join(dir, 'data');
  run(postgresProgram('initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync'], { asPostgres: true });
  run(postgresProgram('pg_ctl'), ['-D', data, '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, '-l', path.join(dir, 'log'), '-w', 'start'], { asPostgres: true });
  await accepting(port, 'PostgreSQL');
  run('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-q', '-c', 'CREATE DATABASE herald']);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/herald`,
    async stop() {
      try {
        run(postgresProgram('pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop'], { asPostgres: true });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** Starts a private MariaDB with a `herald` database and user. Resolves with { url, stop() }. */
export async function startMariaDb() {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'herald-e2e-mariadb-'));
  const data = path.join(dir, 'data');
  const socket = path.join(dir, 'sock');
  const asRoot = root ? ['--user=root'] : [];
  run('mariadb-install-db', ['--no-defaults', `--datadir=${data}`, '--auth-root-authentication-method=normal', '--skip-test-db', ...asRoot]);
  const child = spawn('mariadbd', ['--no-defaults', `--datadir=${data}`, `--port=${port}`, `--socket=${socket}`,
    '--bind-address=127.0.0.1', '--innodb-buffer-pool-size=16M', '--skip-log-bin', ...asRoot], { stdio: 'ignore' });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  await accepting(port, 'MariaDB');
  run('mariadb', ['--no-defaults', '-u', 'root', `--socket=${socket}`, '-e',
    "CREATE DATABASE herald; CREATE USER 'herald'@'127.0.0.1' IDENTIFIED BY 'herald-pw'; GRANT ALL ON herald.* TO 'herald'@'127.0.0.1';"]);
  return {
    url: `mysql://herald:herald-pw@127.0.0.1:${port}/herald`,
    async stop() {
      child.kill('SIGKILL');
      await withTimeout(exited, 10000, 'mariadbd to exit');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Creates the app table with `herald apps migrate`. */
export function migrate(url) {
  return run(HERALD_BIN, ['apps', 'migrate'], { env: { ...process.env, HERALD_APP_STORE__URL: url } });
}
