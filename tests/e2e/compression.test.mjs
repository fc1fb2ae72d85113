// permessage-deflate with real clients: Node's `ws` (which offers it when
// asked), the unmodified pusher-js given a `ws` socket (its Node build uses
// faye-websocket, which offers no extension; a browser's WebSocket always
// offers deflate), a plain client beside a compressed one on one channel,
// and headless Chromium, whose WebSocket says what it agreed to in
// `extensions`. Events are Laravel-model-like JSON of ~2 KiB, triggered
// with the `pusher` SDK; Herald's metrics show they went compressed.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import http from 'node:http';

import PusherJs from 'pusher-js';
import WebSocket from 'ws';

import {
  APP,
  freePort,
  makeSdk,
  startServer,
  subscribe,
  waitFor,
  withTimeout,
} from './helpers.mjs';

const CHROMIUM = '/usr/bin/chromium';
const SKIP_BROWSER = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium)`;

/** A broadcast as Laravel sends one: a model with repetitive keys, ~2 KiB. */
function orderShipped(n) {
  const items = Array.from({ length: 12 }, (_, i) => ({
    id: i + 1, order_id: n, product_id: 1000 + i, name: `Product ${i}`,
    quantity: 1 + (i % 3), unit_price: '19.99', created_at: '2026-12-07T20:00:00.000000Z',
    updated_at: '2026-12-07T20:00:00.000000Z',
  }));
  return { order: { id: n, status: 'shipped', customer_id: 42, items } };
}

/** Herald's metric `name` (a counter without labels), scraped. */
async function metric(port, name) {
  const text = await withTimeout(fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text()), 5000, 'metrics');
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

/** A raw `ws` socket on the app, resolved once connection_established came. */
function rawSocket(port, perMessageDeflate) {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/app/${APP.key}?protocol=7`, { perMessageDeflate });
  const frames = [];
  socket.on('message', (data) => frames.push(JSON.parse(data.toString())));
  const established = waitFor((resolve, reject) => {
    socket.on('message', (data) => {
      if (JSON.parse(data.toString()).event === 'pusher:connection_established') resolve();
    });
    socket.on('error', reject);
  }, { label: 'connection_established' });
  return { socket, frames, established };
}

/** Waits until `frames` holds a frame for which `match` holds; returns it. */
function frameIn(socket, frames, match, label) {
  return waitFor((resolve) => {
    const check = () => {
      const found = frames.find(match);
      if (found) resolve(found);
    };
    check();
    socket.on('message', check);
  }, { label });
}

describe('permessage-deflate', () => {
  let herald;
  let metricsPort;

  before(async () => {
    metricsPort = await freePort();
    herald = await startServer({ env: { HERALD_METRICS_PORT: String(metricsPort) } });
  });
  after(async () => { await herald?.stop(); });

  it('ws with perMessageDeflate and a plain ws client on one channel both get the event', async () => {
    const compressed = rawSocket(herald.port, true);
    const plain = rawSocket(herald.port, false);
    await Promise.all([compressed.established, plain.established]);
    assert.equal(compressed.socket.extensions, 'permessage-deflate');
    assert.equal(plain.socket.extensions, '');
    for (const client of [compressed, plain]) {
      client.socket.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: 'orders' } }));
      await frameIn(client.socket, client.frames,
        (f) => f.event === 'pusher_internal:subscription_succeeded', 'subscription_succeeded');
    }
    const before = await metric(metricsPort, 'herald_deflate_output_bytes_total');
    const beforeIn = await metric(metricsPort, 'herald_deflate_input_bytes_total');
    await makeSdk(herald.port).trigger('orders', 'App\\Events\\OrderShipped', orderShipped(1));
    for (const client of [compressed, plain]) {
      const frame = await frameIn(client.socket, client.frames, (f) => f.event === 'App\\Events\\OrderShipped', 'the event');
      assert.deepEqual(JSON.parse(frame.data), orderShipped(1));
    }
    const sentIn = (await metric(metricsPort, 'herald_deflate_input_bytes_total')) - beforeIn;
    const sentOut = (await metric(metricsPort, 'herald_deflate_output_bytes_total')) - before;
    assert.ok(sentIn > 2000, `the compressed client's event went compressed (${sentIn} bytes in)`);
    assert.ok(sentOut * 3 < sentIn, `at least 3x smaller: ${sentIn} -> ${sentOut}`);
    // A compressed client frame is inflated and answered.
    compressed.socket.send(JSON.stringify({ event: 'pusher:ping', data: { padding: 'x'.repeat(400) } }));
    await frameIn(compressed.socket, compressed.frames, (f) => f.event === 'pusher:pong', 'pong');
    compressed.socket.close();
    plain.socket.close();
  });

  it('the unmodified pusher-js on a ws socket receives events over a compressed connection', async () => {
    const original = PusherJs.Runtime.createWebSocket;
    const sockets = [];
    PusherJs.Runtime.createWebSocket = (url) => {
      const socket = new WebSocket(url, { perMessageDeflate: true });
      sockets.push(socket);
      return socket;
    };
    const pusher = new PusherJs(APP.key, {
      cluster: 'mt1', wsHost: '127.0.0.1', wsPort: herald.port, forceTLS: false,
      enabledTransports: ['ws'], disableStats: true,
    });
    try {
      const channel = await subscribe(pusher, 'shipments');
      assert.equal(sockets[0].extensions, 'permessage-deflate');
      const received = [];
      const all = waitFor((resolve) => {
        channel.bind('App\\Events\\OrderShipped', (data) => {
          received.push(data);
          if (received.length === 3) resolve();
        });
      }, { label: 'three events' });
      for (const n of [1, 2, 3]) {
        await makeSdk(herald.port).trigger('shipments', 'App\\Events\\OrderShipped', orderShipped(n));
      }
      await all;
      assert.deepEqual(received, [orderShipped(1), orderShipped(2), orderShipped(3)]);
    } finally {
      pusher.disconnect();
      PusherJs.Runtime.createWebSocket = original;
    }
  });
});

describe('permessage-deflate off', () => {
  let herald;
  before(async () => {
    herald = await startServer({ env: { HERALD_SERVER__COMPRESSION: 'false' } });
  });
  after(async () => { await herald?.stop(); });

  it('answers no extension to a client that offers it, and events still arrive', async () => {
    const client = rawSocket(herald.port, true);
    await client.established;
    assert.equal(client.socket.extensions, '');
    client.socket.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: 'orders' } }));
    await frameIn(client.socket, client.frames, (f) => f.event === 'pusher_internal:subscription_succeeded', 'subscribed');
    await makeSdk(herald.port).trigger('orders', 'shipped', orderShipped(7));
    const frame = await frameIn(client.socket, client.frames, (f) => f.event === 'shipped', 'the event');
    assert.deepEqual(JSON.parse(frame.data), orderShipped(7));
    client.socket.close();
  });
});

describe('Chromium', { skip: SKIP_BROWSER }, () => {
  let herald;
  let browser;
  let pages;
  let pagePort;

  before(async () => {
    const { chromium } = await import('playwright-core');
    herald = await startServer();
    pagePort = await freePort();
    pages = await new Promise((resolve) => {
      const server = http.createServer((req, res) => {
        res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><script>
window.outcome = new Promise((resolve, reject) => {
  const socket = new WebSocket('ws://127.0.0.1:${herald.port}/app/${APP.key}?protocol=7');
  socket.onmessage = (m) => {
    const frame = JSON.parse(m.data);
    if (frame.event === 'pusher:connection_established') {
      socket.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: 'orders' } }));
    } else if (frame.event === 'pusher_internal:subscription_succeeded') {
      window.subscribed = true;
    } else if (frame.event === 'shipped') {
      resolve({ extensions: socket.extensions, data: JSON.parse(frame.data) });
    }
  };
  socket.onerror = () => reject(new Error('websocket error'));
});
</script>`);
      });
      server.listen(pagePort, '127.0.0.1', () => resolve(server));
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-quic'],
      timeout: 30000,
    });
  });
  after(async () => {
    await browser?.close();
    await new Promise((resolve) => (pages ? pages.close(resolve) : resolve()));
    await herald?.stop();
  });

  it('negotiates permessage-deflate and gets compressed events intact', async () => {
    const tab = await browser.newPage();
    await withTimeout(tab.goto(`http://127.0.0.1:${pagePort}/`), 10000, 'the page');
    await withTimeout(tab.waitForFunction(() => window.subscribed === true), 10000, 'the subscription');
    await makeSdk(herald.port).trigger('orders', 'shipped', orderShipped(3));
    const outcome = await withTimeout(tab.evaluate(() => window.outcome), 10000, 'the event in the page');
    assert.match(outcome.extensions, /^permessage-deflate/);
    assert.deepEqual(outcome.data, orderShipped(3));
  });
});
