// The protocol core against the byte blocks of protocol.md §Worked example, and the decoder's
// framing rules (protocol.md §Framing).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  CodecError,
  ErrorCode,
  FrameDecoder,
  MISSED_UNKNOWN,
  Op,
  decodeFrame,
  encodeAck,
  encodeBye,
  encodeDeliver,
  encodeError,
  encodeFrame,
  encodeGoodbye,
  encodeHello,
  encodePing,
  encodePong,
  encodePublish,
  encodeReceipt,
  encodeStats,
  encodeSubscribe,
  encodeSubscription,
  encodeWelcome,
  type Frame,
} from '../src/protocol.js';
import { parseJsonWithBigInts } from '../src/index.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const b = (s: string): Uint8Array => new TextEncoder().encode(s);
const token = hex('3f a2 91 0c 5e 77 d4 18 b6 20 e9 4d 81 c3 6a f5');

const limits = {
  maxFrameLen: 1_048_576,
  heartbeatIntervalMs: 10_000,
  heartbeatTimeoutMs: 30_000,
  maxQueueDepth: 100_000,
  maxQueueBytes: 67_108_864n,
};

// [name, bytes from protocol.md, encoder output]
const examples: [string, string, () => Uint8Array][] = [
  ['HELLO', '00 00 00 0c 01 01 00 00 00 00 00 04 64 65 6d 6f', () => encodeHello({ inflightWindow: 0, clientName: b('demo') })],
  [
    'WELCOME NEW',
    `00 00 00 49 01 81 00 00 00 00 00 00 00 00 00 00 00 5a 3c 91 e2 00 00 00 01 3f a2 91 0c 5e 77 d4
     18 b6 20 e9 4d 81 c3 6a f5 00 00 00 00 00 00 00 00 00 10 00 00 00 00 04 00 00 00 27 10 00 00 75
     30 00 01 86 a0 00 00 00 00 04 00 00 00`,
    () =>
      encodeWelcome({
        outcome: 0, lostReason: 0, missed: 0n, sessionId: 0x5a3c91e200000001n, resumeToken: token,
        lastPublishSeq: 0n, inflightWindow: 1024, ...limits,
      }),
  ],
  ['SUBSCRIBE', '00 00 00 0d 01 03 00 02 64 62 06 75 70 64 61 74 65', () => encodeSubscribe(b('db'), b('update'))],
  ['SUBSCRIBED', '00 00 00 0d 01 84 00 02 64 62 06 75 70 64 61 74 65', () => encodeSubscription(Op.SUBSCRIBED, b('db'), b('update'))],
  [
    'PUBLISH',
    '00 00 00 17 01 02 00 00 00 00 00 00 00 01 00 02 64 62 06 75 70 64 61 74 65 68 69',
    () => encodePublish({ seq: 1n, queue: b('db'), event: b('update'), payload: b('hi') }),
  ],
  ['RECEIPT', '00 00 00 0a 01 83 00 00 00 00 00 00 00 01', () => encodeReceipt(1n)],
  [
    'DELIVER',
    '00 00 00 1f 01 82 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 01 00 02 64 62 06 75 70 64 61 74 65 68 69',
    () => encodeDeliver({ seq: 1n, messageId: 1n, flags: 0, queue: b('db'), event: b('update'), payload: b('hi') }),
  ],
  ['ACK', '00 00 00 0c 01 05 00 00 00 00 00 00 00 01 00 00', () => encodeAck(1n)],
  ['BYE', '00 00 00 02 01 08', () => encodeBye()],
  ['GOODBYE', '00 00 00 07 01 87 00 0f 62 79 65', () => encodeGoodbye(ErrorCode.CLIENT_BYE, b('bye'))],
  [
    'HELLO RESUME',
    `00 00 00 34 01 01 01 00 00 01 00 04 64 65 6d 6f 5a 3c 91 e2 00 00 00 07 3f a2 91 0c 5e 77 d4 18
     b6 20 e9 4d 81 c3 6a f5 00 00 00 00 00 00 00 29 00 00 00 00 00 00 00 0c`,
    () =>
      encodeHello({
        inflightWindow: 256, clientName: b('demo'),
        resume: { sessionId: 0x5a3c91e200000007n, resumeToken: token, lastDeliverySeq: 41n, firstResendablePublishSeq: 12n },
      }),
  ],
  [
    'DELIVER REDELIVERED',
    '00 00 00 1f 01 82 00 00 00 00 00 00 00 2a 00 00 00 00 00 00 04 d2 01 02 64 62 06 75 70 64 61 74 65 68 69',
    () => encodeDeliver({ seq: 42n, messageId: 1234n, flags: 1, queue: b('db'), event: b('update'), payload: b('hi') }),
  ],
  [
    'WELCOME LOST',
    `00 00 00 49 01 81 02 00 14 00 00 00 00 00 00 00 03 5a 3c 91 e2 00 00 00 09 9b 07 4e d1 22 6c f0
     85 3a 5d c8 71 0e b4 69 2f 00 00 00 00 00 00 00 00 00 10 00 00 00 00 01 00 00 00 27 10 00 00 75
     30 00 01 86 a0 00 00 00 00 04 00 00 00`,
    () =>
      encodeWelcome({
        outcome: 2, lostReason: ErrorCode.SESSION_EXPIRED, missed: 3n, sessionId: 0x5a3c91e200000009n,
        resumeToken: hex('9b 07 4e d1 22 6c f0 85 3a 5d c8 71 0e b4 69 2f'), lastPublishSeq: 0n, inflightWindow: 256, ...limits,
      }),
  ],
  ['SUBSCRIBE ALL_EVENTS', '00 00 00 07 01 03 01 02 64 62 00', () => encodeSubscribe(b('db'), null)],
  [
    'PUBLISH CONFLATE',
    '00 00 00 1a 01 02 00 00 00 00 00 00 00 02 01 02 70 78 00 06 45 55 52 55 53 44 31 2e 30 38',
    () => encodePublish({ seq: 2n, queue: b('px'), event: b(''), key: b('EURUSD'), payload: b('1.08') }),
  ],
  [
    'ACK listed',
    '00 00 00 1c 01 05 00 00 00 00 00 00 00 03 00 02 00 00 00 00 00 00 00 05 00 00 00 00 00 00 00 07',
    () => encodeAck(3n, [5n, 7n]),
  ],
  ['PING', '00 00 00 0a 01 06 11 22 33 44 55 66 77 88', () => encodePing(0x1122334455667788n)],
  ['PONG', '00 00 00 0a 01 07 11 22 33 44 55 66 77 88', () => encodePong(0x1122334455667788n)],
  ['STATS', '00 00 00 02 01 09', () => encodeStats()],
  [
    'ERROR',
    '00 00 00 17 01 86 00 0a 01 00 00 00 00 00 00 00 05 65 78 70 65 63 74 65 64 20 33',
    () => encodeError(ErrorCode.PUBLISH_SEQ_GAP, 1, 5n, b('expected 3')),
  ],
  [
    'HELLO AUTH',
    '00 00 00 1b 01 01 02 00 00 00 00 04 64 65 6d 6f 01 05 61 6c 69 63 65 00 06 73 33 63 72 65 74',
    () => encodeHello({ inflightWindow: 0, clientName: b('demo'), auth: { method: 1, user: b('alice'), secret: b('s3cret') } }),
  ],
  [
    'ERROR NOT_AUTHORIZED',
    '00 00 00 1d 01 86 00 1c 00 00 00 00 00 00 00 00 02 6e 6f 20 70 75 62 6c 69 73 68 20 74 6f 20 70 78',
    () => encodeError(ErrorCode.NOT_AUTHORIZED, 0, 2n, b('no publish to px')),
  ],
];

describe('protocol.md worked example', () => {
  for (const [name, bytes, encode] of examples) {
    it(`${name}: encoder output, decode and re-encode`, () => {
      const expected = hex(bytes);
      assert.deepEqual(encode(), expected);
      const frame = decodeFrame(expected);
      assert.deepEqual(encodeFrame(frame), expected);
    });
  }

  it('decoded fields of WELCOME LOST and DELIVER', () => {
    const w = decodeFrame(examples.find((e) => e[0] === 'WELCOME LOST')![2]());
    assert.equal(w.op, Op.WELCOME);
    if (w.op !== Op.WELCOME) return;
    assert.equal(w.outcome, 2);
    assert.equal(w.lostReason, ErrorCode.SESSION_EXPIRED);
    assert.equal(w.missed, 3n);
    assert.equal(w.sessionId, 0x5a3c91e200000009n);
    assert.equal(w.inflightWindow, 256);
    const d = decodeFrame(examples.find((e) => e[0] === 'DELIVER REDELIVERED')![2]());
    assert.deepEqual(d, { op: Op.DELIVER, seq: 42n, messageId: 1234n, flags: 1, queue: b('db'), event: b('update'), payload: b('hi') });
    assert.equal(MISSED_UNKNOWN, 0xffffffffffffffffn);
  });
});

describe('incremental decoder (protocol.md §Framing)', () => {
  const stream = (): Uint8Array => {
    const parts = examples.map((e) => hex(e[1]));
    return Uint8Array.from(parts.flatMap((p) => [...p]));
  };

  it('frames split at every byte: partial input is "need more", never an error', () => {
    const d = new FrameDecoder(1 << 20);
    const out: Frame[] = [];
    for (const byte of stream()) {
      d.push(Uint8Array.of(byte));
      for (let f = d.next(); f; f = d.next()) out.push(f);
    }
    assert.equal(out.length, examples.length);
    assert.equal(d.buffered, 0);
    assert.deepEqual(out.map((f) => encodeFrame(f)), examples.map((e) => hex(e[1])));
  });

  it('many frames in one push, and random splits', () => {
    const all = stream();
    for (let trial = 0; trial < 50; trial++) {
      const d = new FrameDecoder(1 << 20);
      let n = 0;
      let i = 0;
      while (i < all.length) {
        const len = 1 + Math.floor(Math.random() * 100);
        d.push(all.subarray(i, i + len));
        i += len;
        while (d.next()) n++;
      }
      assert.equal(n, examples.length);
    }
  });

  const failsWith = (bytes: Uint8Array, code: number, max = 4096): void => {
    const d = new FrameDecoder(max);
    d.push(bytes);
    assert.throws(
      () => d.next(),
      (e: unknown) => e instanceof CodecError && e.code === code,
    );
    // A stream that cannot be framed stays failed.
    assert.throws(() => d.next(), CodecError);
  };

  it('an over-long length is rejected from the 4 header bytes alone', () => {
    failsWith(hex('00 10 00 00'), ErrorCode.FRAME_TOO_LARGE);
    failsWith(Buffer.from('PROX'), ErrorCode.FRAME_TOO_LARGE);
    const d = new FrameDecoder(4096);
    d.push(hex('00 00 10'));
    assert.equal(d.next(), null);
    d.push(hex('01'));
    assert.throws(() => d.next(), /FRAME_TOO_LARGE/);
    // At the limit: waits for the body.
    const ok = new FrameDecoder(4096);
    ok.push(hex('00 00 10 00 01 88'));
    assert.equal(ok.next(), null);
  });

  it('header checks in order: length < 2, version, op', () => {
    failsWith(hex('00 00 00 00'), ErrorCode.FRAME_TOO_SHORT);
    failsWith(hex('00 00 00 01'), ErrorCode.FRAME_TOO_SHORT);
    failsWith(hex('00 00 00 02 02'), ErrorCode.UNSUPPORTED_VERSION);
    failsWith(hex('00 00 00 02 01 0a'), ErrorCode.UNKNOWN_OP);
    failsWith(hex('00 00 00 02 01 80'), ErrorCode.UNKNOWN_OP);
  });

  it('body mismatches are MALFORMED_FRAME', () => {
    failsWith(hex('00 00 00 03 01 08 00'), ErrorCode.MALFORMED_FRAME); // BYE with a body byte
    failsWith(hex('00 00 00 08 01 03 01 02 64 62 01 78'), ErrorCode.MALFORMED_FRAME); // event with ALL_EVENTS
    failsWith(hex('00 00 00 07 01 03 02 02 64 62 00'), ErrorCode.MALFORMED_FRAME); // undefined flag bit
    failsWith(hex('00 00 00 0c 01 05 00 00 00 00 00 00 00 01 00 01'), ErrorCode.MALFORMED_FRAME); // ACK count 1, no seq
    failsWith(hex('00 00 00 09 01 83 00 00 00 00 00 00 01'), ErrorCode.MALFORMED_FRAME); // short RECEIPT
    failsWith(hex('00 00 00 06 01 82 00 00 00 00'), ErrorCode.MALFORMED_FRAME); // DELIVER past end
    failsWith(hex('00 00 00 0a 01 01 04 00 00 00 00 04 64 65 6d 6f'), ErrorCode.MALFORMED_FRAME); // HELLO flag 0x04
  });

  it('the encoder refuses names over 255 bytes and lists over 65,535 seqs', () => {
    assert.throws(() => encodeSubscribe(new Uint8Array(256), null), /LIMIT_EXCEEDED/);
    assert.throws(() => encodeAck(0n, new Array<bigint>(65_536).fill(1n)), RangeError);
    assert.throws(() => encodeAck(0n, [0n]), RangeError);
  });
});

describe('STATS_REPLY JSON', () => {
  it('keeps u64 session ids exact', () => {
    const v = parseJsonWithBigInts('{"a":[6501852563513851905,12,"x\\"9007199254740993"],"b":-1.5e3}') as {
      a: unknown[];
      b: number;
    };
    assert.deepEqual(v.a, [6501852563513851905n, 12, 'x"9007199254740993']);
    assert.equal(v.b, -1500);
  });
});
