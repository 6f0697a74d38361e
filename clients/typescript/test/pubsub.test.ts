import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { Client, type Delivery } from '../src/index.js';
import { startServer, type ServerHandle } from './helpers.js';

describe('pub/sub against weir-server', () => {
  let server: ServerHandle;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.stop();
  });

  it('publishes, resolves at RECEIPT, delivers by event filter', async () => {
    const endpoint = { host: '127.0.0.1', port: server.port };
    const sub = await Client.connect(endpoint, { name: 'sub' });
    const pub = await Client.connect(endpoint, { name: 'pub' });
    const updates = await sub.subscribe('db', { events: ['update'] });
    const all = await sub.subscribe('db');
    const both: Delivery[] = [];
    await sub.subscribe('db', { events: ['insert', 'delete'], onMessage: (d) => void both.push(d) });

    const seqs = [
      await pub.publish('db', 'update', 'u1'),
      await pub.publish('db', 'insert', 'i1'),
      await pub.publish('db', 'other', 'o1'),
      await pub.publish('db', '', 'empty-event'),
      await pub.publish('elsewhere', 'update', 'not ours'),
      await pub.publish('db', 'delete', 'd1'),
      await pub.publish('db', 'update', new Uint8Array([0, 1, 2, 255])),
    ];
    assert.deepEqual(seqs, [1n, 2n, 3n, 4n, 5n, 6n, 7n]);

    const got: string[] = [];
    for await (const d of updates) {
      assert.equal(d.queue, 'db');
      assert.equal(d.event, 'update');
      got.push(d.payload.length === 4 ? Buffer.from(d.payload).toString('hex') : d.text());
      if (got.length === 2) break;
    }
    assert.deepEqual(got, ['u1', '000102ff']);

    const allGot: string[] = [];
    for await (const d of all) {
      allGot.push(`${d.event}:${d.payload.length}`);
      if (allGot.length === 6) break;
    }
    assert.deepEqual(allGot, ['update:2', 'insert:2', 'other:2', ':11', 'delete:2', 'update:4']);
    assert.deepEqual(
      both.map((d) => d.text()),
      ['i1', 'd1'],
    );
    // One session, one delivery per message even with three matching subscriptions.
    const seen = new Set([...both.map((d) => d.seq)]);
    assert.equal(seen.size, 2);

    // Message ids are the same for every session a message reaches.
    const self = await pub.subscribe('echo');
    const other = await sub.subscribe('echo');
    await pub.publish('echo', 'e', 'x', { key: 'k1' });
    const a = (await self.next()).value as Delivery;
    const b = (await other.next()).value as Delivery;
    assert.equal(a.messageId, b.messageId);
    assert.equal(a.redelivered, false);

    const stats = await pub.stats();
    const names = stats.sessions.map((s) => s.client_name).sort();
    assert.deepEqual(names, ['pub', 'sub']);
    assert.equal(typeof stats.sessions[0]!.session_id, 'bigint');
    assert.equal(stats.sessions.find((s) => s.client_name === 'pub')!.session_id, pub.session.sessionId);

    await updates.unsubscribe();
    await all.unsubscribe();
    await pub.close();
    await sub.close();
  });

  it('unsubscribe stops deliveries; a second client sees them', async () => {
    const endpoint = { host: '127.0.0.1', port: server.port };
    const c = await Client.connect(endpoint, { name: 'u' });
    const s = await c.subscribe('q2', { events: ['a'] });
    await c.publish('q2', 'a', '1');
    await s.unsubscribe();
    await c.publish('q2', 'a', '2');
    const s2 = await c.subscribe('q2', { events: ['a'] });
    await c.publish('q2', 'a', '3');
    const first = await s.next();
    assert.equal(first.done, false);
    assert.equal(first.value!.text(), '1');
    assert.equal((await s.next()).done, true);
    assert.equal((await s2.next()).value!.text(), '3');
    await c.close();
  });

  it('the encoder refuses a 256-byte name before anything is sent; the session goes on', async () => {
    const c = await Client.connect({ host: '127.0.0.1', port: server.port }, { name: 'names' });
    const errors: unknown[] = [];
    c.on('error', (e) => errors.push(e));
    await assert.rejects(c.publish('q', 'x'.repeat(256), ''), /LIMIT_EXCEEDED/);
    // 255 bytes is the longest name, and the server's default max_name_len.
    assert.equal(await c.publish('x'.repeat(255), 'ok', ''), 1n);
    await c.close();
    assert.equal(errors.length, 0);
  });
});
