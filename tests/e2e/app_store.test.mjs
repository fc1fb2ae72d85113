// Apps kept in a database, end to end: two Herald nodes share a private
// PostgreSQL (then MariaDB) and a private Redis; an app created over the
// admin API on node A is served to unmodified pusher-js on both nodes
// within 2 s, the official `pusher` SDK triggers with its credentials, and
// disabling it closes pusher-js's connections on both nodes with 4003.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import PusherJs from 'pusher-js';

import { makeSdk, pusherOptions, startRedis, startServer, subscribe, waitClusterReady, waitForEvent, waitForState, withTimeout, waitFor } from './helpers.mjs';
import { migrate, startMariaDb, startPostgres } from './databases.mjs';

const TOKEN = 'e2e-admin-token-0123456789abcdef012345';

async function admin(port, method, path, body) {
  const response = await fetch(`http://127.0.0.1:${port}/admin/apps${path}`, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

/** A pusher-js client of `app` on `port`, signing with the app's own secret. */
function pusherFor(app, port) {
  const signer = makeSdk(port, { appId: app.id, key: app.key, secret: app.secret });
  return new PusherJs(app.key, pusherOptions(port, { signer }));
}

/** Resolves with the close code pusher-js reports when the server closes it. */
function closedWith(pusher) {
  return waitFor((resolve) => {
    const seen = (error) => {
      const code = error?.data?.code ?? error?.error?.data?.code;
      if (code) resolve(code);
    };
    pusher.connection.bind('error', seen);
    return () => pusher.connection.unbind('error', seen);
  }, { label: 'the close code' });
}

for (const [name, start] of [['PostgreSQL', startPostgres], ['MariaDB', startMariaDb]]) describe(`apps in ${name}, two nodes`, () => {
  let db;
  let redis;
  let nodeA;
  let nodeB;
  const clients = [];

  before(async () => {
    db = await start();
    migrate(db.url);
    redis = await startRedis();
    // A long refresh: what is quick here is the notification's doing.
    const configToml = `[app_store]\nurl = "${db.url}"\nrefresh_seconds = 600\n[admin]\ntoken = "${TOKEN}"\n`
      + `[cluster]\ndriver = "redis"\nurl = "${redis.url}"\n`;
    nodeA = await startServer({ configToml, appEnv: false });
    nodeB = await startServer({ configToml, appEnv: false });
    await waitClusterReady(nodeA.port);
    await waitClusterReady(nodeB.port);
  });
  after(async () => {
    for (const client of clients) client.disconnect();
    await nodeA?.stop();
    await nodeB?.stop();
    await redis?.stop();
    await db?.stop();
  });

  it('serves an app made on node A to pusher-js on both nodes within 2 s, and closes it on both when disabled', async () => {
    const created = await admin(nodeA.port, 'POST', '', { client_events: true });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const app = created.body;
    const madeAt = Date.now();

    const onA = pusherFor(app, nodeA.port);
    const onB = pusherFor(app, nodeB.port);
    clients.push(onA, onB);
    await withTimeout(Promise.all([waitForState(onA, 'connected'), waitForState(onB, 'connected')]), 2000, 'both nodes to serve the new app');
    assert.ok(Date.now() - madeAt < 2000);

    const channel = await subscribe(onB, 'private-orders');
    const received = waitForEvent(channel, 'order-placed');
    const sdk = makeSdk(nodeA.port, { appId: app.id, key: app.key, secret: app.secret });
    const response = await sdk.trigger('private-orders', 'order-placed', { id: 7 });
    assert.equal(response.status, 200);
    assert.deepEqual((await received).data, { id: 7 });

    const closedA = closedWith(onA);
    const closedB = closedWith(onB);
    const disabled = await admin(nodeA.port, 'PATCH', `/${app.id}`, { enabled: false });
    assert.equal(disabled.status, 200);
    assert.deepEqual(await withTimeout(Promise.all([closedA, closedB]), 2000, 'both nodes to close the app'), [4003, 4003]);
  });
});
