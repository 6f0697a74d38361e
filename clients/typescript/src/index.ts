// @weir/client: TypeScript client for the Weir message-queue server.
export {
  Client,
  Subscription,
  LostError,
  parseJsonWithBigInts,
  type ConnectOptions,
  type Delivery,
  type LostEvent,
  type ClientEvents,
  type SessionInfo,
  type SubscribeOptions,
  type PublishOptions,
  type StatsReport,
} from './client.js';
export {
  WeirError,
  ServerError,
  GoodbyeError,
  ProtocolError,
  ConnectionError,
  TimeoutError,
  ClosedError,
} from './errors.js';
export {
  WEBSOCKET_SUBPROTOCOL,
  type Transport,
  type TransportFactory,
  type TransportHandlers,
  type Endpoint,
  type TcpEndpoint,
  type WebSocketEndpoint,
  type TlsOptions,
} from './transport.js';
export type { WebSocketConstructor, WebSocketLike } from './websocket.js';
export { ErrorCode, errorCodeName, type ErrorCodeName } from './protocol.js';
export * as protocol from './protocol.js';
