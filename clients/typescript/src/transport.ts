// The transport interface: a byte stream (TCP, TLS) or a message stream (WebSocket, one Weir
// frame per binary message) under the same three calls.

export interface TransportHandlers {
  /** Bytes received. A framed transport passes exactly one message per call. */
  onData(chunk: Uint8Array): void;
  /** The connection ended; `error` when it did not end cleanly. Called once. */
  onClose(error?: Error): void;
}

export interface Transport {
  /** True when each onData chunk is one whole message that must hold exactly one frame. */
  readonly framed: boolean;
  /** Sends one complete frame (a transport may coalesce frames into fewer writes). */
  send(frame: Uint8Array): void;
  /** Ends the connection after what was sent has been written. */
  end(): void;
  /** Closes the connection at once. */
  destroy(): void;
}

/** TLS settings for the TCP transport (Node's tls.connect options of the same names). */
export interface TlsOptions {
  /** Trusted CA certificates (PEM); default: the system's. */
  ca?: string | Uint8Array | Array<string | Uint8Array>;
  /** Client certificate and key (PEM), for servers that ask for one. */
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
  /** Server name for SNI and certificate checks; default: the host. */
  servername?: string;
  /** Default true. */
  rejectUnauthorized?: boolean;
}

export interface TcpEndpoint {
  host: string;
  port: number;
}

export interface WebSocketEndpoint {
  /** ws:// or wss:// URL of a Weir WebSocket listener. */
  url: string;
}

export type Endpoint = TcpEndpoint | WebSocketEndpoint;

/** Opens a connection; resolves once it can send, rejects if it cannot be made. */
export type TransportFactory = (handlers: TransportHandlers) => Promise<Transport>;

/** The WebSocket subprotocol of Weir. */
export const WEBSOCKET_SUBPROTOCOL = 'weir.v1';
