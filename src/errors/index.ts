/**
 * Deputy's typed errors. Each carries the protocol code a client sees and its HTTP status;
 * `src/http/errors.ts` is the one place that turns them into responses.
 *
 * Messages (`description`) are written for clients and name the failed check. They never
 * contain a token, a secret or a raw request value; diagnostics go in `cause`, which is logged
 * at debug level and never sent.
 *
 * OAuth errors raised inside oidc-provider's own pipeline (the token endpoint) use
 * oidc-provider's error classes instead, so its error handler renders them.
 *
 * @module
 */

/** Stable error codes: the OAuth / RFC 6750 / RFC 9449 ones and Deputy's own. */
export type DeputyErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'unauthorized_client'
  | 'unsupported_token_type'
  | 'invalid_token'
  | 'insufficient_scope'
  | 'invalid_dpop_proof'
  | 'use_dpop_nonce'
  | 'access_denied'
  | 'not_found'
  | 'conflict'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'server_error'
  | 'temporarily_unavailable'
  | 'connection_required'
  | 'bad_gateway'
  | 'gateway_timeout'
  | 'budget_exceeded';

export class DeputyError extends Error {
  /** Whether `description` may be shown to the client. */
  readonly expose: boolean;
  constructor(
    readonly status: number,
    readonly code: DeputyErrorCode,
    readonly description: string,
    options?: { cause?: unknown; headers?: Record<string, string>; details?: Record<string, string> },
  ) {
    super(description, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.expose = status < 500;
    this.headers = options?.headers ?? {};
    this.details = options?.details ?? {};
  }
  /** Extra response headers (e.g. `DPoP-Nonce`). */
  readonly headers: Record<string, string>;
  /** Extra members of the error body beside `error` / `error_description` (e.g. `connect_uri`). */
  readonly details: Readonly<Record<string, string>>;
}

export class InvalidRequest extends DeputyError {
  constructor(description: string, options?: { cause?: unknown }) {
    super(400, 'invalid_request', description, options);
  }
}

/**
 * RFC 6749 §5.2 / RFC 7662 §2.3 / RFC 7523 §3.2: client authentication at `/token`,
 * `/introspect` or `/revoke` is missing or failed. 401; `headers` carries the
 * `WWW-Authenticate` challenge when the client used the `Authorization` header.
 */
export class InvalidClient extends DeputyError {
  constructor(description: string, options?: { cause?: unknown; headers?: Record<string, string> }) {
    super(401, 'invalid_client', description, options);
  }
}

/**
 * RFC 6749 §5.2 (used by RFC 7009 §2.1): the client authenticated but may not do this, e.g.
 * revoke a token that was neither issued to it nor delegated from one of its tokens.
 */
export class UnauthorizedClient extends DeputyError {
  constructor(description: string) {
    super(400, 'unauthorized_client', description);
  }
}

/** RFC 7009 §2.2.1: the server cannot revoke this kind of token. */
export class UnsupportedTokenType extends DeputyError {
  constructor(description: string) {
    super(400, 'unsupported_token_type', description);
  }
}

/** RFC 6750 §3.1: the access token is missing, malformed, expired or revoked. */
export class InvalidToken extends DeputyError {
  constructor(description: string, options?: { cause?: unknown }) {
    super(401, 'invalid_token', description, options);
  }
}

/** RFC 6750 §3.1: the token lacks the scope the resource requires. */
export class InsufficientScope extends DeputyError {
  constructor(readonly requiredScope: string) {
    super(403, 'insufficient_scope', `the access token lacks the "${requiredScope}" scope`);
  }
}

/** RFC 9449 §7.1: the DPoP proof is missing, malformed or does not match the request or token. */
export class InvalidDpopProof extends DeputyError {
  constructor(description: string, options?: { cause?: unknown }) {
    super(401, 'invalid_dpop_proof', description, options);
  }
}

/** RFC 9449 §9: the resource server requires a nonce; `nonce` goes out in `DPoP-Nonce`. */
export class UseDpopNonce extends DeputyError {
  constructor(nonce: string, description = 'a DPoP nonce is required; retry with the nonce in the DPoP-Nonce header') {
    super(401, 'use_dpop_nonce', description, {
      headers: { 'DPoP-Nonce': nonce },
    });
  }
}

export class NotFound extends DeputyError {
  constructor(description: string) {
    super(404, 'not_found', description);
  }
}

export class Conflict extends DeputyError {
  constructor(description: string) {
    super(409, 'conflict', description);
  }
}

export class PayloadTooLarge extends DeputyError {
  constructor(limit: number) {
    super(413, 'payload_too_large', `request body exceeds ${limit} bytes`);
  }
}

export class UnsupportedMediaType extends DeputyError {
  constructor(expected: string) {
    super(415, 'unsupported_media_type', `request body must be ${expected}`);
  }
}

/** The caller is authenticated but not allowed: `description` is the policy's reason. */
export class AccessDenied extends DeputyError {
  constructor(description: string, options?: { cause?: unknown; details?: Record<string, string> }) {
    super(403, 'access_denied', description, options);
  }
}

/**
 * RFC 9110 §15.5.21-style 424 (Failed Dependency, RFC 4918 §11.4): the call needs the user to
 * connect a downstream account first; `connect_uri` is where the user does that.
 */
export class ConnectionRequired extends DeputyError {
  constructor(description: string, connectUri: string) {
    super(424, 'connection_required', description, { details: { connect_uri: connectUri } });
  }
}

/** RFC 9110 §15.6.3: the upstream (or its token endpoint) failed or answered unusably. */
export class BadGateway extends DeputyError {
  constructor(description: string, options?: { cause?: unknown }) {
    super(502, 'bad_gateway', description, options);
  }
  // The description names which upstream step failed, never an upstream body: safe to show.
  override readonly expose = true;
}

/** RFC 9110 §15.6.5: the upstream did not answer in time. */
export class GatewayTimeout extends DeputyError {
  constructor(description: string, options?: { cause?: unknown }) {
    super(504, 'gateway_timeout', description, options);
  }
  override readonly expose = true;
}

/** Seconds a client is told to wait (`Retry-After`, RFC 9110 §10.2.3) before retrying a 503. */
export const RETRY_AFTER_SECONDS = 5;

/**
 * RFC 6749 §4.1.2.1 `temporarily_unavailable` as HTTP 503 with `Retry-After`: a dependency (the
 * store, the receipt log) is away; nothing was decided, and the same request may succeed later.
 */
export class TemporarilyUnavailable extends DeputyError {
  constructor(description: string, options?: { cause?: unknown }) {
    super(503, 'temporarily_unavailable', description, { ...options, headers: { 'Retry-After': String(RETRY_AFTER_SECONDS) } });
  }
  // The description names the dependency that is away, never a detail of it: safe to show.
  override readonly expose = true;
}

/**
 * An error rendered as an RFC 9457 problem document (`application/problem+json`): `type`, `title`,
 * `status`, `detail` and the extension `members`, beside Deputy's usual `error` /
 * `error_description` (extension members too, RFC 9457 §3.2), so clients of either style read it.
 */
export abstract class ProblemError extends DeputyError {
  /** The problem type URI (RFC 9457 §3.1.1) and its short, fixed title (§3.1.3). */
  abstract readonly problemType: string;
  abstract readonly title: string;
  /** Extension members (RFC 9457 §3.2), snake_case. */
  abstract readonly members: Readonly<Record<string, unknown>>;
}
