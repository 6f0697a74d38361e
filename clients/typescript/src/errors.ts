// Typed errors. Every one carries an ErrorCode number and its name (protocol.md §Error codes);
// errors that do not come from the server use code 0 and a descriptive codeName.

import { errorCodeName } from './protocol.js';

export class WeirError extends Error {
  /** The protocol ErrorCode, or 0 for errors that are not the server's (I/O, closed, ...). */
  readonly code: number;
  /** The ErrorCode name (e.g. `AUTH_FAILED`), or `CONNECTION`, `CLOSED`, `TIMEOUT`. */
  readonly codeName: string;
  constructor(code: number, codeName: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WeirError';
    this.code = code;
    this.codeName = codeName;
  }
}

/** An ERROR frame from the server. Fatal unless NOT_AUTHORIZED. */
export class ServerError extends WeirError {
  readonly fatal: boolean;
  /** The PUBLISH seq the error concerns, or 0n. */
  readonly refSeq: bigint;
  readonly text: string;
  constructor(code: number, fatal: boolean, refSeq: bigint, text: string) {
    super(code, errorCodeName(code), `${errorCodeName(code)} (${code})${fatal ? ' fatal' : ''}: ${text}`);
    this.name = 'ServerError';
    this.fatal = fatal;
    this.refSeq = refSeq;
    this.text = text;
  }
}

/** A GOODBYE from the server that ended the client (CLIENT_BYE after close() is not an error). */
export class GoodbyeError extends WeirError {
  readonly text: string;
  constructor(code: number, text: string) {
    super(code, errorCodeName(code), `GOODBYE ${errorCodeName(code)} (${code}): ${text}`);
    this.name = 'GoodbyeError';
    this.text = text;
  }
}

/** The server sent bytes this client cannot frame or decode. code: what the server would say. */
export class ProtocolError extends WeirError {
  constructor(code: number, message: string, options?: { cause?: unknown }) {
    super(code, errorCodeName(code), message, options);
    this.name = 'ProtocolError';
  }
}

/** The connection could not be made, or broke, or the client gave up reconnecting. */
export class ConnectionError extends WeirError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(0, 'CONNECTION', message, options);
    this.name = 'ConnectionError';
  }
}

/** An operation waited longer than its timeout. */
export class TimeoutError extends WeirError {
  constructor(message: string) {
    super(0, 'TIMEOUT', message);
    this.name = 'TimeoutError';
  }
}

/** The client was closed (by close(), or after a fatal error: see `cause`). */
export class ClosedError extends WeirError {
  constructor(message = 'the client is closed', options?: { cause?: unknown }) {
    super(0, 'CLOSED', message, options);
    this.name = 'ClosedError';
  }
}
