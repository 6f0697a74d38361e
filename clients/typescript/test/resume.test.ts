import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { Client, type LostEvent } from '../src/index.js';
import { ChaosProxy, startServer, until, type ServerHandle } from './helpers.js';

const SEED = Number(process.env.WEIR_CHAOS_SEED ?? Date.now() % 1_000_000);

describe('resume through a chaos proxy', () => {
  let server: ServerHandle;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.stop();
  });

  it(`connections cut mid-frame: nothing lost or duplicated (seed ${SEED})`, async () => {
    const N = 20_000;
    const CUTS = 6;
    // The first connection is not retried, so the cuts start after the clients are set up.
    const chaos = { cuts: CUTS, minBytes: 1, maxBytes: 60_000, armed: false };
    const pubProxy = new ChaosProxy(server.port, { ...chaos, seed: SEED });
    const subProxy = new ChaosProxy(server.port, { ...chaos, seed: SEED + 1 });
    await pubProxy.listen();
    await subProxy.listen();
    const options = { reconnectDelayMs: 5, maxReconnectDelayMs: 50 };
    const sub = await Client.connect({ host: '127.0.0.1', port: subProxy.port }, { ...options, name: 'chaos-sub' });
    const pub = await Client.connect({ host: '127.0.0.1', port: pubProxy.port }, { ...options, name: 'chaos-pub' });
    const lost: LostEvent[] = [];
    sub.on('lost', (l) => lost.push(l));
    pub.on('lost', (l) => lost.push(l));
    const s = await sub.subscribe('chaos');
    pubProxy.arm();
    subProxy.arm();

    const received: number[] = [];
    const consumer = (async () => {
      for await (const d of s) {
        received.push(Number(d.text()));
        if (received.length === N) break;
      }
    })();

    let last: Promise<bigint> | undefined;
    for (let i = 0; i < N; i++) {
      last = pub.publish('chaos', 'n', String(i));
      if (i % 500 === 499) await last;
    }
    await last;
    await consumer;

    assert.equal(received.length, N);
    for (let i = 0; i < N; i++) assert.equal(received[i], i, `message ${i} out of place`);
    assert.deepEqual(lost, []);
    assert.ok(pubProxy.cutsDone > 0 && subProxy.cutsDone > 0, `cuts: ${pubProxy.cutsDone} + ${subProxy.cutsDone}`);
    assert.ok(pub.counters.resumed + sub.counters.resumed > 0);
    const st = await pub.stats();
    assert.equal(Number(st.server.messages_published), N);
    await pub.close();
    await sub.close();
    await pubProxy.close();
    await subProxy.close();
  });
});

describe('LOST', () => {
  let server: ServerHandle;
  before(async () => {
    server = await startServer('reconnect_keep_alive_ms = 200\n');
  });
  after(async () => {
    await server.stop();
  });

  it('an expired session: LOST(SESSION_EXPIRED) with the count of messages it held; resubscribed', async () => {
    const proxy = new ChaosProxy(server.port, { cuts: 0, minBytes: 0, maxBytes: 0, seed: 1 });
    await proxy.listen();
    const victim = await Client.connect(
      { host: '127.0.0.1', port: proxy.port },
      { name: 'victim', reconnectDelayMs: 10, maxReconnectDelayMs: 50 },
    );
    const other = await Client.connect({ host: '127.0.0.1', port: server.port }, { name: 'other' });
    const s = await victim.subscribe('lostq');
    const oldSession = victim.session.sessionId;
    await other.publish('lostq', 'e', 'before');
    assert.equal((await s.next()).value!.text(), 'before');

    const lost = new Promise<LostEvent>((resolve) => victim.on('lost', resolve));
    proxy.refuse = true;
    proxy.dropAll();
    await other.publish('lostq', 'e', 'm1');
    await other.publish('lostq', 'e', 'm2');
    await other.publish('lostq', 'e', 'm3');
    await until(async () => {
      const st = await other.stats();
      return st.closed_sessions.some((c) => c.session_id === oldSession && c.reason === 'SESSION_EXPIRED');
    }, 'the detached session to expire');
    proxy.refuse = false;

    const l = await lost;
    assert.equal(l.reasonName, 'SESSION_EXPIRED');
    assert.equal(l.reason, 0x14);
    assert.equal(l.missed, 3n);
    assert.equal(l.oldSessionId, oldSession);
    assert.notEqual(l.newSessionId, oldSession);
    assert.equal(victim.session.sessionId, l.newSessionId);

    // The client subscribed again on the new session, whose seqs start at 1.
    await until(async () => {
      const st = await other.stats();
      const me = st.sessions.find((x) => x.session_id === l.newSessionId);
      return !!me && (me.subscriptions as unknown[]).length === 1;
    }, 'the resubscription');
    await other.publish('lostq', 'e', 'after');
    const d = (await s.next()).value!;
    assert.equal(d.text(), 'after');
    assert.equal(d.seq, 1n);
    // Publishing works on the new session (seqs restart at 1).
    assert.equal(await victim.publish('lostq', 'e', 'mine'), 1n);
    await victim.close();
    await other.close();
    await proxy.close();
  });

  it('a server restart: LOST(SERVER_RESTARTED), missed unknown; unreceipted publishes go again', async () => {
    const c = await Client.connect(
      { host: '127.0.0.1', port: server.port },
      { name: 'restart', reconnectDelayMs: 20, maxReconnectDelayMs: 100 },
    );
    const s = await c.subscribe('rq');
    const lost = new Promise<LostEvent>((resolve) => c.on('lost', resolve));
    let queued: Promise<bigint> | undefined;
    c.on('disconnected', () => {
      queued ??= c.publish('rq', 'e', 'sent while away');
    });
    await server.restart();
    const l = await lost;
    assert.equal(l.reasonName, 'SERVER_RESTARTED');
    assert.equal(l.missed, null);
    assert.equal(l.unreceiptedPublishes, 1);
    // Published again on the new session (seq 1), after the subscription was made again.
    assert.equal(await queued, 1n);
    assert.equal((await s.next()).value!.text(), 'sent while away');
    assert.equal(await c.publish('rq', 'e', 'hello again'), 2n);
    assert.equal((await s.next()).value!.text(), 'hello again');
    await c.close();
  });
});

describe('heartbeats', () => {
  let server: ServerHandle;
  before(async () => {
    server = await startServer('heartbeat_interval_ms = 100\nheartbeat_timeout_ms = 400\n');
  });
  after(async () => {
    await server.stop();
  });

  it('answers the server PINGs, so an idle client keeps its connection', async () => {
    const c = await Client.connect({ host: '127.0.0.1', port: server.port }, { name: 'idle' });
    assert.equal(c.session.heartbeatIntervalMs, 100);
    await until(() => c.counters.pingsAnswered >= 5, 'five PINGs');
    assert.equal(c.counters.reconnects, 0);
    const st = await c.stats();
    assert.equal(Number(st.server.heartbeat_timeouts), 0);
    await c.close();
  });

  it('a silent server is detected as dead; the client reconnects and resumes', async () => {
    const proxy = new ChaosProxy(server.port, { cuts: 0, minBytes: 0, maxBytes: 0, seed: 1 });
    await proxy.listen();
    const c = await Client.connect(
      { host: '127.0.0.1', port: proxy.port },
      { name: 'frozen', reconnectDelayMs: 10, maxReconnectDelayMs: 50 },
    );
    const s = await c.subscribe('hb');
    const disconnected = new Promise<Error>((resolve) => c.on('disconnected', (e) => resolve(e.error)));
    const resumed = new Promise<void>((resolve) => c.on('resumed', () => resolve()));
    proxy.freezeAll();
    const err = await disconnected;
    assert.match(err.message, /nothing received/);
    await resumed;
    await c.publish('hb', 'e', 'alive');
    assert.equal((await s.next()).value!.text(), 'alive');
    await c.close();
    await proxy.close();
  });
});
