// WebSocket transport: each Weir frame travels in one binary message, subprotocol weir.v1.
// Uses the WHATWG WebSocket API: the browser's, Node's global one (Node 22+, or Node 20 with
// --experimental-websocket), or any compatible constructor passed in (e.g. the `ws` package).

import { ConnectionError } from './errors.js';
import {
  WEBSOCKET_SUBPROTOCOL,
  type Transport,
  type TransportHandlers,
  type WebSocketEndpoint,
} from './transport.js';

/** The subset of the WHATWG WebSocket this transport uses. */
export interface WebSocketLike {
  binaryType: string;
  readonly protocol: string;
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export async function connectWebSocket(
  endpoint: WebSocketEndpoint,
  ctor: WebSocketConstructor | undefined,
  timeoutMs: number,
  handlers: TransportHandlers,
): Promise<Transport> {
  const WS = ctor ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (!WS) {
    throw new ConnectionError(
      'no WebSocket implementation: pass options.webSocket (e.g. the ws package), or run Node 20 with --experimental-websocket',
    );
  }
  const ws = new WS(endpoint.url, WEBSOCKET_SUBPROTOCOL);
  ws.binaryType = 'arraybuffer';
  let closed = false;

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      fail(new ConnectionError(`WebSocket ${endpoint.url}: timed out`));
    }, timeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      ws.onopen = ws.onerror = ws.onclose = null;
      closed = true;
      try {
        ws.close();
      } catch {
        /* not open */
      }
      reject(err);
    };
    ws.onerror = () => fail(new ConnectionError(`WebSocket ${endpoint.url}: connection failed`));
    ws.onclose = (ev) => fail(new ConnectionError(`WebSocket ${endpoint.url}: closed (${ev.code ?? ''}) before opening`));
    ws.onopen = () => {
      clearTimeout(timer);
      if (ws.protocol !== WEBSOCKET_SUBPROTOCOL) {
        fail(new ConnectionError(`WebSocket ${endpoint.url}: server chose subprotocol "${ws.protocol}", not ${WEBSOCKET_SUBPROTOCOL}`));
        return;
      }
      resolve();
    };
  });

  const finish = (err?: Error): void => {
    if (closed) return;
    closed = true;
    handlers.onClose(err);
  };
  ws.onmessage = (ev) => {
    if (closed) return;
    const data = ev.data;
    if (data instanceof ArrayBuffer) handlers.onData(new Uint8Array(data));
    else if (ArrayBuffer.isView(data)) handlers.onData(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    else finish(new ConnectionError('WebSocket: a text message; Weir frames travel in binary messages'));
  };
  ws.onerror = () => {
    /* onclose follows */
  };
  ws.onclose = (ev) => finish(new ConnectionError(`WebSocket closed (${ev.code ?? ''} ${ev.reason ?? ''})`));

  return {
    framed: true,
    send(frame: Uint8Array): void {
      if (!closed) ws.send(frame);
    },
    end(): void {
      try {
        ws.close(1000);
      } catch {
        /* already closing */
      }
    },
    destroy(): void {
      if (closed) return;
      try {
        ws.close(1000);
      } catch {
        /* already closing */
      }
      finish();
    },
  };
}
