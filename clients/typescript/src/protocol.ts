// Weir wire protocol v1: pure encoders and an incremental decoder (protocol.md).
//
// Works on Uint8Array / DataView only, so it runs in browsers as well as in Node. Integers are
// big-endian; u64 fields are bigint. Names (str8) are raw bytes here; the client converts.

export const PROTOCOL_VERSION = 0x01;
export const HEADER_LEN = 6;
/** Longest str8 (protocol.md §Conventions). */
export const MAX_NAME_LEN = 255;
/** Longest auth secret (protocol.md §HELLO). */
export const MAX_AUTH_SECRET_LEN = 2048;
/** Most seqs one ACK can list (u16 count). */
export const MAX_ACK_LIST = 65535;
/** The server's limit on frames before HELLO is accepted; also ours before WELCOME. */
export const MAX_FRAME_LEN_BEFORE_HELLO = 4096;
/** missed = unknown in WELCOME LOST. */
export const MISSED_UNKNOWN = 0xffff_ffff_ffff_ffffn;

export const Op = {
  HELLO: 0x01,
  PUBLISH: 0x02,
  SUBSCRIBE: 0x03,
  UNSUBSCRIBE: 0x04,
  ACK: 0x05,
  PING: 0x06,
  PONG: 0x07,
  BYE: 0x08,
  STATS: 0x09,
  WELCOME: 0x81,
  DELIVER: 0x82,
  RECEIPT: 0x83,
  SUBSCRIBED: 0x84,
  UNSUBSCRIBED: 0x85,
  ERROR: 0x86,
  GOODBYE: 0x87,
  STATS_REPLY: 0x88,
} as const;
export type OpName = keyof typeof Op;
export type OpCode = (typeof Op)[OpName];
const OP_CODES = new Set<number>(Object.values(Op));

export const HelloFlags = { RESUME: 0x01, AUTH: 0x02 } as const;
export const PublishFlags = { CONFLATE: 0x01 } as const;
export const SubscribeFlags = { ALL_EVENTS: 0x01 } as const;
export const DeliverFlags = { REDELIVERED: 0x01 } as const;
export const ErrorFlags = { FATAL: 0x01 } as const;

export const AuthMethod = { PASSWORD: 0x01, TOKEN: 0x02, SIGNED_TOKEN: 0x03 } as const;
export type AuthMethodCode = (typeof AuthMethod)[keyof typeof AuthMethod];

export const WelcomeOutcome = { NEW: 0x00, RESUMED: 0x01, LOST: 0x02 } as const;

/** Error codes (protocol.md §Error codes). */
export const ErrorCode = {
  MALFORMED_FRAME: 0x0001,
  UNKNOWN_OP: 0x0002,
  FRAME_TOO_LARGE: 0x0003,
  FRAME_TOO_SHORT: 0x0004,
  UNSUPPORTED_VERSION: 0x0005,
  HELLO_REQUIRED: 0x0006,
  DUPLICATE_HELLO: 0x0007,
  INVALID_NAME: 0x0008,
  UNKNOWN_ACK_SEQ: 0x0009,
  PUBLISH_SEQ_GAP: 0x000a,
  HANDSHAKE_TIMEOUT: 0x000b,
  QUEUE_OVERFLOW: 0x000c,
  SLOW_CONSUMER: 0x000d,
  SERVER_SHUTDOWN: 0x000e,
  CLIENT_BYE: 0x000f,
  SERVER_BUSY: 0x0010,
  LIMIT_EXCEEDED: 0x0011,
  HEARTBEAT_TIMEOUT: 0x0012,
  SESSION_UNKNOWN: 0x0013,
  SESSION_EXPIRED: 0x0014,
  TAKEN_OVER: 0x0015,
  RESEND_GAP: 0x0016,
  SERVER_RESTARTED: 0x0017,
  RESUME_INVALID: 0x0018,
  PROXY_REJECTED: 0x0019,
  AUTH_REQUIRED: 0x001a,
  AUTH_FAILED: 0x001b,
  NOT_AUTHORIZED: 0x001c,
} as const;
export type ErrorCodeName = keyof typeof ErrorCode;

const CODE_NAMES = new Map<number, ErrorCodeName>(
  (Object.entries(ErrorCode) as [ErrorCodeName, number][]).map(([name, code]) => [code, name]),
);

/** The name of an error code, or `UNKNOWN(n)` for a code this client does not know. */
export function errorCodeName(code: number): string {
  return CODE_NAMES.get(code) ?? `UNKNOWN(${code})`;
}

// ---------------------------------------------------------------------------------------------
// Frames

export type Bytes = Uint8Array;

export interface ResumeBlock {
  sessionId: bigint;
  resumeToken: Bytes; // 16 bytes
  lastDeliverySeq: bigint;
  firstResendablePublishSeq: bigint;
}

export interface AuthBlock {
  method: number;
  user: Bytes;
  secret: Bytes;
}

export interface HelloFrame {
  op: typeof Op.HELLO;
  inflightWindow: number;
  clientName: Bytes;
  resume?: ResumeBlock | undefined;
  auth?: AuthBlock | undefined;
}
export interface PublishFrame {
  op: typeof Op.PUBLISH;
  seq: bigint;
  queue: Bytes;
  event: Bytes;
  /** Present exactly when CONFLATE is set. */
  key?: Bytes | undefined;
  payload: Bytes;
}
/** SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBED, UNSUBSCRIBED. `event` null = ALL_EVENTS. */
export interface SubscriptionFrame {
  op: typeof Op.SUBSCRIBE | typeof Op.UNSUBSCRIBE | typeof Op.SUBSCRIBED | typeof Op.UNSUBSCRIBED;
  queue: Bytes;
  event: Bytes | null;
}
export interface AckFrame {
  op: typeof Op.ACK;
  upTo: bigint;
  seqs: bigint[];
}
export interface PingFrame {
  op: typeof Op.PING | typeof Op.PONG;
  nonce: bigint;
}
export interface EmptyFrame {
  op: typeof Op.BYE | typeof Op.STATS;
}
export interface WelcomeFrame {
  op: typeof Op.WELCOME;
  outcome: number;
  lostReason: number;
  missed: bigint;
  sessionId: bigint;
  resumeToken: Bytes;
  lastPublishSeq: bigint;
  maxFrameLen: number;
  inflightWindow: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  maxQueueDepth: number;
  maxQueueBytes: bigint;
}
export interface DeliverFrame {
  op: typeof Op.DELIVER;
  seq: bigint;
  messageId: bigint;
  flags: number;
  queue: Bytes;
  event: Bytes;
  payload: Bytes;
}
export interface ReceiptFrame {
  op: typeof Op.RECEIPT;
  seq: bigint;
}
export interface ErrorFrame {
  op: typeof Op.ERROR;
  code: number;
  flags: number;
  refSeq: bigint;
  text: Bytes;
}
export interface GoodbyeFrame {
  op: typeof Op.GOODBYE;
  code: number;
  text: Bytes;
}
export interface StatsReplyFrame {
  op: typeof Op.STATS_REPLY;
  json: Bytes;
}

export type Frame =
  | HelloFrame
  | PublishFrame
  | SubscriptionFrame
  | AckFrame
  | PingFrame
  | EmptyFrame
  | WelcomeFrame
  | DeliverFrame
  | ReceiptFrame
  | ErrorFrame
  | GoodbyeFrame
  | StatsReplyFrame;

// ---------------------------------------------------------------------------------------------
// Errors of the codec

/** A frame that cannot be encoded or decoded. `code` is the ErrorCode the peer would report. */
export class CodecError extends Error {
  readonly code: number;
  readonly codeName: string;
  constructor(code: number, message: string) {
    super(`${errorCodeName(code)}: ${message}`);
    this.name = 'CodecError';
    this.code = code;
    this.codeName = errorCodeName(code);
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding

const utf8 = new TextEncoder();

/** A str8 or payload argument: a string is encoded as UTF-8. */
export function toBytes(value: string | Bytes): Bytes {
  return typeof value === 'string' ? utf8.encode(value) : value;
}

class Writer {
  readonly buf: Uint8Array;
  readonly view: DataView;
  pos: number;
  constructor(bodyLen: number, op: number) {
    this.buf = new Uint8Array(HEADER_LEN + bodyLen);
    this.view = new DataView(this.buf.buffer);
    this.view.setUint32(0, bodyLen + 2);
    this.buf[4] = PROTOCOL_VERSION;
    this.buf[5] = op;
    this.pos = HEADER_LEN;
  }
  u8(v: number): void {
    this.view.setUint8(this.pos, v);
    this.pos += 1;
  }
  u16(v: number): void {
    this.view.setUint16(this.pos, v);
    this.pos += 2;
  }
  u32(v: number): void {
    this.view.setUint32(this.pos, v);
    this.pos += 4;
  }
  u64(v: bigint): void {
    this.view.setBigUint64(this.pos, v);
    this.pos += 8;
  }
  bytes(b: Bytes): void {
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  str8(b: Bytes): void {
    this.u8(b.length);
    this.bytes(b);
  }
  done(): Uint8Array {
    if (this.pos !== this.buf.length) throw new Error('internal: frame size mismatch');
    return this.buf;
  }
}

function checkName(b: Bytes, what: string): void {
  if (b.length > MAX_NAME_LEN) {
    throw new CodecError(ErrorCode.LIMIT_EXCEEDED, `${what} is ${b.length} bytes, at most ${MAX_NAME_LEN}`);
  }
}

function checkU64(v: bigint, what: string): void {
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new RangeError(`${what} out of u64 range`);
}

export function encodeHello(f: Omit<HelloFrame, 'op'>): Uint8Array {
  checkName(f.clientName, 'client name');
  let flags = 0;
  let len = 6 + f.clientName.length;
  if (f.resume) {
    flags |= HelloFlags.RESUME;
    if (f.resume.resumeToken.length !== 16) throw new RangeError('resume token must be 16 bytes');
    len += 40;
  }
  if (f.auth) {
    flags |= HelloFlags.AUTH;
    checkName(f.auth.user, 'user name');
    if (f.auth.secret.length > MAX_AUTH_SECRET_LEN) {
      throw new CodecError(ErrorCode.LIMIT_EXCEEDED, `secret longer than ${MAX_AUTH_SECRET_LEN} bytes`);
    }
    len += 4 + f.auth.user.length + f.auth.secret.length;
  }
  const w = new Writer(len, Op.HELLO);
  w.u8(flags);
  w.u32(f.inflightWindow >>> 0);
  w.str8(f.clientName);
  if (f.resume) {
    w.u64(f.resume.sessionId);
    w.bytes(f.resume.resumeToken);
    w.u64(f.resume.lastDeliverySeq);
    w.u64(f.resume.firstResendablePublishSeq);
  }
  if (f.auth) {
    w.u8(f.auth.method);
    w.str8(f.auth.user);
    w.u16(f.auth.secret.length);
    w.bytes(f.auth.secret);
  }
  return w.done();
}

export function encodePublish(f: Omit<PublishFrame, 'op'>): Uint8Array {
  checkName(f.queue, 'queue name');
  checkName(f.event, 'event name');
  checkU64(f.seq, 'seq');
  const hasKey = f.key !== undefined;
  if (f.key) checkName(f.key, 'conflation key');
  const len = 11 + f.queue.length + f.event.length + (f.key ? 1 + f.key.length : 0) + f.payload.length;
  const w = new Writer(len, Op.PUBLISH);
  w.u64(f.seq);
  w.u8(hasKey ? PublishFlags.CONFLATE : 0);
  w.str8(f.queue);
  w.str8(f.event);
  if (f.key) w.str8(f.key);
  w.bytes(f.payload);
  return w.done();
}

/** SUBSCRIBE, UNSUBSCRIBE (and the server's SUBSCRIBED, UNSUBSCRIBED). event null = ALL_EVENTS. */
export function encodeSubscription(
  op: SubscriptionFrame['op'],
  queue: Bytes,
  event: Bytes | null,
): Uint8Array {
  checkName(queue, 'queue name');
  const e = event ?? new Uint8Array(0);
  checkName(e, 'event name');
  const w = new Writer(3 + queue.length + e.length, op);
  w.u8(event === null ? SubscribeFlags.ALL_EVENTS : 0);
  w.str8(queue);
  w.str8(e);
  return w.done();
}

export function encodeSubscribe(queue: Bytes, event: Bytes | null): Uint8Array {
  return encodeSubscription(Op.SUBSCRIBE, queue, event);
}

export function encodeUnsubscribe(queue: Bytes, event: Bytes | null): Uint8Array {
  return encodeSubscription(Op.UNSUBSCRIBE, queue, event);
}

export function encodeAck(upTo: bigint, seqs: readonly bigint[] = []): Uint8Array {
  if (seqs.length > MAX_ACK_LIST) throw new RangeError(`an ACK lists at most ${MAX_ACK_LIST} seqs`);
  checkU64(upTo, 'up_to');
  const w = new Writer(10 + 8 * seqs.length, Op.ACK);
  w.u64(upTo);
  w.u16(seqs.length);
  for (const s of seqs) {
    if (s === 0n) throw new RangeError('a listed ACK seq is never 0');
    w.u64(s);
  }
  return w.done();
}

export function encodePing(nonce: bigint): Uint8Array {
  const w = new Writer(8, Op.PING);
  w.u64(nonce);
  return w.done();
}

export function encodePong(nonce: bigint): Uint8Array {
  const w = new Writer(8, Op.PONG);
  w.u64(nonce);
  return w.done();
}

export function encodeBye(): Uint8Array {
  return new Writer(0, Op.BYE).done();
}

export function encodeStats(): Uint8Array {
  return new Writer(0, Op.STATS).done();
}

// Server-to-client encoders: for tests, fakes and bridges.

export function encodeWelcome(f: Omit<WelcomeFrame, 'op'>): Uint8Array {
  if (f.resumeToken.length !== 16) throw new RangeError('resume token must be 16 bytes');
  const w = new Writer(71, Op.WELCOME);
  w.u8(f.outcome);
  w.u16(f.lostReason);
  w.u64(f.missed);
  w.u64(f.sessionId);
  w.bytes(f.resumeToken);
  w.u64(f.lastPublishSeq);
  w.u32(f.maxFrameLen);
  w.u32(f.inflightWindow);
  w.u32(f.heartbeatIntervalMs);
  w.u32(f.heartbeatTimeoutMs);
  w.u32(f.maxQueueDepth);
  w.u64(f.maxQueueBytes);
  return w.done();
}

export function encodeDeliver(f: Omit<DeliverFrame, 'op'>): Uint8Array {
  checkName(f.queue, 'queue name');
  checkName(f.event, 'event name');
  const w = new Writer(19 + f.queue.length + f.event.length + f.payload.length, Op.DELIVER);
  w.u64(f.seq);
  w.u64(f.messageId);
  w.u8(f.flags);
  w.str8(f.queue);
  w.str8(f.event);
  w.bytes(f.payload);
  return w.done();
}

export function encodeReceipt(seq: bigint): Uint8Array {
  const w = new Writer(8, Op.RECEIPT);
  w.u64(seq);
  return w.done();
}

export function encodeError(code: number, flags: number, refSeq: bigint, text: Bytes): Uint8Array {
  const w = new Writer(11 + text.length, Op.ERROR);
  w.u16(code);
  w.u8(flags);
  w.u64(refSeq);
  w.bytes(text);
  return w.done();
}

export function encodeGoodbye(code: number, text: Bytes): Uint8Array {
  const w = new Writer(2 + text.length, Op.GOODBYE);
  w.u16(code);
  w.bytes(text);
  return w.done();
}

export function encodeStatsReply(json: Bytes): Uint8Array {
  const w = new Writer(json.length, Op.STATS_REPLY);
  w.bytes(json);
  return w.done();
}

/** Encodes any frame (the inverse of decodeBody). */
export function encodeFrame(f: Frame): Uint8Array {
  switch (f.op) {
    case Op.HELLO:
      return encodeHello(f);
    case Op.PUBLISH:
      return encodePublish(f);
    case Op.SUBSCRIBE:
    case Op.UNSUBSCRIBE:
    case Op.SUBSCRIBED:
    case Op.UNSUBSCRIBED:
      return encodeSubscription(f.op, f.queue, f.event);
    case Op.ACK:
      return encodeAck(f.upTo, f.seqs);
    case Op.PING:
      return encodePing(f.nonce);
    case Op.PONG:
      return encodePong(f.nonce);
    case Op.BYE:
      return encodeBye();
    case Op.STATS:
      return encodeStats();
    case Op.WELCOME:
      return encodeWelcome(f);
    case Op.DELIVER:
      return encodeDeliver(f);
    case Op.RECEIPT:
      return encodeReceipt(f.seq);
    case Op.ERROR:
      return encodeError(f.code, f.flags, f.refSeq, f.text);
    case Op.GOODBYE:
      return encodeGoodbye(f.code, f.text);
    case Op.STATS_REPLY:
      return encodeStatsReply(f.json);
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding

class Reader {
  readonly view: DataView;
  pos = 0;
  constructor(readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  need(n: number, what: string): void {
    if (this.pos + n > this.buf.length) {
      throw new CodecError(ErrorCode.MALFORMED_FRAME, `${what} runs past the end of the frame`);
    }
  }
  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.pos++);
  }
  u16(what: string): number {
    this.need(2, what);
    const v = this.view.getUint16(this.pos);
    this.pos += 2;
    return v;
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }
  u64(what: string): bigint {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos);
    this.pos += 8;
    return v;
  }
  bytes(n: number, what: string): Uint8Array {
    this.need(n, what);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  str8(what: string): Uint8Array {
    const n = this.u8(what);
    return this.bytes(n, what);
  }
  /** Rest of frame, copied so that it does not pin the read buffer. */
  rest(): Uint8Array {
    const b = this.buf.slice(this.pos);
    this.pos = this.buf.length;
    return b;
  }
  end(op: string): void {
    if (this.pos !== this.buf.length) {
      throw new CodecError(ErrorCode.MALFORMED_FRAME, `${this.buf.length - this.pos} bytes after the last field of ${op}`);
    }
  }
}

function undefinedBits(flags: number, defined: number, op: string): void {
  if ((flags & ~defined) !== 0) {
    throw new CodecError(ErrorCode.MALFORMED_FRAME, `${op} flags 0x${flags.toString(16)} set undefined bits`);
  }
}

/** Parses the body of a frame whose header (version, op) was already checked. */
export function decodeBody(op: number, body: Uint8Array): Frame {
  const r = new Reader(body);
  switch (op) {
    case Op.HELLO: {
      const flags = r.u8('flags');
      undefinedBits(flags, HelloFlags.RESUME | HelloFlags.AUTH, 'HELLO');
      const inflightWindow = r.u32('inflight_window');
      const clientName = r.str8('client_name');
      let resume: ResumeBlock | undefined;
      let auth: AuthBlock | undefined;
      if (flags & HelloFlags.RESUME) {
        resume = {
          sessionId: r.u64('session_id'),
          resumeToken: r.bytes(16, 'resume_token'),
          lastDeliverySeq: r.u64('last_delivery_seq'),
          firstResendablePublishSeq: r.u64('first_resendable_publish_seq'),
        };
      }
      if (flags & HelloFlags.AUTH) {
        const method = r.u8('method');
        if (method < AuthMethod.PASSWORD || method > AuthMethod.SIGNED_TOKEN) {
          throw new CodecError(ErrorCode.MALFORMED_FRAME, `unknown auth method ${method}`);
        }
        const user = r.str8('user');
        const secretLen = r.u16('secret_len');
        if (secretLen > MAX_AUTH_SECRET_LEN) {
          throw new CodecError(ErrorCode.MALFORMED_FRAME, `secret_len ${secretLen} > ${MAX_AUTH_SECRET_LEN}`);
        }
        auth = { method, user, secret: r.bytes(secretLen, 'secret') };
      }
      r.end('HELLO');
      return { op: Op.HELLO, inflightWindow, clientName, resume, auth };
    }
    case Op.PUBLISH: {
      const seq = r.u64('seq');
      const flags = r.u8('flags');
      undefinedBits(flags, PublishFlags.CONFLATE, 'PUBLISH');
      const queue = r.str8('queue');
      const event = r.str8('event');
      const key = flags & PublishFlags.CONFLATE ? r.str8('key') : undefined;
      return { op: Op.PUBLISH, seq, queue, event, key, payload: r.rest() };
    }
    case Op.SUBSCRIBE:
    case Op.UNSUBSCRIBE:
    case Op.SUBSCRIBED:
    case Op.UNSUBSCRIBED: {
      const flags = r.u8('flags');
      undefinedBits(flags, SubscribeFlags.ALL_EVENTS, 'SUBSCRIBE');
      const queue = r.str8('queue');
      const event = r.str8('event');
      r.end('SUBSCRIBE');
      if (flags & SubscribeFlags.ALL_EVENTS) {
        if (event.length !== 0) {
          throw new CodecError(ErrorCode.MALFORMED_FRAME, 'an event name together with ALL_EVENTS');
        }
        return { op, queue, event: null };
      }
      return { op, queue, event };
    }
    case Op.ACK: {
      const upTo = r.u64('up_to');
      const count = r.u16('count');
      if (body.length !== 10 + 8 * count) {
        throw new CodecError(ErrorCode.MALFORMED_FRAME, `ACK count ${count} disagrees with its ${body.length}-byte body`);
      }
      const seqs: bigint[] = [];
      for (let i = 0; i < count; i++) seqs.push(r.u64('seq'));
      return { op: Op.ACK, upTo, seqs };
    }
    case Op.PING:
    case Op.PONG: {
      const nonce = r.u64('nonce');
      r.end(op === Op.PING ? 'PING' : 'PONG');
      return { op, nonce };
    }
    case Op.BYE:
    case Op.STATS:
      r.end(op === Op.BYE ? 'BYE' : 'STATS');
      return { op };
    case Op.WELCOME: {
      const f: WelcomeFrame = {
        op: Op.WELCOME,
        outcome: r.u8('outcome'),
        lostReason: r.u16('lost_reason'),
        missed: r.u64('missed'),
        sessionId: r.u64('session_id'),
        resumeToken: r.bytes(16, 'resume_token').slice(),
        lastPublishSeq: r.u64('last_publish_seq'),
        maxFrameLen: r.u32('max_frame_len'),
        inflightWindow: r.u32('inflight_window'),
        heartbeatIntervalMs: r.u32('heartbeat_interval_ms'),
        heartbeatTimeoutMs: r.u32('heartbeat_timeout_ms'),
        maxQueueDepth: r.u32('max_queue_depth'),
        maxQueueBytes: r.u64('max_queue_bytes'),
      };
      r.end('WELCOME');
      return f;
    }
    case Op.DELIVER: {
      const seq = r.u64('seq');
      const messageId = r.u64('message_id');
      const flags = r.u8('flags'); // unknown bits kept as sent (protocol.md §Flags)
      const queue = r.str8('queue');
      const event = r.str8('event');
      return { op: Op.DELIVER, seq, messageId, flags, queue, event, payload: r.rest() };
    }
    case Op.RECEIPT: {
      const seq = r.u64('seq');
      r.end('RECEIPT');
      return { op: Op.RECEIPT, seq };
    }
    case Op.ERROR: {
      const code = r.u16('code');
      const flags = r.u8('flags');
      const refSeq = r.u64('ref_seq');
      return { op: Op.ERROR, code, flags, refSeq, text: r.rest() };
    }
    case Op.GOODBYE: {
      const code = r.u16('code');
      return { op: Op.GOODBYE, code, text: r.rest() };
    }
    case Op.STATS_REPLY:
      return { op: Op.STATS_REPLY, json: r.rest() };
    default:
      throw new CodecError(ErrorCode.UNKNOWN_OP, `op 0x${op.toString(16)}`);
  }
}

/**
 * Incremental decoder: push bytes as they arrive, then call next() until it returns null
 * ("need more"). Frames may be split at any byte and several may come in one push.
 *
 * The header is checked before the body is waited for (protocol.md §Framing): a length below 2
 * or above `maxFrameLen` is rejected as soon as the 4 length bytes are there, the version as
 * soon as byte 4 is, the op as soon as byte 5 is. After an error the stream cannot be framed
 * any more: every later call throws the same error.
 */
export class FrameDecoder {
  /** Largest `length` field accepted (bytes after the prefix). */
  maxFrameLen: number;
  private chunks: Uint8Array[] = [];
  /** Bytes held in `chunks`, the first of which starts at `offset`. */
  private held = 0;
  private offset = 0;
  private failed: CodecError | null = null;

  constructor(maxFrameLen: number = MAX_FRAME_LEN_BEFORE_HELLO) {
    this.maxFrameLen = maxFrameLen;
  }

  /** Bytes received and not yet returned as frames. */
  get buffered(): number {
    return this.held;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.held += chunk.length;
  }

  /** The next complete frame, or null if more bytes are needed. Throws CodecError. */
  next(): Frame | null {
    if (this.failed) throw this.failed;
    try {
      return this.take();
    } catch (e) {
      if (e instanceof CodecError) this.failed = e;
      throw e;
    }
  }

  /** Byte i of the held data, without merging chunks. */
  private peek(i: number): number {
    let idx = this.offset + i;
    for (const c of this.chunks) {
      if (idx < c.length) return c[idx]!;
      idx -= c.length;
    }
    throw new Error('internal: peek past held bytes');
  }

  private take(): Frame | null {
    if (this.held < 4) return null;
    const length =
      ((this.peek(0) << 24) >>> 0) + (this.peek(1) << 16) + (this.peek(2) << 8) + this.peek(3);
    if (length < 2) throw new CodecError(ErrorCode.FRAME_TOO_SHORT, `length ${length} < 2`);
    if (length > this.maxFrameLen) {
      throw new CodecError(ErrorCode.FRAME_TOO_LARGE, `length ${length} > ${this.maxFrameLen}`);
    }
    if (this.held < 5) return null;
    const version = this.peek(4);
    if (version !== PROTOCOL_VERSION) {
      throw new CodecError(ErrorCode.UNSUPPORTED_VERSION, `version ${version}`);
    }
    if (this.held < 6) return null;
    const op = this.peek(5);
    if (!OP_CODES.has(op)) throw new CodecError(ErrorCode.UNKNOWN_OP, `op 0x${op.toString(16)}`);
    const total = 4 + length;
    if (this.held < total) return null;
    const frame = this.consume(total);
    return decodeBody(op, frame.subarray(HEADER_LEN));
  }

  /** Removes `n` held bytes and returns them contiguous (a view when one chunk holds them). */
  private consume(n: number): Uint8Array {
    const first = this.chunks[0]!;
    if (first.length - this.offset >= n) {
      const out = first.subarray(this.offset, this.offset + n);
      this.offset += n;
      this.held -= n;
      if (this.offset === first.length) {
        this.chunks.shift();
        this.offset = 0;
      }
      return out;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const avail = c.length - this.offset;
      const want = Math.min(avail, n - filled);
      out.set(c.subarray(this.offset, this.offset + want), filled);
      filled += want;
      this.offset += want;
      if (this.offset === c.length) {
        this.chunks.shift();
        this.offset = 0;
      }
    }
    this.held -= n;
    return out;
  }
}

/** Decodes exactly one complete frame (e.g. one WebSocket message); throws on extra bytes. */
export function decodeFrame(bytes: Uint8Array, maxFrameLen: number = 0xffff_ffff): Frame {
  const d = new FrameDecoder(maxFrameLen);
  d.push(bytes);
  const f = d.next();
  if (!f) throw new CodecError(ErrorCode.MALFORMED_FRAME, 'incomplete frame');
  if (d.buffered !== 0) throw new CodecError(ErrorCode.MALFORMED_FRAME, 'bytes after the frame');
  return f;
}
