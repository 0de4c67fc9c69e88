/**
 * The one error serializer: a {@link DeputyError} as the HTTP response a client sees. Every
 * error body Deputy writes — its own routes, oidc-provider's endpoints (through
 * `src/oauth/oidc-provider/`), the "starting" answer before the app is attached — comes from
 * {@link serializeError}; the Koa and Node writers in `src/http/errors.ts` only copy its result.
 *
 * - Body: `{ ...details, error, error_description }` (RFC 6749 §5.2, RFC 6750 §3.1); the
 *   description is omitted when empty (as oidc-provider does).
 * - Headers: the error's own (`DPoP-Nonce`, `Retry-After`), `WWW-Authenticate` built from its
 *   {@link Challenge} (RFC 6750 §3, RFC 9449 §7.1, RFC 9728 §5.1), and `Cache-Control: no-store`
 *   (RFC 6749 §5.1: no error of Deputy's is cacheable).
 * - `expose: false`: `500 server_error`, a generic description, no header or member of the
 *   error — nothing of a bug's message, stack or cause reaches the client.
 *
 * @module
 */
import { NO_STORE } from '../util/http.js';
import type { Challenge, DeputyError } from './index.js';

/** The JSON body of every error response. */
export interface ErrorBody {
  error: string;
  error_description?: string;
  [member: string]: string | undefined;
}

/** A serialized error: what to write, independent of the HTTP framework. */
export interface ErrorResponse {
  status: number;
  headers: Record<string, string>;
  body: ErrorBody;
}

/** What a client is told of an error it may not see (`expose: false`). */
export const GENERIC_SERVER_ERROR: Readonly<ErrorBody> = { error: 'server_error', error_description: 'an unexpected error occurred' };

/**
 * The response for `err`: status, headers (with `WWW-Authenticate` and `Cache-Control`) and
 * body. Pure; never throws.
 */
export function serializeError(err: DeputyError): ErrorResponse {
  if (!err.expose) {
    return { status: 500, headers: { 'Cache-Control': NO_STORE }, body: { ...GENERIC_SERVER_ERROR } };
  }
  const headers: Record<string, string> = { ...err.headers };
  if (err.challenge) headers['WWW-Authenticate'] = challengeHeader(err.challenge, err.code, err.description);
  headers['Cache-Control'] = NO_STORE;
  const body: ErrorBody = { ...err.details, error: err.code };
  if (err.description !== '') body.error_description = err.description;
  return { status: err.status, headers, body };
}

/**
 * A `WWW-Authenticate` value (RFC 9110 §11.6.1): one challenge per scheme of `challenge`, in
 * order, each `realm`, then `error` / `error_description` when `challenge.error` (RFC 6750 §3),
 * `scope`, `resource_metadata` (RFC 9728 §5.1) and, for DPoP, `algs` (RFC 9449 §7.1).
 */
export function challengeHeader(challenge: Challenge, code: string, description: string): string {
  return challenge.schemes
    .map((scheme) => {
      const params = [`realm="${quote(challenge.realm)}"`];
      if (challenge.error) params.push(`error="${code}"`, `error_description="${quote(description)}"`);
      if (challenge.scope) params.push(`scope="${quote(challenge.scope)}"`);
      if (challenge.resourceMetadata) params.push(`resource_metadata="${quote(challenge.resourceMetadata)}"`);
      if (scheme === 'DPoP' && challenge.algs?.length) params.push(`algs="${challenge.algs.join(' ')}"`);
      return `${scheme} ${params.join(', ')}`;
    })
    .join(', ');
}

/** Values end up in a quoted-string (RFC 9110 §5.6.4): escape `\` and `"`. */
function quote(s: string): string {
  return s.replace(/[\\"]/g, (c) => `\\${c}`);
}
