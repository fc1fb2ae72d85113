// pusher-js's HTTP fallback transports against Herald, with the node build of
// pusher-js (its bundled XMLHttpRequest): for each of xhr_streaming and
// xhr_polling alone, the client connects over HTTP (proved by the transport
// pusher-js reports and the URL it talks to), receives SDK-triggered events on
// public, private and presence channels, exchanges client events with a
// WebSocket client, keeps the order of a burst, signs in (sendToUser) and is
// closed for good by terminateUserConnections; an unknown app key is refused
// with 4001. Also the CORS preflight of the fallback routes, a closed HTTP
// client leaving presence within http_session_timeout, and xhr_streaming
// losing no frame when pusher-js replaces a full stream.

import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import PusherJs from 'pusher-js';

import {
  APP,
  Clients,
  makeSdk,
  observeFor,
  pusherOptions,
  record,
  signIn,
  startServer,
  subscribe,
  transportName,
  waitForEvent,
  waitForState,
} from './helpers.mjs';

/** Seconds an HTTP session may go without an open receive request (server setting). */
const HTTP_SESSION_TIMEOUT = 2;
const CONFIG = `[server]\nhttp_session_timeout = ${HTTP_SESSION_TIMEOUT}\n`;

/** pusher-js replaces an xhr_streaming response once it holds more than this (MAX_BUFFER_LENGTH). */
const PUSHER_JS_STREAM_LIMIT = 256 * 1024;

for (const transport of ['xhr_streaming', 'xhr_polling']) {
  describe(`pusher-js over ${transport}`, () => {
    let server;
    let sdk;
    let clients;
    const http = (opts = {}) => clients.pusher({ transports: [transport], ...opts });

    before(async () => {
      server = await startServer({ configToml: CONFIG });
      sdk = makeSdk(server.port);
      clients = new Clients(server.port);
    });
    afterEach(() => clients?.closeAll());
    after(() => server?.stop());

    it(`connects over ${transport}, not a WebSocket`, async () => {
      const pusher = await http();

      assert.equal(pusher.connection.state, 'connected');
      assert.equal(transportName(pusher), transport);
      const { socket } = pusher.connection.connection.transport;
      assert.equal(socket.location.base, `http://127.0.0.1:${server.port}/pusher/app/${APP.key}`);
      assert.match(pusher.connection.socket_id, /^\d+\.\d+$/);
    });

    it('receives an SDK-triggered event on a public channel', async () => {
      const pusher = await http();
      const channel = await subscribe(pusher, 'public-news');
      const payload = { title: 'hello', n: 42, nested: { list: [1, 'two', null] }, text: 'héllo ✓ "quoted"\n' };

      const received = waitForEvent(channel, 'article.published');
      await sdk.trigger('public-news', 'article.published', payload);

      assert.deepEqual((await received).data, payload);
    });

    it('subscribes to a private channel and receives on it', async () => {
      const pusher = await http();
      const channel = await subscribe(pusher, 'private-orders');

      const received = waitForEvent(channel, 'order.created');
      await sdk.trigger('private-orders', 'order.created', { id: 7 });

      assert.deepEqual((await received).data, { id: 7 });
    });

    it('joins a presence channel alongside a WebSocket member', async () => {
      const room = `presence-room-${transport}`;
      const ada = await http({ presence: { user_id: '1', user_info: { name: 'Ada' } } });
      const adaChannel = await subscribe(ada, room);
      assert.equal(adaChannel.members.count, 1);
      assert.deepEqual(adaChannel.members.me, { id: '1', info: { name: 'Ada' } });

      const added = waitForEvent(adaChannel, 'pusher:member_added');
      const bob = await clients.pusher({ presence: { user_id: '2', user_info: { name: 'Bob' } } });
      const bobChannel = await subscribe(bob, room);
      assert.equal(bobChannel.members.count, 2);
      assert.deepEqual(bobChannel.members.get('1'), { id: '1', info: { name: 'Ada' } });
      assert.deepEqual((await added).data, { id: '2', info: { name: 'Bob' } });
      assert.equal(adaChannel.members.count, 2);

      const received = waitForEvent(adaChannel, 'meeting.started');
      await sdk.trigger(room, 'meeting.started', { at: 'noon' });
      assert.deepEqual((await received).data, { at: 'noon' });

      const removed = waitForEvent(adaChannel, 'pusher:member_removed');
      bob.disconnect();
      assert.deepEqual((await removed).data, { id: '2', info: { name: 'Bob' } });
      assert.equal(adaChannel.members.count, 1);
    });

    it('exchanges client events with a WebSocket client on a private channel', async () => {
      const viaHttp = await http();
      const viaWs = await clients.pusher();
      assert.equal(transportName(viaWs), 'ws');
      const httpChannel = await subscribe(viaHttp, 'private-chat');
      const wsChannel = await subscribe(viaWs, 'private-chat');

      const atWs = waitForEvent(wsChannel, 'client-typing');
      assert.equal(httpChannel.trigger('client-typing', { from: 'http' }), true);
      assert.deepEqual((await atWs).data, { from: 'http' });

      const atHttp = waitForEvent(httpChannel, 'client-typing');
      assert.equal(wsChannel.trigger('client-typing', { from: 'ws' }), true);
      assert.deepEqual((await atHttp).data, { from: 'ws' });
    });

    it('delivers a burst of events complete and in order', async () => {
      const pusher = await http();
      const channel = await subscribe(pusher, 'burst');
      const seen = record(channel, 'tick');
      const total = 30;

      const last = waitForEvent(channel, 'tick', { filter: (data) => data.i === total - 1 });
      for (let start = 0; start < total; start += 10) {
        const batch = Array.from({ length: 10 }, (_, k) => ({ channel: 'burst', name: 'tick', data: { i: start + k } }));
        await sdk.triggerBatch(batch);
      }
      await last;

      assert.deepEqual(seen.map(({ data }) => data.i), Array.from({ length: total }, (_, i) => i));
    });

    it('signs in and receives sendToUser events', async () => {
      const pusher = await http({ user: { id: `reader-${transport}`, user_info: { name: 'Ada' } } });
      await signIn(pusher);
      assert.equal(pusher.user.user_data.id, `reader-${transport}`);

      const notice = waitForEvent(pusher.user, 'notice');
      await sdk.sendToUser(`reader-${transport}`, 'notice', { msg: 'hi' });

      assert.deepEqual((await notice).data, { msg: 'hi' });
    });

    it('terminateUserConnections closes the signed-in client for good', async () => {
      const target = await http({ user: { id: `target-${transport}` } });
      const bystander = await http({ user: { id: `bystander-${transport}` } });
      await signIn(target);
      await signIn(bystander);
      const states = record(target.connection, 'state_change');
      const errors = record(target.connection, 'error');

      const gone = waitForEvent(target.connection, 'state_change', {
        filter: ({ current }) => ['disconnected', 'unavailable', 'failed'].includes(current),
      });
      await sdk.terminateUserConnections(`target-${transport}`);
      await gone;

      assert.ok(
        errors.some(({ data }) => data.data?.code === 4009 || data.error?.data?.code === 4009),
        `expected a 4009 error, got ${JSON.stringify(errors.map(({ data }) => data))}`,
      );
      // pusher-js would retry within ~1 s after a reconnectable close code.
      await observeFor(2000);
      const visited = states.map(({ data }) => data.current);
      assert.ok(!visited.includes('connecting'), `client reconnected: ${visited.join(' -> ')}`);
      assert.notEqual(target.connection.state, 'connected');
      assert.equal(bystander.connection.state, 'connected', 'other users stay connected');
      assert.equal(transportName(bystander), transport);
    });

    it('refuses an unknown app key with 4001 and does not retry', async () => {
      const stranger = new PusherJs('no-such-key', pusherOptions(server.port, { transports: [transport] }));
      clients.open.push(stranger);

      const { data: error } = await waitForEvent(stranger.connection, 'error');
      assert.equal(error.error?.data?.code ?? error.data?.code, 4001, JSON.stringify(error));
      await waitForState(stranger, 'disconnected');
      const later = record(stranger.connection, 'state_change');

      // pusher-js would retry within ~1 s after a reconnectable close code.
      await observeFor(1500);
      assert.deepEqual(later.map(({ data }) => data.current), [], 'no reconnection attempt');
      assert.equal(stranger.connection.socket_id, undefined);
    });

    it(
      `a closed ${transport} client leaves presence within http_session_timeout`,
      async () => {
        const room = `presence-leaving-${transport}`;
        const watcher = await clients.pusher({ presence: { user_id: 'watcher', user_info: {} } });
        const watched = await subscribe(watcher, room);
        const added = waitForEvent(watched, 'pusher:member_added');
        const leaver = await http({ presence: { user_id: 'leaver', user_info: {} } });
        await subscribe(leaver, room);
        await added;

        const removed = waitForEvent(watched, 'pusher:member_removed', {
          timeout: (HTTP_SESSION_TIMEOUT + 4) * 1000,
        });
        leaver.disconnect();

        assert.equal((await removed).data.id, 'leaver');
      },
    );
  });
}

describe('xhr_streaming stream replacement', () => {
  let server;
  let sdk;
  let clients;

  before(async () => {
    server = await startServer({ configToml: CONFIG });
    sdk = makeSdk(server.port);
    clients = new Clients(server.port);
  });
  afterEach(() => clients?.closeAll());
  after(() => server?.stop());

  it(
    'loses no event when pusher-js replaces a stream that passed 256 KiB',
    async () => {
      const pusher = await clients.pusher({ transports: ['xhr_streaming'] });
      const socketId = pusher.connection.socket_id;
      const channel = await subscribe(pusher, 'bulky');
      const { socket } = pusher.connection.connection.transport;

      // pusher-js's HTTPSocket.reconnect() aborts the full stream and opens
      // the next one at once. Hold the new request back until an event has
      // been published meanwhile, as a slower network would: the switch
      // itself is pusher-js's own, only its timing is fixed.
      let reopen = null;
      socket.reconnect = () => {
        socket.closeStream();
        reopen = () => socket.openStream();
      };

      const filler = 'x'.repeat(9000);
      const limit = Math.ceil(PUSHER_JS_STREAM_LIMIT / filler.length) + 5;
      let i = 0;
      for (; !reopen; i += 1) {
        assert.ok(i < limit, 'pusher-js never replaced its stream');
        const received = waitForEvent(channel, 'chunk', { filter: (data) => data.i === i });
        await sdk.trigger('bulky', 'chunk', { i, filler });
        await received;
      }

      const inTheGap = waitForEvent(channel, 'chunk', { filter: (data) => data.i === i });
      await sdk.trigger('bulky', 'chunk', { i, filler });
      reopen();
      const { data } = await inTheGap.catch((error) => {
        throw new Error(`the event published while the stream was being replaced never arrived (${error.message})`);
      });
      assert.deepEqual(data, { i, filler });

      const next = waitForEvent(channel, 'chunk', { filter: (data) => data.i === i + 1 });
      await sdk.trigger('bulky', 'chunk', { i: i + 1, filler });
      await next;
      assert.equal(pusher.connection.state, 'connected');
      assert.equal(pusher.connection.socket_id, socketId, 'the same session went on');
    },
  );
});

describe('fallback CORS', () => {
  let server;

  before(async () => {
    server = await startServer();
  });
  after(() => server?.stop());

  it('answers the preflight of xhr_send for the calling origin', async () => {
    const url = `http://127.0.0.1:${server.port}/pusher/app/${APP.key}/123/abcdefgh/xhr_send`;
    const response = await fetch(url, {
      method: 'OPTIONS',
      headers: {
        Origin: 'http://app.example',
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'content-type',
      },
      signal: AbortSignal.timeout(5000),
    });

    assert.ok(response.status >= 200 && response.status < 300, `status ${response.status}`);
    assert.equal(response.headers.get('access-control-allow-origin'), 'http://app.example');
    assert.match(response.headers.get('access-control-allow-methods') ?? '', /\bPOST\b/);
    assert.match(response.headers.get('access-control-allow-headers') ?? '', /content-type/i);
  });
});
