// The Weir client: one session that outlives its connections (protocol.md §Reconnection).

import {
  AuthMethod,
  CodecError,
  DeliverFlags,
  ErrorCode,
  ErrorFlags,
  FrameDecoder,
  MAX_FRAME_LEN_BEFORE_HELLO,
  MISSED_UNKNOWN,
  Op,
  WelcomeOutcome,
  encodeAck,
  encodeBye,
  encodeHello,
  encodePing,
  encodePong,
  encodePublish,
  encodeStats,
  encodeSubscribe,
  encodeUnsubscribe,
  errorCodeName,
  toBytes,
  type AuthBlock,
  type DeliverFrame,
  type Frame,
  type WelcomeFrame,
} from './protocol.js';
import {
  ClosedError,
  ConnectionError,
  GoodbyeError,
  ProtocolError,
  ServerError,
  TimeoutError,
  WeirError,
} from './errors.js';
import type { Endpoint, TlsOptions, Transport, TransportFactory, TransportHandlers } from './transport.js';
import type { WebSocketConstructor } from './websocket.js';

export interface ConnectOptions {
  /** Client name shown in STATS. */
  name?: string;
  /** PASSWORD authentication (protocol.md §Authentication). */
  user?: string;
  password?: string;
  /** TOKEN authentication: an opaque token configured for a user. */
  token?: string;
  /** SIGNED_TOKEN authentication. */
  signedToken?: string;
  /** TLS for a {host, port} endpoint: true for the system CAs, or options. */
  tls?: boolean | TlsOptions;
  /** WebSocket constructor for a {url} endpoint; default globalThis.WebSocket. */
  webSocket?: WebSocketConstructor;
  /** A custom transport, instead of the one the endpoint names. */
  transport?: TransportFactory;
  /** Requested in-flight window; 0 (default) = the server's. */
  inflightWindow?: number;
  /** Reconnect and resume when the connection is lost (default true). */
  reconnect?: boolean;
  /** First delay between reconnection attempts (default 50 ms), doubled up to maxReconnectDelayMs. */
  reconnectDelayMs?: number;
  /** Default 2,000 ms. */
  maxReconnectDelayMs?: number;
  /** Stop reconnecting after this long without a session (default 60,000 ms). */
  giveUpAfterMs?: number;
  /** Time allowed to open a connection and get WELCOME (default 10,000 ms). */
  connectTimeoutMs?: number;
  /** Time close() waits for receipts and GOODBYE (default 5,000 ms). */
  closeTimeoutMs?: number;
  /** Send a cumulative ACK once this many deliveries are consumed (default: window / 4). */
  ackBatch?: number;
  /**
   * After LOST, publish the old session's unreceipted messages again in the new session (default
   * true: at least once; they may duplicate). false: their promises reject with the LostError.
   */
  republishOnLost?: boolean;
}

/** A message delivered to a subscription. */
export interface Delivery {
  /** The session's delivery seq (restarts at 1 after LOST). */
  readonly seq: bigint;
  /** Server-wide message id, the same in every session. */
  readonly messageId: bigint;
  readonly queue: string;
  readonly event: string;
  readonly payload: Uint8Array;
  /** Sent again after a resume (its first sending did not reach this client). */
  readonly redelivered: boolean;
  /** The payload decoded as UTF-8. */
  text(): string;
}

/** WELCOME LOST: the session could not be resumed; a new one replaces it. */
export interface LostEvent {
  /** The lost_reason code and its name (SESSION_EXPIRED, SERVER_RESTARTED, ...). */
  reason: number;
  reasonName: string;
  /** How many messages were lost (meaning per protocol.md §LOST), null when unknown. */
  missed: bigint | null;
  oldSessionId: bigint;
  newSessionId: bigint;
  /** Unreceipted publishes of the old session, published again (or rejected) now. */
  unreceiptedPublishes: number;
}

/** Thrown to the publishes of a lost session when republishOnLost is false. */
export class LostError extends WeirError {
  readonly lost: LostEvent;
  constructor(lost: LostEvent) {
    super(lost.reason, lost.reasonName, `session lost (${lost.reasonName}); publish fate unknown`);
    this.name = 'LostError';
    this.lost = lost;
  }
}

export interface ClientEvents {
  /** A resume failed: the old session and what it held are gone. */
  lost: LostEvent;
  /** The session was resumed on a new connection. */
  resumed: { sessionId: bigint; lastPublishSeq: bigint; resent: number };
  /** The connection was lost; the client reconnects (unless reconnect is false). */
  disconnected: { error: Error };
  /** The client ended because of this error (it is also what pending calls reject with). */
  error: WeirError;
  /** The client is closed. */
  close: undefined;
}

/** The limits and identity of the session in force, from its latest WELCOME. */
export interface SessionInfo {
  sessionId: bigint;
  maxFrameLen: number;
  inflightWindow: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  maxQueueDepth: number;
  maxQueueBytes: bigint;
}

export interface SubscribeOptions {
  /** Event names to receive; omitted or empty = every event of the queue (ALL_EVENTS). */
  events?: string[];
  /**
   * Called for each delivery instead of buffering it for the async iterator. The delivery is
   * acknowledged when the callback returns (or when the promise it returns settles).
   */
  onMessage?: (delivery: Delivery) => void | Promise<void>;
}

export interface PublishOptions {
  /** Conflation key: sets CONFLATE. */
  key?: string | Uint8Array;
}

// ---------------------------------------------------------------------------------------------

/** How long an abandoned HELLO may still reach the server and take the session over. */
const STALE_HELLO_GRACE_MS = 60_000;

const textDecoder = new TextDecoder('utf-8', { fatal: false });
const decodeText = (b: Uint8Array): string => textDecoder.decode(b);

const defer: (f: () => void) => void =
  typeof setImmediate === 'function' ? (f) => setImmediate(f) : (f) => setTimeout(f, 0);

function unrefTimer<T>(t: T): T {
  (t as { unref?: () => void }).unref?.();
  return t;
}

/** A FIFO with O(1) shift. */
class Deque<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(v: T): void {
    this.items.push(v);
  }
  peek(): T | undefined {
    return this.items[this.head];
  }
  at(i: number): T | undefined {
    return this.items[this.head + i];
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const v = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return v;
  }
  drain(): T[] {
    const out = this.items.slice(this.head) as T[];
    this.items = [];
    this.head = 0;
    return out;
  }
  *[Symbol.iterator](): Iterator<T> {
    for (let i = this.head; i < this.items.length; i++) yield this.items[i] as T;
  }
}

interface PendingPublish {
  seq: bigint;
  queue: Uint8Array;
  event: Uint8Array;
  key: Uint8Array | undefined;
  payload: Uint8Array;
  frame: Uint8Array;
  settled: boolean;
  resolve: (seq: bigint) => void;
  reject: (e: Error) => void;
}

type ControlKind = 'subscribe' | 'unsubscribe' | 'stats';
interface ControlRequest {
  kind: ControlKind;
  frame: Uint8Array;
  resolve: (value: unknown) => void;
  reject: (e: Error) => void;
}

/** Acknowledgement state of one session: deliveries consumed, in seq order. */
class AckState {
  /** Every seq ≤ doneUpTo is consumed. */
  doneUpTo = 0n;
  /** Consumed seqs above doneUpTo + 1 (consumed out of order). */
  readonly done = new Set<bigint>();
  /** Highest up_to sent on the connection in force. */
  sentUpTo = 0n;
  /** seq → consumers still holding it. */
  readonly holders = new Map<bigint, number>();
}

interface AckToken {
  state: AckState;
  seq: bigint;
}

interface ServerSub {
  queue: Uint8Array;
  event: Uint8Array | null;
  refs: number;
  /** Resolves when the server confirmed it (SUBSCRIBED). */
  ready: Promise<void>;
  confirmed: boolean;
}

class Emitter<E> {
  private handlers = new Map<keyof E, Set<(v: never) => void>>();
  on<K extends keyof E>(event: K, fn: (value: E[K]) => void): () => void {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(fn as (v: never) => void);
    return () => this.off(event, fn);
  }
  off<K extends keyof E>(event: K, fn: (value: E[K]) => void): void {
    this.handlers.get(event)?.delete(fn as (v: never) => void);
  }
  protected emit<K extends keyof E>(event: K, value: E[K]): void {
    for (const fn of [...(this.handlers.get(event) ?? [])]) {
      try {
        (fn as (v: E[K]) => void)(value);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }
}

/** One connection attempt / connection. */
class Conn {
  transport: Transport | null = null;
  readonly decoder = new FrameDecoder(MAX_FRAME_LEN_BEFORE_HELLO);
  phase: 'hello' | 'open' | 'dead' = 'hello';
  welcome!: (w: WelcomeFrame) => void;
  refuse!: (e: Error) => void;
  readonly welcomed: Promise<WelcomeFrame>;
  lastReceived = Date.now();
  lastPing = 0;
  constructor(readonly resume: boolean) {
    this.welcomed = new Promise((res, rej) => {
      this.welcome = res;
      this.refuse = rej;
    });
    this.welcomed.catch(() => {});
  }
  send(frame: Uint8Array): void {
    if (this.phase !== 'dead') this.transport?.send(frame);
  }
}

/** A subscription: an async iterator of deliveries, or a callback (SubscribeOptions.onMessage). */
export class Subscription implements AsyncIterable<Delivery> {
  readonly queue: string;
  /** null = every event. */
  readonly events: readonly string[] | null;
  /** @internal */ readonly queueBytes: Uint8Array;
  /** @internal */ readonly eventSet: Set<string> | null;
  private readonly buffer = new Deque<[Delivery, AckToken]>();
  private waiter: { resolve: (r: IteratorResult<Delivery>) => void; reject: (e: Error) => void } | null = null;
  private current: AckToken | null = null;
  private ended = false;
  private error: Error | null = null;
  private readonly callback: SubscribeOptions['onMessage'];

  /** @internal */
  constructor(
    private readonly client: Client,
    queue: string,
    events: string[] | null,
    callback: SubscribeOptions['onMessage'],
  ) {
    this.queue = queue;
    this.queueBytes = toBytes(queue);
    this.events = events;
    this.eventSet = events ? new Set(events) : null;
    this.callback = callback;
  }

  /** Deliveries buffered and not yet read. */
  get buffered(): number {
    return this.buffer.length;
  }

  /** @internal */
  matches(queue: string, event: string): boolean {
    return !this.ended && queue === this.queue && (this.eventSet === null || this.eventSet.has(event));
  }

  /** @internal Hands a delivery to this subscription; it acks `token` when consumed. */
  push(d: Delivery, token: AckToken): void {
    if (this.callback) {
      let r: void | Promise<void>;
      try {
        r = this.callback(d);
      } catch (e) {
        this.client.consumed(token);
        queueMicrotask(() => {
          throw e;
        });
        return;
      }
      if (r && typeof (r as Promise<void>).then === 'function') {
        (r as Promise<void>).then(
          () => this.client.consumed(token),
          (e) => {
            this.client.consumed(token);
            queueMicrotask(() => {
              throw e;
            });
          },
        );
      } else {
        this.client.consumed(token);
      }
      return;
    }
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      this.current = token;
      w.resolve({ value: d, done: false });
    } else {
      this.buffer.push([d, token]);
    }
  }

  /** The next delivery; the previous one it returned is acknowledged now. */
  next(): Promise<IteratorResult<Delivery>> {
    this.releaseCurrent();
    const item = this.buffer.shift();
    if (item) {
      this.current = item[1];
      return Promise.resolve({ value: item[0], done: false });
    }
    if (this.error) return Promise.reject(this.error);
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    if (this.waiter) return Promise.reject(new Error('Subscription.next() called again before the previous call resolved'));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** Ends iteration (break out of for-await): acks the current delivery, keeps the subscription. */
  return(): Promise<IteratorResult<Delivery>> {
    this.releaseCurrent();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return {
      next: () => this.next(),
      return: () => this.return(),
    };
  }

  /** Removes the subscription on the server. Buffered deliveries stay readable; then the iterator ends. */
  async unsubscribe(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.client.removeSubscription(this);
    this.finishIfDrained();
  }

  /** @internal Acks the delivery last handed out by next(). */
  releaseCurrent(): void {
    if (this.current) {
      this.client.consumed(this.current);
      this.current = null;
    }
  }

  private finishIfDrained(): void {
    if (this.waiter && this.buffer.length === 0) {
      const w = this.waiter;
      this.waiter = null;
      if (this.error) w.reject(this.error);
      else w.resolve({ value: undefined, done: true });
    }
  }

  /** @internal The client closed (error: it failed). */
  end(error: Error | null): void {
    this.ended = true;
    if (error && !this.error) this.error = error;
    this.finishIfDrained();
  }
}

type State = 'connecting' | 'open' | 'reconnecting' | 'closing' | 'closed';

/**
 * A Weir client.
 *
 * ```ts
 * const client = await Client.connect({ host: '127.0.0.1', port: 7400 }, { name: 'demo' });
 * const sub = await client.subscribe('db', { events: ['update'] });
 * await client.publish('db', 'update', 'row 7');
 * for await (const d of sub) { console.log(d.text()); break; }
 * await client.close();
 * ```
 */
export class Client extends Emitter<ClientEvents> {
  private readonly endpoint: Endpoint;
  private readonly opts: ConnectOptions;
  private state: State = 'connecting';
  private failure: WeirError | null = null;
  private conn: Conn | null = null;
  private info: SessionInfo | null = null;
  private resumeToken: Uint8Array = new Uint8Array(16);
  private heartbeatTimer: ReturnType<typeof setInterval> | null = null;
  private pingNonce = 0n;

  // Publishing (client → server).
  private pubSeq = 0n;
  private readonly outbound = new Deque<PendingPublish>();
  private drainWaiters: (() => void)[] = [];

  // Delivery (server → client).
  private lastDeliverySeq = 0n;
  private acks = new AckState();
  private ackScheduled = false;
  private readonly subs = new Set<Subscription>();
  private readonly serverSubs = new Map<string, ServerSub>();
  private control = new Deque<ControlRequest>();
  private closeWaiter: (() => void) | null = null;
  /** When an attempt last failed after sending HELLO without getting an answer. */
  private abandonedHelloAt = 0;

  /** Counters, for tests and monitoring. */
  readonly counters = {
    reconnects: 0,
    resumed: 0,
    lost: 0,
    duplicateDeliveriesDropped: 0,
    publishesResent: 0,
    pingsAnswered: 0,
  };

  private constructor(endpoint: Endpoint, opts: ConnectOptions) {
    super();
    this.endpoint = endpoint;
    this.opts = opts;
  }

  /** Opens a connection and a new session. The first connection is not retried. */
  static async connect(endpoint: Endpoint, options: ConnectOptions = {}): Promise<Client> {
    const client = new Client(endpoint, options);
    try {
      await client.establish(false);
    } catch (e) {
      client.state = 'closed';
      client.stopHeartbeat();
      throw e;
    }
    return client;
  }

  /** The session in force (from the latest WELCOME). */
  get session(): SessionInfo {
    return { ...this.info! };
  }

  /** True while connected with a session; false while reconnecting or closed. */
  get connected(): boolean {
    return this.state === 'open';
  }

  /** Publishes not yet covered by a RECEIPT. */
  get unreceipted(): number {
    return this.outbound.length;
  }

  // -------------------------------------------------------------------------------------------
  // Public calls

  /** Publishes a message; resolves with its seq once a RECEIPT covers it. */
  publish(
    queue: string | Uint8Array,
    event: string | Uint8Array,
    payload: string | Uint8Array = new Uint8Array(0),
    options: PublishOptions = {},
  ): Promise<bigint> {
    if (this.state === 'closing' || this.state === 'closed') return Promise.reject(this.closedError());
    const q = toBytes(queue);
    if (q.length === 0) return Promise.reject(new WeirError(ErrorCode.INVALID_NAME, 'INVALID_NAME', 'empty queue name'));
    const e = toBytes(event);
    const k = options.key === undefined ? undefined : toBytes(options.key);
    const p = toBytes(payload);
    const seq = this.pubSeq + 1n;
    let frame: Uint8Array;
    try {
      frame = encodePublish({ seq, queue: q, event: e, key: k, payload: p });
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.info && frame.length - 4 > this.info.maxFrameLen) {
      return Promise.reject(
        new WeirError(ErrorCode.FRAME_TOO_LARGE, 'FRAME_TOO_LARGE', `PUBLISH of ${frame.length - 4} bytes > max_frame_len ${this.info.maxFrameLen}`),
      );
    }
    this.pubSeq = seq;
    return new Promise<bigint>((resolve, reject) => {
      this.outbound.push({ seq, queue: q, event: e, key: k, payload: p, frame, settled: false, resolve, reject });
      if (this.state === 'open') this.conn!.send(frame);
    });
  }

  /** Resolves once every publish made so far is receipted. */
  flush(): Promise<void> {
    if (this.outbound.length === 0) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Subscribes to a queue (every event, or the named ones); resolves once the server confirmed. */
  async subscribe(queue: string, options: SubscribeOptions = {}): Promise<Subscription> {
    if (this.state === 'closing' || this.state === 'closed') throw this.closedError();
    if (queue.length === 0) throw new WeirError(ErrorCode.INVALID_NAME, 'INVALID_NAME', 'empty queue name');
    const events = options.events && options.events.length > 0 ? [...new Set(options.events)] : null;
    if (events?.some((e) => e.length === 0)) {
      throw new WeirError(ErrorCode.INVALID_NAME, 'INVALID_NAME', 'empty event name (omit events for all of them)');
    }
    const sub = new Subscription(this, queue, events, options.onMessage);
    const filters = events ? events.map((e) => toBytes(e)) : [null];
    // Registered before SUBSCRIBED arrives: deliveries may follow it in the same read.
    this.subs.add(sub);
    const keys = filters.map((f) => subKey(sub.queueBytes, f));
    const results = await Promise.allSettled(filters.map((f, i) => this.acquireServerSub(keys[i]!, sub.queueBytes, f)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      this.subs.delete(sub);
      sub.end(null);
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') void this.releaseServerSub(keys[i]!, this.state === 'open')?.catch(() => {});
      });
      throw failed.reason;
    }
    return sub;
  }

  /**
   * The server's STATS_REPLY document. Integers beyond 2^53 are bigint, and session ids
   * (16-digit hex strings on the wire, protocol.md §STATS_REPLY; plain integers from older
   * servers) are bigint too.
   */
  async stats(): Promise<StatsReport> {
    const json = (await this.request('stats', encodeStats())) as Uint8Array;
    const report = parseJsonWithBigInts(decodeText(json)) as StatsReport;
    for (const list of [report.sessions, (report as { closed_sessions?: unknown[] }).closed_sessions]) {
      for (const entry of (list ?? []) as Array<{ session_id: unknown }>) {
        if (typeof entry.session_id === 'string') entry.session_id = BigInt('0x' + entry.session_id);
      }
    }
    return report;
  }

  /** Waits for receipts, acknowledges what was consumed, says BYE and closes. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    if (this.state === 'closing') {
      return new Promise((resolve) => this.on('close', () => resolve()));
    }
    const timeout = this.opts.closeTimeoutMs ?? 5000;
    if (this.state === 'open' && this.outbound.length > 0) {
      await withTimeout(this.flush(), timeout).catch(() => {});
    }
    if (this.state === 'open') {
      this.state = 'closing';
      const conn = this.conn!;
      // Deliveries handed to the application count as consumed.
      for (const sub of this.subs) sub.releaseCurrent();
      this.flushAcks();
      const goodbye = new Promise<void>((resolve) => (this.closeWaiter = resolve));
      conn.send(encodeBye());
      await withTimeout(goodbye, timeout).catch(() => {});
    }
    this.finish(null);
  }

  // -------------------------------------------------------------------------------------------
  // Connection and handshake

  private async establish(resume: boolean): Promise<void> {
    const conn = new Conn(resume);
    this.conn = conn;
    const handlers: TransportHandlers = {
      onData: (chunk) => this.onData(conn, chunk),
      onClose: (err) => this.onConnClose(conn, err),
    };
    const timeoutMs = this.opts.connectTimeoutMs ?? 10_000;
    let transport: Transport;
    try {
      transport = await this.dial(handlers, timeoutMs);
    } catch (e) {
      conn.phase = 'dead';
      throw e;
    }
    if (conn.phase === 'dead' || this.conn !== conn) {
      transport.destroy();
      throw conn.phase === 'dead' ? new ConnectionError('connection closed during the handshake') : this.closedError();
    }
    conn.transport = transport;
    conn.send(encodeHello(this.helloFields(resume)));
    const timer = setTimeout(() => {
      conn.refuse(new TimeoutError(`no WELCOME within ${timeoutMs} ms`));
    }, timeoutMs);
    let welcome: WelcomeFrame;
    try {
      welcome = await conn.welcomed;
    } catch (e) {
      this.killConn(conn);
      // The server may still read this HELLO after the next attempt's and take the session
      // over from it: a TAKEN_OVER soon after is answered with a resume (see onGoodbye).
      if (!(e instanceof ServerError) && !(e instanceof GoodbyeError)) this.abandonedHelloAt = Date.now();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    void welcome; // applied by onFrame, before the frames that follow it in the same read
    if (this.state === 'closed') throw this.closedError();
  }

  private dial(handlers: TransportHandlers, timeoutMs: number): Promise<Transport> {
    if (this.opts.transport) return this.opts.transport(handlers);
    if ('url' in this.endpoint) {
      const endpoint = this.endpoint;
      return import('./websocket.js').then((m) => m.connectWebSocket(endpoint, this.opts.webSocket, timeoutMs, handlers));
    }
    const endpoint = this.endpoint;
    return import('./tcp.js').then((m) => m.connectTcp(endpoint, this.opts.tls, timeoutMs, handlers));
  }

  private helloFields(resume: boolean): Parameters<typeof encodeHello>[0] {
    let auth: AuthBlock | undefined;
    const o = this.opts;
    if (o.user !== undefined || o.password !== undefined) {
      auth = { method: AuthMethod.PASSWORD, user: toBytes(o.user ?? ''), secret: toBytes(o.password ?? '') };
    } else if (o.token !== undefined) {
      auth = { method: AuthMethod.TOKEN, user: new Uint8Array(0), secret: toBytes(o.token) };
    } else if (o.signedToken !== undefined) {
      auth = { method: AuthMethod.SIGNED_TOKEN, user: new Uint8Array(0), secret: toBytes(o.signedToken) };
    }
    const first = this.outbound.peek();
    return {
      inflightWindow: o.inflightWindow ?? 0,
      clientName: toBytes(o.name ?? ''),
      auth,
      resume:
        resume && this.info
          ? {
              sessionId: this.info.sessionId,
              resumeToken: this.resumeToken,
              lastDeliverySeq: this.lastDeliverySeq,
              firstResendablePublishSeq: first ? first.seq : this.pubSeq + 1n,
            }
          : undefined,
    };
  }

  private applyWelcome(conn: Conn, w: WelcomeFrame, resume: boolean): void {
    conn.phase = 'open';
    conn.decoder.maxFrameLen = w.maxFrameLen + 8;
    const old = this.info;
    this.info = {
      sessionId: w.sessionId,
      maxFrameLen: w.maxFrameLen,
      inflightWindow: w.inflightWindow,
      heartbeatIntervalMs: w.heartbeatIntervalMs,
      heartbeatTimeoutMs: w.heartbeatTimeoutMs,
      maxQueueDepth: w.maxQueueDepth,
      maxQueueBytes: w.maxQueueBytes,
    };
    this.resumeToken = w.resumeToken;
    this.state = 'open';
    this.startHeartbeat();

    // Control requests whose answers the old connection took with it are asked again.
    const pendingControl = this.control.drain();

    if (resume && w.outcome === WelcomeOutcome.RESUMED) {
      this.counters.resumed++;
      // WELCOME.last_publish_seq is the receipt for what the server accepted.
      this.onReceipt(w.lastPublishSeq);
      this.acks.sentUpTo = 0n;
      for (const c of pendingControl) this.sendControl(c);
      let resent = 0;
      for (const p of this.outbound) {
        conn.send(p.frame);
        resent++;
      }
      this.counters.publishesResent += resent;
      this.flushAcks();
      this.emit('resumed', { sessionId: w.sessionId, lastPublishSeq: w.lastPublishSeq, resent });
      return;
    }

    if (resume) {
      // LOST: a new session. Old deliveries' acks no longer mean anything; seqs restart.
      this.counters.lost++;
      this.acks = new AckState();
      this.lastDeliverySeq = 0n;
      this.pubSeq = 0n;
      const lost: LostEvent = {
        reason: w.lostReason,
        reasonName: errorCodeName(w.lostReason),
        missed: w.missed === MISSED_UNKNOWN ? null : w.missed,
        oldSessionId: old?.sessionId ?? 0n,
        newSessionId: w.sessionId,
        unreceiptedPublishes: this.outbound.length,
      };
      for (const s of this.serverSubs.values()) {
        if (s.confirmed) this.sendControl(internalRequest('subscribe', encodeSubscribe(s.queue, s.event)));
      }
      for (const c of pendingControl) this.sendControl(c);
      const unreceipted = this.outbound.drain();
      if (this.opts.republishOnLost ?? true) {
        for (const p of unreceipted) {
          if (p.settled) continue;
          p.seq = ++this.pubSeq;
          p.frame = encodePublish({ seq: p.seq, queue: p.queue, event: p.event, key: p.key, payload: p.payload });
          this.outbound.push(p);
          conn.send(p.frame);
        }
      } else {
        const err = new LostError(lost);
        for (const p of unreceipted) if (!p.settled) p.reject(err);
        this.notifyDrained();
      }
      this.emit('lost', lost);
      return;
    }
    // NEW.
    for (const c of pendingControl) this.sendControl(c);
  }

  // -------------------------------------------------------------------------------------------
  // Incoming frames

  private onData(conn: Conn, chunk: Uint8Array): void {
    if (conn.phase === 'dead') return;
    conn.lastReceived = Date.now();
    conn.decoder.push(chunk);
    try {
      if (conn.transport?.framed) {
        // One message, one frame: neither part of one nor more than one.
        const f = conn.decoder.next();
        if (!f || conn.decoder.buffered !== 0) {
          throw new CodecError(ErrorCode.MALFORMED_FRAME, 'a WebSocket message that is not exactly one frame');
        }
        this.onFrame(conn, f);
        return;
      }
      for (;;) {
        const f = conn.decoder.next();
        if (!f) break;
        this.onFrame(conn, f);
        if ((conn.phase as Conn['phase']) === 'dead') return;
      }
    } catch (e) {
      if (!(e instanceof CodecError)) throw e;
      this.connLost(conn, new ProtocolError(e.code, `from the server: ${e.message}`, { cause: e }));
    }
  }

  private onFrame(conn: Conn, f: Frame): void {
    if (conn.phase === 'hello') {
      switch (f.op) {
        case Op.WELCOME:
          if (this.state === 'closing' || this.state === 'closed' || this.conn !== conn) {
            conn.refuse(this.closedError());
            this.killConn(conn);
            return;
          }
          // Applied at once: the frames after it in this read belong to the session.
          this.applyWelcome(conn, f, conn.resume);
          conn.welcome(f);
          return;
        case Op.ERROR:
          conn.refuse(new ServerError(f.code, (f.flags & ErrorFlags.FATAL) !== 0, f.refSeq, decodeText(f.text)));
          this.killConn(conn);
          return;
        case Op.GOODBYE:
          conn.refuse(new GoodbyeError(f.code, decodeText(f.text)));
          this.killConn(conn);
          return;
        default:
          throw new CodecError(ErrorCode.UNKNOWN_OP, `op 0x${f.op.toString(16)} before WELCOME`);
      }
    }
    switch (f.op) {
      case Op.DELIVER:
        this.onDeliver(f);
        return;
      case Op.RECEIPT:
        this.onReceipt(f.seq);
        return;
      case Op.PING:
        this.counters.pingsAnswered++;
        conn.send(encodePong(f.nonce));
        return;
      case Op.PONG:
        return;
      case Op.SUBSCRIBED:
      case Op.UNSUBSCRIBED: {
        const c = this.control.peek();
        if (c && c.kind === (f.op === Op.SUBSCRIBED ? 'subscribe' : 'unsubscribe')) {
          this.control.shift();
          c.resolve(undefined);
        }
        return;
      }
      case Op.STATS_REPLY: {
        const c = this.control.peek();
        if (c && c.kind === 'stats') {
          this.control.shift();
          c.resolve(f.json);
        }
        return;
      }
      case Op.ERROR: {
        const err = new ServerError(f.code, (f.flags & ErrorFlags.FATAL) !== 0, f.refSeq, decodeText(f.text));
        if (!err.fatal) {
          this.onRefused(err);
          return;
        }
        this.killConn(conn);
        this.finish(err);
        return;
      }
      case Op.GOODBYE:
        this.onGoodbye(conn, f.code, decodeText(f.text));
        return;
      case Op.WELCOME:
        throw new CodecError(ErrorCode.DUPLICATE_HELLO, 'a second WELCOME');
      default:
        throw new CodecError(ErrorCode.UNKNOWN_OP, `client-to-server op 0x${f.op.toString(16)} from the server`);
    }
  }

  /** A non-fatal ERROR (NOT_AUTHORIZED): refuses one publish, subscribe or stats. */
  private onRefused(err: ServerError): void {
    if (err.refSeq !== 0n) {
      for (const p of this.outbound) {
        if (p.seq === err.refSeq) {
          if (!p.settled) {
            p.settled = true;
            p.reject(err);
          }
          return;
        }
      }
      return;
    }
    // SUBSCRIBE and STATS are answered in order; UNSUBSCRIBE is always answered.
    for (let i = 0; i < this.control.length; i++) {
      const c = this.control.at(i)!;
      if (c.kind === 'unsubscribe') continue;
      if (i === 0) this.control.shift();
      else {
        const rest = this.control.drain();
        rest.splice(i, 1);
        for (const r of rest) this.control.push(r);
      }
      c.reject(err);
      return;
    }
  }

  private onGoodbye(conn: Conn, code: number, text: string): void {
    this.killConn(conn);
    if (code === ErrorCode.CLIENT_BYE && this.state === 'closing') {
      this.closeWaiter?.();
      return;
    }
    const err = new GoodbyeError(code, text);
    if (code === ErrorCode.TAKEN_OVER && this.abandonedHelloAt > 0 && Date.now() - this.abandonedHelloAt < STALE_HELLO_GRACE_MS) {
      // Most likely our own abandoned HELLO, arriving late, was the taker: resume once more.
      this.abandonedHelloAt = 0;
      this.connLost(conn, err);
      return;
    }
    if (code === ErrorCode.CLIENT_BYE || code === ErrorCode.TAKEN_OVER) {
      this.finish(err);
      return;
    }
    // HEARTBEAT_TIMEOUT and SLOW_CONSUMER detach the session; for the others (QUEUE_OVERFLOW,
    // SERVER_SHUTDOWN, ...) the resume tells the application what happened, as LOST.
    this.connLost(conn, err);
  }

  private onDeliver(f: DeliverFrame): void {
    if (f.seq <= this.lastDeliverySeq) {
      this.counters.duplicateDeliveriesDropped++;
      return;
    }
    this.lastDeliverySeq = f.seq;
    const queue = decodeText(f.queue);
    const event = decodeText(f.event);
    const payload = f.payload;
    const d: Delivery = {
      seq: f.seq,
      messageId: f.messageId,
      queue,
      event,
      payload,
      redelivered: (f.flags & DeliverFlags.REDELIVERED) !== 0,
      text: () => decodeText(payload),
    };
    const token: AckToken = { state: this.acks, seq: f.seq };
    let targets = 0;
    for (const s of this.subs) if (s.matches(queue, event)) targets++;
    if (targets === 0) {
      this.consumed(token);
      return;
    }
    this.acks.holders.set(f.seq, targets);
    for (const s of this.subs) if (s.matches(queue, event)) s.push(d, token);
  }

  private onReceipt(seq: bigint): void {
    for (;;) {
      const p = this.outbound.peek();
      if (!p || p.seq > seq) break;
      this.outbound.shift();
      if (!p.settled) {
        p.settled = true;
        p.resolve(p.seq);
      }
    }
    if (this.outbound.length === 0) this.notifyDrained();
  }

  private notifyDrained(): void {
    if (this.outbound.length !== 0) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  // -------------------------------------------------------------------------------------------
  // Acknowledgements

  /** @internal A consumer is done with a delivery. */
  consumed(token: AckToken): void {
    const st = token.state;
    if (st !== this.acks) return; // a delivery of a lost session
    const left = (st.holders.get(token.seq) ?? 1) - 1;
    if (left > 0) {
      st.holders.set(token.seq, left);
      return;
    }
    st.holders.delete(token.seq);
    if (token.seq === st.doneUpTo + 1n) {
      st.doneUpTo = token.seq;
      while (st.done.delete(st.doneUpTo + 1n)) st.doneUpTo++;
    } else if (token.seq > st.doneUpTo) {
      st.done.add(token.seq);
    }
    const window = this.info?.inflightWindow ?? 1024;
    const batch = BigInt(Math.max(1, this.opts.ackBatch ?? Math.floor(window / 4)));
    if (st.doneUpTo - st.sentUpTo >= batch) this.flushAcks();
    else if (!this.ackScheduled && st.doneUpTo > st.sentUpTo) {
      this.ackScheduled = true;
      defer(() => {
        this.ackScheduled = false;
        this.flushAcks();
      });
    }
  }

  private flushAcks(): void {
    const st = this.acks;
    if ((this.state !== 'open' && this.state !== 'closing') || !this.conn || st.doneUpTo <= st.sentUpTo) return;
    this.conn.send(encodeAck(st.doneUpTo));
    st.sentUpTo = st.doneUpTo;
  }

  // -------------------------------------------------------------------------------------------
  // Subscriptions and other requests

  private request(kind: ControlKind, frame: Uint8Array): Promise<unknown> {
    if (this.state === 'closing' || this.state === 'closed') return Promise.reject(this.closedError());
    return new Promise((resolve, reject) => this.sendControl({ kind, frame, resolve, reject }));
  }

  private sendControl(c: ControlRequest): void {
    this.control.push(c);
    if (this.state === 'open') this.conn!.send(c.frame);
  }

  private acquireServerSub(key: string, queue: Uint8Array, event: Uint8Array | null): Promise<void> {
    const existing = this.serverSubs.get(key);
    if (existing) {
      existing.refs++;
      return existing.ready;
    }
    const entry: ServerSub = { queue, event, refs: 1, confirmed: false, ready: Promise.resolve() };
    entry.ready = this.request('subscribe', encodeSubscribe(queue, event)).then(
      () => {
        entry.confirmed = true;
      },
      (e: Error) => {
        if (this.serverSubs.get(key) === entry) this.serverSubs.delete(key);
        throw e;
      },
    );
    this.serverSubs.set(key, entry);
    return entry.ready;
  }

  private releaseServerSub(key: string, send: boolean): Promise<unknown> | undefined {
    const entry = this.serverSubs.get(key);
    if (!entry) return undefined;
    if (--entry.refs > 0) return undefined;
    this.serverSubs.delete(key);
    if (!send || !entry.confirmed) return undefined;
    return this.request('unsubscribe', encodeUnsubscribe(entry.queue, entry.event));
  }

  /** @internal */
  async removeSubscription(sub: Subscription): Promise<void> {
    this.subs.delete(sub);
    const filters = sub.events ? sub.events.map((e) => toBytes(e)) : [null];
    const waits: Promise<unknown>[] = [];
    for (const f of filters) {
      const w = this.releaseServerSub(subKey(sub.queueBytes, f), this.state !== 'closed');
      if (w) waits.push(w);
    }
    await Promise.all(waits);
  }

  // -------------------------------------------------------------------------------------------
  // Heartbeats, connection loss and reconnection

  private startHeartbeat(): void {
    this.stopHeartbeat();
    const info = this.info!;
    const shortest = Math.min(info.heartbeatIntervalMs || 4000, info.heartbeatTimeoutMs || 4000);
    const period = Math.max(10, Math.min(1000, Math.floor(shortest / 4)));
    this.heartbeatTimer = unrefTimer(setInterval(() => this.heartbeat(), period));
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }

  private heartbeat(): void {
    const conn = this.conn;
    const info = this.info;
    if (!conn || !info || conn.phase !== 'open' || this.state !== 'open') return;
    const now = Date.now();
    const silent = now - conn.lastReceived;
    // 0 in WELCOME: that heartbeat is off.
    if (info.heartbeatTimeoutMs > 0 && silent > info.heartbeatTimeoutMs) {
      this.connLost(conn, new ConnectionError(`nothing received for ${silent} ms (heartbeat_timeout_ms ${info.heartbeatTimeoutMs})`));
      return;
    }
    // The server PINGs an idle connection; ask ourselves too, so a dead one shows sooner.
    if (info.heartbeatIntervalMs > 0 && silent > info.heartbeatIntervalMs && now - conn.lastPing > info.heartbeatIntervalMs) {
      conn.lastPing = now;
      conn.send(encodePing(++this.pingNonce));
    }
  }

  private killConn(conn: Conn): void {
    if (conn.phase === 'dead') return;
    conn.phase = 'dead';
    conn.transport?.destroy();
  }

  private onConnClose(conn: Conn, err?: Error): void {
    if (conn.phase === 'dead') {
      // Closed by us (killConn): whoever killed it handles the consequences.
      if (this.state === 'closing' && conn === this.conn) this.closeWaiter?.();
      return;
    }
    if (conn.phase === 'hello') {
      conn.phase = 'dead';
      conn.refuse(err ?? new ConnectionError('connection closed during the handshake'));
      return;
    }
    if (this.state === 'closing' && conn === this.conn) {
      this.closeWaiter?.();
      return;
    }
    this.connLost(conn, err ?? new ConnectionError('connection closed'));
  }

  /** The connection in force failed: reconnect and resume, or end. */
  private connLost(conn: Conn, error: Error): void {
    if (conn.phase === 'hello') conn.refuse(error);
    this.killConn(conn);
    if (conn !== this.conn) return;
    if (this.state === 'closing') {
      this.closeWaiter?.();
      return;
    }
    if (this.state !== 'open') return;
    this.stopHeartbeat();
    if (this.opts.reconnect === false) {
      this.finish(error instanceof WeirError ? error : new ConnectionError(error.message, { cause: error }));
      return;
    }
    this.state = 'reconnecting';
    this.emit('disconnected', { error });
    void this.reconnectLoop();
  }

  private async reconnectLoop(): Promise<void> {
    const giveUpAt = Date.now() + (this.opts.giveUpAfterMs ?? 60_000);
    let delay = this.opts.reconnectDelayMs ?? 50;
    const maxDelay = this.opts.maxReconnectDelayMs ?? 2000;
    let attempt = 0;
    while (this.state === 'reconnecting') {
      if (attempt++ > 0) {
        await sleep(delay * (0.5 + Math.random() / 2));
        delay = Math.min(delay * 2, maxDelay);
        if (this.state !== 'reconnecting') return;
      }
      this.counters.reconnects++;
      try {
        await this.establish(true);
        return;
      } catch (e) {
        if (this.state !== 'reconnecting') return;
        const refusedForGood =
          e instanceof ServerError &&
          (e.code === ErrorCode.AUTH_FAILED || e.code === ErrorCode.AUTH_REQUIRED || e.code === ErrorCode.MALFORMED_FRAME);
        if (refusedForGood || Date.now() >= giveUpAt) {
          this.finish(
            refusedForGood
              ? (e as ServerError)
              : new ConnectionError(`gave up reconnecting: ${(e as Error).message}`, { cause: e }),
          );
          return;
        }
      }
    }
  }

  private closedError(): WeirError {
    return this.failure ? new ClosedError(`the client is closed: ${this.failure.message}`, { cause: this.failure }) : new ClosedError();
  }

  /** Ends the client: error null after close(), else the error that ended it. */
  private finish(error: WeirError | null): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.failure = error;
    this.stopHeartbeat();
    if (this.conn) this.killConn(this.conn);
    const rejectWith = error ?? new ClosedError();
    for (const p of this.outbound.drain()) {
      if (!p.settled) {
        p.settled = true;
        p.reject(rejectWith);
      }
    }
    this.notifyDrained();
    for (const c of this.control.drain()) c.reject(rejectWith);
    for (const s of this.subs) s.end(error);
    this.subs.clear();
    this.closeWaiter?.();
    if (error) this.emit('error', error);
    this.emit('close', undefined);
  }
}

// ---------------------------------------------------------------------------------------------

function internalRequest(kind: ControlKind, frame: Uint8Array): ControlRequest {
  return { kind, frame, resolve: () => {}, reject: () => {} };
}

function subKey(queue: Uint8Array, event: Uint8Array | null): string {
  const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex(queue)}/${event === null ? '*' : hex(event)}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new TimeoutError(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

/** STATS_REPLY (protocol.md §STATS_REPLY); integers beyond 2^53 are bigint. */
export interface StatsReport {
  server: Record<string, number | bigint | Record<string, number>>;
  sessions: Array<Record<string, unknown> & { session_id: number | bigint; client_name: string; state: string }>;
  queues: Array<{ name: string; conflate: boolean; subscribers: number; published: number }>;
  sessions_omitted: number;
  closed_sessions: Array<{ session_id: number | bigint; client_name: string; reason: string; closed_ms_ago: number; missed: number }>;
  [key: string]: unknown;
}

/**
 * JSON.parse, except that integers too large for a double (session ids carry a 32-bit epoch in
 * their high bits) become bigint instead of losing their low bits.
 */
export function parseJsonWithBigInts(text: string): unknown {
  const big: bigint[] = [];
  let out = '';
  let i = 0;
  let last = 0;
  while (i < text.length) {
    const ch = text.charCodeAt(i);
    if (ch === 0x22 /* " */) {
      i++;
      while (i < text.length) {
        const c = text.charCodeAt(i);
        if (c === 0x5c) i += 2;
        else if (c === 0x22) break;
        else i++;
      }
      i++;
      continue;
    }
    if ((ch >= 0x30 && ch <= 0x39) || ch === 0x2d) {
      const start = i;
      i++;
      while (i < text.length && /[0-9.eE+-]/.test(text[i]!)) i++;
      const num = text.slice(start, i);
      if (/^-?\d{16,}$/.test(num) && !Number.isSafeInteger(Number(num))) {
        out += text.slice(last, start) + `{"\\u0000bigint":"${num}"}`;
        last = i;
        big.push(BigInt(num));
      }
      continue;
    }
    i++;
  }
  out += text.slice(last);
  if (big.length === 0) return JSON.parse(text);
  return JSON.parse(out, (_k, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      const keys = Object.keys(o);
      if (keys.length === 1 && keys[0] === '\u0000bigint' && typeof o['\u0000bigint'] === 'string') {
        return BigInt(o['\u0000bigint'] as string);
      }
    }
    return v;
  });
}
