/**
 * Typed errors of the agent library. Every refusal Deputy sends carries a protocol code; these
 * classes keep it (`error`, `status`, `description`) so an agent can `switch (err.error)` or test
 * `instanceof` instead of parsing bodies:
 *
 * - {@link DeputyProtocolError}: an OAuth / RFC 6750 / RFC 9449 error (`invalid_grant`,
 *   `invalid_client`, `invalid_token`, `invalid_dpop_proof`, `use_dpop_nonce`, …) from `/token`,
 *   `/revoke` or a gateway's `WWW-Authenticate` challenge.
 * - {@link PolicyDeniedError}: a gateway's `403 access_denied`, with the PDP's reason.
 * - {@link BudgetExceededError}: `402 Payment Required` with an RFC 9457 problem body.
 *
 * Programmer mistakes (bad options, no token for a URL) are {@link DeputyAgentError}s with a
 * stable `code`; network failures propagate as the platform's own `TypeError` from `fetch`.
 *
 * @module
 */

import * as client from 'openid-client';

/** Stable codes of errors raised by the library itself, not by Deputy. */
export type DeputyAgentErrorCode =
  | 'ERR_DEPUTY_PROTOCOL'
  | 'ERR_DEPUTY_NO_TOKEN'
  | 'ERR_DEPUTY_DISPOSED'
  | 'ERR_DEPUTY_BODY_TOO_LARGE'
  | 'ERR_DEPUTY_INVALID_KEY'
  | 'ERR_DEPUTY_INVALID_RESPONSE';

/** Base class of every error the library throws. */
export class DeputyAgentError extends Error {
  override name = 'DeputyAgentError';
  constructor(
    readonly code: DeputyAgentErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * An error answered by Deputy with an OAuth-style code: RFC 6749 §5.2 (`/token`), RFC 7009
 * (`/revoke`), RFC 6750 §3 / RFC 9449 §7.1 (`WWW-Authenticate` at a gateway), or Deputy's own
 * gateway codes (`access_denied`, `connection_required`, …).
 */
export class DeputyProtocolError extends DeputyAgentError {
  override name = 'DeputyProtocolError';
  /** The protocol error code, e.g. `invalid_grant`. */
  readonly error: string;
  /** HTTP status of the response. */
  readonly status: number;
  /** `error_description` (or the challenge's), when Deputy sent one. */
  readonly description: string | undefined;
  /** Further members of the error body (e.g. `connect_uri` for `connection_required`). */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(init: { error: string; status: number; description?: string | undefined; details?: Record<string, unknown>; cause?: unknown }) {
    super('ERR_DEPUTY_PROTOCOL', init.description ? `${init.error}: ${init.description}` : init.error, { cause: init.cause });
    this.error = init.error;
    this.status = init.status;
    this.description = init.description;
    this.details = init.details ?? {};
  }
}

/**
 * A gateway refused the call by policy: `403 access_denied`. {@link PolicyDeniedError.reason} is
 * the PDP's reason (the link of the delegation chain and policy that denied, when Deputy gives
 * agents the administrator reason; a user-facing text otherwise).
 */
export class PolicyDeniedError extends DeputyProtocolError {
  override name = 'PolicyDeniedError';
  get reason(): string {
    return this.description ?? 'access denied';
  }
}

/** RFC 9457 problem details; extension members (e.g. `budget`, `limit`, `spent`, `resets_at`) are kept as sent. */
export interface ProblemDetails {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  instance?: string;
  [extension: string]: unknown;
}

/**
 * A budget is exhausted: `402 Payment Required` with an `application/problem+json` body
 * (RFC 9457). `problem` holds every member as sent; `retryAfterSeconds` comes from
 * `Retry-After` (RFC 9110 §10.2.3) when the budget's window resets.
 */
export class BudgetExceededError extends DeputyProtocolError {
  override name = 'BudgetExceededError';
  /** @param code the body's own error code, when it names one (default `budget_exceeded`). */
  constructor(
    readonly problem: ProblemDetails,
    readonly retryAfterSeconds: number | undefined,
    code = 'budget_exceeded',
  ) {
    super({ error: code, status: 402, description: problem.detail ?? problem.title, details: { ...problem } });
  }
}

/**
 * The typed error a Deputy refusal stands for, or `undefined` when the response is not one of
 * Deputy's (an upstream's own error passed through a gateway is left alone):
 *
 * | status | recognised when | error |
 * | --- | --- | --- |
 * | 401 | a `DPoP` / `Bearer` challenge with `error` (upstream challenges never pass a gateway) | {@link DeputyProtocolError} (`invalid_token`, `invalid_dpop_proof`, `use_dpop_nonce`) |
 * | 402 | an `application/problem+json` body | {@link BudgetExceededError} |
 * | 403 | body `{"error":"access_denied"}` | {@link PolicyDeniedError} |
 * | 424 | body `{"error":"connection_required"}` | {@link DeputyProtocolError} with `details.connect_uri` |
 *
 * @param body the parsed JSON body (or `undefined` when there was none). Works with SDK errors
 *   too: `@anthropic-ai/sdk`'s `APIError` carries `status`, `headers` and the parsed body as
 *   `error`; `openai`'s keeps only the body's `error` member there (a string: the code, without
 *   the description or a problem's details — see `onDeputyError` of `DeputyAgent`).
 */
export function deputyErrorOf(status: number, headers: Headers | Record<string, string | null | undefined>, body: unknown): DeputyProtocolError | undefined {
  const h = headers instanceof Headers ? headers : new Headers(Object.entries(headers).filter((e): e is [string, string] => typeof e[1] === 'string'));
  const obj = body !== null && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>) : undefined;
  if (status === 401) {
    // Deputy answers 401 with an RFC 6750 §3 / RFC 9449 §7.1 challenge and the same code in the
    // body; a gateway never passes an upstream's WWW-Authenticate on.
    const header = h.get('www-authenticate') ?? '';
    if (!/(^|,)\s*(dpop|bearer)(\s|$)/i.test(header)) return undefined;
    const error = errorCode(body).error ?? /\berror="([^"\\]*)"/.exec(header)?.[1];
    if (!error) return undefined;
    return new DeputyProtocolError({ error, status, description: errorCode(body).description });
  }
  const { error, description } = errorCode(body);
  if (status === 402 && /^application\/problem\+json\b/i.test(h.get('content-type') ?? (obj ? 'application/problem+json' : ''))) {
    return new BudgetExceededError(obj ? (obj as ProblemDetails) : {}, retryAfter(h.get('retry-after')), error);
  }
  if (status === 403 && error === 'access_denied') return new PolicyDeniedError({ error, status, description });
  if (status === 424 && error === 'connection_required') {
    const { error: _e, error_description: _d, ...details } = obj ?? {};
    return new DeputyProtocolError({ error, status, description, details });
  }
  return undefined;
}

/**
 * The error code and description of a body, in each shape Deputy sends or an SDK keeps:
 * `{"error": code, "error_description": …}` (RFC 6749 §5.2); `{"error": {"code", "message", …}}`
 * (the LLM gateway's provider-compatible errors); that nested object alone (`openai`'s
 * `APIError.error`); or the code alone, as a string.
 */
function errorCode(body: unknown): { error?: string; description?: string } {
  if (typeof body === 'string') return { error: body };
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return {};
  const obj = body as Record<string, unknown>;
  const nested = obj.error;
  if (typeof nested === 'string') return defined({ error: nested, description: stringMember(obj, 'error_description') });
  if (nested !== null && typeof nested === 'object' && !Array.isArray(nested)) {
    const n = nested as Record<string, unknown>;
    return defined({ error: stringMember(n, 'code') ?? stringMember(n, 'type'), description: stringMember(n, 'message') ?? stringMember(obj, 'error_description') });
  }
  return defined({ error: stringMember(obj, 'code'), description: stringMember(obj, 'message') });
}

function defined(v: { error: string | undefined; description: string | undefined }): { error?: string; description?: string } {
  return { ...(v.error !== undefined ? { error: v.error } : {}), ...(v.description !== undefined ? { description: v.description } : {}) };
}

/** Deputy's error bodies are small JSON documents with a `Content-Length`; nothing else is read. */
const MAX_ERROR_BODY = 64 * 1024;

/**
 * {@link deputyErrorOf} for a `fetch` Response. Reads the body of a clone — only when the status
 * can be one of Deputy's refusals and the body is JSON of a declared length of at most 64 KiB
 * (an upstream's endless or huge error stream is never waited for) — so the caller can still
 * consume the original.
 */
export async function deputyErrorFromResponse(res: Response): Promise<DeputyProtocolError | undefined> {
  if (![401, 402, 403, 424].includes(res.status)) return undefined;
  const length = Number(res.headers.get('content-length') ?? NaN);
  const json = /^application\/(problem\+)?json\b/i.test(res.headers.get('content-type') ?? '');
  let body: unknown;
  if (json && length >= 0 && length <= MAX_ERROR_BODY) {
    try {
      body = await res.clone().json();
    } catch {
      body = undefined;
    }
  }
  return deputyErrorOf(res.status, res.headers, body);
}

function stringMember(obj: Record<string, unknown> | undefined, name: string): string | undefined {
  const v = obj?.[name];
  return typeof v === 'string' ? v : undefined;
}

/** `Retry-After` as seconds from now: delay-seconds or an HTTP-date (RFC 9110 §10.2.3). */
function retryAfter(value: string | null): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/**
 * The typed error for a failure reported by openid-client: its `ResponseBodyError` (an OAuth
 * error body, RFC 6749 §5.2) and `WWWAuthenticateChallengeError` (a 401 challenge) become
 * {@link DeputyProtocolError}s; anything else (network errors, programmer errors) is returned as is.
 */
export function fromOpenIdClientError(err: unknown): unknown {
  if (err instanceof client.ResponseBodyError) {
    return new DeputyProtocolError({ error: err.error, status: err.status, description: err.error_description, cause: err });
  }
  if (err instanceof client.WWWAuthenticateChallengeError) {
    const challenge = err.cause.find((c) => c.parameters.error);
    return new DeputyProtocolError({ error: challenge?.parameters.error ?? 'invalid_token', status: err.status, description: challenge?.parameters.error_description, cause: err });
  }
  return err;
}
