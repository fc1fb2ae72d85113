// Shared harness for Herald's end-to-end tests: starts the real server binary
// on a free port, builds real pusher-js / laravel-echo clients and the official
// `pusher` server SDK against it, and offers promise helpers in which every
// wait has a timeout (no sleeps used as synchronisation).

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import PusherJs from 'pusher-js';
import Echo from 'laravel-echo';
import PusherSdk from 'pusher';

export const APP = Object.freeze({ id: 'app-id', key: 'app-key', secret: 'app-secret' });

/** Default time any single wait may take, in milliseconds. */
export const WAIT_MS = 5000;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
export const HERALD_BIN = process.env.HERALD_BIN || path.join(REPO, 'target', 'debug', 'herald');

if (process.env.HERALD_E2E_DEBUG) {
  PusherJs.log = (message) => console.error('[pusher-js]', message);
}

// ---------------------------------------------------------------------------
// Promise helpers
// ---------------------------------------------------------------------------

/** Rejects with `label` if `promise` has not settled within `ms`. */
export function withTimeout(promise, ms = WAIT_MS, label = 'operation') {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${label}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Generic waiter: `subscribe(resolve, reject)` registers listeners and may
 * return a cleanup function, which runs once the wait ends either way.
 */
export function waitFor(subscribe, { timeout = WAIT_MS, label = 'event' } = {}) {
  let cleanup;
  const promise = new Promise((resolve, reject) => {
    cleanup = subscribe(resolve, reject);
  });
  return withTimeout(promise, timeout, label).finally(() => {
    if (typeof cleanup === 'function') cleanup();
  });
}

/**
 * Waits for `event` on a pusher-js style emitter (channel, connection,
 * pusher.user: anything with bind/unbind). Resolves with `{ data, metadata }`
 * of the first emission that passes `filter`.
 */
export function waitForEvent(emitter, event, { filter = () => true, timeout = WAIT_MS } = {}) {
  const name = emitter.name ? `'${event}' on ${emitter.name}` : `'${event}'`;
  return waitFor(
    (resolve) => {
      const handler = (data, metadata) => {
        if (filter(data, metadata)) resolve({ data, metadata });
      };
      emitter.bind(event, handler);
      return () => emitter.unbind(event, handler);
    },
    { timeout, label: name },
  );
}

/** Waits until a pusher-js client's connection reaches `state`. */
export function waitForState(pusher, state, timeout = WAIT_MS) {
  if (pusher.connection.state === state) return Promise.resolve();
  return waitForEvent(pusher.connection, 'state_change', {
    filter: ({ current }) => current === state,
    timeout,
  }).then(() => undefined);
}

/**
 * Waits for a protocol frame with the given `event` name as pusher-js decoded
 * it; resolves with the frame ({ event, channel?, data, user_id? }).
 */
export function waitForFrame(pusher, eventName, timeout = WAIT_MS) {
  return waitForEvent(pusher.connection, 'message', {
    filter: (frame) => frame.event === eventName,
    timeout,
  }).then(({ data: frame }) => frame);
}

/** Records every emission of `event` on an emitter into the returned array. */
export function record(emitter, event) {
  const seen = [];
  emitter.bind(event, (data, metadata) => seen.push({ data, metadata }));
  return seen;
}

/**
 * A callback to hand to APIs that take one (Echo's listen/here/joining, ...).
 * `await cb.wait()` resolves with the first argument of its first call.
 */
export function latch(label = 'callback') {
  let settle;
  const called = new Promise((resolve) => { settle = resolve; });
  const cb = (...args) => {
    cb.calls.push(args);
    settle(args[0]);
  };
  cb.calls = [];
  cb.wait = (timeout = WAIT_MS) => withTimeout(called, timeout, label);
  return cb;
}

/**
 * Lets `ms` pass. Only for asserting that something does NOT happen within a
 * window (e.g. no reconnect); never use it to wait for something to happen.
 */
export function observeFor(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

/** Finds a free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** GET http://127.0.0.1:port/path without keep-alive; resolves with the status code. */
function httpStatus(port, urlPath, ca) {
  return new Promise((resolve, reject) => {
    const options = { host: 'localhost', port, path: urlPath, agent: false, timeout: 1000 };
    const get = ca ? (o, cb) => https.get({ ...o, ca }, cb) : (o, cb) => http.get({ ...o, host: '127.0.0.1' }, cb);
    const req = get(options, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
  });
}

/**
 * The server's environment: ours minus any HERALD_* settings (config file,
 * port, app credentials...) that would make a run depend on the caller's
 * shell; HERALD_LOG / RUST_LOG pass through for debugging.
 */
function serverEnv({ appEnv = true, extra = {} } = {}) {
  // Several servers may run at once: no metrics listener.
  const base = { HERALD_METRICS_PORT: '0' };
  const env = appEnv
    ? { PUSHER_APP_ID: APP.id, PUSHER_APP_KEY: APP.key, PUSHER_APP_SECRET: APP.secret, ...base }
    : base;
  for (const [name, value] of Object.entries(process.env)) {
    if (name.startsWith('HERALD_') && name !== 'HERALD_LOG') continue;
    if (name.startsWith('PUSHER_') || name.startsWith('REVERB_') || name.startsWith('BROADCAST_')) continue;
    env[name] = value;
  }
  return { ...env, ...extra };
}

/**
 * Starts the Herald binary on a free port and waits until GET /up answers 200.
 * `configToml`, if given, is written to a temporary file passed as --config;
 * `ca` (PEM), for a server with TLS: readiness is checked over https.
 * `env`: more variables for the server; `appEnv: false` leaves out the
 * default PUSHER_APP_* credentials; `port`: a port chosen by the caller,
 * and `listenArgs: false` passes no --host/--port (the environment says
 * where it listens); `args`: more arguments; `upPath`: where /up is.
 * Resolves with { port, output(), stop() }.
 */
export async function startServer({
  configToml, startTimeout = 15000, ca, env = {}, appEnv = true, port: chosen,
  listenArgs = true, args: more = [], upPath = '/up',
} = {}) {
  const port = chosen || await freePort();
  const args = listenArgs ? ['--host', '127.0.0.1', '--port', String(port), ...more] : [...more];
  let configDir;
  if (configToml) {
    configDir = await mkdtemp(path.join(tmpdir(), 'herald-e2e-'));
    const file = path.join(configDir, 'herald.toml');
    await writeFile(file, configToml);
    args.push('--config', file);
  }

  const child = spawn(HERALD_BIN, args, {
    env: serverEnv({ appEnv, extra: env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });

  let log = '';
  const capture = (chunk) => {
    log += chunk.toString();
    if (log.length > 200_000) log = log.slice(-100_000);
  };
  child.stdout.on('data', capture);
  child.stderr.on('data', capture);

  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
    child.on('error', (error) => resolve({ error }));
  });
  let exitInfo = null;
  exited.then((info) => { exitInfo = info; });

  const describeExit = () =>
    exitInfo.error
      ? `could not start ${HERALD_BIN}: ${exitInfo.error.message}`
      : `herald exited early (code ${exitInfo.code}, signal ${exitInfo.signal})`;

  const deadline = Date.now() + startTimeout;
  for (;;) {
    if (exitInfo) throw new Error(`${describeExit()}\n--- server output ---\n${log}`);
    const status = await httpStatus(port, upPath, ca).catch(() => null);
    if (status === 200) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`herald did not answer 200 on ${upPath} within ${startTimeout} ms\n--- server output ---\n${log}`);
    }
    await Promise.race([observeFor(50), exited]);
  }

  return {
    port,
    output: () => log,
    async stop() {
      if (!exitInfo) {
        child.kill('SIGTERM');
        try {
          await withTimeout(exited, 5000, 'herald to exit after SIGTERM');
        } catch {
          child.kill('SIGKILL');
          await exited;
        }
      }
      if (configDir) await rm(configDir, { recursive: true, force: true });
    },
  };
}

/** Waits until a redis-server accepts connections on `port`. */
async function listening(port, deadline) {
  for (;;) {
    const up = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => { socket.end(); resolve(true); });
      socket.on('error', () => resolve(false));
    });
    if (up) return;
    if (Date.now() > deadline) throw new Error(`redis-server did not start on ${port}`);
    await observeFor(20);
  }
}

/**
 * Starts a private redis-server on a free port (never the machine's shared
 * one). Resolves with { url, stop() }.
 */
export async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  await listening(port, Date.now() + 10000);
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      child.kill('SIGKILL');
      await withTimeout(exited, 5000, 'redis-server to exit');
    },
  };
}

/** Runs a command to its end; resolves with its stdout (rejects on failure). */
function run(command, args, timeout = 30000) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (chunk) => { out += chunk; });
  const done = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${command} ${args.join(' ')} exited with ${code}`))));
  });
  return withTimeout(done, timeout, `${command} to finish`).finally(() => child.kill('SIGKILL'));
}

/**
 * Starts a private Redis Cluster of three masters on free ports, made as
 * an operator makes one (`redis-server --cluster-enabled yes`, then
 * `redis-cli --cluster create`). Resolves with { url, stop() }, the URL
 * being Herald's `redis+cluster://` form.
 */
/**
 * A free port for a Redis Cluster node: its cluster bus listens 10000
 * above it, so it must be 55535 or below (the kernel hands out up to 60999).
 */
async function clusterPort() {
  for (;;) {
    const port = await freePort();
    if (port <= 55535) return port;
  }
}

export async function startRedisCluster() {
  const dir = await mkdtemp(path.join(tmpdir(), 'herald-e2e-redis-cluster-'));
  const ports = [await clusterPort(), await clusterPort(), await clusterPort()];
  const children = ports.map((port) => spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--dir', dir,
  ], { stdio: 'ignore' }));
  const exits = children.map((child) => new Promise((resolve) => child.on('exit', resolve)));
  const stop = async () => {
    for (const child of children) child.kill('SIGKILL');
    await withTimeout(Promise.all(exits), 5000, 'redis-server to exit');
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const deadline = Date.now() + 10000;
    for (const port of ports) await listening(port, deadline);
    const nodes = ports.map((port) => `127.0.0.1:${port}`);
    await run('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-replicas', '0', '--cluster-yes']);
    for (const port of ports) {
      for (;;) {
        const info = await run('redis-cli', ['-p', String(port), 'CLUSTER', 'INFO']);
        if (info.includes('cluster_state:ok')) break;
        if (Date.now() > deadline + 20000) throw new Error('the Redis Cluster did not settle');
        await observeFor(50);
      }
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { url: `redis+cluster://${ports.map((port) => `127.0.0.1:${port}`).join(',')}`, stop };
}

/** Waits until a node's /up reports it fully joined to its cluster. */
export async function waitClusterReady(port, timeout = 10000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const body = await new Promise((resolve) => {
      http.get({ host: '127.0.0.1', port, path: '/up', agent: false }, (res) => {
        let text = '';
        res.on('data', (c) => { text += c; });
        res.on('end', () => resolve(text));
      }).on('error', () => resolve(''));
    });
    if (body.includes('"ok"')) return;
    if (Date.now() > deadline) throw new Error(`node on ${port} never joined the cluster: ${body}`);
    await observeFor(50);
  }
}

/** TOML for a single app with the standard credentials plus `settings`. */
export function appConfigToml(settings = {}) {
  const lines = ['[[apps]]', `id = "${APP.id}"`, `key = "${APP.key}"`, `secret = "${APP.secret}"`];
  for (const [name, value] of Object.entries(settings)) {
    lines.push(`${name} = ${JSON.stringify(value)}`);
  }
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------------------
// Server SDK (`pusher` npm package)
// ---------------------------------------------------------------------------

/** The official server SDK pointed at Herald; `overrides` can change e.g. the secret. */
export function makeSdk(port, overrides = {}) {
  return new PusherSdk({
    appId: APP.id,
    key: APP.key,
    secret: APP.secret,
    host: '127.0.0.1',
    port: String(port),
    useTLS: false,
    timeout: WAIT_MS,
    ...overrides,
  });
}

/** A random 32-byte master key for encrypted channels, base64. */
export function randomMasterKey() {
  return randomBytes(32).toString('base64');
}

// ---------------------------------------------------------------------------
// Clients (pusher-js and laravel-echo)
// ---------------------------------------------------------------------------

/**
 * pusher-js options for Herald. Authorization happens in-process with the
 * server SDK, standing in for the app's /broadcasting/auth endpoints:
 *   signer   - SDK instance that signs (default: correct credentials)
 *   presence - { user_id, user_info } used as channel_data for presence channels
 *   user       - user_data for pusher.signin(), e.g. { id: '42', user_info: {...} }
 *   transports - pusher-js enabledTransports (default ['ws']); 'xhr_streaming'
 *                and 'xhr_polling' reach Herald through httpHost/httpPort
 */
export function pusherOptions(port, { signer, presence, user, transports = ['ws'], ...extra } = {}) {
  const sdk = signer || makeSdk(port);
  return {
    cluster: 'mt1',
    wsHost: '127.0.0.1',
    wsPort: port,
    // pusher-js's HTTP transports ignore wsHost/wsPort; httpPath defaults to '/pusher'.
    httpHost: '127.0.0.1',
    httpPort: port,
    forceTLS: false,
    enabledTransports: transports,
    disableStats: true,
    channelAuthorization: {
      customHandler({ socketId, channelName }, callback) {
        try {
          const data = channelName.startsWith('presence-') ? presence : undefined;
          callback(null, sdk.authorizeChannel(socketId, channelName, data));
        } catch (error) {
          callback(error, null);
        }
      },
    },
    userAuthentication: {
      customHandler({ socketId }, callback) {
        try {
          if (!user) throw new Error('this test client has no user to sign in as');
          callback(null, sdk.authenticateUser(socketId, user));
        } catch (error) {
          callback(error, null);
        }
      },
    },
    ...extra,
  };
}

/**
 * The name of the transport a connected pusher-js client is using ('ws',
 * 'xhr_streaming', 'xhr_polling'), or undefined while it has none.
 */
export function transportName(pusher) {
  return pusher.connection.connection?.transport?.name;
}

/** A pusher-js client (connects at once). */
export function makePusher(port, opts = {}) {
  return new PusherJs(APP.key, pusherOptions(port, opts));
}

/** A Laravel Echo instance (pusher broadcaster) that builds its own pusher-js client. */
export function makeEcho(port, opts = {}) {
  return new Echo({
    broadcaster: 'pusher',
    key: APP.key,
    Pusher: PusherJs,
    ...pusherOptions(port, opts),
  });
}

/**
 * Tracks the clients a test creates so an after hook can close them all.
 * Every factory resolves once the client is connected.
 */
export class Clients {
  constructor(port) {
    this.port = port;
    this.open = [];
  }

  async pusher(opts) {
    const client = makePusher(this.port, opts);
    this.open.push(client);
    await waitForState(client, 'connected');
    return client;
  }

  async echo(opts) {
    const echo = makeEcho(this.port, opts);
    this.open.push(echo.connector.pusher);
    await waitForState(echo.connector.pusher, 'connected');
    return echo;
  }

  /** Disconnects every client created so far. */
  closeAll() {
    for (const client of this.open.splice(0)) client.disconnect();
  }
}

/**
 * Subscribes a pusher-js client and waits for pusher:subscription_succeeded;
 * rejects with the error data on pusher:subscription_error. Resolves with the
 * channel (the succeeded data is kept as `channel.succeededWith`).
 */
export async function subscribe(pusher, channelName, timeout = WAIT_MS) {
  const channel = pusher.subscribe(channelName);
  channel.succeededWith = await waitOnChannel(channel, timeout);
  return channel;
}

/** Waits for a channel's subscription outcome (resolves with the success data). */
export function waitOnChannel(channel, timeout = WAIT_MS) {
  if (channel.subscribed) return Promise.resolve(undefined);
  return waitFor(
    (resolve, reject) => {
      const ok = (data) => resolve(data);
      const failed = (error) =>
        reject(new Error(`subscription to ${channel.name} failed: ${JSON.stringify(error)}`));
      channel.bind('pusher:subscription_succeeded', ok);
      channel.bind('pusher:subscription_error', failed);
      return () => {
        channel.unbind('pusher:subscription_succeeded', ok);
        channel.unbind('pusher:subscription_error', failed);
      };
    },
    { timeout, label: `subscription to ${channel.name}` },
  );
}

/** Waits until an Echo channel (PusherChannel) has subscribed. */
export function echoSubscribed(echoChannel, timeout = WAIT_MS) {
  return waitOnChannel(echoChannel.subscription, timeout);
}

/**
 * Signs a pusher-js client in (pusher.signin(), authorised by the `user`
 * option) and waits until its #server-to-user channel is subscribed.
 */
export async function signIn(pusher, timeout = WAIT_MS) {
  const success = waitForFrame(pusher, 'pusher:signin_success', timeout);
  pusher.signin();
  await success;
  if (!pusher.user.user_data) throw new Error('pusher-js did not accept the signin_success user_data');
  await waitOnChannel(pusher.user.serverToUserChannel, timeout);
}

/** Reads a JSON body from an SDK response (node-fetch Response). */
export async function json(responsePromise) {
  const response = await responsePromise;
  return response.json();
}

// ---------------------------------------------------------------------------
// The official PHP SDK (pusher/pusher-php-server, run by php-cli)
// ---------------------------------------------------------------------------

const PHP_DIR = path.join(HERE, 'php');

/**
 * Runs `calls` ([{ call, args }]) on one instance of the official PHP SDK
 * made with `app` ({ id, key, secret }) and `options` (the SDK's own:
 * host, port, scheme, useTLS, path, encryption_master_key_base64, ...).
 * Resolves with one { result } or { error, status } per call.
 */
export function phpSdk(calls, { app = APP, options = {}, timeout = 20000 } = {}) {
  const input = JSON.stringify({ app, options, calls });
  return runPhp([path.join(PHP_DIR, 'sdk.php'), input], timeout).then((out) => JSON.parse(out));
}

/** The PHP SDK's options for a plain-HTTP Herald on `port`. */
export function phpOptions(port, extra = {}) {
  return { host: '127.0.0.1', port, scheme: 'http', useTLS: false, ...extra };
}

/** Runs php-cli with `args`; resolves with its standard output. */
export function runPhp(args, timeout = 20000) {
  return withTimeout(new Promise((resolve, reject) => {
    const child = spawn('php', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => { out += chunk; });
    child.stderr.on('data', (chunk) => { err += chunk; });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`php ${path.basename(args[0])} exited with ${code}: ${err}${out}`));
    });
  }), timeout, `php ${path.basename(args[0])}`);
}

// ---------------------------------------------------------------------------
// A webhook receiver
// ---------------------------------------------------------------------------

/** A local receiver that keeps every request as the SDK's WebHook sees it. */
export async function startReceiver() {
  const requests = [];
  const listeners = new Set();
  const server = http.createServer((req, res) => {
    let rawBody = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { rawBody += chunk; });
    req.on('end', () => {
      const request = { headers: req.headers, rawBody };
      requests.push(request);
      for (const listener of listeners) listener();
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/pusher/webhooks`,
    requests,
    /** Waits until some received event passes `test`. */
    until(test, label) {
      const seen = () => requests.some((r) => JSON.parse(r.rawBody).events.some(test));
      return waitFor((resolve) => {
        const check = () => { if (seen()) resolve(); };
        listeners.add(check);
        check();
        return () => listeners.delete(check);
      }, { label });
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
