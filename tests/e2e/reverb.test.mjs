// A Laravel 11/12 app set up for Reverb (`php artisan install:broadcasting`,
// BROADCAST_CONNECTION=reverb, REVERB_* variables, Echo's `reverb`
// broadcaster) switches to Herald by starting Herald instead of
// `php artisan reverb:start`, and nothing else: Herald reads the app's
// REVERB_* variables (from the environment or with --env-file) and serves
// laravel-echo's reverb broadcaster and the official PHP SDK unchanged.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import Echo from 'laravel-echo';
import PusherJs from 'pusher-js';

import { freePort, phpOptions, phpSdk, startServer, waitFor, withTimeout } from './helpers.mjs';

const REVERB = Object.freeze({ id: '123456', key: 'reverb-app-key', secret: 'reverb-app-secret' });

/** Echo as Laravel 11's resources/js/echo.js makes it, private channels
 * authorized by the PHP SDK (what /broadcasting/auth does). */
function reverbEcho(port, extra = {}) {
  return new Echo({
    broadcaster: 'reverb',
    key: REVERB.key,
    wsHost: '127.0.0.1',
    wsPort: port,
    wssPort: port,
    forceTLS: false,
    enabledTransports: ['ws', 'wss'],
    disableStats: true,
    Pusher: PusherJs,
    channelAuthorization: {
      customHandler({ socketId, channelName }, callback) {
        phpSdk([{ call: 'authorizeChannel', args: [channelName, socketId] }], {
          app: REVERB,
          options: phpOptions(port),
        })
          .then(([answer]) => {
            if (answer.error) callback(new Error(answer.error), null);
            else callback(null, JSON.parse(answer.result));
          })
          .catch((error) => callback(error, null));
      },
    },
    ...extra,
  });
}

/** Resolves once `echoChannel` is subscribed (Echo's `subscribed`). */
function subscribed(echoChannel, label) {
  return waitFor((resolve, reject) => {
    echoChannel.subscribed(resolve).error((e) => reject(new Error(`${label}: ${JSON.stringify(e)}`)));
  }, { label: `${label} subscribed` });
}

/** Resolves with the first `event` heard on `echoChannel`. */
function heard(echoChannel, event) {
  return waitFor((resolve) => {
    echoChannel.listen(event, resolve);
    return () => echoChannel.stopListening(event);
  }, { label: event });
}

async function roundTrip(echo, port, phpExtra = {}) {
  const news = echo.channel('news');
  const orders = echo.private('orders.1');
  await Promise.all([subscribed(news, 'news'), subscribed(orders, 'private-orders.1')]);
  const breaking = heard(news, '.breaking');
  const shipped = heard(orders, '.order.shipped');
  const answers = await phpSdk([
    { call: 'trigger', args: ['news', 'breaking', { title: 'hello' }] },
    { call: 'triggerBatch', args: [[{ channel: 'private-orders.1', name: 'order.shipped', data: { id: 1 } }]] },
  ], { app: REVERB, options: phpOptions(port, phpExtra) });
  for (const answer of answers) assert.equal(answer.error, undefined, JSON.stringify(answer));
  assert.deepEqual(await breaking, { title: 'hello' });
  assert.deepEqual(await shipped, { id: 1 });
}

describe('Reverb drop-in', () => {
  let dir;
  before(async () => { dir = await mkdtemp(path.join(tmpdir(), 'herald-reverb-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  test('started with only REVERB_* in its environment, Herald serves Echo\'s reverb broadcaster and the PHP SDK', async () => {
    const port = await freePort();
    const server = await startServer({
      appEnv: false,
      listenArgs: false,
      port,
      env: {
        BROADCAST_CONNECTION: 'reverb',
        REVERB_APP_ID: REVERB.id,
        REVERB_APP_KEY: REVERB.key,
        REVERB_APP_SECRET: REVERB.secret,
        REVERB_SERVER_HOST: '127.0.0.1',
        REVERB_SERVER_PORT: String(port),
      },
    });
    const echo = reverbEcho(port);
    try {
      assert.match(server.output(), /default app from REVERB_APP_ID\/KEY\/SECRET/);
      assert.match(server.output(), /BROADCAST_CONNECTION=reverb/);
      assert.ok(!server.output().includes(REVERB.secret), 'the secret is never logged');
      await roundTrip(echo, port);
    } finally {
      echo.disconnect();
      await server.stop();
    }
  });

  test('with --env-file on a Laravel 11 .env and a path prefix, Echo\'s wsPath and the PHP SDK\'s path reach it', async () => {
    const port = await freePort();
    const envFile = path.join(dir, '.env');
    // Laravel 11's stock .env after `php artisan install:broadcasting`,
    // with the server block Reverb reads (here: behind a proxy at /ws).
    await writeFile(envFile, [
      'APP_NAME=Laravel',
      'APP_ENV=local',
      'APP_URL=http://localhost',
      '',
      'BROADCAST_CONNECTION=reverb',
      'QUEUE_CONNECTION=database',
      '',
      `REVERB_APP_ID=${REVERB.id}`,
      `REVERB_APP_KEY=${REVERB.key}`,
      `REVERB_APP_SECRET="${REVERB.secret}"`,
      'REVERB_HOST="localhost"',
      `REVERB_PORT=${port}`,
      'REVERB_SCHEME=http',
      'export REVERB_SERVER_HOST=127.0.0.1',
      'REVERB_SERVER_PORT=${REVERB_PORT}',
      'REVERB_SERVER_PATH=/ws # the proxy forwards /ws as it is',
      '',
      'VITE_APP_NAME="${APP_NAME}"',
      'VITE_REVERB_APP_KEY="${REVERB_APP_KEY}"',
      'VITE_REVERB_HOST="${REVERB_HOST}"',
      'VITE_REVERB_PORT="${REVERB_PORT}"',
      'VITE_REVERB_SCHEME="${REVERB_SCHEME}"',
      '',
    ].join('\n'));
    const server = await startServer({
      appEnv: false,
      listenArgs: false,
      port,
      args: ['--env-file', envFile],
      upPath: '/ws/up',
    });
    const echo = reverbEcho(port, { wsPath: '/ws' });
    try {
      assert.match(server.output(), /default app from REVERB_APP_ID\/KEY\/SECRET/);
      await roundTrip(echo, port, { path: '/ws/' });
      // The socket really came in under the prefix.
      const [channels] = await phpSdk([{ call: 'getChannels', args: [] }], {
        app: REVERB,
        options: phpOptions(port, { path: '/ws/' }),
      });
      assert.ok(channels.result.channels['private-orders.1'], JSON.stringify(channels));
    } finally {
      echo.disconnect();
      await server.stop();
    }
  });
});
