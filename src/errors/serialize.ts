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
import { ProblemError, type Challenge, type DeputyError } from './index.js';

/** The JSON body of every error response. */
export interface ErrorBody {
  error: string;
  error_description?: string;
  [member: string]: string | undefined;
}

/** An RFC 9457 problem document (`application/problem+json`) with Deputy's two members. */
export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  error: string | ProviderErrorObject;
  error_description: string;
  [member: string]: unknown;
}

/** `error` in the model providers' shape: what the OpenAI and Anthropic SDKs read. */
export interface ProviderErrorObject {
  type: string;
  code: string;
  message: string;
  [member: string]: unknown;
}

/** An error body in the providers' shape (`error` an object), with Deputy's details. */
export interface ProviderErrorBody {
  error: ProviderErrorObject;
  error_description?: string;
  [member: string]: string | ProviderErrorObject | undefined;
}

/** A serialized error: what to write, independent of the HTTP framework. */
export interface ErrorResponse {
  status: number;
  headers: Record<string, string>;
  body: ErrorBody | ProblemBody | ProviderErrorBody;
  /** `application/problem+json` for a {@link ProblemError}; absent: JSON. */
  contentType?: 'application/problem+json';
}

/** How to serialize. */
export interface SerializeOptions {
  /**
   * `error` as an object `{ type, code, message, …problem members }` (the LLM gateway: the
   * providers' SDKs read `error.message`; the OpenAI SDK exposes only that object).
   */
  providerShape?: boolean;
}

/** What a client is told of an error it may not see (`expose: false`). */
export const GENERIC_SERVER_ERROR: Readonly<ErrorBody> = { error: 'server_error', error_description: 'an unexpected error occurred' };

/**
 * The response for `err`: status, headers (with `WWW-Authenticate` and `Cache-Control`) and
 * body. Pure; never throws.
 */
export function serializeError(err: DeputyError, options: SerializeOptions = {}): ErrorResponse {
  if (!err.expose) {
    const body = { ...GENERIC_SERVER_ERROR };
    return { status: 500, headers: { 'Cache-Control': NO_STORE }, body: options.providerShape ? { ...body, error: { type: body.error, code: body.error, message: body.error_description! } } : body };
  }
  const headers: Record<string, string> = { ...err.headers };
  if (err.challenge) headers['WWW-Authenticate'] = challengeHeader(err.challenge, err.code, err.description);
  headers['Cache-Control'] = NO_STORE;
  const problem = err instanceof ProblemError ? err : undefined;
  const error = options.providerShape ? { type: err.code, code: err.code, message: err.description, ...(problem?.members ?? {}) } : err.code;
  if (problem) {
    // RFC 9457 §3: the problem's members, then Deputy's own two (extension members, §3.2).
    const body: ProblemBody = { type: problem.problemType, title: problem.title, status: err.status, detail: err.description, ...problem.members, error, error_description: err.description };
    return { status: err.status, headers, body, contentType: 'application/problem+json' };
  }
  if (typeof error !== 'string') return { status: err.status, headers, body: { ...err.details, error, error_description: err.description } };
  const body: ErrorBody = { ...err.details, error };
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
