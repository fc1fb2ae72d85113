// Optional Pusher features, end to end with real clients: end-to-end encrypted
// channels (pusher-js and Echo), cache channels (replay and cache_miss), client
// events and Echo whispers, user sign-in with server-to-user events, terminating
// a user's connections, and subscription counts (enabled by an app config file).

import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  Clients,
  appConfigToml,
  echoSubscribed,
  latch,
  makeSdk,
  observeFor,
  randomMasterKey,
  record,
  signIn,
  startServer,
  subscribe,
  waitForEvent,
  waitForFrame,
  waitOnChannel,
} from './helpers.mjs';

describe('features', () => {
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

  describe('encrypted channels', () => {
    it('pusher-js decrypts an SDK-triggered event; the server relays only ciphertext', async () => {
      const signer = makeSdk(server.port, { encryptionMasterKeyBase64: randomMasterKey() });
      const pusher = await clients.pusher({ signer });
      const channel = await subscribe(pusher, 'private-encrypted-x');

      const frame = waitForFrame(pusher, 'secret');
      const received = waitForEvent(channel, 'secret');
      await signer.trigger('private-encrypted-x', 'secret', { msg: 'top secret' });

      const { data: wire } = await frame;
      assert.deepEqual(Object.keys(wire).sort(), ['ciphertext', 'nonce']);
      assert.ok(!JSON.stringify(wire).includes('top secret'));
      assert.deepEqual((await received).data, { msg: 'top secret' });
    });

    it('Echo.encryptedPrivate() receives a decrypted event', async () => {
      const signer = makeSdk(server.port, { encryptionMasterKeyBase64: randomMasterKey() });
      const echo = await clients.echo({ signer });
      const secret = latch('secret on private-encrypted-docs');
      const channel = echo.encryptedPrivate('docs').listen('.secret', secret);
      assert.equal(channel.name, 'private-encrypted-docs');
      await echoSubscribed(channel);

      await signer.trigger('private-encrypted-docs', 'secret', { page: 3 });

      assert.deepEqual(await secret.wait(), { page: 3 });
    });
  });

  describe('cache channels', () => {
    it('replays the last event to a new subscriber right after subscribing', async () => {
      await sdk.trigger('cache-prices', 'price.updated', { price: 100 });
      await sdk.trigger('cache-prices', 'price.updated', { price: 101 });

      const pusher = await clients.pusher();
      const channel = pusher.subscribe('cache-prices');
      const replayed = waitForEvent(channel, 'price.updated');
      await waitOnChannel(channel);

      assert.deepEqual((await replayed).data, { price: 101 }, 'only the latest event is cached');
    });

    it('sends pusher:cache_miss when nothing is cached', async () => {
      const pusher = await clients.pusher();
      const channel = pusher.subscribe('cache-empty');
      const miss = waitForEvent(channel, 'pusher:cache_miss');
      await waitOnChannel(channel);

      await miss;
      assert.equal(channel.subscribed, true);
    });
  });

  describe('client events', () => {
    it('relays client-typing to the other subscriber, not back to the sender', async () => {
      const sender = await clients.pusher();
      const receiver = await clients.pusher();
      const senderChannel = await subscribe(sender, 'private-chat');
      const receiverChannel = await subscribe(receiver, 'private-chat');
      const echoedToSender = record(senderChannel, 'client-typing');

      const relayed = waitForEvent(receiverChannel, 'client-typing');
      assert.equal(senderChannel.trigger('client-typing', { typing: true }), true);
      assert.deepEqual((await relayed).data, { typing: true });

      // The client event was handled before this API event: if it had been
      // echoed to the sender it would arrive there first.
      const sentinel = waitForEvent(senderChannel, 'sentinel');
      await sdk.trigger('private-chat', 'sentinel', {});
      await sentinel;
      assert.deepEqual(echoedToSender, []);
    });

    it('Echo whisper reaches listenForWhisper on a presence channel with metadata.user_id', async () => {
      const ada = await clients.echo({ presence: { user_id: '1', user_info: { name: 'Ada' } } });
      const bob = await clients.echo({ presence: { user_id: '2', user_info: { name: 'Bob' } } });
      const adaRoom = ada.join('chat');
      const typing = latch('client-typing whisper');
      const bobRoom = bob.join('chat').listenForWhisper('typing', typing);
      await echoSubscribed(adaRoom);
      await echoSubscribed(bobRoom);

      adaRoom.whisper('typing', { name: 'Ada' });

      assert.deepEqual(await typing.wait(), { name: 'Ada' });
      const [, metadata] = typing.calls[0];
      assert.equal(metadata?.user_id, '1');
    });
  });

  describe('user sign-in', () => {
    it('signs in and receives sendToUser events on pusher.user', async () => {
      const pusher = await clients.pusher({ user: { id: '42', user_info: { name: 'Ada' } } });
      await signIn(pusher);
      assert.equal(pusher.user.user_data.id, '42');

      const notice = waitForEvent(pusher.user, 'notice');
      await sdk.sendToUser('42', 'notice', { msg: 'hi' });

      assert.deepEqual((await notice).data, { msg: 'hi' });
    });

    it('terminateUserConnections disconnects the signed-in user for good', async () => {
      const target = await clients.pusher({ user: { id: '43' } });
      const bystander = await clients.pusher({ user: { id: '44' } });
      await signIn(target);
      await signIn(bystander);
      const states = record(target.connection, 'state_change');

      const gone = waitForEvent(target.connection, 'state_change', {
        filter: ({ current }) => ['disconnected', 'unavailable', 'failed'].includes(current),
      });
      await sdk.terminateUserConnections('43');
      await gone;

      // pusher-js would retry within ~1 s after a reconnectable close code.
      await observeFor(2000);
      const visited = states.map(({ data }) => data.current);
      assert.ok(!visited.includes('connecting'), `client reconnected: ${visited.join(' -> ')}`);
      assert.notEqual(target.connection.state, 'connected');
      assert.equal(bystander.connection.state, 'connected', 'other users stay connected');
    });
  });
});

describe('subscription counts (subscription_count = true)', () => {
  let server;
  let clients;

  before(async () => {
    server = await startServer({ configToml: appConfigToml({ subscription_count: true }) });
    clients = new Clients(server.port);
  });
  afterEach(() => clients?.closeAll());
  after(() => server?.stop());

  it('tells the first subscriber when a second one arrives', async () => {
    const first = await clients.pusher();
    const channel = await subscribe(first, 'counted');
    const countIsTwo = waitForEvent(channel, 'pusher:subscription_count', {
      filter: (data) => data.subscription_count === 2,
    });

    const second = await clients.pusher();
    await subscribe(second, 'counted');

    await countIsTwo;
    assert.equal(channel.subscriptionCount, 2);
  });
});
