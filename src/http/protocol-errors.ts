import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { AppError } from '../errors.ts';
import type { Pipeline } from './pipeline.ts';
import { LINGER_MS } from './body.ts';

const answered = new WeakSet<Duplex>();

/** What node:http's parser and timers report, as our codes (Node's own answers are bare text). */
function toAppError(code: string | undefined): AppError {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return new AppError('headers_too_large', 'the request headers are over the 16 KiB limit');
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return new AppError(
        'payload_too_large',
        'the chunk extensions of the request body are too large',
        {},
      );
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'ERR_HTTP_HEADERS_TIMEOUT':
      return new AppError('request_timeout', 'the request did not arrive in time');
    default:
      // Content-Length with Transfer-Encoding, two lengths, a bad method, version or header byte...
      return new AppError(
        'invalid_request',
        `the request is not valid HTTP/1.1${code !== undefined && /^HPE_[A-Z_]{1,40}$/.test(code) ? ` (${code})` : ''}`,
        { issues: [{ path: '(http)', message: code ?? 'malformed request' }] },
      );
  }
}

/**
 * The server's 'clientError' listener: node:http's own refusals (a parse error, 408, 431) answered
 * with the JSON error envelope and a request id instead of Node's bare text. The socket is ended
 * after the answer and kept reading (the broken parser drops what follows) for LINGER_MS, so the
 * client reads the answer instead of a reset.
 */
export function createProtocolErrorHandler(pipeline: Pipeline) {
  return function onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (answered.has(socket)) return;
    answered.add(socket);
    const pending = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
    // The client is gone, or an answer already started on this connection: nothing readable to add.
    if (err.code === 'ECONNRESET' || !socket.writable || (pending && pending.headersSent)) {
      socket.destroy();
      return;
    }
    answerOnSocket(socket, toAppError(err.code), pipeline, '-', err.code ?? 'malformed');
  };
}

/**
 * Writes the envelope answer straight on a socket node:http no longer serves (a parse error, a
 * CONNECT), with the pipeline's headers, ends it and drops what still comes for LINGER_MS; one log
 * line (with `error`: why) and a metrics count.
 */
export function answerOnSocket(
  socket: Duplex,
  e: AppError,
  pipeline: Pipeline,
  method: string,
  why: string,
): void {
  answered.add(socket);
  // No request line was read (or none we serve): no path, no X-Request-Id to echo.
  const ex = pipeline.begin(method, '-', undefined);
  const a = pipeline.failure(ex, e, true);
  let head = `HTTP/1.1 ${a.status} ${STATUS_CODES[a.status]}\r\n`;
  for (const k in a.headers) head += `${k}: ${a.headers[k]}\r\n`;
  socket.write(`${head}\r\n${a.text}`);
  socket.end();
  socket.on('error', () => {});
  socket.resume();
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  pipeline.end(ex, a.status, { error: why });
}
