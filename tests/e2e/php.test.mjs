// The PHP side, for real: the official Pusher PHP SDK (pusher/pusher-php-server
// 7.2.7, unmodified, from ../shared/third_party) and Laravel 8.83's own
// broadcasting (BroadcastManager, PusherBroadcaster, Broadcast::auth),
// run by php-cli against the Herald binary, with pusher-js as the client.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  APP,
  Clients,
  appConfigToml,
  phpOptions,
  phpSdk,
  randomMasterKey,
  runPhp,
  signIn,
  startReceiver,
  startServer,
  subscribe,
  waitForEvent,
  waitForState,
} from './helpers.mjs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const LARAVEL = path.join(path.dirname(fileURLToPath(import.meta.url)), 'php', 'laravel.php');

/** Asserts every answer of a phpSdk run succeeded; returns the results. */
function results(answers) {
  for (const answer of answers) assert.equal(answer.error, undefined, JSON.stringify(answer));
  return answers.map((answer) => answer.result);
}

/** pusher-js options whose channel authorization and sign-in are the PHP SDK's. */
function phpSigned(port, { presence, user, masterKey } = {}) {
  const options = phpOptions(port, masterKey ? { encryption_master_key_base64: masterKey } : {});
  const answer = (calls, callback) => phpSdk(calls, { options })
    .then(([a]) => (a.error ? callback(new Error(a.error), null) : callback(null, JSON.parse(a.result))))
    .catch((error) => callback(error, null));
  return {
    channelAuthorization: {
      customHandler({ socketId, channelName }, callback) {
        const call = channelName.startsWith('presence-')
          ? { call: 'authorizePresenceChannel', args: [channelName, socketId, presence.user_id, presence.user_info] }
          : { call: 'authorizeChannel', args: [channelName, socketId] };
        answer([call], callback);
      },
    },
    userAuthentication: {
      customHandler({ socketId }, callback) {
        answer([{ call: 'authenticateUser', args: [socketId, user] }], callback);
      },
    },
  };
}

/** Laravel's broadcasting config for Herald (config/broadcasting.php's `pusher`). */
function laravelConnection(port) {
  return {
    driver: 'pusher',
    key: APP.key,
    secret: APP.secret,
    app_id: APP.id,
    options: { host: '127.0.0.1', port, scheme: 'http', useTLS: false, encrypted: true },
  };
}

function laravel(port, action) {
  return runPhp([LARAVEL, JSON.stringify({ connection: laravelConnection(port), ...action })])
    .then((out) => JSON.parse(out));
}

describe('the official PHP SDK', () => {
  let server;
  let clients;
  let receiver;
  const masterKey = randomMasterKey();

  before(async () => {
    receiver = await startReceiver();
    const configToml = appConfigToml({ webhook_debounce: 0 })
      + `[[apps.webhooks]]\nurl = ${JSON.stringify(receiver.url)}\n`;
    server = await startServer({ configToml });
    clients = new Clients(server.port);
  });
  after(async () => {
    clients?.closeAll();
    await server?.stop();
    await receiver?.close();
  });

  it('triggers and batches events that pusher-js receives', async () => {
    const pusher = await clients.pusher();
    const news = await subscribe(pusher, 'news');
    const first = waitForEvent(news, 'breaking');
    const second = waitForEvent(news, 'update', { filter: (d) => d.n === 2 });
    results(await phpSdk([
      { call: 'trigger', args: [['news'], 'breaking', { title: 'hello' }] },
      { call: 'triggerBatch', args: [[
        { channel: 'news', name: 'update', data: { n: 1 } },
        { channel: 'news', name: 'update', data: { n: 2 } },
      ]] },
    ], { options: phpOptions(server.port) }));
    assert.deepEqual((await first).data, { title: 'hello' });
    assert.deepEqual((await second).data, { n: 2 });
  });

  it('queries channels, one channel and presence users', async () => {
    const ada = await clients.pusher(phpSigned(server.port, { presence: { user_id: '42', user_info: { name: 'Ada' } } }));
    await subscribe(ada, 'presence-lobby');
    await subscribe(ada, 'private-desk');
    const [all, presence, lobby, users] = results(await phpSdk([
      { call: 'getChannels', args: [] },
      { call: 'getChannels', args: [{ filter_by_prefix: 'presence-', info: 'user_count' }] },
      { call: 'getChannelInfo', args: ['presence-lobby', { info: 'user_count,subscription_count' }] },
      { call: 'getPresenceUsers', args: ['presence-lobby'] },
    ], { options: phpOptions(server.port) }));
    assert.ok(all.channels['presence-lobby'] && all.channels['private-desk'], JSON.stringify(all));
    assert.deepEqual(presence.channels, { 'presence-lobby': { user_count: 1 } });
    assert.deepEqual(lobby, { occupied: true, user_count: 1, subscription_count: 1 });
    assert.deepEqual(users, { users: [{ id: '42' }] });
  });

  it('signs users in, sends to them and terminates their connections', async () => {
    const user = { id: '7', user_info: { name: 'Grace' } };
    const pusher = await clients.pusher({ ...phpSigned(server.port, { user }) });
    await signIn(pusher, 15000);
    const private1 = waitForEvent(pusher.user, 'notice');
    results(await phpSdk([{ call: 'sendToUser', args: ['7', 'notice', { text: 'hi' }] }], {
      options: phpOptions(server.port),
    }));
    assert.deepEqual((await private1).data, { text: 'hi' });
    const gone = waitForEvent(pusher.connection, 'state_change', {
      filter: ({ current }) => ['disconnected', 'unavailable', 'failed'].includes(current),
      timeout: 15000,
    });
    results(await phpSdk([{ call: 'terminateUserConnections', args: ['7'] }], {
      options: phpOptions(server.port),
    }));
    await gone;
  });

  it('encrypts events with encryption_master_key_base64 for pusher-js to decrypt', async () => {
    const pusher = await clients.pusher(phpSigned(server.port, { masterKey }));
    const channel = await subscribe(pusher, 'private-encrypted-vault');
    const secret = waitForEvent(channel, 'secret');
    results(await phpSdk([{ call: 'trigger', args: ['private-encrypted-vault', 'secret', { code: 1234 }] }], {
      options: phpOptions(server.port, { encryption_master_key_base64: masterKey }),
    }));
    assert.deepEqual((await secret).data, { code: 1234 });
  });

  it('validates Herald\'s webhooks with Pusher::webhook()', async () => {
    const pusher = await clients.pusher();
    await subscribe(pusher, 'webhook-room');
    await receiver.until((e) => e.name === 'channel_occupied' && e.channel === 'webhook-room', 'channel_occupied');
    const request = receiver.requests.find((r) => r.rawBody.includes('webhook-room'));
    const headers = {
      'X-Pusher-Key': request.headers['x-pusher-key'],
      'X-Pusher-Signature': request.headers['x-pusher-signature'],
    };
    const [valid, forged] = await phpSdk([
      { call: 'webhook', args: [headers, request.rawBody] },
      { call: 'webhook', args: [headers, request.rawBody.replace('webhook-room', 'webhook-r00m')] },
    ], { options: phpOptions(server.port) });
    assert.equal(valid.error, undefined, JSON.stringify(valid));
    assert.ok(valid.result.events.some((e) => e.name === 'channel_occupied' && e.channel === 'webhook-room'));
    assert.ok(Math.abs(valid.result.time_ms - Date.now()) < 60_000);
    assert.match(forged.error, /invalid signature/);
  });

  it('gets the API\'s errors as ApiErrorException with the status', async () => {
    const [bad] = await phpSdk([{ call: 'trigger', args: ['bad channel', 'e', {}] }], {
      options: phpOptions(server.port),
    });
    assert.match(bad.error ?? '', /./);
    const [wrongSecret] = await phpSdk([{ call: 'trigger', args: ['news', 'e', {}] }], {
      app: { ...APP, secret: 'not-the-secret' },
      options: phpOptions(server.port),
    });
    assert.equal(wrongSecret.status, 401, JSON.stringify(wrongSecret));
  });
});

describe('Laravel 8.83\'s own broadcasting', () => {
  let server;
  let clients;

  before(async () => {
    server = await startServer();
    clients = new Clients(server.port);
  });
  after(async () => {
    clients?.closeAll();
    await server?.stop();
  });

  /** pusher-js whose private and presence channels are authorized by Broadcast::auth. */
  function laravelAuthorized(user) {
    return {
      channelAuthorization: {
        customHandler({ socketId, channelName }, callback) {
          laravel(server.port, { do: 'auth', channel_name: channelName, socket_id: socketId, user })
            .then((answer) => (answer.auth
              ? callback(null, answer.auth)
              : callback(new Error(`refused with ${answer.refused}`), null)))
            .catch((error) => callback(error, null));
        },
      },
    };
  }

  it('Broadcast::auth authorizes private and presence channels and refuses what channels.php refuses', async () => {
    const ada = await clients.pusher(laravelAuthorized({ id: 1, name: 'Ada' }));
    await subscribe(ada, 'private-orders.1');
    const room = await subscribe(ada, 'presence-room.9');
    assert.deepEqual(room.members.me, { id: '1', info: { id: 1, name: 'Ada' } });
    // (Bound in the same tick as the subscribe: the refusal comes after
    // Broadcast::auth answered, much later.)
    const refused = waitForEvent(ada.subscribe('private-orders.2'), 'pusher:subscription_error', { timeout: 15000 });
    // (pusher-js reports the authorizer's error; Laravel answered 403.)
    assert.match(JSON.stringify((await refused).data), /refused with 403/);
  });

  it('broadcast(new OrderShipped)->toOthers() reaches everyone but the sender', async () => {
    const sender = await clients.pusher(laravelAuthorized({ id: 1, name: 'Ada' }));
    const other = await clients.pusher(laravelAuthorized({ id: 1, name: 'Ada' }));
    const senderOrders = await subscribe(sender, 'private-orders.1');
    const otherOrders = await subscribe(other, 'private-orders.1');
    const otherNews = await subscribe(other, 'news');
    const senderNews = await subscribe(sender, 'news');
    let senderGot = 0;
    senderOrders.bind('order.shipped', () => { senderGot += 1; });
    senderNews.bind('order.shipped', () => { senderGot += 1; });
    const onOrders = waitForEvent(otherOrders, 'order.shipped');
    const onNews = waitForEvent(otherNews, 'order.shipped');
    const answer = await laravel(server.port, { do: 'broadcast', socket_id: sender.connection.socket_id });
    assert.deepEqual(answer, { broadcast: true });
    // The event's public properties are its payload (plus `socket`).
    assert.equal((await onOrders).data.id, 1);
    assert.equal((await onNews).data.id, 1);
    // Barrier: an event sent after it reaches the sender, so the excluded
    // event would have come first.
    const barrier = waitForEvent(senderNews, 'barrier');
    results(await phpSdk([{ call: 'trigger', args: ['news', 'barrier', {}] }], { options: phpOptions(server.port) }));
    await barrier;
    assert.equal(senderGot, 0, 'toOthers() left the sender out');
    await waitForState(sender, 'connected');
  });
});
