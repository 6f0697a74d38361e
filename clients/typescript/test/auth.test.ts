import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { Client, ClosedError, ErrorCode, ServerError, WeirError } from '../src/index.js';
import { hashPassword, startServer, type ServerHandle } from './helpers.js';

describe('authentication (protocol.md §Authentication)', () => {
  let server: ServerHandle;
  const signingKey = randomBytes(32);
  const apiToken = 'tok-' + randomBytes(12).toString('hex');
  before(async () => {
    const hash = hashPassword('s3cret');
    server = await startServer(
      [
        'allow_anonymous = false',
        'max_name_len = 16',
        `token_signing_key = "${signingKey.toString('base64')}"`,
        '[[users]]',
        'name = "alice"',
        `password_hash = "${hash}"`,
        'publish = ["orders.*"]',
        'subscribe = ["orders.*"]',
        '[[users]]',
        'name = "root"',
        `password_hash = "${hash}"`,
        'publish = ["*"]',
        'subscribe = ["*"]',
        'admin = true',
        '[[users]]',
        'name = "svc"',
        `token_hash = "sha256$${createHash('sha256').update(apiToken).digest('hex')}"`,
        'publish = ["svc.*"]',
        '',
      ].join('\n'),
    );
  });
  after(async () => {
    await server.stop();
  });
  const endpoint = (): { host: string; port: number } => ({ host: '127.0.0.1', port: server.port });

  it('user and password: a session with that user’s permissions', async () => {
    const alice = await Client.connect(endpoint(), { name: 'alice-app', user: 'alice', password: 's3cret' });
    const s = await alice.subscribe('orders.eu');
    assert.equal(await alice.publish('orders.eu', 'new', 'o1'), 1n);
    assert.equal((await s.next()).value!.text(), 'o1');

    // Denied publish: rejected with NOT_AUTHORIZED (not fatal), its seq consumed; the session goes on.
    const denied = await alice.publish('billing', 'x', 'no').then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(denied instanceof ServerError);
    assert.equal(denied.code, ErrorCode.NOT_AUTHORIZED);
    assert.equal(denied.codeName, 'NOT_AUTHORIZED');
    assert.equal(denied.fatal, false);
    assert.equal(denied.refSeq, 2n);
    await assert.rejects(alice.subscribe('billing'), (e: unknown) => e instanceof ServerError && e.codeName === 'NOT_AUTHORIZED');
    await assert.rejects(alice.stats(), (e: unknown) => e instanceof ServerError && e.codeName === 'NOT_AUTHORIZED');
    assert.equal(await alice.publish('orders.us', 'new', 'o2'), 3n);

    const root = await Client.connect(endpoint(), { name: 'root-app', user: 'root', password: 's3cret' });
    const st = await root.stats();
    const identities = st.sessions.map((x) => x.identity).sort();
    assert.deepEqual(identities, ['user:alice', 'user:root']);
    assert.equal(Number(st.server.not_authorized), 3);
    await root.close();
    await alice.close();
  });

  it('TOKEN and SIGNED_TOKEN credentials', async () => {
    const svc = await Client.connect(endpoint(), { name: 'svc', token: apiToken });
    assert.equal(await svc.publish('svc.jobs', 'e', 'x'), 1n);
    await assert.rejects(svc.subscribe('svc.jobs'), /NOT_AUTHORIZED/);

    // protocol.md §Authentication: base64url(payload) "." base64url(HMAC-SHA256(key, first part)).
    const payload = Buffer.from(JSON.stringify({ subject: 'robot', exp: Math.floor(Date.now() / 1000) + 3600, subscribe: ['svc.*'], admin: true })).toString('base64url');
    const signed = `${payload}.${createHmac('sha256', signingKey).update(payload).digest('base64url')}`;
    const robot = await Client.connect(endpoint(), { name: 'robot', signedToken: signed });
    const st = await robot.stats();
    assert.ok(st.sessions.some((x) => x.identity === 'subject:robot'));
    assert.ok(st.sessions.some((x) => x.identity === 'user:svc'));
    await assert.rejects(
      Client.connect(endpoint(), { signedToken: `${payload}.${'A'.repeat(43)}` }),
      (e: unknown) => e instanceof ServerError && e.codeName === 'AUTH_FAILED',
    );
    await robot.close();
    await svc.close();
  });

  it('a bad password is refused with AUTH_FAILED', async () => {
    const err = await Client.connect(endpoint(), { user: 'alice', password: 'wrong' }).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof ServerError, String(err));
    assert.equal(err.code, ErrorCode.AUTH_FAILED);
    assert.equal(err.codeName, 'AUTH_FAILED');
    assert.equal(err.fatal, true);
    await assert.rejects(
      Client.connect(endpoint(), { user: 'nobody', password: 's3cret' }),
      (e: unknown) => e instanceof ServerError && e.code === 0x1b,
    );
  });

  it('no credentials where anonymous sessions are not allowed: AUTH_REQUIRED', async () => {
    await assert.rejects(
      Client.connect(endpoint(), { name: 'anon' }),
      (e: unknown) => e instanceof ServerError && e.codeName === 'AUTH_REQUIRED' && e.code === 0x1a,
    );
  });

  it('a fatal ERROR ends the client: the call rejects, later calls get ClosedError', async () => {
    const c = await Client.connect(endpoint(), { user: 'root', password: 's3cret' });
    const errors: WeirError[] = [];
    c.on('error', (e) => errors.push(e));
    // max_name_len = 16 in this server: a 20-byte queue name is LIMIT_EXCEEDED, fatal.
    const err = await c.publish('a-queue-name-of-20-b', 'e', 'x').then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof ServerError);
    assert.equal(err.codeName, 'LIMIT_EXCEEDED');
    assert.equal(err.fatal, true);
    assert.equal(err.refSeq, 1n);
    assert.equal(errors.length, 1);
    assert.equal(c.connected, false);
    await assert.rejects(c.publish('q', 'e', 'x'), ClosedError);
    await c.close();
  });
});
