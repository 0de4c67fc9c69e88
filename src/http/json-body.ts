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
import { readWholeBody } from '../util/http.js';

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
  // Plain stream events (src/util/http.ts): small bodies whose declared length is within the limit (the HTTP parser holds a body to its `Content-Length`).
  const body = readWholeBody(req, res, limitBytes, () => new PayloadTooLarge(limitBytes));
  readAhead.set(req, body);
  return body;
}

/**
 * What {@link receiveBody} hands a body to, once: the whole body, or why it could not be read.
 * Shared by every request (no closure per request); `context` is the caller's per-request value.
 */
export interface BodyReceiver<T> {
  /** The whole body, within the limit. */
  received(req: IncomingMessage, res: ServerResponse, raw: Buffer, context: T): void;
  /**
   * The body could not be read: {@link PayloadTooLarge} past the limit (with `Connection: close`
   * set on `res`), or an `Error` when the request ended before its body did.
   */
  failed(req: IncomingMessage, res: ServerResponse, err: Error, context: T): void;
}

/** A body being received by {@link receiveBody}: what the stream's shared listeners need. */
interface Receiving {
  chunks: Buffer[];
  size: number;
  readonly limitBytes: number;
  readonly res: ServerResponse;
  readonly receiver: BodyReceiver<unknown>;
  readonly context: unknown;
}

/** Where a request being received keeps its {@link Receiving} (as Node keeps its own per-request state, under a symbol). */
const RECEIVING = Symbol('deputy.receiving');
type ReceivingRequest = IncomingMessage & { [RECEIVING]?: Receiving | undefined };

/**
 * Reads a small body (declared length within the limit, as for `readWholeBody` in src/util/http.ts) and hands it to
 * `receiver` in the turn its last chunk arrived: no promise, and no function made per request —
 * the stream's listeners are shared and find the request's state on it. For the PDP's cached
 * path (./authzen-cached.ts), where a hit is answered from the body alone and a promise, its
 * turn and four closures per request were a measurable share of a hit. Nothing is kept for
 * {@link readBody}: a receiver that hands the request on records the outcome with {@link handBodyOn}.
 */
export function receiveBody<T>(req: IncomingMessage, res: ServerResponse, limitBytes: number, receiver: BodyReceiver<T>, context: T): void {
  (req as ReceivingRequest)[RECEIVING] = { chunks: [], size: 0, limitBytes, res, receiver: receiver as BodyReceiver<unknown>, context };
  req.on('data', onReceivedData).once('end', onReceivedEnd).once('error', onReceiveClosed).once('close', onReceiveClosed);
}

/**
 * Records what {@link receiveBody} got for `req` — its bytes or its error — so that the routes'
 * {@link readBody} (and {@link readRequestAhead}) get the same, as if they had read it themselves.
 */
export function handBodyOn(req: IncomingMessage, outcome: Buffer | Error): void {
  if (!(outcome instanceof Error)) return void readAhead.set(req, Promise.resolve(outcome));
  const failed = Promise.reject(outcome);
  // Handled here: the routes may await it turns later (an unhandled rejection ends the process).
  failed.catch(() => undefined);
  readAhead.set(req, failed);
}

function onReceivedData(this: ReceivingRequest, chunk: Buffer): void {
  const receiving = this[RECEIVING];
  if (receiving === undefined) return;
  receiving.size += chunk.length;
  if (receiving.size <= receiving.limitBytes) return void receiving.chunks.push(chunk);
  receiving.res.setHeader('Connection', 'close');
  settleReceiving(this, new PayloadTooLarge(receiving.limitBytes));
}

function onReceivedEnd(this: ReceivingRequest): void {
  const chunks = this[RECEIVING]?.chunks ?? [];
  settleReceiving(this, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
}

function onReceiveClosed(this: ReceivingRequest): void {
  settleReceiving(this, new Error('the request ended before its body was read'));
}

/** Stops receiving (once) and hands the outcome to the receiver. */
function settleReceiving(req: ReceivingRequest, outcome: Buffer | Error): void {
  const receiving = req[RECEIVING];
  if (receiving === undefined) return;
  req[RECEIVING] = undefined;
  req.off('data', onReceivedData).off('end', onReceivedEnd).off('error', onReceiveClosed).off('close', onReceiveClosed);
  req.pause();
  if (outcome instanceof Error) receiving.receiver.failed(req, receiving.res, outcome, receiving.context);
  else receiving.receiver.received(req, receiving.res, outcome, receiving.context);
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
