/**
 * Cross-cutting middleware for every request, Deputy's routes and oidc-provider's alike.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type Koa from 'koa';
import { looksLikeToken } from '../audit/index.js';
import { PayloadTooLarge } from '../errors/index.js';
import type { Logger } from '../log.js';

/** A caller-supplied request id is echoed only if it is short and harmless in logs and headers ({@link acceptedRequestId}). */
export const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Whether a caller's `X-Request-ID` is taken as the request's id (echoed, logged, carried by its
 * receipts as `request_id`): {@link REQUEST_ID}, and not shaped like a token — a JWS fits that
 * pattern, and a receipt refuses it ("receipts never carry tokens"), so a gateway call carrying
 * one was answered as a store outage and raised the receipt-failure alert. Any other id is
 * replaced by a new one.
 */
export function acceptedRequestId(given: unknown): given is string {
  return typeof given === 'string' && REQUEST_ID.test(given) && !looksLikeToken(given);
}

/**
 * `X-Request-ID`: echoed when valid, generated otherwise; a child logger carries it.
 *
 * The child is built on first use of `ctx.state.log` (a getter): a pino child copies its
 * bindings and re-applies redaction when built (~7 KiB of heap), and most successful calls never
 * log at the default level (issue 16, eighth round: the gateway's allocation per call).
 */
export function requestContext(logger: Logger): Koa.Middleware {
  // Not `async`: a middleware that only prepares and passes on returns `next()`'s promise
  // instead of wrapping it in one more (issue 16, eighth round: allocation per call).
  return function requestId(ctx, next) {
    const given = ctx.get('X-Request-ID');
    const id = acceptedRequestId(given) ? given : randomUUID();
    ctx.state.requestId = id;
    defineLazyLog(ctx.state, logger, id);
    ctx.set('X-Request-ID', id);
    return next();
  };
}

/** `state.log`: `logger.child({ reqId })`, built on the first read and kept; assignable (tests, middleware replacing it). */
function defineLazyLog(state: Koa.DefaultState, logger: Logger, reqId: string): void {
  let child: Logger | undefined;
  Object.defineProperty(state, 'log', {
    configurable: true,
    enumerable: true,
    get: () => (child ??= logger.child({ reqId })),
    set: (value: Logger) => {
      child = value;
    },
  });
}

/**
 * One line per request: method, path (never the query string, which may carry tokens), status,
 * time. `logger` is the root logger: with `info` off (the line would be dropped), nothing is
 * timed or built, and the request's child logger is not made for it.
 */
export function accessLog(logger?: Logger): Koa.Middleware {
  return async function logRequest(ctx, next) {
    if (logger && !logger.isLevelEnabled('info')) return next();
    const start = process.hrtime.bigint();
    try {
      await next();
    } finally {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      ctx.state.log.info({ method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(ms * 10) / 10 }, 'request');
    }
  };
}

/** Refuses a declared body larger than the limit before reading it. Parsers enforce it on streamed bodies. */
export function bodyLimit(limit: number): Koa.Middleware {
  return async function checkContentLength(ctx, next) {
    const length = Number(ctx.get('Content-Length') || 0);
    if (length > limit) {
      ctx.set('Connection', 'close');
      throw new PayloadTooLarge(limit);
    }
    await next();
  };
}

export function securityHeaders(): Koa.Middleware {
  // Not `async` (see requestContext): passes `next()`'s promise on.
  return function setSecurityHeaders(ctx, next) {
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    return next();
  };
}

/** Bounds of the drain after an early response: what a refused client may still send. */
export interface DrainLimits {
  /** Bytes of the unread request body discarded before the connection is cut. */
  maxBytes: number;
  /** Milliseconds without a byte from the client (it stopped sending but did not close) before the cut. */
  maxIdleMs: number;
  /** Milliseconds in all the client gets to finish sending and close before the connection is cut. */
  maxMs: number;
}

export const DEFAULT_DRAIN_LIMITS: DrainLimits = { maxBytes: 16 * 1024 * 1024, maxIdleMs: 5_000, maxMs: 30_000 };

/**
 * Closes a connection gracefully when the response is decided before the request body was read
 * (413 on a declared or streamed body, 401 before an upload, 503…), RFC 9112 §9.6.
 *
 * Closing at once would leave the client's unsent body arriving at a closed socket: the kernel
 * answers it with a reset, which can reach the client before it has read the response
 * (ECONNRESET instead of the 413). So the response carries `Connection: close`, the write side
 * is shut after it (FIN: the client can read the response to its end), and what the client still
 * sends is read and discarded — up to `limits.maxBytes`, `limits.maxMs` in all, or
 * `limits.maxIdleMs` without a byte, whichever comes first — until the client closes its side.
 * Must run outermost (around the error renderer, so it sees the final status).
 */
export function closeGracefullyWhenBodyUnread(limits: DrainLimits = DEFAULT_DRAIN_LIMITS): Koa.Middleware {
  return async function gracefulClose(ctx, next) {
    try {
      await next();
    } finally {
      // Error responses only: a successful streamed response (the gateway) may still be
      // forwarding the request body upstream, and that body is not ours to discard.
      if (!ctx.req.complete && ctx.status >= 400) {
        ctx.set('Connection', 'close');
        drainThenClose(ctx.req, limits);
      }
    }
  };
}

const draining = new WeakSet<Socket>();

/** Discards the rest of `req`'s body (bounded) and replaces the socket's close with a half-close. */
export function drainThenClose(req: IncomingMessage, limits: DrainLimits): void {
  const socket = req.socket;
  if (draining.has(socket)) return;
  draining.add(socket);
  const cut = () => socket.destroy();
  const total = setTimeout(cut, limits.maxMs);
  total.unref();
  const idle = setTimeout(cut, limits.maxIdleMs);
  idle.unref();
  socket.once('close', () => {
    clearTimeout(total);
    clearTimeout(idle);
  });
  let seen = 0;
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > limits.maxBytes) return cut();
    idle.refresh();
  });
  req.on('end', () => idle.refresh()); // now waiting for the client to close its side
  req.on('error', () => {}); // an aborted upload is expected here
  req.resume();
  // A body reader still detaching (its 'readable' listener keeps the stream paused): resume again once it has.
  setImmediate(() => req.resume());
  // Node's server calls destroySoon() once a `Connection: close` response is written: end the
  // write side only (http.Server sockets allow half-open) and let the drain above finish; the
  // socket closes when the client closes its side, or when a bound is hit.
  socket.destroySoon = function halfClose(this: Socket) {
    if (this.writable) this.end();
  };
}
