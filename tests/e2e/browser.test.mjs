// A real browser on the HTTP fallback: headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core) loads a page from a separate
// Node server (another origin, so every request to Herald is cross-origin and
// needs CORS) that uses the browser builds of pusher-js and laravel-echo with
// enabledTransports ['xhr_streaming', 'xhr_polling'] (no WebSocket) and, as a
// second run, ['xhr_polling'] alone. Channel authorization goes the Laravel
// way: pusher-js POSTs socket_id / channel_name (form-encoded, with the CSRF
// token header Echo adds) to the page server's /broadcasting/auth, which signs
// with the `pusher` SDK. The page subscribes to public, private and presence
// channels, receives SDK-triggered events, whispers with a WebSocket client,
// and sees presence here / joining / leaving and members.count.
// Skipped when /usr/bin/chromium is not installed (CI installs it).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  APP,
  Clients,
  WAIT_MS,
  makeSdk,
  startServer,
  subscribe,
  waitFor,
  waitForEvent,
  withTimeout,
} from './helpers.mjs';

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const SKIP = HAVE_CHROMIUM ? false : `${CHROMIUM} is not installed (apt-get install chromium); browser test skipped`;
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];
const MODULES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_modules');
const SCRIPTS = {
  '/pusher.min.js': path.join(MODULES, 'pusher-js', 'dist', 'web', 'pusher.min.js'),
  // laravel-echo's IIFE build: a global `Echo` module object, the class is Echo.default.
  '/echo.iife.js': path.join(MODULES, 'laravel-echo', 'dist', 'echo.iife.js'),
};
const CSRF_TOKEN = 'csrf-token-for-the-e2e-page';
/** Users the page can be loaded as (?user=), like a Laravel session would know them. */
const USERS = { 1: { name: 'Ada' }, 2: { name: 'Bob' } };
/** What the page itself may take for one step (connect, subscribe), in ms. */
const PAGE_WAIT_MS = 10000;

// ---------------------------------------------------------------------------
// The app's page: HTML, the two scripts, and /broadcasting/auth
// ---------------------------------------------------------------------------

function pageHtml(heraldPort) {
  const config = JSON.stringify({ key: APP.key, httpPort: heraldPort, waitMs: PAGE_WAIT_MS });
  return `<!doctype html>
<html>
<head>
<meta charset="utf-8">
<meta name="csrf-token" content="${CSRF_TOKEN}">
<title>Herald e2e</title>
<script src="/pusher.min.js"></script>
<script src="/echo.iife.js"></script>
</head>
<body>
<script>
const CONFIG = ${config};

function within(promise, label) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('page timed out waiting for ' + label)), CONFIG.waitMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// window.report is exposed by the test (page.exposeFunction).
const channels = {};

window.herald = {
  connect(transports) {
    const echo = new Echo.default({
      broadcaster: 'pusher',
      key: CONFIG.key,
      cluster: 'mt1',
      httpHost: '127.0.0.1',
      httpPort: CONFIG.httpPort,
      forceTLS: false,
      enabledTransports: transports,
      disableStats: true,
      // authEndpoint stays Echo's default, /broadcasting/auth on this origin.
    });
    window.echo = echo;
    const connection = echo.connector.pusher.connection;
    return within(new Promise((resolve, reject) => {
      connection.bind('state_change', ({ current }) => {
        if (current === 'connected') {
          resolve({ socketId: connection.socket_id, transport: connection.connection.transport.name });
        } else if (current === 'failed' || current === 'unavailable') {
          reject(new Error('pusher-js connection ' + current));
        }
      });
    }), 'connected');
  },

  subscribe(kind, name, event) {
    const echo = window.echo;
    const channel = kind === 'public' ? echo.channel(name) : kind === 'private' ? echo.private(name) : echo.join(name);
    channels[kind + ':' + name] = channel;
    channel.listen('.' + event, (data) => report(kind + ':' + event, data));
    if (kind === 'private') channel.listenForWhisper('typing', (data) => report('whisper', data));
    if (kind === 'presence') {
      channel
        .here((users) => report('here', users))
        .joining((user) => report('joining', user))
        .leaving((user) => report('leaving', user));
    }
    return within(new Promise((resolve, reject) => {
      channel.subscribed(() => resolve(channel.subscription.name));
      channel.error((error) => reject(new Error('subscription error ' + JSON.stringify(error))));
    }), 'subscription to ' + name);
  },

  whisper(name, data) {
    channels['private:' + name].whisper('typing', data);
  },

  membersCount(channelName) {
    return window.echo.connector.pusher.channel(channelName).members.count;
  },

  disconnect() {
    if (window.echo) window.echo.disconnect();
  },
};
</script>
</body>
</html>
`;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

function cookie(req, name) {
  for (const part of (req.headers.cookie || '').split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return decodeURIComponent(value.join('='));
  }
  return undefined;
}

/**
 * The app's web server on its own port: GET /?user=N sets the "session"
 * cookie and serves the page; POST /broadcasting/auth signs channel
 * subscriptions for that user, as Laravel's broadcasting routes do.
 * Resolves with { origin, authRequests, stop() }.
 */
async function startPageServer(heraldPort) {
  const sdk = makeSdk(heraldPort);
  const html = pageHtml(heraldPort);
  const authRequests = [];

  const server = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://page.invalid');
      if (req.method === 'GET' && url.pathname === '/') {
        const user = url.searchParams.get('user') || '1';
        res.writeHead(200, {
          'Content-Type': 'text/html; charset=utf-8',
          'Set-Cookie': `e2e_user=${encodeURIComponent(user)}; Path=/; SameSite=Lax`,
        });
        res.end(html);
      } else if (req.method === 'GET' && SCRIPTS[url.pathname]) {
        res.writeHead(200, { 'Content-Type': 'application/javascript; charset=utf-8' });
        res.end(await readFile(SCRIPTS[url.pathname]));
      } else if (req.method === 'POST' && url.pathname === '/broadcasting/auth') {
        const form = new URLSearchParams(await readBody(req));
        const request = {
          socketId: form.get('socket_id'),
          channelName: form.get('channel_name'),
          contentType: req.headers['content-type'],
          csrf: req.headers['x-csrf-token'],
          user: cookie(req, 'e2e_user'),
        };
        authRequests.push(request);
        const known = USERS[request.user];
        if (request.csrf !== CSRF_TOKEN || !known || !request.socketId || !request.channelName) {
          res.writeHead(403, { 'Content-Type': 'application/json' });
          res.end(JSON.stringify({ message: 'Forbidden' }));
          return;
        }
        const presence = request.channelName.startsWith('presence-')
          ? { user_id: request.user, user_info: known }
          : undefined;
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(sdk.authorizeChannel(request.socketId, request.channelName, presence)));
      } else {
        res.writeHead(404);
        res.end();
      }
    } catch (error) {
      res.writeHead(500);
      res.end(String(error));
    }
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    authRequests,
    stop: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** What the page reported through window.report(name, data). */
class Reports {
  constructor() {
    this.emitter = new EventEmitter();
  }

  add(name, data) {
    this.emitter.emit(name, data);
  }

  /** Resolves with the data of the next `name` report passing `filter`; register before acting. */
  next(name, { filter = () => true, timeout = WAIT_MS } = {}) {
    return waitFor(
      (resolve) => {
        const handler = (data) => {
          if (filter(data)) resolve(data);
        };
        this.emitter.on(name, handler);
        return () => this.emitter.off(name, handler);
      },
      { timeout, label: `the page to report '${name}'` },
    );
  }
}

const byName = (users) => [...users].sort((a, b) => a.name.localeCompare(b.name));

// ---------------------------------------------------------------------------

describe('browser (headless Chromium, HTTP fallback only)', { skip: SKIP }, () => {
  let herald;
  let pages;
  let browser;
  let sdk;

  before(async () => {
    const { chromium } = await import('playwright-core');
    herald = await startServer();
    sdk = makeSdk(herald.port);
    pages = await startPageServer(herald.port);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 30000,
    });
  });
  after(async () => {
    await browser?.close();
    await pages?.stop();
    await herald?.stop();
  });

  for (const { transports, expected } of [
    { transports: ['xhr_streaming', 'xhr_polling'], expected: 'xhr_streaming' },
    { transports: ['xhr_polling'], expected: 'xhr_polling' },
  ]) {
    describe(`enabledTransports ${JSON.stringify(transports)}`, () => {
      const suffix = expected;
      let context;
      let page;
      let clients;
      let socketId;
      const reports = new Reports();
      const webSockets = [];

      const evaluate = (fn, arg, label) => withTimeout(page.evaluate(fn, arg), PAGE_WAIT_MS + 2000, label);

      before(async () => {
        clients = new Clients(herald.port);
        context = await browser.newContext();
        page = await context.newPage();
        page.on('websocket', (ws) => webSockets.push(ws.url()));
        await page.exposeFunction('report', (name, data) => reports.add(name, data));
        await withTimeout(page.goto(`${pages.origin}/?user=1`), 10000, 'the page to load');
      });
      after(async () => {
        clients?.closeAll();
        await page?.evaluate(() => window.herald.disconnect()).catch(() => {});
        await context?.close();
      });

      it(`connects cross-origin over ${expected}, without a WebSocket`, async () => {
        const receivePath = expected === 'xhr_polling' ? '/xhr' : '/xhr_streaming';
        const firstReceive = page.waitForResponse(
          (response) => response.url().startsWith(`http://127.0.0.1:${herald.port}/pusher/app/${APP.key}/`) &&
            new URL(response.url()).pathname.endsWith(receivePath),
          { timeout: PAGE_WAIT_MS },
        );
        const connected = await evaluate((t) => window.herald.connect(t), transports, 'the page to connect');
        socketId = connected.socketId;

        assert.equal(connected.transport, expected);
        assert.match(socketId, /^\d+\.\d+$/);
        assert.notEqual(pages.origin, `http://127.0.0.1:${herald.port}`, 'page and Herald are different origins');
        const response = await firstReceive;
        assert.equal(response.status(), 200);
        assert.equal(response.headers()['access-control-allow-origin'], pages.origin, 'Herald allows the page origin');
        assert.deepEqual(webSockets, []);
      });

      it('receives an SDK-triggered event on a public channel', async () => {
        const name = `news-${suffix}`;
        assert.equal(await evaluate(([n]) => window.herald.subscribe('public', n, 'headline'), [name], 'subscription'), name);
        const payload = { text: 'héllo ✓ "quoted"', list: [1, null] };

        const received = reports.next('public:headline');
        await sdk.trigger(name, 'headline', payload);

        assert.deepEqual(await received, payload);
      });

      it('authorizes a private channel at /broadcasting/auth, receives and whispers', async () => {
        const name = `orders-${suffix}`;
        const channelName = `private-${name}`;
        const subscribed = await evaluate(([n]) => window.herald.subscribe('private', n, 'status'), [name], 'subscription');
        assert.equal(subscribed, channelName);
        const auth = pages.authRequests.find((request) => request.channelName === channelName);
        assert.ok(auth, 'the page server was asked to authorize the channel');
        assert.equal(auth.socketId, socketId);
        assert.equal(auth.csrf, CSRF_TOKEN);
        assert.match(auth.contentType, /^application\/x-www-form-urlencoded/);

        const status = reports.next('private:status');
        await sdk.trigger(channelName, 'status', { state: 'packed' });
        assert.deepEqual(await status, { state: 'packed' });

        // Whispers (client events) between the page and a WebSocket client.
        const peer = await clients.pusher();
        const peerChannel = await subscribe(peer, channelName);
        const atPeer = waitForEvent(peerChannel, 'client-typing');
        await evaluate(([n]) => window.herald.whisper(n, { from: 'browser' }), [name], 'whisper');
        assert.deepEqual((await atPeer).data, { from: 'browser' });

        const atPage = reports.next('whisper');
        assert.equal(peerChannel.trigger('client-typing', { from: 'node' }), true);
        assert.deepEqual(await atPage, { from: 'node' });
      });

      it('joins a presence channel: here, joining, members.count, events, leaving', async () => {
        const name = `room-${suffix}`;
        const channelName = `presence-${name}`;
        const here = reports.next('here');
        assert.equal(await evaluate(([n]) => window.herald.subscribe('presence', n, 'meeting'), [name], 'subscription'), channelName);
        assert.deepEqual(await here, [{ name: 'Ada' }]);
        assert.equal(await evaluate((c) => window.herald.membersCount(c), channelName, 'members.count'), 1);

        const joining = reports.next('joining');
        const bob = await clients.pusher({ presence: { user_id: '2', user_info: USERS[2] } });
        const bobChannel = await subscribe(bob, channelName);
        assert.deepEqual(byName(Object.values(bobChannel.members.members)), [{ name: 'Ada' }, { name: 'Bob' }]);
        assert.deepEqual(await joining, { name: 'Bob' });
        assert.equal(await evaluate((c) => window.herald.membersCount(c), channelName, 'members.count'), 2);

        const meeting = reports.next('presence:meeting');
        await sdk.trigger(channelName, 'meeting', { at: 'noon' });
        assert.deepEqual(await meeting, { at: 'noon' });

        const leaving = reports.next('leaving');
        bob.disconnect();
        assert.deepEqual(await leaving, { name: 'Bob' });
        assert.equal(await evaluate((c) => window.herald.membersCount(c), channelName, 'members.count'), 1);

        const auth = pages.authRequests.find((request) => request.channelName === channelName);
        assert.equal(auth?.user, '1', 'presence authorized for the page session user');
        assert.deepEqual(webSockets, [], 'the page never opened a WebSocket');
      });
    });
  }
});
