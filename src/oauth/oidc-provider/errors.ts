/**
 * oidc-provider's errors rendered by Deputy's one serializer.
 *
 * oidc-provider renders its own errors (lib/shared/error_handler.js, 9.13.3): it sets the status,
 * writes `{ error, error_description }` (or calls the `renderError` configuration when the client
 * prefers HTML), then emits `server_error` or the endpoint's error event (`grant.error`, …) with
 * `(ctx, err)` — before the response is sent. Deputy hooks both: the `renderError` configuration
 * and every error event hand the error to {@link toDeputyError} and the writer Deputy's HTTP
 * layer gives `createProvider`, so oidc-provider's body is replaced by the serializer's.
 *
 * What changes against oidc-provider's own rendering: a store that is away is `503
 * temporarily_unavailable` with `Retry-After` (not "oops! something went wrong"), a body over its
 * 56 KiB parser limit is `413 payload_too_large` (not a generic `invalid_request`), a typed
 * Deputy error thrown by a grant keeps its status, a client-authentication refusal is
 * `401 invalid_client` naming its check (./client-authentication.ts), and every error is
 * `Cache-Control: no-store` (oidc-provider leaves its own 401s cacheable).
 *
 * @module
 */
import type Koa from 'koa';
import type Provider from 'oidc-provider';
import { errors } from 'oidc-provider';
import { DeputyError, PayloadTooLarge, ProtocolError, ServerError, TemporarilyUnavailable } from '../../errors/index.js';
import { unexpectedError, type Logger } from '../../log.js';
import { findStoreUnavailable } from '../../store/index.js';
import { describeCause } from '../../http/errors.js';
import { asClientAuthenticationError } from './client-authentication.js';

/** Writes a typed error as the response (src/http/errors.ts `writeError`). */
export type ErrorWriter = (ctx: Koa.Context, err: DeputyError) => void;

/** oidc-provider's request-body limit (lib/shared/selective_body.js: 56 KiB, not configurable). */
export const PROVIDER_BODY_LIMIT = 56 * 1024;

/** oidc-provider's error events for the endpoints Deputy serves: each `(ctx, err)`. */
const PROVIDER_ERROR_EVENTS = ['server_error', 'grant.error', 'introspection.error', 'revocation.error', 'jwks.error', 'discovery.error'] as const;

/**
 * What an error raised inside oidc-provider stands for in Deputy's family: a store outage (even
 * wrapped), oidc-provider's body-limit refusal, a Deputy error thrown by a grant, or one of
 * oidc-provider's own errors carried verbatim ({@link ProtocolError}); anything else is a
 * {@link ServerError}.
 */
export function toDeputyError(err: unknown): DeputyError {
  const unavailable = findStoreUnavailable(err);
  if (unavailable) return new TemporarilyUnavailable('the store is unavailable; retry later', { cause: unavailable });
  if (isBodyTooLarge(err)) return new PayloadTooLarge(PROVIDER_BODY_LIMIT);
  if (err instanceof DeputyError) return err;
  // Deputy's own refusal inside oidc-provider's machinery (a metadata document refused by Deputy's
  // fetch, wrapped as "fetch failed"): the precise typed error, naming what was refused.
  if (err instanceof errors.OIDCProviderError && err.cause instanceof DeputyError && err.cause.expose) return err.cause;
  if (err instanceof errors.OIDCProviderError) return fromProviderError(err);
  return new ServerError(err);
}

/** oidc-provider's error as it renders it (lib/helpers/err_out.js): code, description, `scope`. */
function fromProviderError(err: errors.OIDCProviderError): DeputyError {
  const { scope } = err as { scope?: unknown };
  return new ProtocolError(err.statusCode, err.error, err.error_description, {
    cause: err,
    expose: err.expose,
    ...(typeof scope === 'string' ? { details: { scope } } : {}),
  });
}

/** The `renderError` configuration member: oidc-provider's HTML-preferring path, same writer. */
export function renderErrorWith(write: ErrorWriter): (ctx: Koa.Context, out: unknown, err: unknown) => void {
  return (ctx, _out, err) => write(ctx, asClientAuthenticationError(ctx, err, toDeputyError(err)));
}

/**
 * Installs the rendering on `provider`'s error events and logs each error once: refusals at
 * info (the code and the check, never the request), outages at warn, bugs at error.
 */
export function useErrorRendering(provider: Provider, write: ErrorWriter, logger: Logger): void {
  // Provider is an EventEmitter; its typings only overload single literal event names.
  const events = provider as unknown as NodeJS.EventEmitter;
  for (const event of PROVIDER_ERROR_EVENTS) {
    events.on(event, (ctx: Koa.Context, err: unknown) => {
      const typed = asClientAuthenticationError(ctx, err, toDeputyError(err));
      logProviderError(logger, ctx, typed);
      // A body oidc-provider did not read to its end: the connection closes after the answer.
      if (typed instanceof PayloadTooLarge) ctx.set('Connection', 'close');
      write(ctx, typed);
    });
  }
}

function logProviderError(logger: Logger, ctx: Koa.Context, err: DeputyError): void {
  if (!err.expose) logger.error({ err: unexpectedError(err.cause ?? err) }, 'oauth server error');
  else if (err instanceof TemporarilyUnavailable) logger.warn({ err: { cause: describeCause(err.cause) }, path: ctx.path }, 'oauth request not served: store unavailable');
  // RFC 6749 §5.2 refusals are normal traffic: log the code and the check, never the request.
  else logger.info({ error: err.code, reason: err.description }, 'token request refused');
}

function isBodyTooLarge(err: unknown): boolean {
  const cause = (err as { cause?: unknown }).cause;
  return cause instanceof Error && cause.message === 'request entity too large';
}

