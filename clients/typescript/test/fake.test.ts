// Client behaviour against a scripted in-process server, through the custom transport hook:
// limits the real server never breaks, checked from the client's side.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Client, ProtocolError, type Delivery, type Transport, type TransportFactory, type TransportHandlers } from '../src/index.js';
import {
  ErrorCode,
  FrameDecoder,
  encodeGoodbye,
  Op,
  encodeDeliver,
  encodePing,
  encodeReceipt,
  encodeSubscription,
  encodeWelcome,
  type Frame,
} from '../src/protocol.js';

/** A fake server: `onFrame` answers each client frame via `send`. */
function fakeServer(framed: boolean, onFrame: (f: Frame, send: (b: Uint8Array) => void, n: number) => void): {
  factory: TransportFactory;
  connections: number;
  sent: Frame[];
  /** Frames received, with the connection number. */
  log: [number, Frame][];
  /** The server side drops connection n. */
  kill: (n: number) => void;
} {
  const kills = new Map<number, () => void>();
  const state = {
    connections: 0,
    sent: [] as Frame[],
    log: [] as [number, Frame][],
    factory: null as unknown as TransportFactory,
    kill: (n: number) => kills.get(n)?.(),
  };
  state.factory = async (h: TransportHandlers): Promise<Transport> => {
    const n = ++state.connections;
    const decoder = new FrameDecoder(1 << 20);
    let closed = false;
    const send = (b: Uint8Array): void => {
      if (!closed) queueMicrotask(() => !closed && h.onData(b));
    };
    const t: Transport = {
      framed,
      send(frame) {
        decoder.push(frame);
        for (let f = decoder.next(); f; f = decoder.next()) {
          state.sent.push(f);
          state.log.push([n, f]);
          if (f.op === Op.BYE) {
            send(encodeGoodbye(ErrorCode.CLIENT_BYE, new Uint8Array(0)));
            queueMicrotask(() => t.destroy());
            continue;
          }
          onFrame(f, send, n);
        }
      },
      end() {
        t.destroy();
      },
      destroy() {
        if (closed) return;
        closed = true;
        queueMicrotask(() => h.onClose());
      },
    };
    kills.set(n, () => {
      if (closed) return;
      closed = true;
      queueMicrotask(() => h.onClose(new Error('reset by the fake server')));
    });
    return t;
  };
  return state;
}

const welcome = (maxFrameLen = 1000, resumed = false): Uint8Array =>
  encodeWelcome({
    outcome: resumed ? 1 : 0, lostReason: 0, missed: 0n, sessionId: 0x1234_0000_0001n, resumeToken: new Uint8Array(16),
    lastPublishSeq: 0n, maxFrameLen, inflightWindow: 8, heartbeatIntervalMs: 10_000, heartbeatTimeoutMs: 30_000,
    maxQueueDepth: 100, maxQueueBytes: 1000n,
  });

describe('client against a scripted server', () => {
  it('a frame longer than WELCOME.max_frame_len + 8 is refused from its header; the client reconnects', async () => {
    const fake = fakeServer(false, (f, send, n) => {
      if (f.op === Op.HELLO) {
        send(welcome(100, f.resume !== undefined));
        // 4-byte header claiming 109 > 100 + 8: rejected before any body arrives.
        if (n === 1) setTimeout(() => send(Uint8Array.of(0, 0, 0, 109)), 20);
      }
    });
    const c = await Client.connect({ host: 'fake', port: 1 }, { transport: fake.factory, reconnectDelayMs: 1 });
    const disconnected = new Promise<Error>((resolve) => c.on('disconnected', (e) => resolve(e.error)));
    const resumed = new Promise<void>((resolve) => c.on('resumed', () => resolve()));
    const err = await disconnected;
    assert.ok(err instanceof ProtocolError);
    assert.equal(err.codeName, 'FRAME_TOO_LARGE');
    await resumed;
    const hello = fake.sent.filter((f) => f.op === Op.HELLO)[1];
    assert.ok(hello && hello.op === Op.HELLO && hello.resume);
    assert.equal(hello.resume.sessionId, 0x1234_0000_0001n);
    await c.close();
  });

  it('answers PING with the same nonce; acks cumulatively within the window', async () => {
    let delivered = 0n;
    const fake = fakeServer(false, (f, send) => {
      if (f.op === Op.HELLO) {
        send(welcome());
        send(encodePing(0xabcdefn));
        for (let i = 0; i < 8; i++) {
          send(encodeDeliver({ seq: ++delivered, messageId: delivered, flags: 0, queue: new Uint8Array([113]), event: new Uint8Array(0), payload: new Uint8Array(0) }));
        }
      }
      if (f.op === Op.PUBLISH) send(encodeReceipt(f.seq));
    });
    const c = await Client.connect({ host: 'fake', port: 1 }, { transport: fake.factory });
    await new Promise((r) => setTimeout(r, 20));
    const pong = fake.sent.find((f) => f.op === Op.PONG);
    assert.ok(pong && pong.op === Op.PONG && pong.nonce === 0xabcdefn);
    await c.close();
    // The deliveries matched no subscription: acknowledged at once, in one cumulative ACK.
    const acks = fake.sent.filter((f) => f.op === Op.ACK);
    assert.ok(acks.length >= 1);
    const last = acks[acks.length - 1]!;
    assert.ok(last.op === Op.ACK && last.upTo === 8n && last.seqs.length === 0);
    assert.equal(fake.sent[fake.sent.length - 1]!.op, Op.BYE);
  });

  it('a WebSocket message carrying two frames is a protocol error', async () => {
    const fake = fakeServer(true, (f, send, n) => {
      if (f.op === Op.HELLO) {
        send(welcome(1000, f.resume !== undefined));
        if (n === 1) setTimeout(() => send(Uint8Array.from([...encodeReceipt(0n), ...encodeReceipt(0n)])), 20);
      }
    });
    const c = await Client.connect({ url: 'ws://fake' }, { transport: fake.factory, reconnectDelayMs: 1 });
    const err = await new Promise<Error>((resolve) => c.on('disconnected', (e) => resolve(e.error)));
    assert.ok(err instanceof ProtocolError && err.codeName === 'MALFORMED_FRAME');
    await c.close();
  });

  it('resume: R and F in HELLO, resend above last_publish_seq, redeliveries deduplicated by seq', async () => {
    const q = new TextEncoder().encode('q');
    const deliver = (seq: bigint, flags = 0): Uint8Array =>
      encodeDeliver({ seq, messageId: 100n + seq, flags, queue: q, event: q, payload: new TextEncoder().encode(`m${seq}`) });
    const fake = fakeServer(false, (f, send, n) => {
      if (f.op === Op.HELLO && n === 1) send(welcome());
      if (f.op === Op.SUBSCRIBE && n === 1) {
        send(encodeSubscription(Op.SUBSCRIBED, f.queue, f.event));
        for (const seq of [1n, 2n, 3n]) send(deliver(seq));
      }
      if (f.op === Op.PUBLISH && n === 1 && f.seq === 1n) send(encodeReceipt(1n));
      if (f.op === Op.HELLO && n === 2) {
        send(
          encodeWelcome({
            outcome: 1, lostReason: 0, missed: 0n, sessionId: 0x1234_0000_0001n, resumeToken: new Uint8Array(16),
            lastPublishSeq: 2n, maxFrameLen: 1000, inflightWindow: 8, heartbeatIntervalMs: 10_000,
            heartbeatTimeoutMs: 30_000, maxQueueDepth: 100, maxQueueBytes: 1000n,
          }),
        );
        send(deliver(3n, 1)); // already received: dropped
        send(deliver(4n, 1)); // sent before, never received: delivered, flagged
      }
      if (f.op === Op.PUBLISH && n === 2) send(encodeReceipt(f.seq));
    });
    const c = await Client.connect({ host: 'fake', port: 1 }, { transport: fake.factory, reconnectDelayMs: 1 });
    const sub = await c.subscribe('q');
    const got: Delivery[] = [];
    for await (const d of sub) {
      got.push(d);
      if (got.length === 3) break;
    }
    const p1 = c.publish('q', 'q', 'a');
    const p2 = c.publish('q', 'q', 'b');
    const p3 = c.publish('q', 'q', 'c');
    assert.equal(await p1, 1n);
    const resumed = new Promise<void>((resolve) => c.on('resumed', () => resolve()));
    fake.kill(1);
    await resumed;
    assert.deepEqual(await Promise.all([p2, p3]), [2n, 3n]);
    const next = (await sub.next()).value!;
    got.push(next);
    assert.deepEqual(got.map((d) => d.seq), [1n, 2n, 3n, 4n]);
    assert.deepEqual(got.map((d) => d.redelivered), [false, false, false, true]);
    assert.equal(next.text(), 'm4');
    assert.equal(c.counters.duplicateDeliveriesDropped, 1);

    const hello = fake.log.find(([n, f]) => n === 2 && f.op === Op.HELLO)![1];
    assert.ok(hello.op === Op.HELLO && hello.resume);
    assert.equal(hello.resume.lastDeliverySeq, 3n);
    assert.equal(hello.resume.firstResendablePublishSeq, 2n);
    const resent = fake.log.filter(([n, f]) => n === 2 && f.op === Op.PUBLISH).map(([, f]) => (f.op === Op.PUBLISH ? f.seq : 0n));
    assert.deepEqual(resent, [3n]);
    await c.close();
    const acks = fake.log.filter(([n, f]) => n === 2 && f.op === Op.ACK);
    const lastAck = acks[acks.length - 1]![1];
    assert.ok(lastAck.op === Op.ACK && lastAck.upTo === 4n);
  });
});
