/**
 * HTTP/1.1 over a raw TCP socket, for tests that must see exactly what the server does with the
 * connection: uploads the server refuses part-way (does the client read the response, or get a
 * reset?), keep-alive connections across a shutdown.
 */
import { connect, type Socket } from 'node:net';

export interface RawResponse {
  status: number;
  /** Lower-cased header names. */
  headers: Record<string, string>;
  body: string;
}

export interface UploadResult {
  /** The response, when one was read completely. */
  response: RawResponse | undefined;
  /** A socket error the client saw (e.g. ECONNRESET), if any. */
  error: string | undefined;
  /** Body bytes the client managed to write. */
  written: number;
}

/**
 * Sends `method path` with a `size`-byte body, declared (`Content-Length`) or streamed
 * (`Transfer-Encoding: chunked`), writing as fast as the server takes it, and reads whatever
 * comes back until the server closes the connection.
 */
export function rawUpload(
  port: number,
  path: string,
  options: { size: number; chunked: boolean; headers?: Record<string, string>; method?: string },
): Promise<UploadResult> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    let error: string | undefined;
    let written = 0;
    let done = false;
    socket.on('data', (b: Buffer) => received.push(b));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error ??= err.code ?? err.message;
    });
    socket.on('close', () => {
      done = true;
      resolve({ response: parseResponse(Buffer.concat(received)), error, written });
    });
    socket.on('connect', () => {
      const head = [
        `${options.method ?? 'POST'} ${path} HTTP/1.1`,
        `Host: 127.0.0.1:${port}`,
        ...Object.entries({ 'content-type': 'application/json', ...options.headers }).map(([k, v]) => `${k}: ${v}`),
        options.chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${options.size}`,
        '',
        '',
      ].join('\r\n');
      socket.write(head);
      void writeBody(socket, options.size, options.chunked, (n) => (written += n), () => done).then(() => {
        if (!done && !socket.destroyed) socket.end();
      });
    });
  });
}

async function writeBody(socket: Socket, size: number, chunked: boolean, count: (n: number) => void, stopped: () => boolean): Promise<void> {
  const piece = Buffer.alloc(64 * 1024, 0x61); // 'a'
  let left = size;
  while (left > 0 && !stopped() && socket.writable) {
    const part = piece.subarray(0, Math.min(piece.length, left));
    const frame = chunked ? Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from('\r\n')]) : part;
    left -= part.length;
    count(part.length);
    if (!socket.write(frame)) await new Promise<void>((r) => {
      const go = () => {
        socket.off('drain', go);
        socket.off('close', go);
        r();
      };
      socket.on('drain', go);
      socket.on('close', go);
    });
  }
  if (chunked && socket.writable) socket.write('0\r\n\r\n');
}

/** Parses one HTTP/1.1 response (Content-Length or chunked body); undefined when incomplete. */
export function parseResponse(raw: Buffer): RawResponse | undefined {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const [statusLine, ...lines] = raw.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1]);
  if (!status) return undefined;
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let rest = raw.subarray(end + 4);
  if (headers['transfer-encoding'] === 'chunked') {
    const parts: Buffer[] = [];
    for (;;) {
      const nl = rest.indexOf('\r\n');
      if (nl < 0) return undefined;
      const n = parseInt(rest.subarray(0, nl).toString('latin1'), 16);
      if (n === 0) break;
      parts.push(rest.subarray(nl + 2, nl + 2 + n));
      rest = rest.subarray(nl + 2 + n + 2);
    }
    return { status, headers, body: Buffer.concat(parts).toString('utf8') };
  }
  const length = Number(headers['content-length'] ?? 0);
  if (rest.length < length) return undefined;
  return { status, headers, body: rest.subarray(0, length).toString('utf8') };
}
