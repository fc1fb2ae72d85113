// Who may connect, with real clients: Chromium loading the app's page from
// an allowed origin, a wildcard subdomain and a refused origin (the browser
// sets Origin itself, so nothing here can fake it); pusher-js in Node (no
// Origin, as a server-side client) accepted or refused by
// allow_missing_origin; and the HTTP API's per-app rate seen by the
// official `pusher` SDK.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import PusherJs from 'pusher-js';

import { APP, freePort, makeSdk, startServer, waitFor, withTimeout } from './helpers.mjs';

const CHROMIUM = '/usr/bin/chromium';
const SKIP = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium)`;
const PUSHER_MIN = path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_modules', 'pusher-js', 'dist', 'web', 'pusher.min.js');

/** The app's page: connects pusher-js over a WebSocket and reports how it went. */
function page(heraldPort) {
  return `<!doctype html><html><head><meta charset="utf-8"><script src="/pusher.min.js"></script></head><body>
<script>
window.outcome = new Promise((resolve) => {
  const pusher = new Pusher(${JSON.stringify(APP.key)}, {
    cluster: 'mt1', wsHost: '127.0.0.1', wsPort: ${heraldPort}, forceTLS: false,
    enabledTransports: ['ws'], disableStats: true,
  });
  pusher.connection.bind('connected', () => resolve({ connected: true }));
  // (pusher-js wraps the server's pusher:error in its own error event.)
  const codeOf = (e) => Number((/"code":(\\d+)/.exec(JSON.stringify(e)) || [])[1]) || undefined;
  pusher.connection.bind('error', (e) => resolve({ connected: false, code: codeOf(e) }));
});
</script></body></html>`;
}

describe('origins, with the browser setting Origin itself', { skip: SKIP }, () => {
  let herald;
  let pages;
  let browser;
  let pagePort;

  before(async () => {
    const { chromium } = await import('playwright-core');
    pagePort = await freePort();
    const heraldPort = await freePort();
    pages = await new Promise((resolve) => {
      const server = http.createServer((req, res) => {
        if (req.url === '/pusher.min.js') {
          res.writeHead(200, { 'content-type': 'text/javascript' }).end(readFileSync(PUSHER_MIN));
        } else {
          res.writeHead(200, { 'content-type': 'text/html' }).end(page(heraldPort));
        }
      });
      server.listen(pagePort, '127.0.0.1', () => resolve(server));
    });
    herald = await startServer({
      port: heraldPort,
      configToml: `[[apps]]\nid = "${APP.id}"\nkey = "${APP.key}"\nsecret = "${APP.secret}"\n`
        + `allowed_origins = ["http://127.0.0.1:${pagePort}", "http://*.localhost:${pagePort}"]\n`,
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-quic',
        // *.localhost and localhost are the loopback, as in every browser.
        '--host-resolver-rules=MAP *.localhost 127.0.0.1, MAP localhost 127.0.0.1'],
      timeout: 30000,
    });
  });
  after(async () => {
    await browser?.close();
    await new Promise((resolve) => (pages ? pages.close(resolve) : resolve()));
    await herald?.stop();
  });

  async function outcomeFrom(origin) {
    const context = await browser.newContext();
    try {
      const tab = await context.newPage();
      await withTimeout(tab.goto(`${origin}/`), 10000, `the page at ${origin}`);
      return await withTimeout(tab.evaluate(() => window.outcome), 10000, `pusher-js at ${origin}`);
    } finally {
      await context.close();
    }
  }

  it('connects from the allowed origin', async () => {
    assert.deepEqual(await outcomeFrom(`http://127.0.0.1:${pagePort}`), { connected: true });
  });

  it('connects from a subdomain the wildcard allows', async () => {
    assert.deepEqual(await outcomeFrom(`http://shop.localhost:${pagePort}`), { connected: true });
  });

  it('is refused with 4009 from another origin', async () => {
    assert.deepEqual(await outcomeFrom(`http://localhost:${pagePort}`), { connected: false, code: 4009 });
  });
});

describe('pusher-js in Node (no Origin header)', () => {
  let herald;
  before(async () => {
    herald = await startServer({
      configToml: `[[apps]]\nid = "${APP.id}"\nkey = "${APP.key}"\nsecret = "${APP.secret}"\n`
        + 'allowed_origins = ["https://app.example.com"]\n'
        + '[[apps]]\nid = "strict"\nkey = "strict-key"\nsecret = "strict-secret"\n'
        + 'allowed_origins = ["https://app.example.com"]\nallow_missing_origin = false\n',
    });
  });
  after(async () => { await herald?.stop(); });

  function connect(key) {
    const pusher = new PusherJs(key, {
      cluster: 'mt1', wsHost: '127.0.0.1', wsPort: herald.port, forceTLS: false,
      enabledTransports: ['ws'], disableStats: true,
    });
    const outcome = waitFor((resolve) => {
      pusher.connection.bind('connected', () => resolve({ connected: true }));
      // (pusher-js wraps the server's pusher:error in its own error event.)
      const codeOf = (e) => Number(/"code":(\d+)/.exec(JSON.stringify(e))?.[1]) || undefined;
      pusher.connection.bind('error', (e) => resolve({ connected: false, code: codeOf(e) }));
    }, { label: `pusher-js with ${key}` });
    return outcome.finally(() => pusher.disconnect());
  }

  it('is a server-side client, accepted while allow_missing_origin is on', async () => {
    assert.deepEqual(await connect(APP.key), { connected: true });
  });

  it('is refused with 4009 where the app wants an Origin', async () => {
    assert.deepEqual(await connect('strict-key'), { connected: false, code: 4009 });
  });
});

describe('the HTTP API per app and per second', () => {
  let herald;
  before(async () => {
    herald = await startServer({
      configToml: `[[apps]]\nid = "${APP.id}"\nkey = "${APP.key}"\nsecret = "${APP.secret}"\n`
        + 'max_backend_events_per_second = 2\n'
        + '[[apps]]\nid = "other"\nkey = "other-key"\nsecret = "other-secret"\n',
    });
  });
  after(async () => { await herald?.stop(); });

  it('answers 429 with a JSON error to the SDK beyond the rate, and another app is not affected', async () => {
    const sdk = makeSdk(herald.port);
    await sdk.trigger('news', 'e', {});
    await sdk.trigger('news', 'e', {});
    await assert.rejects(sdk.trigger('news', 'e', {}), (error) => {
      assert.equal(error.status, 429);
      assert.match(JSON.parse(error.body).error, /2 events per second/);
      return true;
    });
    const other = makeSdk(herald.port, { appId: 'other', key: 'other-key', secret: 'other-secret' });
    for (let i = 0; i < 5; i += 1) await other.trigger('news', 'e', {});
  });
});
