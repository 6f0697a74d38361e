import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';

import { WebSocket as WsWebSocket, WebSocketServer, type WebSocket as WsSocket } from 'ws';

import { Client, WEBSOCKET_SUBPROTOCOL, type WebSocketConstructor } from '../src/index.js';
import { startServer, until, type ServerHandle } from './helpers.js';

/**
 * A WebSocket-to-TCP bridge standing in for the server's WebSocket listener: each binary
 * message's bytes go to weir-server over TCP, and the server's bytes come back one message
 * per complete frame.
 */
class Bridge {
  port = 0;
  readonly wss: WebSocketServer;
  readonly pairs = new Set<{ ws: WsSocket; tcp: net.Socket }>();
  messagesIn = 0;
  messagesOut = 0;

  constructor(private readonly target: number) {
    this.wss = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      handleProtocols: (protocols) => (protocols.has(WEBSOCKET_SUBPROTOCOL) ? WEBSOCKET_SUBPROTOCOL : false),
    });
    this.wss.on('connection', (ws) => this.onConnection(ws));
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => (this.wss.address() ? r() : this.wss.once('listening', () => r())));
    this.port = (this.wss.address() as net.AddressInfo).port;
    return this.port;
  }

  private onConnection(ws: WsSocket): void {
    const tcp = net.connect({ host: '127.0.0.1', port: this.target });
    const pair = { ws, tcp };
    this.pairs.add(pair);
    let pending = Buffer.alloc(0);
    const early: Buffer[] = [];
    let open = false;
    tcp.on('connect', () => {
      open = true;
      for (const b of early) tcp.write(b);
    });
    ws.on('message', (data, isBinary) => {
      assert.ok(isBinary, 'Weir frames travel in binary messages');
      this.messagesIn++;
      const b = Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]);
      if (open) tcp.write(b);
      else early.push(b);
    });
    tcp.on('data', (chunk) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      while (pending.length >= 4) {
        const total = 4 + pending.readUInt32BE(0);
        if (pending.length < total) break;
        ws.send(pending.subarray(0, total), { binary: true });
        this.messagesOut++;
        pending = pending.subarray(total);
      }
    });
    const close = (): void => {
      this.pairs.delete(pair);
      tcp.destroy();
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.terminate();
    };
    tcp.on('close', close);
    tcp.on('error', close);
    ws.on('close', close);
    ws.on('error', close);
  }

  /** Breaks every bridged connection abruptly (both sides). */
  dropAll(): void {
    for (const p of [...this.pairs]) {
      p.ws.terminate();
      p.tcp.destroy();
    }
  }

  close(): Promise<void> {
    this.dropAll();
    return new Promise((r) => this.wss.close(() => r()));
  }
}

// Node 20 has the WHATWG WebSocket only with --experimental-websocket (npm test passes it);
// otherwise use the ws package's client, which implements the same API.
const webSocket = ((globalThis as { WebSocket?: unknown }).WebSocket ?? WsWebSocket) as unknown as WebSocketConstructor;

describe('WebSocket transport, through a bridge to the real server', () => {
  let server: ServerHandle;
  let bridge: Bridge;
  before(async () => {
    server = await startServer();
    bridge = new Bridge(server.port);
    await bridge.listen();
  });
  after(async () => {
    await bridge.close();
    await server.stop();
  });

  it('pub/sub between a WebSocket client and a TCP client', async () => {
    const url = `ws://127.0.0.1:${bridge.port}/`;
    const ws = await Client.connect({ url }, { name: 'ws', webSocket });
    const tcp = await Client.connect({ host: '127.0.0.1', port: server.port }, { name: 'tcp' });
    const s = await ws.subscribe('mixed', { events: ['a'] });
    const t = await tcp.subscribe('mixed');
    assert.equal(await ws.publish('mixed', 'a', 'from ws'), 1n);
    await tcp.publish('mixed', 'a', 'from tcp');
    await tcp.publish('mixed', 'b', 'filtered out for ws');
    assert.equal((await s.next()).value!.text(), 'from ws');
    assert.equal((await s.next()).value!.text(), 'from tcp');
    const seen: string[] = [];
    for await (const d of t) {
      seen.push(d.text());
      if (seen.length === 3) break;
    }
    assert.deepEqual(seen, ['from ws', 'from tcp', 'filtered out for ws']);
    const st = await ws.stats();
    assert.equal(st.sessions.length, 2);
    await ws.close();
    await tcp.close();
    assert.ok(bridge.messagesIn > 0 && bridge.messagesOut > 0);
  });

  it('many messages over WebSocket, then a resume after the bridge drops the connection', async () => {
    const url = `ws://127.0.0.1:${bridge.port}/`;
    const N = 5000;
    const sub = await Client.connect({ url }, { name: 'ws-sub', webSocket, reconnectDelayMs: 10, maxReconnectDelayMs: 50 });
    const pub = await Client.connect({ host: '127.0.0.1', port: server.port }, { name: 'tcp-pub' });
    const s = await sub.subscribe('wsbulk');
    const got: number[] = [];
    const consumer = (async () => {
      for await (const d of s) {
        got.push(Number(d.text()));
        if (got.length === N / 2) bridge.dropAll();
        if (got.length === N) break;
      }
    })();
    for (let i = 0; i < N; i++) {
      const p = pub.publish('wsbulk', 'n', String(i));
      if (i % 500 === 499) await p;
    }
    await pub.flush();
    await consumer;
    assert.deepEqual(got, Array.from({ length: N }, (_, i) => i));
    await until(() => sub.counters.resumed >= 1, 'the WebSocket client resumed');
    assert.equal(sub.counters.lost, 0);
    await sub.close();
    await pub.close();
  });

  it('the ws package’s WebSocket works as the constructor too', async () => {
    const c = await Client.connect(
      { url: `ws://127.0.0.1:${bridge.port}/` },
      { name: 'ws-pkg', webSocket: WsWebSocket as unknown as WebSocketConstructor },
    );
    const s = await c.subscribe('pkg');
    await c.publish('pkg', 'e', 'via ws package');
    assert.equal((await s.next()).value!.text(), 'via ws package');
    await c.close();
  });

  it('a server that does not agree to weir.v1 is refused', async () => {
    const plain = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: () => false });
    await new Promise<void>((r) => plain.once('listening', () => r()));
    const port = (plain.address() as net.AddressInfo).port;
    await assert.rejects(Client.connect({ url: `ws://127.0.0.1:${port}/` }, { webSocket, connectTimeoutMs: 5000 }));
    await new Promise<void>((r) => plain.close(() => r()));
  });
});
