/**
 * Writing errors: every error response leaves through {@link writeError} (Koa) or
 * {@link writeNodeError} (a bare `ServerResponse`), which copy what the one serializer
 * (`serializeError`, src/errors/serialize.ts) built. Nothing else writes an error body.
 *
 * {@link classifyError} decides what an arbitrary thrown value stands for: a typed error is
 * itself; a store that is away (even wrapped) is `503 temporarily_unavailable` with
 * `Retry-After`; a Koa-level HTTP error (body parser limits, malformed JSON) keeps its 4xx status
 * with a generic description; anything else is `500 server_error` with no detail.
 *
 * Deputy's own routes reach it through {@link errorBoundary}; oidc-provider's endpoints through
 * the error hook installed by `createProvider` (src/oauth/oidc-provider/), which is given
 * {@link writeError}.
 *
 * @module
 */
import type { ServerResponse } from 'node:http';
import type Koa from 'koa';
import { DeputyError, InvalidRequest, MethodNotAllowed, NotFound, PayloadTooLarge, ServerError, TemporarilyUnavailable } from '../errors/index.js';
import { serializeError } from '../errors/serialize.js';
import { errorCause, unexpectedError, type Logger } from '../log.js';
import { metrics } from '../observability/metrics.js';
import { findStoreUnavailable, StoreUnavailableError } from '../store/index.js';

/**
 * Koa middleware: renders whatever the routes below throw, and answers a request nothing
 * answered (no route: 404 `not_found`; a route without this method: 405 `invalid_request`).
 */
export function errorBoundary(): Koa.Middleware {
  return async function renderErrors(ctx, next) {
    try {
      await next();
      // Nothing answered (no route, or a route without this method): still an OAuth-style JSON error.
      const status = ctx.status;
      if ((status === 404 || status === 405) && ctx.body == null) {
        writeError(ctx, status === 404 ? new NotFound('no such endpoint') : new MethodNotAllowed());
      }
    } catch (err) {
      const typed = classifyError(err);
      logError(ctx.state.log, typed);
      writeError(ctx, typed);
    }
  };
}

/**
 * The typed error `err` stands for (see the module documentation). Never throws.
 */
export function classifyError(err: unknown): DeputyError {
  const unavailable = findStoreUnavailable(err);
  if (unavailable) {
    metrics.storeUnavailable.inc();
    return new TemporarilyUnavailable('the store is unavailable; retry later', { cause: unavailable });
  }
  if (err instanceof DeputyError) return err;
  const status = httpStatusOf(err);
  if (status !== undefined && status < 500) {
    // Errors thrown by Koa middleware (body parser limits, malformed JSON): expose the status only.
    return status === 413 ? new PayloadTooLarge('request body is too large') : new InvalidRequest(safeMessage(status), { status, cause: err });
  }
  return new ServerError(err);
}

/** Logs a refusal at debug level, a 5xx at warn, an unexpected error (a bug) at error with its stack's frames. */
export function logError(log: Logger, err: DeputyError): void {
  if (err instanceof ServerError) log.error({ err: unexpectedError(err.cause) }, 'unhandled error');
  else if (err.status >= 500) log.warn({ err: { code: err.code, cause: describeCause(err.cause) } }, 'request not served');
  else log.debug({ err: { code: err.code, cause: describeCause(err.cause) } }, 'request refused');
}

/** Writes `err` as the Koa response: the serializer's status, headers and JSON body. */
export function writeError(ctx: Koa.Context, err: DeputyError): void {
  const { status, headers, body, contentType } = serializeError(err, { providerShape: ctx.state.providerErrorShape === true });
  ctx.status = status;
  ctx.set(headers);
  ctx.type = contentType ?? 'json';
  ctx.body = body;
}

/** Writes `err` on a bare Node response (before the Koa app is attached). */
export function writeNodeError(res: ServerResponse, err: DeputyError): void {
  const { status, headers, body, contentType } = serializeError(err);
  res.writeHead(status, { ...headers, 'Content-Type': contentType ?? 'application/json' });
  res.end(JSON.stringify(body));
}

function httpStatusOf(err: unknown): number | undefined {
  const s = (err as { status?: unknown; statusCode?: unknown })?.status ?? (err as { statusCode?: unknown })?.statusCode;
  return typeof s === 'number' && s >= 400 && s < 600 ? s : undefined;
}

function safeMessage(status: number): string {
  if (status === 415) return 'unsupported content type';
  return 'malformed request';
}

/**
 * What a logged error's cause was, by its name and `code` (`Error (ECONNREFUSED)`, `SyntaxError`),
 * and by its message only when Deputy wrote it: a typed error (as told to clients) or the store's
 * `StoreUnavailableError` ("the database is unreachable", "store ping timed out after 2000 ms":
 * which of the two is what an operator acts on), followed by what it wraps, named the same way
 * (`← Error (53300)`: the SQLSTATE). Never any other message: V8's `JSON.parse` quotes the text
 * it failed on, so a malformed body's message carries the body — a secret in it with it. Also
 * oidc-provider's store-outage line (src/oauth/oidc-provider/errors.ts), so both name an outage alike.
 */
export function describeCause(cause: unknown): string | undefined {
  if (!(cause instanceof DeputyError || cause instanceof StoreUnavailableError)) return errorCause(cause);
  const underneath = errorCause(cause.cause);
  return `${cause.name}: ${cause.message}${underneath === undefined ? '' : ` ← ${underneath}`}`;
}
