import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';

import { Client } from '../src/index.js';
import { startServer, type ServerHandle } from './helpers.js';

let server: ServerHandle;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.stop();
});

it('100,000 small messages with acks: none lost, none duplicated, in order', async () => {
  const N = 100_000;
  const endpoint = { host: '127.0.0.1', port: server.port };
  const sub = await Client.connect(endpoint, { name: 'bulk-sub' });
  const pub = await Client.connect(endpoint, { name: 'bulk-pub' });
  const s = await sub.subscribe('bulk', { events: ['n'] });
  const window = sub.session.inflightWindow;

  const consumer = (async () => {
    let expected = 0;
    let lastSeq = 0n;
    for await (const d of s) {
      const n = d.payload[0]! | (d.payload[1]! << 8) | (d.payload[2]! << 16);
      assert.equal(n, expected, `message ${expected} expected, got ${n}`);
      assert.equal(d.seq, lastSeq + 1n);
      lastSeq = d.seq;
      expected++;
      if (expected === N) break;
    }
    return expected;
  })();

  let last: Promise<bigint> | undefined;
  for (let i = 0; i < N; i++) {
    const payload = new Uint8Array([i & 0xff, (i >> 8) & 0xff, (i >> 16) & 0xff, 0x2a]);
    last = pub.publish('bulk', 'n', payload);
    // Let the socket drain now and then, as a real producer would.
    if (i % 5000 === 4999) await last;
  }
  assert.equal(await last, BigInt(N));
  assert.equal(pub.unreceipted, 0);
  assert.equal(await consumer, N);

  // Everything consumed is acknowledged: the server holds nothing in flight for us.
  await s.return();
  let inFlight = -1;
  for (let i = 0; i < 200 && inFlight !== 0; i++) {
    const st = await pub.stats();
    const me = st.sessions.find((x) => x.client_name === 'bulk-sub')!;
    inFlight = Number(me.in_flight) + Number(me.pending);
    assert.ok(Number(me.in_flight) <= window);
    if (inFlight !== 0) await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(inFlight, 0);
  const st = await pub.stats();
  const me = st.sessions.find((x) => x.client_name === 'bulk-sub')!;
  assert.equal(Number(me.delivered), N);
  assert.equal(Number(me.acked), N);
  assert.equal(Number(st.server.messages_duplicate), 0);
  await pub.close();
  await sub.close();
});
