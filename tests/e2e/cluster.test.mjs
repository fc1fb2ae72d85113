// Cluster mode, end to end: two Herald nodes sharing a private redis-server,
// then a private three-master Redis Cluster. pusher-js on node A receives
// what the `pusher` SDK triggers on node B, and presence members joined on
// different nodes see each other.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  Clients,
  makeSdk,
  startRedis,
  startRedisCluster,
  startServer,
  subscribe,
  waitClusterReady,
  waitForEvent,
} from './helpers.mjs';

for (const [name, start] of [['one Redis', startRedis], ['a Redis Cluster', startRedisCluster]]) describe(`cluster (two nodes, ${name})`, () => {
  let redis;
  let nodeA;
  let nodeB;
  let clientsA;
  let clientsB;

  before(async () => {
    redis = await start();
    const configToml = `[cluster]\ndriver = "redis"\nurl = "${redis.url}"\n`;
    nodeA = await startServer({ configToml });
    nodeB = await startServer({ configToml });
    await waitClusterReady(nodeA.port);
    await waitClusterReady(nodeB.port);
    clientsA = new Clients(nodeA.port);
    clientsB = new Clients(nodeB.port);
  });
  after(async () => {
    clientsA?.closeAll();
    clientsB?.closeAll();
    await nodeA?.stop();
    await nodeB?.stop();
    await redis?.stop();
  });

  it('delivers an event triggered on node B to pusher-js on node A', async () => {
    const pusher = await clientsA.pusher();
    const channel = await subscribe(pusher, 'cluster-news');
    const received = waitForEvent(channel, 'headline');
    await makeSdk(nodeB.port).trigger('cluster-news', 'headline', { text: 'from B' });
    assert.deepEqual((await received).data, { text: 'from B' });
  });

  it('shows presence members of both nodes to each other', async () => {
    const ada = await clientsA.pusher({ presence: { user_id: 'ada', user_info: { name: 'Ada' } } });
    const onA = await subscribe(ada, 'presence-cluster');
    const joined = waitForEvent(onA, 'pusher:member_added');

    const bob = await clientsB.pusher({ presence: { user_id: 'bob', user_info: { name: 'Bob' } } });
    const onB = await subscribe(bob, 'presence-cluster');
    assert.equal(onB.members.count, 2);
    assert.deepEqual(onB.members.get('ada').info, { name: 'Ada' });

    const member = (await joined).data;
    assert.equal(member.id, 'bob');
    const left = waitForEvent(onA, 'pusher:member_removed');
    bob.disconnect();
    assert.equal((await left).data.id, 'bob');
  });
});
