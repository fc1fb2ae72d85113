// Webhooks end to end: a presence session driven by pusher-js, with client
// events; every request Herald sends must pass the official `pusher` SDK's
// own validator, `pusher.webhook({ headers, rawBody }).isValid()`, and the
// official Python SDK's `validate_webhook` (which also checks `time_ms`
// against its clock), and carry the events Pusher documents.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

import {
  Clients,
  appConfigToml,
  makeSdk,
  startReceiver,
  startServer,
  subscribe,
  waitFor,
  waitForEvent,
} from './helpers.mjs';

// pusher-http-python's validator over every request (stdin: a JSON list).
const PYTHON_VALIDATE = `
import json, sys
import pusher
# (the SDK wants a numeric app id; validating needs only the key and secret)
client = pusher.Pusher(app_id='1', key='app-key', secret='app-secret')
requests = json.load(sys.stdin)
print(json.dumps([client.validate_webhook(r['key'], r['signature'], r['body']) is not None for r in requests]))
`;

describe('webhooks', () => {
  let receiver;
  let server;
  let sdk;
  let clients;

  before(async () => {
    receiver = await startReceiver();
    const configToml = appConfigToml({ webhook_debounce: 0 })
      + `[[apps.webhooks]]\nurl = ${JSON.stringify(receiver.url)}\n`;
    server = await startServer({ configToml });
    sdk = makeSdk(server.port);
    clients = new Clients(server.port);
  });
  after(async () => {
    clients?.closeAll();
    await server?.stop();
    await receiver?.close();
  });

  it('a pusher-js presence session produces webhooks the pusher SDK validates', async () => {
    const ada = await clients.pusher({ presence: { user_id: '42', user_info: { name: 'Ada' } } });
    const bob = await clients.pusher({ presence: { user_id: '43', user_info: { name: 'Bob' } } });
    const adaRoom = await subscribe(ada, 'presence-room.1');
    const bobRoom = await subscribe(bob, 'presence-room.1');

    const typing = waitForEvent(bobRoom, 'client-typing');
    adaRoom.trigger('client-typing', { typing: true });
    await typing;
    bob.unsubscribe('presence-room.1');
    await receiver.until((e) => e.name === 'member_removed', 'member_removed');
    ada.unsubscribe('presence-room.1');
    await receiver.until((e) => e.name === 'channel_vacated', 'channel_vacated');

    const events = [];
    for (const request of receiver.requests) {
      assert.equal(request.headers['content-type'], 'application/json');
      const webhook = sdk.webhook(request);
      assert.ok(webhook.isValid(), `the SDK rejects ${request.rawBody}`);
      assert.ok(Math.abs(webhook.getTime().getTime() - Date.now()) < 60_000);
      events.push(...webhook.getEvents());
    }
    const adaSocket = ada.connection.socket_id;
    assert.deepEqual(events, [
      { name: 'channel_occupied', channel: 'presence-room.1' },
      { name: 'member_added', channel: 'presence-room.1', user_id: '42' },
      { name: 'member_added', channel: 'presence-room.1', user_id: '43' },
      {
        name: 'client_event', channel: 'presence-room.1', event: 'client-typing',
        data: '{"typing":true}', socket_id: adaSocket, user_id: '42',
      },
      { name: 'member_removed', channel: 'presence-room.1', user_id: '43' },
      { name: 'member_removed', channel: 'presence-room.1', user_id: '42' },
      { name: 'channel_vacated', channel: 'presence-room.1' },
    ]);
    // The Python SDK accepts every one of them too.
    const python = spawnSync('python3', ['-c', PYTHON_VALIDATE], {
      input: JSON.stringify(receiver.requests.map((r) => ({
        key: r.headers['x-pusher-key'], signature: r.headers['x-pusher-signature'], body: r.rawBody,
      }))),
      encoding: 'utf8',
    });
    assert.equal(python.status, 0, python.stderr);
    assert.deepEqual(JSON.parse(python.stdout), receiver.requests.map(() => true));

    // A tampered body is not valid.
    const forged = { ...receiver.requests[0], rawBody: receiver.requests[0].rawBody.replace('room', 'ro0m') };
    assert.equal(sdk.webhook(forged).isValid(), false);
  });
});
