// TLS end to end: Herald serves wss:// and https:// on one port from a
// certificate made for the test; unmodified pusher-js connects over wss://
// and the `pusher` SDK publishes over https://. The clients run in a child
// Node process that trusts the test CA (NODE_EXTRA_CA_CERTS), exactly as a
// deployment with a private CA would.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { APP, startServer, withTimeout } from './helpers.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** A CA and a localhost certificate it signed, in `dir`. */
function makeCertificate(dir) {
  const f = (name) => path.join(dir, name);
  const openssl = (...args) => execFileSync('openssl', args, { stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', f('ca-key.pem'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=Herald e2e CA');
  openssl('req', '-new', ...ec, '-keyout', f('key.pem'), '-out', f('csr.pem'), '-subj', '/CN=localhost');
  return writeFile(f('ext.cnf'), 'basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
    .then(() => openssl('x509', '-req', '-in', f('csr.pem'), '-CA', f('ca.pem'), '-CAkey', f('ca-key.pem'),
      '-CAcreateserial', '-out', f('cert.pem'), '-days', '2', '-extfile', f('ext.cnf')));
}

// What the child process runs: subscribe with pusher-js over wss://,
// trigger with the SDK over https://, print what arrived.
const CLIENT = `
import PusherJs from 'pusher-js';
import Pusher from 'pusher';
const port = Number(process.env.PORT);
const fail = (why) => { console.log(JSON.stringify({ error: String(why) })); process.exit(1); };
setTimeout(() => fail('timed out'), 8000);
const client = new PusherJs('${APP.key}', {
  cluster: 'mt1', wsHost: 'localhost', wssPort: port, forceTLS: true,
  enabledTransports: ['ws', 'wss'], disableStats: true,
});
client.connection.bind('error', (e) => fail(JSON.stringify(e)));
const channel = client.subscribe('secure');
channel.bind('pusher:subscription_succeeded', async () => {
  const sdk = new Pusher({ appId: '${APP.id}', key: '${APP.key}', secret: '${APP.secret}',
    host: 'localhost', port: String(port), useTLS: true });
  try { await sdk.trigger('secure', 'hello', { over: 'https' }); } catch (e) { fail(e); }
});
channel.bind('hello', (data) => {
  console.log(JSON.stringify({ data }));
  client.disconnect();
  process.exit(0);
});
`;

describe('TLS', () => {
  let dir;
  let server;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'herald-e2e-tls-'));
    await makeCertificate(dir);
    const configToml = `[server]\ntls_cert = ${JSON.stringify(path.join(dir, 'cert.pem'))}\n`
      + `tls_key = ${JSON.stringify(path.join(dir, 'key.pem'))}\n`;
    server = await startServer({ configToml, ca: await readFile(path.join(dir, 'ca.pem')) });
  });
  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('pusher-js connects over wss:// and receives what the SDK sent over https://', async () => {
    const script = path.join(HERE, `.tls-client-${process.pid}.mjs`);
    await writeFile(script, CLIENT);
    try {
      const child = spawn(process.execPath, [script], {
        cwd: HERE,
        env: { ...process.env, PORT: String(server.port), NODE_EXTRA_CA_CERTS: path.join(dir, 'ca.pem') },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (c) => { out += c; });
      child.stderr.on('data', (c) => { err += c; });
      const code = await withTimeout(new Promise((resolve) => child.on('exit', resolve)), 10000, 'the TLS client');
      assert.equal(code, 0, `client failed: ${out} ${err}\n--- server ---\n${server.output()}`);
      const result = JSON.parse(out.trim().split('\n').pop());
      assert.deepEqual(result.data, { over: 'https' });
    } finally {
      await rm(script, { force: true });
    }
  });
});
