#!/usr/bin/env node
// Conformance driver for the TypeScript client (clients/typescript, compiled to dist/).
// One JSON command per line on stdin, one JSON answer per line on stdout; see
// clients/conformance/README.md. Nothing else goes to stdout.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = process.env.WEIR_TS_DIST ?? path.resolve(here, '../../typescript/dist/src/index.js');
const { Client, WeirError } = await import(pathToFileURL(dist).href);

const features = ['tcp', 'tls', 'password', 'token'];
// Why a feature the client has is unavailable here (the suite prints it with the skip).
const missing = {};
if (typeof globalThis.WebSocket === 'function') features.push('websocket');
else missing.websocket = `Node ${process.version} has no WHATWG WebSocket (Node 22+, or 20 with --experimental-websocket)`;

class Failure extends Error {
  constructor(message, code = null) {
    super(message);
    this.code = code;
  }
}

const b64 = (u8) => Buffer.from(u8).toString('base64');
const text = (u8) => Buffer.from(u8).toString('utf8');

function deliveryJson(d) {
  return {
    queue: d.queue,
    event: d.event,
    payload: text(d.payload),
    payload_b64: b64(d.payload),
    seq: Number(d.seq),
    redelivered: d.redelivered,
  };
}

// BigInt is not JSON. stats() turns the server's hex session ids into bigint: they go back to
// 16-digit hex as the server sent them; other bigints become numbers when safe, else strings.
const replacer = (k, v) => {
  if (typeof v !== 'bigint') return v;
  if (k === 'session_id') return v.toString(16).padStart(16, '0');
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
};

let client = null;
// Every subscription's deliveries in the order the client handed them over.
let inbox = [];
let inboxHead = 0;
let inboxWaiter = null;
let events = [];
let eventWaiter = null;

function push(d) {
  inbox.push(d);
  if (inboxWaiter) {
    const w = inboxWaiter;
    inboxWaiter = null;
    w();
  }
}

function onEvent(ev) {
  events.push(ev);
  if (eventWaiter) {
    const w = eventWaiter;
    eventWaiter = null;
    w();
  }
}

async function nextDelivery(timeoutMs) {
  if (inboxHead >= inbox.length) {
    await new Promise((resolve) => {
      const timer = setTimeout(() => {
        inboxWaiter = null;
        resolve();
      }, timeoutMs);
      inboxWaiter = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  if (inboxHead >= inbox.length) return null;
  const d = inbox[inboxHead++];
  if (inboxHead > 65536) {
    inbox = inbox.slice(inboxHead);
    inboxHead = 0;
  }
  return d;
}

function need() {
  if (!client) throw new Failure('not connected');
  return client;
}

const commands = {
  hello: async () => ({ client: 'typescript', features, missing }),

  connect: async (cmd) => {
    const endpoint = cmd.url ? { url: cmd.url } : { host: cmd.host ?? '127.0.0.1', port: cmd.port ?? 7400 };
    const options = {
      name: cmd.name ?? 'conformance',
      reconnectDelayMs: cmd.reconnect_delay_ms ?? 20,
      maxReconnectDelayMs: cmd.reconnect_max_delay_ms ?? 200,
    };
    if (cmd.user !== undefined) options.user = cmd.user;
    if (cmd.password !== undefined) options.password = cmd.password;
    if (cmd.token !== undefined) options.token = cmd.token;
    if (cmd.tls_ca) {
      options.tls = { ca: readFileSync(cmd.tls_ca, 'utf8') };
      if (cmd.tls_name) options.tls.servername = cmd.tls_name;
    }
    inbox = [];
    inboxHead = 0;
    events = [];
    const c = await Client.connect(endpoint, options);
    c.on('lost', (l) => onEvent({ type: 'lost', reason: l.reasonName, missed: l.missed === null ? null : Number(l.missed) }));
    c.on('resumed', () => onEvent({ type: 'resumed' }));
    c.on('error', () => {});
    client = c;
    return { session_id: c.session.sessionId.toString(16) };
  },

  subscribe: async (cmd) => {
    const opts = { onMessage: push };
    if (cmd.events) opts.events = cmd.events;
    await need().subscribe(cmd.queue, opts);
    return {};
  },

  publish: async (cmd) => {
    const payload = cmd.payload_b64 !== undefined ? Buffer.from(cmd.payload_b64, 'base64') : (cmd.payload ?? '');
    const seq = await need().publish(cmd.queue, cmd.event ?? '', payload);
    return { seq: Number(seq) };
  },

  publish_many: async (cmd) => {
    const c = need();
    const { queue, n } = cmd;
    const event = cmd.event ?? '';
    const prefix = cmd.prefix ?? '';
    // Bounded like an application would: at most `batch` unreceipted at a time.
    const batch = 8192;
    let pending = [];
    for (let i = 0; i < n; i++) {
      pending.push(c.publish(queue, event, `${prefix}${i}`));
      if (pending.length >= batch) {
        await Promise.all(pending);
        pending = [];
      }
    }
    await Promise.all(pending);
    return { count: n };
  },

  recv: async (cmd) => {
    const d = await nextDelivery(cmd.timeout_ms ?? 5000);
    return d ? { delivery: deliveryJson(d) } : { timeout: true };
  },

  recv_many: async (cmd) => {
    const n = cmd.n;
    const idle = cmd.timeout_ms ?? 10000;
    const prefix = cmd.prefix ?? null;
    const collect = cmd.collect ?? false;
    let received = 0;
    let redelivered = 0;
    let firstBad = null;
    let timedOut = false;
    const payloads = [];
    while (received < n) {
      const d = await nextDelivery(idle);
      if (!d) {
        timedOut = true;
        break;
      }
      const p = text(d.payload);
      if (prefix !== null && firstBad === null && p !== `${prefix}${received}`) {
        firstBad = { index: received, payload: p };
      }
      if (d.redelivered) redelivered++;
      if (collect) payloads.push(p);
      received++;
    }
    const out = { received, timed_out: timedOut, redelivered };
    if (prefix !== null) {
      out.in_order = firstBad === null;
      out.first_bad = firstBad;
    }
    if (collect) out.payloads = payloads;
    return out;
  },

  events: async (cmd) => {
    const wait = cmd.wait_ms ?? 0;
    if (events.length === 0 && wait > 0) {
      await new Promise((resolve) => {
        const timer = setTimeout(() => {
          eventWaiter = null;
          resolve();
        }, wait);
        eventWaiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const out = events;
    events = [];
    return { events: out };
  },

  stats: async () => ({ stats: await need().stats() }),

  close: async () => {
    if (client) {
      const c = client;
      client = null;
      await c.close();
    }
    return {};
  },
};

function failureOf(e) {
  let code = e instanceof Failure ? e.code : null;
  if (e instanceof WeirError && e.codeName) code = e.codeName;
  return { code, message: `${e?.name ?? 'Error'}: ${e?.message ?? String(e)}` };
}

// Commands run one at a time, in order.
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line.trim()) continue;
  let answer;
  try {
    const cmd = JSON.parse(line);
    const run = commands[cmd.cmd];
    if (!run) throw new Failure(`unknown command ${JSON.stringify(cmd.cmd)}`);
    answer = { ...(await run(cmd)), ok: true };
  } catch (e) {
    answer = { ok: false, error: failureOf(e) };
  }
  process.stdout.write(JSON.stringify(answer, replacer) + '\n');
}
if (client) {
  try {
    await client.close();
  } catch {
    // the suite is gone; nothing to report to
  }
}
process.exit(0);
