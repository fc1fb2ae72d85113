// The live debug console in a real browser: headless Chromium (Debian's,
// driven by playwright-core) opens /console, is refused without the right
// token, then sees a pusher-js connection, its subscription and an
// SDK-triggered event appear live, lists the occupied channel, and sends a
// test event that the pusher-js client receives, and shows what
// permessage-deflate saved once a compressing client got an event. With
// HERALD_SCREENSHOT=1 it saves docs/console.png. Skipped when
// /usr/bin/chromium is missing.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import WebSocket from 'ws';

import {
  APP, Clients, appConfigToml, makeSdk, startServer, subscribe, waitFor, waitForEvent,
} from './helpers.mjs';

const CHROMIUM = '/usr/bin/chromium';
const SKIP = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed; console test skipped`;
const TOKEN = 'console-token-for-the-e2e-run';
const DOCS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs');
const PAGE_WAIT = { timeout: 10000 };

describe('live console', { skip: SKIP }, () => {
  let server;
  let browser;
  let page;
  let clients;

  before(async () => {
    const { chromium } = await import('playwright-core');
    server = await startServer({
      configToml: `[console]\ntoken = "${TOKEN}"\n` + appConfigToml({ client_events: true }),
    });
    clients = new Clients(server.port);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-quic'],
      timeout: 30000,
    });
    page = await (await browser.newContext({ viewport: { width: 1280, height: 760 } })).newPage();
  });
  after(async () => {
    clients?.closeAll();
    await browser?.close();
    await server?.stop();
  });

  it('refuses a wrong token, in the page and in the API', async () => {
    const base = `http://127.0.0.1:${server.port}`;
    assert.equal((await fetch(`${base}/console/api/apps`)).status, 401);
    const wrong = await fetch(`${base}/console/api/apps`, { headers: { Authorization: 'Bearer nope' } });
    assert.equal(wrong.status, 401);
    assert.ok((await wrong.json()).error);
    await page.goto(`${base}/console`);
    await page.fill('#token', 'not-the-token');
    await page.click('#login-form button');
    await page.waitForSelector('#login-error:has-text("refused")', PAGE_WAIT);
    assert.equal(await page.isVisible('#console'), false);
  });

  it('shows a connection and an event live, and sends a test event', async () => {
    await page.fill('#token', TOKEN);
    await page.click('#login-form button');
    await page.waitForSelector('#status.live', PAGE_WAIT);
    assert.equal(page.url().includes(TOKEN), false, 'the token never goes into a URL');

    const pusher = await clients.pusher();
    const channel = await subscribe(pusher, 'orders');
    const socketId = pusher.connection.socket_id;
    await page.waitForSelector(`#events li[data-type="connection"]:has-text("${socketId}")`, PAGE_WAIT);
    await page.waitForSelector(`#events li[data-type="subscribed"]:has-text("orders")`, PAGE_WAIT);

    await makeSdk(server.port).trigger('orders', 'OrderShipped', { id: 42 });
    await page.waitForSelector('#events li[data-type="api_event"]:has-text("OrderShipped")', PAGE_WAIT);
    await page.waitForSelector('#channels tr[data-channel="orders"]', PAGE_WAIT);
    const row = await page.textContent('#channels tr[data-channel="orders"]');
    assert.match(row, /orders\s*1/);

    const received = waitForEvent(channel, 'from-console');
    await page.fill('#send-channel', 'orders');
    await page.fill('#send-event', 'from-console');
    await page.fill('#send-data', '{"hello":"browser"}');
    await page.click('#send-form button');
    assert.deepEqual((await received).data, { hello: 'browser' });
    await page.waitForSelector('#send-result:has-text("Sent")', PAGE_WAIT);

    if (process.env.HERALD_SCREENSHOT) {
      await page.screenshot({ path: path.join(DOCS, 'console.png') });
    }
  });

  it('shows what compression saves', async () => {
    const socket = new WebSocket(`ws://127.0.0.1:${server.port}/app/${APP.key}?protocol=7`, { perMessageDeflate: true });
    const got = (event) => waitFor((resolve) => {
      socket.on('message', (data) => {
        if (JSON.parse(data.toString()).event === event) resolve();
      });
    }, { label: event });
    await got('pusher:connection_established');
    socket.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: 'orders' } }));
    await got('pusher_internal:subscription_succeeded');
    const big = got('Big');
    await makeSdk(server.port).trigger('orders', 'Big', { text: 'lorem ipsum '.repeat(300) });
    await big;
    socket.close();
    await page.waitForSelector('#compression:has-text("×")', PAGE_WAIT);
    assert.match(await page.textContent('#compression'), /^compression \d+\.\d× \(\d/);
  });
});
