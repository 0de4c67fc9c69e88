/**
 * Cross-cutting middleware for every request, Deputy's routes and oidc-provider's alike.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import type Koa from 'koa';
import { PayloadTooLarge } from '../errors/index.js';
import type { Logger } from '../log.js';

/** A caller-supplied request id is echoed only if it is short and harmless in logs and headers. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** `X-Request-ID`: echoed when valid, generated otherwise; a child logger carries it. */
export function requestContext(logger: Logger): Koa.Middleware {
  return async function requestId(ctx, next) {
    const given = ctx.get('X-Request-ID');
    const id = REQUEST_ID.test(given) ? given : randomUUID();
    ctx.state.requestId = id;
    ctx.state.log = logger.child({ reqId: id });
    ctx.set('X-Request-ID', id);
    await next();
  };
}

/** One line per request: method, path (never the query string, which may carry tokens), status, time. */
export function accessLog(): Koa.Middleware {
  return async function logRequest(ctx, next) {
    const start = process.hrtime.bigint();
    try {
      await next();
    } finally {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      (ctx.state.log as Logger).info({ method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(ms * 10) / 10 }, 'request');
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
  return async function setSecurityHeaders(ctx, next) {
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'no-referrer');
    await next();
  };
}
