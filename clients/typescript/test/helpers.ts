// Test harness: real weir-server processes on free loopback ports, a chaos proxy, utilities.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** clients/typescript, from dist/test/helpers.js. */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export function serverBin(): string {
  const fromEnv = process.env.WEIR_SERVER_BIN;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`WEIR_SERVER_BIN=${fromEnv} does not exist`);
    return path.resolve(fromEnv);
  }
  const fallback = path.resolve(PACKAGE_ROOT, '../../target/release/weir-server');
  if (!existsSync(fallback)) {
    throw new Error(
      `no weir-server binary: set WEIR_SERVER_BIN, or build ${fallback} with ` +
        '`cargo build --release --bin weir-server` at the repository root',
    );
  }
  return fallback;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export function tempDir(): string {
  return mkdtempSync(path.join(tmpdir(), 'weir-ts-'));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `cond` until it holds (the deadline only guards against a hang, it asserts nothing). */
export async function until(cond: () => boolean | Promise<boolean>, what: string, limitMs = 20_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`gave up waiting for: ${what}`);
    await sleep(10);
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface ServerHandle {
  port: number;
  readonly pid: number;
  dir: string;
  configPath: string;
  log(): string;
  /** SIGTERM by pid (graceful shutdown: GOODBYE(SERVER_SHUTDOWN)), wait for exit. */
  stop(): Promise<void>;
  /** Stop, then start again on the same port with the same config. */
  restart(): Promise<void>;
}

/**
 * Starts weir-server with a temp config: `listen` on a free loopback port plus `extraToml`
 * (top-level keys first, tables after). Resolves once the port accepts connections.
 */
export async function startServer(extraToml = ''): Promise<ServerHandle> {
  const bin = serverBin();
  const dir = tempDir();
  const port = await freePort();
  const configPath = path.join(dir, 'weir.toml');
  writeFileSync(configPath, `listen = "127.0.0.1:${port}"\n${extraToml}\n`);
  let output = '';
  let proc: ChildProcess;
  let exited: Promise<void>;

  const launch = async (): Promise<void> => {
    proc = spawn(bin, ['-c', configPath], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
    proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    let dead = false;
    void exited.then(() => (dead = true));
    const end = Date.now() + 15_000;
    while (!(await canConnect(port))) {
      if (dead) throw new Error(`weir-server exited at start:\n${output}`);
      if (Date.now() > end) throw new Error(`weir-server did not listen on ${port}:\n${output}`);
      await sleep(20);
    }
  };
  await launch();

  const stop = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    process.kill(proc.pid!, 'SIGTERM');
    const killer = setTimeout(() => {
      try {
        process.kill(proc.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, 5000);
    await exited;
    clearTimeout(killer);
  };

  return {
    port,
    get pid() {
      return proc.pid!;
    },
    dir,
    configPath,
    log: () => output,
    stop: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    restart: async () => {
      await stop();
      await launch();
    },
  };
}

/** `weir-server --hash-password` with the password on stdin. */
export function hashPassword(password: string): string {
  const r = spawnSync(serverBin(), ['--hash-password'], { input: `${password}\n`, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`--hash-password failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** Deterministic PRNG (mulberry32), so a failing chaos run can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface ChaosOptions {
  /** Connections to cut in total; after that the proxy only forwards. */
  cuts: number;
  /** A cut happens after a random number of bytes in [minBytes, maxBytes] on one direction. */
  minBytes: number;
  maxBytes: number;
  seed: number;
}

/**
 * A TCP proxy on loopback that cuts connections mid-stream at random byte offsets (a bounded
 * number of times): it forwards the bytes up to the offset, so the peer gets part of a frame,
 * then closes both sides. `refuse` makes it drop new connections at once; `freezeAll()` makes it
 * stop forwarding without closing (a dead peer).
 */
export class ChaosProxy {
  port = 0;
  cutsDone = 0;
  connections = 0;
  refuse = false;
  /** While false, no cuts are planned (so clients can be set up first). */
  armed: boolean;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly pairs = new Set<{ cutAt: number[]; counts: number[]; frozen: boolean }>();
  private readonly rand: () => number;

  constructor(
    private readonly targetPort: number,
    private readonly opts: ChaosOptions & { armed?: boolean },
  ) {
    this.rand = prng(opts.seed);
    this.armed = opts.armed ?? true;
    this.server = net.createServer((client) => this.onClient(client));
  }

  listen(): Promise<number> {
    return new Promise((resolve) => {
      this.server.listen(0, '127.0.0.1', () => {
        this.port = (this.server.address() as net.AddressInfo).port;
        resolve(this.port);
      });
    });
  }

  /** Starts cutting: open connections get a cut planned from where they are now. */
  arm(): void {
    this.armed = true;
    for (const pair of this.pairs) if (pair.cutAt[0]! < 0) this.plan(pair);
  }

  private plan(pair: { cutAt: number[]; counts: number[]; frozen: boolean }): void {
    if (!this.armed || this.cutsDone + this.planned() >= this.opts.cuts) return;
    // One offset per direction; the first reached cuts.
    const span = this.opts.maxBytes - this.opts.minBytes + 1;
    pair.cutAt = [0, 1].map((d) => pair.counts[d]! + this.opts.minBytes + Math.floor(this.rand() * span));
  }

  private planned(): number {
    let n = 0;
    for (const p of this.pairs) if (p.cutAt[0]! >= 0) n++;
    return n;
  }

  private onClient(client: net.Socket): void {
    if (this.refuse) {
      client.destroy();
      return;
    }
    this.connections++;
    const upstream = net.connect({ host: '127.0.0.1', port: this.targetPort });
    this.sockets.add(client);
    this.sockets.add(upstream);
    const pair = { cutAt: [-1, -1], counts: [0, 0], frozen: false };
    this.pairs.add(pair);
    const cleanup = (): void => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
      this.pairs.delete(pair);
    };
    client.on('error', cleanup);
    upstream.on('error', () => {
      if (!pair.frozen) cleanup();
    });
    const dbg = process.env.WEIR_CHAOS_DEBUG ? (m: string) => console.log(`[proxy ${this.port} #${this.connections}] ${m}`) : null;
    client.on('close', () => {
      dbg?.(`client side closed, counts ${pair.counts}`);
      cleanup();
    });
    upstream.on('close', () => {
      dbg?.(`server side closed, counts ${pair.counts}`);
      // Frozen: the client side hears nothing, not even the close (a dead network path).
      if (pair.frozen) {
        this.sockets.delete(upstream);
        return;
      }
      cleanup();
    });
    this.plan(pair);

    const pipe = (from: net.Socket, to: net.Socket, dir: number): void => {
      from.on('data', (chunk: Buffer) => {
        if (pair.frozen || !this.pairs.has(pair)) return;
        const count = pair.counts[dir]!;
        const cutAt = pair.cutAt[dir]!;
        if (cutAt >= 0 && count + chunk.length >= cutAt) {
          const keep = cutAt - count;
          this.cutsDone++;
          pair.cutAt = [-1, -1];
          this.pairs.delete(pair);
          // The peer gets the bytes up to the offset (usually part of a frame), then EOF.
          to.end(chunk.subarray(0, keep));
          from.destroy();
          setTimeout(cleanup, 20);
          return;
        }
        pair.counts[dir] = count + chunk.length;
        to.write(chunk);
      });
    };
    pipe(client, upstream, 0);
    pipe(upstream, client, 1);
  }

  /**
   * The connections open now stop forwarding, in both directions, and hide the server's close
   * from the client (a dead network path). New connections are not affected.
   */
  freezeAll(): void {
    for (const pair of this.pairs) pair.frozen = true;
  }

  /** Closes every connection now (not counted as a cut). */
  dropAll(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    this.pairs.clear();
  }

  close(): Promise<void> {
    this.dropAll();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
