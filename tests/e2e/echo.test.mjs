// Laravel Echo (pusher broadcaster, real pusher-js underneath) against Herald:
// event-name formatting ('.literal' vs namespaced class names), private
// channels and presence here/joining/leaving, with events published by the
// official `pusher` server SDK the way Laravel's PusherBroadcaster does.

import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { Clients, echoSubscribed, latch, makeSdk, startServer } from './helpers.mjs';

const byName = (users) => [...users].sort((a, b) => a.name.localeCompare(b.name));

describe('laravel-echo', () => {
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

  it("listen('.order.shipped') receives the literal event name", async () => {
    const echo = await clients.echo();
    const shipped = latch('order.shipped');
    const channel = echo.channel('orders').listen('.order.shipped', shipped);
    await echoSubscribed(channel);

    await sdk.trigger('orders', 'order.shipped', { order: { id: 1 } });

    assert.deepEqual(await shipped.wait(), { order: { id: 1 } });
  });

  it("listen('OrderShipped') receives App\\Events\\OrderShipped", async () => {
    const echo = await clients.echo();
    const shipped = latch('App\\Events\\OrderShipped');
    const channel = echo.channel('orders-namespaced').listen('OrderShipped', shipped);
    await echoSubscribed(channel);

    await sdk.trigger('orders-namespaced', 'App\\Events\\OrderShipped', { order: { id: 2 } });

    assert.deepEqual(await shipped.wait(), { order: { id: 2 } });
  });

  it('private() subscribes to private-orders and receives', async () => {
    const echo = await clients.echo();
    const status = latch('status on private-orders');
    const channel = echo.private('orders').listen('.status', status);
    assert.equal(channel.name, 'private-orders');
    await echoSubscribed(channel);

    await sdk.trigger('private-orders', 'status', { state: 'packed' });

    assert.deepEqual(await status.wait(), { state: 'packed' });
  });

  it('join() reports here, joining and leaving', async () => {
    const ada = await clients.echo({ presence: { user_id: '1', user_info: { name: 'Ada' } } });
    const adaHere = latch('here (Ada)');
    const joining = latch('joining');
    const leaving = latch('leaving');
    ada.join('room').here(adaHere).joining(joining).leaving(leaving);
    assert.deepEqual(await adaHere.wait(), [{ name: 'Ada' }]);

    const bob = await clients.echo({ presence: { user_id: '2', user_info: { name: 'Bob' } } });
    const bobHere = latch('here (Bob)');
    bob.join('room').here(bobHere);

    assert.deepEqual(byName(await bobHere.wait()), [{ name: 'Ada' }, { name: 'Bob' }]);
    assert.deepEqual(await joining.wait(), { name: 'Bob' });

    bob.leave('room');

    assert.deepEqual(await leaving.wait(), { name: 'Bob' });
    assert.equal(joining.calls.length, 1, 'joining fires once');
  });
});
