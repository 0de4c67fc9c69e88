/**
 * The one error boundary of Deputy's own routes: typed errors become their protocol response;
 * anything else becomes a generic `server_error` with no detail, logged with its stack.
 *
 * @module
 */
import type Koa from 'koa';
import { DeputyError } from '../errors/index.js';
import type { Logger } from '../log.js';

export interface ErrorBody {
  error: string;
  error_description?: string;
}

export function errorBoundary(): Koa.Middleware {
  return async function renderErrors(ctx, next) {
    try {
      await next();
      // Nothing answered (no route, or a route without this method): still an OAuth-style JSON error.
      const status = ctx.status;
      if ((status === 404 || status === 405) && ctx.body == null) {
        ctx.status = status; // explicit, or Koa turns the status into 200 when the body is set
        ctx.body = (status === 404
          ? { error: 'not_found', error_description: 'no such endpoint' }
          : { error: 'invalid_request', error_description: 'method not allowed on this endpoint' }) satisfies ErrorBody;
      }
    } catch (err) {
      const log = ctx.state.log as Logger;
      if (err instanceof DeputyError) {
        log.debug({ err: { code: err.code, cause: describeCause(err.cause) } }, 'request refused');
        ctx.status = err.status;
        ctx.set(err.headers);
        ctx.set('Cache-Control', 'no-store');
        ctx.body = { ...err.details, error: err.code, error_description: err.description } satisfies ErrorBody;
        return;
      }
      const status = httpStatusOf(err);
      if (status !== undefined && status < 500) {
        // Errors thrown by Koa middleware (body parser limits, malformed JSON): expose the status only.
        ctx.status = status;
        ctx.body = { error: status === 413 ? 'payload_too_large' : 'invalid_request', error_description: safeMessage(status) } satisfies ErrorBody;
        return;
      }
      log.error({ err }, 'unhandled error');
      ctx.status = 500;
      ctx.set('Cache-Control', 'no-store');
      ctx.body = { error: 'server_error', error_description: 'an unexpected error occurred' } satisfies ErrorBody;
    }
  };
}

function httpStatusOf(err: unknown): number | undefined {
  const s = (err as { status?: unknown; statusCode?: unknown })?.status ?? (err as { statusCode?: unknown })?.statusCode;
  return typeof s === 'number' && s >= 400 && s < 600 ? s : undefined;
}

function safeMessage(status: number): string {
  if (status === 413) return 'request body is too large';
  if (status === 415) return 'unsupported content type';
  return 'malformed request';
}

function describeCause(cause: unknown): string | undefined {
  return cause instanceof Error ? `${cause.name}: ${cause.message}` : undefined;
}
