// TCP and TLS transport, on Node's net and tls modules (imported only when used, so that the
// rest of the package loads in browsers).

import { ConnectionError } from './errors.js';
import type { TcpEndpoint, TlsOptions, Transport, TransportHandlers } from './transport.js';

export async function connectTcp(
  endpoint: TcpEndpoint,
  tlsOptions: TlsOptions | boolean | undefined,
  timeoutMs: number,
  handlers: TransportHandlers,
): Promise<Transport> {
  const net = await import('node:net');
  const useTls = tlsOptions !== undefined && tlsOptions !== false;
  let socket: import('node:net').Socket;
  if (useTls) {
    const tls = await import('node:tls');
    const o: TlsOptions = tlsOptions === true ? {} : tlsOptions;
    socket = tls.connect({
      host: endpoint.host,
      port: endpoint.port,
      servername: o.servername ?? (net.isIP(endpoint.host) ? undefined : endpoint.host),
      ca: o.ca as never,
      cert: o.cert as never,
      key: o.key as never,
      rejectUnauthorized: o.rejectUnauthorized ?? true,
    });
  } else {
    socket = net.connect({ host: endpoint.host, port: endpoint.port });
  }
  socket.setNoDelay(true);

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ConnectionError(`connect to ${endpoint.host}:${endpoint.port} timed out`));
    }, timeoutMs);
    const onError = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(new ConnectionError(`connect to ${endpoint.host}:${endpoint.port}: ${err.message}`, { cause: err }));
    };
    socket.once('error', onError);
    socket.once(useTls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      resolve();
    });
  });

  let closed = false;
  let lastError: Error | undefined;
  socket.on('data', (chunk: Buffer) => {
    if (!closed) handlers.onData(chunk);
  });
  socket.on('error', (err) => {
    lastError = err;
  });
  socket.on('close', () => {
    if (closed) return;
    closed = true;
    handlers.onClose(lastError ?? new ConnectionError('connection closed by the peer'));
  });

  // Frames sent in one synchronous run are written together.
  let queued: Uint8Array[] = [];
  const flush = (): void => {
    const frames = queued;
    queued = [];
    if (closed || socket.destroyed || frames.length === 0) return;
    socket.write(frames.length === 1 ? frames[0]! : Buffer.concat(frames));
  };

  return {
    framed: false,
    send(frame: Uint8Array): void {
      if (closed) return;
      if (queued.length === 0) queueMicrotask(flush);
      queued.push(frame);
    },
    end(): void {
      flush();
      socket.end();
    },
    destroy(): void {
      if (closed) return;
      closed = true;
      socket.destroy();
      handlers.onClose();
    },
  };
}
