/**
 * Deputy's typed errors: one family ({@link DeputyError}) for every protocol error a client can
 * see — the OAuth codes of `/token`, `/introspect` and `/revoke` (RFC 6749 §5.2, RFC 7009 §2.2.1,
 * RFC 7662 §2.3, RFC 8693 §2.2.2, RFC 8707 §2), the resource-server codes (RFC 6750 §3.1,
 * RFC 9449 §7.1) and Deputy's gateway / AuthZEN codes. Each carries its protocol `error` code,
 * its HTTP status, whether its description may be shown (`expose`) and, for 401/403 answers of a
 * protected resource, the structured `WWW-Authenticate` challenge. `./serialize.ts` is the one
 * place that turns them into a status, headers and a JSON body.
 *
 * Messages (`description`) are written for clients and name the failed check. They never
 * contain a token, a secret or a raw request value; diagnostics go in `cause`, which is logged
 * at debug level and never sent.
 *
 * @module
 */

/** RFC 6749 §5.2 token-endpoint codes, with RFC 8707 §2 `invalid_target`. */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  | 'invalid_target';

/** Stable error codes: the OAuth / RFC 6750 / RFC 9449 ones and Deputy's own. */
export type DeputyErrorCode =
  | OAuthErrorCode
  | 'unsupported_token_type'
  | 'invalid_client_metadata'
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

/** An HTTP authentication scheme a challenge may name. */
export type ChallengeScheme = 'Bearer' | 'DPoP' | 'Basic';

/**
 * A `WWW-Authenticate` challenge (RFC 9110 §11.6.1) as data; the serializer writes it as one
 * challenge per scheme, each with the same parameters:
 * `realm`, then `error` / `error_description` (RFC 6750 §3, when `error` is true), `scope`,
 * `resource_metadata` (RFC 9728 §5.1) and, for `DPoP` only, `algs` (RFC 9449 §7.1).
 */
export interface Challenge {
  /** Schemes offered, in order (e.g. `['Bearer', 'DPoP']` when no credentials were sent). */
  readonly schemes: readonly ChallengeScheme[];
  readonly realm: string;
  /** Name the error and its description: false for a request without credentials (RFC 6750 §3.1). */
  readonly error: boolean;
  /** RFC 6750 §3 `scope`: the scope the resource requires. */
  readonly scope?: string;
  /** RFC 9728 §5.1 `resource_metadata`: the protected resource metadata URL. */
  readonly resourceMetadata?: string;
  /** RFC 9449 §7.1 `algs`: proof algorithms the resource accepts (DPoP challenges only). */
  readonly algs?: readonly string[];
}

/** Options every member of the family accepts. */
export interface DeputyErrorOptions {
  /** Diagnostics: logged at debug level, never sent. */
  cause?: unknown;
  /** Extra response headers (e.g. `DPoP-Nonce`, `Retry-After`). */
  headers?: Record<string, string>;
  /** Extra members of the error body beside `error` / `error_description` (e.g. `connect_uri`). */
  details?: Record<string, string>;
  /** The `WWW-Authenticate` challenge of a protected resource's refusal. */
  challenge?: Challenge;
  /** Whether the description may be shown; default: status below 500. */
  expose?: boolean;
}

/**
 * The base of every error a client may see. Rendered by `serializeError` (./serialize.ts) as
 * `status`, `headers` (+ `WWW-Authenticate` from `challenge`, + `Cache-Control: no-store`) and
 * `{ ...details, error: code, error_description: description }`; an error with `expose` false
 * renders as `500 server_error` without any of it.
 */
export class DeputyError extends Error {
  /** Whether `description` (and headers, details, challenge) may be shown to the client. */
  readonly expose: boolean;
  /** Extra response headers (e.g. `DPoP-Nonce`). */
  readonly headers: Record<string, string>;
  /** Extra members of the error body beside `error` / `error_description` (e.g. `connect_uri`). */
  readonly details: Readonly<Record<string, string>>;
  /** The RFC 6750 §3 / RFC 9449 §7.1 challenge, when this is a protected resource's refusal. */
  challenge: Challenge | undefined;

  constructor(
    /** HTTP status code. */
    readonly status: number,
    /** The protocol `error` code. */
    readonly code: DeputyErrorCode,
    /** The `error_description`: names the failed check, never a token or secret. */
    readonly description: string,
    options?: DeputyErrorOptions,
  ) {
    super(description, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.expose = options?.expose ?? status < 500;
    this.headers = options?.headers ?? {};
    this.details = options?.details ?? {};
    this.challenge = options?.challenge;
  }

  /**
   * The same error answered with another status, e.g. a DPoP refusal at the authorization server
   * (400, RFC 9449 §5) rather than at a protected resource (401, §7.1). Keeps class and fields.
   */
  withStatus(status: number): this {
    const copy = Object.create(Object.getPrototypeOf(this) as object) as this;
    // `message`, `stack` and `cause` are own but not enumerable: copied by name.
    return Object.assign(copy, this, { status, message: this.message, stack: this.stack, ...(this.cause === undefined ? {} : { cause: this.cause }) });
  }
}

type Described = { cause?: unknown };

/** RFC 6749 §5.2 `invalid_request`: a parameter missing, repeated or malformed. 400 unless `status` says otherwise. */
export class InvalidRequest extends DeputyError {
  constructor(description: string, options?: Described & { status?: number }) {
    super(options?.status ?? 400, 'invalid_request', description, options);
  }
}

/**
 * RFC 6749 §5.2 / RFC 7662 §2.3 / RFC 7523 §3.2: client authentication at `/token`,
 * `/introspect` or `/revoke` is missing or failed. 401; `challenge` carries the `Basic`
 * challenge when the client used the `Authorization` header.
 */
export class InvalidClient extends DeputyError {
  constructor(description: string, options?: Described & { challenge?: Challenge }) {
    super(401, 'invalid_client', description, options);
  }
}

/**
 * RFC 7591 §3.2.2 `invalid_client_metadata`: a client's metadata (here: a Client ID Metadata
 * Document, draft-ietf-oauth-client-id-metadata-document) has a member Deputy refuses. 400; the
 * description names the member.
 */
export class InvalidClientMetadata extends DeputyError {
  constructor(description: string, options?: Described) {
    super(400, 'invalid_client_metadata', description, options);
  }
}

/** RFC 6749 §5.2: the grant (here: the subject or actor token) is invalid, expired or revoked. */
export class InvalidGrant extends DeputyError {
  constructor(description: string, options?: Described) {
    super(400, 'invalid_grant', description, options);
  }
}

/** RFC 6749 §5.2: the requested scope is invalid, unknown or exceeds what may be granted. */
export class InvalidScope extends DeputyError {
  constructor(description: string, options?: Described) {
    super(400, 'invalid_scope', description, options);
  }
}

/** RFC 8707 §2 / RFC 8693 §2.2.2: the `resource` / `audience` is unknown or not allowed. */
export class InvalidTarget extends DeputyError {
  constructor(description: string, options?: Described) {
    super(400, 'invalid_target', description, options);
  }
}

/**
 * RFC 6749 §5.2 (used by RFC 7009 §2.1): the client authenticated but may not do this, e.g.
 * revoke a token that was neither issued to it nor delegated from one of its tokens.
 */
export class UnauthorizedClient extends DeputyError {
  constructor(description: string, options?: Described) {
    super(400, 'unauthorized_client', description, options);
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
  constructor(description: string, options?: Described) {
    super(401, 'invalid_token', description, options);
  }
}

/** RFC 6750 §3.1: the token lacks the scope the resource requires. */
export class InsufficientScope extends DeputyError {
  constructor(readonly requiredScope: string) {
    super(403, 'insufficient_scope', `the access token lacks the "${requiredScope}" scope`);
  }
}

/**
 * RFC 9449 §7.1 (401 at a protected resource) / §5 (400 at the token endpoint, see
 * {@link DeputyError.withStatus}): the DPoP proof is missing, malformed or does not match.
 */
export class InvalidDpopProof extends DeputyError {
  constructor(description: string, options?: Described & { status?: number }) {
    super(options?.status ?? 401, 'invalid_dpop_proof', description, options);
  }
}

/** RFC 9449 §8, §9: a nonce is required; `nonce` goes out in `DPoP-Nonce`. */
export class UseDpopNonce extends DeputyError {
  constructor(nonce: string, description = 'a DPoP nonce is required; retry with the nonce in the DPoP-Nonce header') {
    super(401, 'use_dpop_nonce', description, {
      headers: { 'DPoP-Nonce': nonce },
    });
  }
}

/** `not_found` (404): the named resource (agent, connection, receipt) does not exist. */
export class NotFound extends DeputyError {
  constructor(description: string) {
    super(404, 'not_found', description);
  }
}

/** RFC 9110 §15.5.6: the endpoint exists but not with this method (`invalid_request`, 405). */
export class MethodNotAllowed extends DeputyError {
  constructor(description = 'method not allowed on this endpoint') {
    super(405, 'invalid_request', description);
  }
}

/** `conflict` (409): the change contradicts the resource's state (e.g. a configured connection edited through the API). */
export class Conflict extends DeputyError {
  constructor(description: string) {
    super(409, 'conflict', description);
  }
}

/** RFC 9110 §15.5.14: the body exceeds `limit` bytes (or, without a known limit, the description given). */
export class PayloadTooLarge extends DeputyError {
  constructor(limit: number | string) {
    super(413, 'payload_too_large', typeof limit === 'number' ? `request body exceeds ${limit} bytes` : limit);
  }
}

/** `unsupported_media_type` (415): the request body is not of a media type the endpoint reads. */
export class UnsupportedMediaType extends DeputyError {
  constructor(expected: string) {
    super(415, 'unsupported_media_type', `request body must be ${expected}`);
  }
}

/** The caller is authenticated but not allowed: `description` is the policy's reason. */
export class AccessDenied extends DeputyError {
  constructor(description: string, options?: Described & { details?: Record<string, string> }) {
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
    // The description names which upstream step failed, never an upstream body: safe to show.
    super(502, 'bad_gateway', description, { ...options, expose: true });
  }
}

/** RFC 9110 §15.6.5: the upstream did not answer in time. */
export class GatewayTimeout extends DeputyError {
  constructor(description: string, options?: { cause?: unknown }) {
    super(504, 'gateway_timeout', description, { ...options, expose: true });
  }
}

/** Seconds a client is told to wait (`Retry-After`, RFC 9110 §10.2.3) before retrying a 503. */
export const RETRY_AFTER_SECONDS = 5;

/**
 * RFC 6749 §4.1.2.1 `temporarily_unavailable` as HTTP 503 with `Retry-After`: a dependency (the
 * store, the receipt log) is away; nothing was decided, and the same request may succeed later.
 */
export class TemporarilyUnavailable extends DeputyError {
  /** `retryAfterSeconds`: the `Retry-After` value, {@link RETRY_AFTER_SECONDS} by default. */
  constructor(description: string, options?: Described & { retryAfterSeconds?: number }) {
    const retryAfter = String(options?.retryAfterSeconds ?? RETRY_AFTER_SECONDS);
    // The description names the dependency that is away, never a detail of it: safe to show.
    super(503, 'temporarily_unavailable', description, { cause: options?.cause, headers: { 'Retry-After': retryAfter }, expose: true });
  }
}

/**
 * Anything that is not a protocol error (a bug, an unexpected library failure): rendered as
 * `500 server_error` with a generic description; `cause` is logged with its stack, never sent.
 */
export class ServerError extends DeputyError {
  constructor(cause: unknown) {
    super(500, 'server_error', 'an unexpected error occurred', { cause, expose: false });
  }
}

/**
 * An error oidc-provider raised in its own pipeline (client authentication, `client_credentials`,
 * discovery): its `error` code and status carried verbatim, so the one serializer renders it
 * exactly as oidc-provider would (`scope` of its `invalid_scope` goes in `details`). Built by
 * `src/oauth/oidc-provider/`, the only module that knows oidc-provider's error shapes.
 */
export class ProtocolError extends DeputyError {
  constructor(status: number, code: string, description: string | undefined, options?: DeputyErrorOptions) {
    // oidc-provider's codes are a superset of Deputy's union (e.g. `invalid_redirect_uri`); they are
    // passed through unchanged rather than remapped, so the wire stays oidc-provider's.
    super(status, code as DeputyErrorCode, description ?? '', options);
  }
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
export { challengeHeader, GENERIC_SERVER_ERROR, serializeError, type ErrorBody, type ErrorResponse } from './serialize.js';
