// Core protocol, end to end: pusher-js connects to Herald, subscribes to
// public / private / presence channels and receives events published with the
// official `pusher` server SDK; socket exclusion; the HTTP API's channel and
// user queries, batch triggers and request signing (401 on a bad secret).

import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  Clients,
  json,
  makeSdk,
  startServer,
  subscribe,
  waitForEvent,
  waitForFrame,
} from './helpers.mjs';

describe('core protocol', () => {
  let server;
  let sdk;
  let clients;

  before(async () => {
    server = await startServer();
    sdk = makeSdk(server.port);
    clients = new Clients(server.port);
  });
  afterEach(() => clients?.closeAll());
  after(() => server?.stop());

  it('connects and gets a socket_id of the form digits.digits', async () => {
    const pusher = await clients.pusher();
    assert.match(pusher.connection.socket_id, /^\d+\.\d+$/);
  });

  it('delivers an SDK-triggered event on a public channel', async () => {
    const pusher = await clients.pusher();
    const channel = await subscribe(pusher, 'public-news');
    const payload = { title: 'hello', n: 42, nested: { list: [1, 'two', null] }, text: 'héllo ✓' };

    const received = waitForEvent(channel, 'article.published');
    const response = await sdk.trigger('public-news', 'article.published', payload);

    assert.equal(response.status, 200);
    assert.equal(typeof (await response.json()), 'object', 'trigger answers with a JSON body');
    assert.deepEqual((await received).data, payload);
  });

  it('delivers on a private channel authorised with authorizeChannel', async () => {
    const pusher = await clients.pusher();
    const channel = await subscribe(pusher, 'private-orders');

    const received = waitForEvent(channel, 'order.created');
    await sdk.trigger('private-orders', 'order.created', { id: 7 });

    assert.deepEqual((await received).data, { id: 7 });
  });

  it('answers a private subscription with a wrong signature with pusher:subscription_error', async () => {
    const forger = makeSdk(server.port, { secret: 'not-the-secret' });
    const pusher = await clients.pusher({ signer: forger });
    const channel = pusher.subscribe('private-forged');

    const { data } = await waitForEvent(channel, 'pusher:subscription_error');

    assert.equal(data.type, 'AuthError');
    assert.equal(data.status, 401);
    assert.equal(channel.subscribed, false);
    assert.equal(pusher.connection.state, 'connected', 'a failed subscription keeps the socket open');
  });

  it('tracks presence members: subscription_succeeded, member_added, member_removed', async () => {
    const ada = await clients.pusher({ presence: { user_id: '1', user_info: { name: 'Ada' } } });
    const adaChannel = await subscribe(ada, 'presence-room');
    const adaMembers = adaChannel.succeededWith;
    assert.equal(adaMembers.count, 1);
    assert.deepEqual(adaMembers.me, { id: '1', info: { name: 'Ada' } });

    const added = waitForEvent(adaChannel, 'pusher:member_added');
    const bob = await clients.pusher({ presence: { user_id: '2', user_info: { name: 'Bob' } } });
    const bobFrame = waitForFrame(bob, 'pusher_internal:subscription_succeeded');
    const bobMembers = (await subscribe(bob, 'presence-room')).succeededWith;

    // pusher-js reads hash/count; the Java client iterates ids (protocol doc 2.4).
    const { presence } = (await bobFrame).data;
    assert.deepEqual([...presence.ids].sort(), ['1', '2']);
    assert.equal(presence.count, 2);

    assert.equal(bobMembers.count, 2);
    assert.deepEqual(bobMembers.me, { id: '2', info: { name: 'Bob' } });
    assert.deepEqual(bobMembers.get('1'), { id: '1', info: { name: 'Ada' } });
    assert.deepEqual((await added).data, { id: '2', info: { name: 'Bob' } });
    assert.equal(adaMembers.count, 2);

    const removed = waitForEvent(adaChannel, 'pusher:member_removed');
    bob.disconnect();

    assert.deepEqual((await removed).data, { id: '2', info: { name: 'Bob' } });
    assert.equal(adaMembers.count, 1);
  });

  it('does not deliver to the socket named in socket_id, but does to the others', async () => {
    const excluded = await clients.pusher();
    const other = await clients.pusher();
    const excludedChannel = await subscribe(excluded, 'exclusion');
    const otherChannel = await subscribe(other, 'exclusion');
    const seenByExcluded = [];
    excludedChannel.bind('news', (data) => seenByExcluded.push(data));

    const otherGotIt = waitForEvent(otherChannel, 'news');
    await sdk.trigger('exclusion', 'news', { n: 1 }, { socket_id: excluded.connection.socket_id });
    assert.deepEqual((await otherGotIt).data, { n: 1 });

    // Frames on one socket arrive in order: once the excluded socket has the
    // next (unexcluded) event, the excluded one can no longer be in flight.
    const sentinel = waitForEvent(excludedChannel, 'news', { filter: (data) => data.n === 2 });
    await sdk.trigger('exclusion', 'news', { n: 2 });
    await sentinel;
    assert.deepEqual(seenByExcluded, [{ n: 2 }]);
  });

  it('lists occupied channels with GET /channels', async () => {
    const pusher = await clients.pusher();
    await subscribe(pusher, 'occupied-channel');

    const body = await json(sdk.get({ path: '/channels', params: {} }));

    assert.equal(typeof body.channels, 'object');
    assert.ok(!Array.isArray(body.channels), '"channels" must be a JSON object');
    assert.deepEqual(body.channels['occupied-channel'], {});
  });

  it('lists presence users with GET /channels/{name}/users', async () => {
    const first = await clients.pusher({ presence: { user_id: '1', user_info: { name: 'Ada' } } });
    const second = await clients.pusher({ presence: { user_id: '2', user_info: { name: 'Bob' } } });
    await subscribe(first, 'presence-x');
    await subscribe(second, 'presence-x');

    const body = await json(sdk.get({ path: '/channels/presence-x/users' }));

    const ids = body.users.map((user) => user.id).sort();
    assert.deepEqual(ids, ['1', '2']);
  });

  it('delivers every event of a triggerBatch', async () => {
    const pusher = await clients.pusher();
    const first = await subscribe(pusher, 'batch-a');
    const second = await subscribe(pusher, 'batch-b');

    const gotFirst = waitForEvent(first, 'one');
    const gotSecond = waitForEvent(second, 'two');
    const response = await sdk.triggerBatch([
      { channel: 'batch-a', name: 'one', data: { i: 1 } },
      { channel: 'batch-b', name: 'two', data: { i: 2 } },
    ]);

    assert.equal(response.status, 200);
    assert.deepEqual((await gotFirst).data, { i: 1 });
    assert.deepEqual((await gotSecond).data, { i: 2 });
  });

  it('rejects a trigger signed with the wrong secret with 401', async () => {
    const forger = makeSdk(server.port, { secret: 'not-the-secret' });

    await assert.rejects(forger.trigger('public-news', 'x', {}), (error) => {
      assert.equal(error.status, 401, `expected 401, got ${error.status}: ${error.body}`);
      return true;
    });
  });
});
