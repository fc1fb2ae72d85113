// The guides cannot drift: every ```php block of the README and of
// docs/*.md carries a `<!-- tested: NAME -->` marker, and each is run here
// as the guide means it (php/docs.php: Laravel 8.83's framework and the official PHP SDK)
// against the Herald binary, with pusher-js checking what arrives. Blocks
// for code Laravel 8.83 or this suite cannot run (Laravel 9+ APIs,
// Livewire) are marked `syntax` / `syntax-class` and checked by `php -l`.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  APP,
  Clients,
  appConfigToml,
  makeSdk,
  randomMasterKey,
  startReceiver,
  runPhp,
  signIn,
  startServer,
  subscribe,
  waitForEvent,
  waitForState,
} from './helpers.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const GUIDES = ['README.md', ...readdirSync(path.join(REPO, 'docs'))
  .filter((f) => f.endsWith('.md'))
  .map((f) => path.join('docs', f))];

/** Every ```{lang} block of a guide with its marker and line. */
function fencedBlocks(text, file, lang) {
  const lines = text.split('\n');
  const blocks = [];
  for (let i = 0; i < lines.length; i += 1) {
    if (lines[i].trim() !== '```' + lang) continue;
    const end = lines.indexOf('```', i + 1);
    const marker = /<!-- tested: ([\w-]+) -->/.exec(lines[i - 1] ?? '');
    const notRun = /<!-- not run: (.+) -->/.exec(lines[i - 1] ?? '');
    blocks.push({
      file, line: i + 1, name: marker?.[1], notRun: notRun?.[1], code: lines.slice(i + 1, end).join('\n'),
    });
    i = end;
  }
  return blocks;
}

const guideText = (file) => readFileSync(path.join(REPO, file), 'utf8');
const blocks = GUIDES.flatMap((file) => fencedBlocks(guideText(file), file, 'php'));
const shellBlocks = GUIDES.flatMap((file) => fencedBlocks(guideText(file), file, 'sh'));

function runBlock(block, port, extra = {}) {
  const input = { name: block.name, code: block.code, port, app: APP, ...extra };
  return runPhp([path.join(HERE, 'php', 'docs.php'), JSON.stringify(input)]).then((out) => JSON.parse(out));
}

function only(name) {
  const found = blocks.filter((b) => b.name === name);
  assert.equal(found.length, 1, `one block marked ${name} in the guides`);
  return found[0];
}

describe('the PHP blocks of the guides', () => {
  let server;
  let clients;
  let dir;

  before(async () => {
    // Under a path prefix, as section 8 describes (Herald serves the root too).
    server = await startServer({ env: { HERALD_SERVER__PATH: '/ws' } });
    clients = new Clients(server.port);
    dir = await mkdtemp(path.join(tmpdir(), 'herald-docs-'));
  });
  after(async () => {
    clients?.closeAll();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('marks every PHP block with the way it is tested', () => {
    assert.ok(blocks.length >= 10, `found ${blocks.length} PHP blocks`);
    const unmarked = blocks.filter((b) => !b.name).map((b) => `${b.file}:${b.line}`);
    assert.deepEqual(unmarked, [], 'PHP blocks without a <!-- tested: NAME --> marker');
  });

  /** Runs a block that triggers `checked` on `docs` and sees it arrive. */
  async function triggers(name) {
    const pusher = await clients.pusher();
    const docs = await subscribe(pusher, 'docs');
    const arrived = waitForEvent(docs, 'checked', { filter: (d) => d.block === name, timeout: 15000 });
    const out = await runBlock(only(name), server.port);
    await arrived;
    return out;
  }

  it('the Laravel 8 options send to Herald', async () => {
    await triggers('broadcasting-options');
  });

  it('client_options give the SDK its HTTP client', async () => {
    const out = await triggers('client-options');
    assert.equal(out.verify, true, 'PUSHER_CA_BUNDLE unset: the system roots');
  });

  it('Laravel 8\'s broadcaster with its own client sends to Herald', async () => {
    const out = await triggers('laravel-8-ca');
    assert.equal(out.class, 'Illuminate\\Broadcasting\\Broadcasters\\PusherBroadcaster');
  });

  it('the first event reaches Echo\'s channel through the queue', async () => {
    const sdk = makeSdk(server.port);
    const pusher = await clients.pusher({ signer: sdk });
    const orders = await subscribe(pusher, 'private-orders.7');
    const shipped = waitForEvent(orders, 'App\\Events\\OrderShipped', { timeout: 15000 });
    const out = await runBlock(only('event-class'), server.port);
    assert.deepEqual(out, { dispatched: true });
    const { data } = await shipped;
    assert.equal(data.orderId, 5);
    assert.equal(data.userId, 7);
  });

  it('routes/channels.php authorizes what Herald then accepts', async () => {
    // Authorized with what Laravel answers for this socket (below).
    const laravelSaid = {};
    const pusher = await clients.pusher({
      channelAuthorization: {
        customHandler: ({ channelName }, callback) => callback(null, laravelSaid[channelName]),
      },
    });
    const socketId = pusher.connection.socket_id;
    const out = await runBlock(only('channels'), server.port, { socket_id: socketId });
    assert.deepEqual(out.other, { refused: 403 });
    assert.ok(out.own.auth, JSON.stringify(out));
    assert.ok(out.presence.channel_data.includes('"name":"Ada"'), JSON.stringify(out));
    // Herald accepts the signatures Laravel made for this socket.
    laravelSaid['private-orders.5'] = out.own;
    laravelSaid['presence-room.1'] = out.presence;
    await subscribe(pusher, 'private-orders.5');
    const room = await subscribe(pusher, 'presence-room.1');
    assert.deepEqual(room.members.me.info, { id: 7, name: 'Ada' });
  });

  it('the Laravel 8 user-auth route signs a user in', async () => {
    let laravelSaid;
    const pusher = await clients.pusher({
      userAuthentication: { customHandler: (_, callback) => callback(null, laravelSaid) },
    });
    const out = await runBlock(only('user-auth-route'), server.port, { socket_id: pusher.connection.socket_id });
    assert.deepEqual(out.middleware, ['auth']);
    laravelSaid = out.auth;
    await signIn(pusher);
    assert.equal(pusher.user.user_data.id, '7');
    await waitForState(pusher, 'connected');
  });

  it('the PHP polling loop reads the recent events', async () => {
    const sdk = makeSdk(server.port);
    await sdk.trigger('orders', 'OrderShipped', { id: 11 });
    const out = await runBlock(only('polling'), server.port);
    assert.ok(out.events.some((e) => e.event === 'OrderShipped' && JSON.parse(e.data).id === 11), JSON.stringify(out));
    assert.ok(out.cursor, 'the cursor is kept for the next poll');
    assert.equal(out.resynced, false);
  });

  it('the path option reaches Herald under its prefix', async () => {
    const out = await triggers('path-option');
    assert.equal(out.path, '/ws/');
    assert.ok(out.channels.channels.docs, JSON.stringify(out.channels));
  });

  it('the README\'s encryption option: a key encrypts, no key is no failure', async () => {
    const masterKey = randomMasterKey();
    const signer = makeSdk(server.port, { encryptionMasterKeyBase64: masterKey });
    const pusher = await clients.pusher({ signer });
    const vault = await subscribe(pusher, 'private-encrypted-docs');
    const secret = waitForEvent(vault, 'checked', { timeout: 15000 });
    await runBlock(only('encryption-option'), server.port, { master_key: masterKey });
    assert.deepEqual((await secret).data, { block: 'encryption-option' });
    await triggers('encryption-option');
  });

  it('the README\'s server-to-user calls reach and then close user 42', async () => {
    const pusher = await clients.pusher({ user: { id: '42' } });
    await signIn(pusher);
    const notice = waitForEvent(pusher.user, 'notice', { timeout: 15000 });
    const gone = waitForEvent(pusher.connection, 'state_change', {
      filter: ({ current }) => ['disconnected', 'unavailable', 'failed'].includes(current),
      timeout: 15000,
    });
    await runBlock(only('users-api'), server.port);
    assert.deepEqual((await notice).data, { msg: 'hi' });
    await gone;
  });

  it('the webhook route of docs/webhooks.md accepts what Herald sends and refuses a forgery', async () => {
    const receiver = await startReceiver();
    const hooked = await startServer({
      configToml: `${appConfigToml({ webhook_debounce: 0 })}[[apps.webhooks]]\nurl = ${JSON.stringify(receiver.url)}\n`,
    });
    const room = new Clients(hooked.port);
    try {
      const pusher = await room.pusher({ presence: { user_id: '42', user_info: {} } });
      await subscribe(pusher, 'presence-docs');
      await receiver.until((e) => e.name === 'member_added', 'member_added');
      const request = receiver.requests.find((r) => r.rawBody.includes('member_added'));
      const out = await runBlock(only('webhook-route'), hooked.port, { headers: request.headers, body: request.rawBody });
      assert.equal(out.status, 204, JSON.stringify(out));
      assert.deepEqual(out.presence, [['join', 'presence-docs', '42']]);
      const forged = await runBlock(only('webhook-route'), hooked.port, {
        headers: request.headers, body: request.rawBody.replace('42', '43'),
      });
      assert.match(forged.refused, /invalid signature/);
      assert.deepEqual(forged.presence, []);
    } finally {
      room.closeAll();
      await hooked.stop();
      await receiver.close();
    }
  });

  it('the blocks it cannot run are valid PHP', async () => {
    const checked = blocks.filter((b) => b.name === 'syntax' || b.name === 'syntax-class');
    assert.ok(checked.length >= 3);
    for (const block of checked) {
      const file = path.join(dir, `block-${block.line}.php`);
      const body = block.name === 'syntax-class'
        ? `<?php\nclass DocsBlock {\n${block.code}\n}\n`
        : `<?php\nfunction docs_block() {\n${block.code}\n}\n`;
      await writeFile(file, body);
      const out = await runPhp(['-l', file]);
      assert.match(out, /No syntax errors/, `${block.file}:${block.line}`);
    }
  });

  it('runs every marked block', () => {
    const known = new Set(['broadcasting-options', 'client-options', 'laravel-8-ca', 'event-class', 'channels',
      'user-auth-route', 'polling', 'path-option', 'syntax', 'syntax-class', 'encryption-option', 'users-api',
      'webhook-route']);
    const unknown = blocks.filter((b) => b.name && !known.has(b.name)).map((b) => `${b.name} (${b.file}:${b.line})`);
    assert.deepEqual(unknown, []);
  });
});

describe('the shell blocks of the guides', () => {
  let server;

  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });

  it('are each run here, or say why not', () => {
    assert.ok(shellBlocks.length >= 10, `found ${shellBlocks.length} shell blocks`);
    // The README's first block is its own two commands (run Herald, run
    // this suite), kept first and plain: CI runs the second.
    const readmeCommands = (b) => b.file === 'README.md' && b === shellBlocks.find((c) => c.file === 'README.md');
    const unmarked = shellBlocks
      .filter((b) => b.name !== 'sh' && !b.notRun && !readmeCommands(b))
      .map((b) => `${b.file}:${b.line}`);
    assert.deepEqual(unmarked, [], 'shell blocks without <!-- tested: sh --> or <!-- not run: why -->');
  });

  it('run as written against a live Herald (its port put in place of 6001)', async () => {
    const run = shellBlocks.filter((b) => b.name === 'sh');
    assert.ok(run.length >= 4);
    // The polling blocks read a channel's recent events: give them one.
    await makeSdk(server.port).trigger('orders', 'OrderShipped', { order: { id: 1 } });
    const herald = path.dirname(path.resolve(process.env.HERALD_BIN || path.join(REPO, 'target', 'debug', 'herald')));
    for (const block of run) {
      const script = block.code.replaceAll('127.0.0.1:6001', `127.0.0.1:${server.port}`);
      const { status, stdout, stderr } = spawnSync('bash', ['-e', '-o', 'pipefail', '-c', script], {
        env: {
          ...process.env,
          PATH: `${herald}:${process.env.PATH}`,
          HERALD_URL: `http://127.0.0.1:${server.port}`,
        },
        encoding: 'utf8',
        timeout: 30000,
      });
      assert.equal(status, 0, `${block.file}:${block.line}\n${script}\n${stdout}${stderr}`);
      // Every block here talks to Herald and prints its JSON answer.
      assert.match(stdout, /"(status|events)"|^\{\}/m, `${block.file}:${block.line}: ${stdout}`);
      assert.doesNotMatch(stdout, /"error"/, `${block.file}:${block.line}: ${stdout}`);
    }
  });
});
