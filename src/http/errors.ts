/**
 * The one error renderer of Deputy: typed errors become their protocol response; a store that
 * is away becomes `503 temporarily_unavailable` with `Retry-After`; anything else becomes a
 * generic `server_error` with no detail, logged with its stack.
 *
 * Deputy's own routes reach it through {@link errorBoundary}; oidc-provider's endpoints (`/token`,
 * `/introspect`, `/revoke`) through {@link providerErrorRenderer}, which reclassifies the errors
 * oidc-provider's own handler turned into a 500 or a generic 400.
 *
 * @module
 */
import type Koa from 'koa';
import type Provider from 'oidc-provider';
import { DeputyError, PayloadTooLarge, ProblemError, TemporarilyUnavailable } from '../errors/index.js';
import type { Logger } from '../log.js';
import { findStoreUnavailable } from '../store/index.js';

export interface ErrorBody {
  /** The code; an object `{ type, code, message }` on the LLM gateway (the providers' shape). */
  error: string | { type: string; code: string; message: string; [member: string]: unknown };
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
      const typed = asDeputyError(err);
      if (typed) {
        if (typed.status >= 500) log.warn({ err: { code: typed.code, cause: describeCause(err) } }, 'request not served');
        else log.debug({ err: { code: typed.code, cause: describeCause(typed.cause) } }, 'request refused');
        renderError(ctx, typed);
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

/** Writes `err` as the response: its status, headers and `{error, error_description, …details}`. */
export function renderError(ctx: Koa.Context, err: DeputyError): void {
  ctx.status = err.status;
  ctx.set(err.headers);
  ctx.set('Cache-Control', 'no-store');
  // The LLM gateway's clients are the providers' SDKs: they read `error.message` / `error.type`
  // from an object (OpenAI and Anthropic error bodies), so there `error` is one (./llm.ts).
  // A problem's members are repeated there: the OpenAI SDK exposes only that object (`err.error`).
  const error = ctx.state.nestedError === true
    ? { type: err.code, code: err.code, message: err.description, ...(err instanceof ProblemError ? err.members : {}) }
    : err.code;
  if (err instanceof ProblemError) {
    // RFC 9457 §3: the problem members, then Deputy's own two (extension members, §3.2).
    ctx.type = 'application/problem+json';
    ctx.body = { type: err.problemType, title: err.title, status: err.status, detail: err.description, ...err.members, error, error_description: err.description };
    return;
  }
  ctx.type = 'json';
  ctx.body = { ...err.details, error, error_description: err.description };
}

/** The typed error `err` stands for: itself, or 503 when the store is away (even wrapped). */
function asDeputyError(err: unknown): DeputyError | undefined {
  const unavailable = findStoreUnavailable(err);
  if (unavailable) return new TemporarilyUnavailable('the store is unavailable; retry later', { cause: unavailable });
  return err instanceof DeputyError ? err : undefined;
}

/** oidc-provider's error events: each `(ctx, err)` after its handler set the response. */
const PROVIDER_ERROR_EVENTS = ['server_error', 'grant.error', 'introspection.error', 'revocation.error', 'jwks.error', 'discovery.error'] as const;

/**
 * oidc-provider renders its own errors (RFC 6749 §5.2) and turns anything it does not know into
 * `500 server_error`. Its error events fire before the response is written, so this rewrites the
 * two kinds Deputy classifies differently: a store that is away (503 with `Retry-After`, not
 * "oops! something went wrong") and a body over its 56 KiB parser limit (413, not a generic
 * `invalid_request`).
 */
export function providerErrorRenderer(provider: Provider, logger: Logger): void {
  // Provider is an EventEmitter; its typings only overload single literal event names.
  const events = provider as unknown as NodeJS.EventEmitter;
  for (const event of PROVIDER_ERROR_EVENTS) {
    events.on(event, (ctx: Koa.Context, err: unknown) => {
      const unavailable = findStoreUnavailable(err);
      if (unavailable) {
        logger.warn({ err: { cause: describeCause(unavailable.cause) }, path: ctx.path }, 'oauth request not served: store unavailable');
        renderError(ctx, new TemporarilyUnavailable('the store is unavailable; retry later', { cause: unavailable }));
        return;
      }
      if (isBodyTooLarge(err)) {
        ctx.set('Connection', 'close');
        renderError(ctx, new PayloadTooLarge(PROVIDER_BODY_LIMIT));
      }
    });
  }
}

/** oidc-provider's request-body limit (lib/shared/selective_body.js: 56 KiB, not configurable). */
export const PROVIDER_BODY_LIMIT = 56 * 1024;

function isBodyTooLarge(err: unknown): boolean {
  const cause = (err as { cause?: unknown }).cause;
  return cause instanceof Error && cause.message === 'request entity too large';
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
