/**
 * Verifying Deputy's own JWT access tokens (RFC 9068) at Deputy's resource endpoints, including
 * sender-constraint checks: a token with `cnf.jkt` is usable only with the `DPoP` scheme and a
 * valid proof for that key (RFC 9449 §7); a Bearer token is usable only if it is not bound.
 *
 * @module
 */
import { createLocalJWKSet, jwtVerify, type JWTPayload, errors as joseErrors } from 'jose';
import { DeputyError, InsufficientScope, InvalidRequest, InvalidToken } from '../errors/index.js';
import type { KeyStore } from '../keys/keystore.js';
import type { ActorClaim } from './delegation-chain.js';
import type { DpopVerifier } from './dpop.js';

export type { ActorClaim } from './delegation-chain.js';

/** Claims of a Deputy access token (RFC 9068 §2.2 plus RFC 8693 `act`, RFC 9449 `cnf`). */
export interface AccessTokenClaims extends JWTPayload {
  client_id: string;
  scope?: string;
  cnf?: { jkt?: string };
  act?: ActorClaim;
}


export interface AuthenticatedRequest {
  token: string;
  claims: AccessTokenClaims;
  scopes: ReadonlySet<string>;
  scheme: 'Bearer' | 'DPoP';
  /** A fresher DPoP nonce for the client (`DPoP-Nonce` response header, RFC 9449 §9). */
  dpopNonce?: string;
}

/** What the HTTP layer hands over: plain values, no framework objects. */
export interface ResourceRequest {
  authorization: string | undefined;
  dpopProofs: readonly string[];
  method: string;
  url: string;
}

const ALGORITHMS = ['ES256', 'RS256', 'EdDSA'];
const MAX_TOKEN_LENGTH = 16 * 1024;
const JWKS_REFRESH_MS = 30_000;

export class AccessTokenVerifier {
  readonly #issuer: string;
  readonly #keys: KeyStore;
  readonly #dpop: DpopVerifier;
  #jwks: { set: ReturnType<typeof createLocalJWKSet>; at: number } | undefined;

  constructor(options: { issuer: string; keys: KeyStore; dpop: DpopVerifier }) {
    this.#issuer = options.issuer;
    this.#keys = options.keys;
    this.#dpop = options.dpop;
  }

  /**
   * Authenticates a request to a Deputy resource: parses the `Authorization` header
   * (RFC 6750 §2.1 / RFC 9449 §7.1), verifies the token for `audience`, enforces DPoP binding
   * and, when given, a required scope. Errors carry the `WWW-Authenticate` challenge.
   */
  async authenticate(req: ResourceRequest, audience: string, requiredScope?: string): Promise<AuthenticatedRequest> {
    const { scheme, token } = parseAuthorization(req.authorization, requiredScope);
    try {
      const claims = await this.verify(token, audience);
      const jkt = claims.cnf?.jkt;
      // RFC 9449 §7.1: the challenge for a bound token names the DPoP scheme, whatever was used.
      if (jkt !== undefined && scheme !== 'DPoP') {
        throw withChallenge(new InvalidToken('this access token is DPoP-bound: use the DPoP authorization scheme with a proof'), 'DPoP', requiredScope);
      }
      if (jkt === undefined && scheme === 'DPoP') throw new InvalidToken('this access token is not DPoP-bound: use the Bearer scheme');
      // The proof's jti is spent here, before anything else about the request is decided (RFC 9449 §11.1).
      const proof = jkt === undefined
        ? undefined
        : await this.#dpop.verify({ proofs: req.dpopProofs, method: req.method, url: req.url, accessToken: token, expectedJkt: jkt });
      const scopes = new Set((claims.scope ?? '').split(' ').filter(Boolean));
      if (requiredScope !== undefined && !scopes.has(requiredScope)) throw new InsufficientScope(requiredScope);
      return { token, claims, scopes, scheme, ...(proof?.nextNonce !== undefined ? { dpopNonce: proof.nextNonce } : {}) };
    } catch (err) {
      throw withChallenge(err, scheme, requiredScope);
    }
  }

  /**
   * Verifies signature, `typ: at+jwt`, issuer, audience and lifetime (RFC 9068 §4).
   * `audience: undefined` skips the audience check (a token presented back to Deputy as an
   * RFC 8693 `subject_token`, whose audience is some other service).
   */
  async verify(token: string, audience: string | undefined): Promise<AccessTokenClaims> {
    if (token.length > MAX_TOKEN_LENGTH) throw new InvalidToken('access token is too large');
    try {
      const { payload } = await jwtVerify(token, this.#keySet(), {
        issuer: this.#issuer,
        ...(audience === undefined ? {} : { audience }),
        typ: 'at+jwt',
        algorithms: ALGORITHMS,
        requiredClaims: ['exp', 'iat', 'jti', 'client_id'],
      });
      return payload as AccessTokenClaims;
    } catch (cause) {
      throw new InvalidToken(describeJoseError(cause), { cause });
    }
  }

  #keySet(): ReturnType<typeof createLocalJWKSet> {
    const now = Date.now();
    if (!this.#jwks || now - this.#jwks.at > JWKS_REFRESH_MS) {
      this.#jwks = { set: createLocalJWKSet(this.#keys.publicJwks()), at: now };
    }
    return this.#jwks.set;
  }
}

/**
 * RFC 6750 §2.1 / RFC 9449 §7.1 credentials. No `Authorization` header, or one with a scheme
 * Deputy does not accept, is a request without authentication information (RFC 6750 §3.1);
 * a `Bearer` / `DPoP` header whose value is not a token is malformed (400 `invalid_request`).
 */
function parseAuthorization(header: string | undefined, scope: string | undefined): { scheme: 'Bearer' | 'DPoP'; token: string } {
  const scheme = /^(Bearer|DPoP)(?: |$)/i.exec(header?.trim() ?? '')?.[1];
  if (!header || scheme === undefined) throw credentialsRequired(scope);
  const m = /^(Bearer|DPoP) +([A-Za-z0-9\-._~+/]+=*)$/i.exec(header.trim());
  const used = scheme.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer';
  if (!m) throw withChallenge(new InvalidRequest('malformed Authorization header'), used, scope);
  return { scheme: used, token: m[2]! };
}

/** A request without authentication information (RFC 6750 §3.1): its challenge names no error. */
export class CredentialsRequired extends InvalidToken {}

/**
 * The challenge of a resource that takes DPoP-bound tokens only (Deputy's gateways): one `DPoP`
 * challenge (RFC 9449 §7.1) naming the error, or none when no credentials were sent
 * (RFC 6750 §3.1), whatever scheme the request tried.
 */
export function dpopOnlyChallenge(err: DeputyError): DeputyError {
  if (err instanceof CredentialsRequired) {
    err.headers['WWW-Authenticate'] = `DPoP realm="deputy", algs="${DPOP_CHALLENGE_ALGS}"`;
    return err;
  }
  delete err.headers['WWW-Authenticate'];
  return withChallenge(err, 'DPoP') as DeputyError;
}

/**
 * RFC 6750 §3.1: a request without credentials gets the challenges and no error code. Both
 * schemes Deputy's resources accept are offered (RFC 9449 §7.1): `Bearer` first — PEPs and
 * admin clients use Bearer tokens — then `DPoP` for DPoP-bound tokens.
 */
function credentialsRequired(scope: string | undefined): InvalidToken {
  const err = new CredentialsRequired('an access token is required (Authorization: Bearer <token> or DPoP <token>)');
  const scopeParam = scope ? `, scope="${quote(scope)}"` : '';
  err.headers['WWW-Authenticate'] = `Bearer realm="deputy"${scopeParam}, DPoP realm="deputy"${scopeParam}, algs="${DPOP_CHALLENGE_ALGS}"`;
  return err;
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'access token has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `access token "${err.claim}" claim check failed`;
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'access token is signed with an unknown key';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'access token signature is invalid';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'access token algorithm is not allowed';
  return 'access token is malformed or invalid';
}

/** Adds the RFC 6750 §3 / RFC 9449 §7.1 challenge to 401/403 errors (and 400s of the Authorization header). */
export function withChallenge(err: unknown, scheme: 'Bearer' | 'DPoP', scope?: string): unknown {
  if (!(err instanceof DeputyError) || (err.status !== 401 && err.status !== 403 && err.status !== 400)) return err;
  if (err.headers['WWW-Authenticate']) return err;
  const params = [`realm="deputy"`, `error="${err.code}"`, `error_description="${quote(err.description)}"`];
  if (scope) params.push(`scope="${quote(scope)}"`);
  if (scheme === 'DPoP') params.push(`algs="${DPOP_CHALLENGE_ALGS}"`);
  err.headers['WWW-Authenticate'] = `${scheme} ${params.join(', ')}`;
  return err;
}

/** RFC 9449 §7.1 `algs`: the proof algorithms Deputy's resources accept. */
const DPOP_CHALLENGE_ALGS = 'ES256 ES384 ES512 PS256 Ed25519 EdDSA RS256';

/** Values end up in a quoted-string (RFC 9110 §5.6.4): escape `\` and `"`. */
function quote(s: string): string {
  return s.replace(/[\\"]/g, (c) => `\\${c}`);
}
