/**
 * The AuthZEN routes' request body (§10.1): raw bytes within a limit, then JSON over strict
 * UTF-8. A body may be read once, ahead of the routes, by the PDP's cached path
 * (./authzen-cached.ts): the routes then get the same bytes, or the same error, from
 * {@link readBody}.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type Koa from 'koa';
import { InvalidRequest, PayloadTooLarge } from '../errors/index.js';

/** Bodies read ahead of the routes, by request (dropped with it). */
const readAhead = new WeakMap<IncomingMessage, Promise<Buffer>>();

/**
 * The raw request body, at most `limitBytes`: the one read ahead for this request if there was
 * one, else read now.
 *
 * @throws PayloadTooLarge (413) past the limit, with `Connection: close`.
 */
export function readBody(ctx: Koa.Context, limitBytes: number): Promise<Buffer> {
  return readAhead.get(ctx.req) ?? readStream(ctx, limitBytes);
}

/**
 * Reads the body now and keeps it for {@link readBody}: the routes see the same bytes (or the
 * same rejection) as if they had read it themselves.
 */
export function readBodyAhead(ctx: Koa.Context, limitBytes: number): Promise<Buffer> {
  return readRequestAhead(ctx.req, ctx.res, limitBytes);
}

/**
 * {@link readBodyAhead} before Koa has a context (the cached path's request listener): the body
 * read once, whoever asks first; a later {@link readBody} or {@link readBodyAhead} gets the same.
 */
export function readRequestAhead(req: IncomingMessage, res: ServerResponse, limitBytes: number): Promise<Buffer> {
  const known = readAhead.get(req);
  if (known) return known;
  const body = readEvents(req, res, limitBytes);
  readAhead.set(req, body);
  return body;
}

/**
 * {@link readStream} with plain stream events instead of an async iterator (a fraction of its
 * cost, which shows on the cached path); for small bodies whose declared length is within the
 * limit (the HTTP parser holds a body to its `Content-Length`), so the limit is only a guard.
 */
function readEvents(req: IncomingMessage, res: ServerResponse, limitBytes: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limitBytes) return void chunks.push(chunk);
      done();
      res.setHeader('Connection', 'close');
      reject(new PayloadTooLarge(limitBytes));
    };
    const onEnd = () => {
      done();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    };
    const onClose = () => {
      done();
      reject(new Error('the request ended before its body was read'));
    };
    const done = () => {
      req.off('data', onData).off('end', onEnd).off('error', onClose).off('close', onClose);
      req.pause();
    };
    req.on('data', onData).once('end', onEnd).once('error', onClose).once('close', onClose);
  });
}

async function readStream(ctx: Koa.Context, limitBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  // destroyOnReturn: false — refusing an oversized body must not destroy the request (and the
  // socket with it): the 413 has to reach the client (closeGracefullyWhenBodyUnread drains the rest).
  for await (const chunk of ctx.req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limitBytes) {
      ctx.set('Connection', 'close');
      throw new PayloadTooLarge(limitBytes);
    }
    chunks.push(chunk);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A JSON body as a value (RFC 8259, UTF-8 only).
 *
 * @throws InvalidRequest for bad UTF-8, an empty (or blank) body, or bad JSON.
 */
export function parseJson(bytes: Buffer): unknown {
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    throw new InvalidRequest('request body is not valid UTF-8');
  }
  if (text.trim() === '') throw new InvalidRequest('a JSON request body is required');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new InvalidRequest('request body is not valid JSON');
  }
}
