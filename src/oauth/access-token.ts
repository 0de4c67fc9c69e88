/**
 * Verifying Deputy's own JWT access tokens (RFC 9068) at Deputy's resource endpoints, including
 * sender-constraint checks: a token with `cnf.jkt` is usable only with the `DPoP` scheme and a
 * valid proof for that key (RFC 9449 §7); a Bearer token is usable only if it is not bound.
 *
 * @module
 */
import { ACCESS_TOKEN_ALGS, DPOP_ALGS } from '../util/algorithms.js';
import { createLocalJWKSet, jwtVerify, type JWTPayload, errors as joseErrors } from 'jose';
import { DeputyError, InsufficientScope, InvalidRequest, InvalidToken } from '../errors/index.js';
import type { KeyStore } from '../keys/index.js';
import type { ActorClaim } from '../delegation/index.js';
import type { OnceKey } from './adapter.js';
import type { DpopRequest, DpopVerifier, UnspentDpopProof } from './dpop.js';
import { setBounded } from '../util/bounded-map.js';
import { sha256Base64url } from '../util/sha256.js';

/** Claims of a Deputy access token (RFC 9068 §2.2 plus RFC 8693 `act`, RFC 9449 `cnf`). */
export interface AccessTokenClaims extends JWTPayload {
  client_id: string;
  scope?: string;
  cnf?: { jkt?: string };
  act?: ActorClaim;
}


/** A request whose access token verified: the token, its claims and scopes, the scheme, and for DPoP the next nonce and the unspent proof (RFC 9449 §7). */
export interface AuthenticatedRequest {
  token: string;
  claims: AccessTokenClaims;
  scopes: ReadonlySet<string>;
  scheme: 'Bearer' | 'DPoP';
  /** A fresher DPoP nonce for the client (`DPoP-Nonce` response header, RFC 9449 §9). */
  dpopNonce?: string;
  /**
   * Only with `{ deferProofSpend: true }` and a DPoP proof: the proof's replay key, **not spent
   * yet**. The caller must spend it before acting on the request and on every path that refuses
   * it (see `UnspentDpopProof` in ./dpop.ts).
   */
  unspentProof?: OnceKey;
  /**
   * Only with `{ deferProofSignature: true }` and a DPoP proof: the proof's signature check,
   * still running ({@link DpopVerifier.checkDeferred}); rejects with `invalid_dpop_proof` (with
   * its challenge). The caller must await it before acting on the request or spending the proof.
   */
  proofSignature?: Promise<void>;
}

/** What a protected resource requires of a token: the scope (RFC 6750 §3.1), and whether the DPoP proof `jti` is spent later (in the receipt's transaction). */
export interface AuthenticateOptions {
  /** The scope the token must carry (`insufficient_scope` otherwise). */
  requiredScope?: string;
  /**
   * Leave the DPoP proof's `jti` unspent and hand its key back (`unspentProof`), so the caller
   * can spend it in the same transaction as its first write (the gateway's receipt).
   */
  deferProofSpend?: boolean;
  /**
   * With `deferProofSpend`: leave the DPoP proof's signature verifying in the background and
   * hand its completion back (`proofSignature`), so the caller can overlap it with its own
   * work until its first write (the gateway's receipt, signed meanwhile). Every other check is
   * made before this resolves.
   */
  deferProofSignature?: boolean;
}

/** What the HTTP layer hands over: plain values, no framework objects. */
export interface ResourceRequest {
  authorization: string | undefined;
  dpopProofs: readonly string[];
  method: string;
  url: string;
}

const MAX_TOKEN_LENGTH = 16 * 1024;
const JWKS_REFRESH_MS = 30_000;
/** Verified tokens remembered at most (each entry: a digest and the claims, well under 1 KiB). */
const MAX_VERIFIED = 10_000;

/**
 * Verifies Deputy access tokens at protected resources (RFC 9068 §4: `typ` `at+jwt`, issuer,
 * audience, expiry, pinned algorithms; RFC 9449 §7: a DPoP proof of `cnf.jkt`). Throws {@link InvalidToken},
 * {@link InsufficientScope} or an `InvalidDpopProof` carrying the RFC 6750 §3 / RFC 9449 §7.1 challenge.
 */
export class AccessTokenVerifier {
  readonly #issuer: string;
  readonly #keys: KeyStore;
  readonly #dpop: DpopVerifier;
  #jwks: { set: ReturnType<typeof createLocalJWKSet>; at: number; kids: string } | undefined;
  /**
   * Tokens whose signature, `typ`, issuer, audience and required claims verified, by SHA-256 of
   * (audience, token): an agent presents the same token on every gateway call, and its
   * signature cannot stop being valid. Only the time checks (`exp`, `nbf`) depend on when, and
   * they are made again on every hit. Dropped whenever the token-signing key set changes (a key
   * removed from the JWKS must stop verifying at once). Revocation is not this cache's concern:
   * callers check it on every call (RevocationCache).
   */
  readonly #verified = new Map<string, AccessTokenClaims>();

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
  async authenticate(req: ResourceRequest, audience: string, options?: string | AuthenticateOptions): Promise<AuthenticatedRequest> {
    const { requiredScope, deferProofSpend = false, deferProofSignature = false } = typeof options === 'string' ? { requiredScope: options } : (options ?? {});
    const { scheme, token } = parseAuthorization(req.authorization, requiredScope);
    try {
      const claims = await this.#verify(token, audience, Date.now(), requiredScope);
      const jkt = claims.cnf?.jkt;
      // RFC 9449 §7.1: the challenge for a bound token names the DPoP scheme, whatever was used.
      if (jkt !== undefined && scheme !== 'DPoP') {
        throw withChallenge(new InvalidToken('this access token is DPoP-bound: use the DPoP authorization scheme with a proof'), 'DPoP', requiredScope);
      }
      if (jkt === undefined && scheme === 'DPoP') throw new InvalidToken('this access token is not DPoP-bound: use the Bearer scheme');
      // The proof's jti is spent here, before anything else about the request is decided (RFC 9449 §11.1),
      // unless the caller takes that over (deferProofSpend).
      const proofRequest = { proofs: req.dpopProofs, method: req.method, url: req.url, accessToken: token, expectedJkt: jkt };
      const proof = await this.#checkProof(proofRequest, deferProofSpend, deferProofSignature);
      const signature = proof?.signature?.catch((err: unknown) => {
        throw withChallenge(err, scheme, requiredScope);
      });
      signature?.catch(() => {});
      const scopes = new Set((claims.scope ?? '').split(' ').filter(Boolean));
      if (requiredScope !== undefined && !scopes.has(requiredScope)) {
        // A refusal after the proof verified still spends it (replay, if it was one, wins).
        await proof?.signature;
        if (proof?.replayKey !== undefined) await this.#dpop.spend(proof.replayKey);
        throw new InsufficientScope(requiredScope);
      }
      return {
        token, claims, scopes, scheme,
        ...(proof?.nextNonce !== undefined ? { dpopNonce: proof.nextNonce } : {}),
        ...(proof?.replayKey !== undefined ? { unspentProof: proof.replayKey } : {}),
        ...(signature !== undefined ? { proofSignature: signature } : {}),
      };
    } catch (err) {
      throw withChallenge(err, scheme, requiredScope);
    }
  }

  /** The proof of a bound token: verified and spent, or (deferred) checked and its key handed back, its signature maybe still verifying. */
  async #checkProof(req: DpopRequest, deferSpend: boolean, deferSignature: boolean): Promise<(Partial<UnspentDpopProof> & { nextNonce?: string; signature?: Promise<void> }) | undefined> {
    if (req.expectedJkt === undefined) return undefined;
    if (!deferSpend) return { ...(await this.#dpop.verify(req)), replayKey: undefined };
    return deferSignature ? this.#dpop.checkDeferred(req) : this.#dpop.check(req);
  }

  /**
   * Spends the `unspentProof` of an {@link authenticate} call made with `deferProofSpend`
   * (RFC 9449 §11.1, once across every instance).
   *
   * @throws InvalidDpopProof when it was spent already (a replay)
   */
  async spendProof(unspentProof: OnceKey): Promise<void> {
    await this.#dpop.spend(unspentProof);
  }

  /**
   * Whether the `unspentProof` of an {@link authenticate} call made with `deferProofSpend` is
   * spent already (RFC 9449 §11.1), read without writing: a replay refused before the request
   * is acted on. The proof found unspent must still be spent ({@link spendProof}, a receipt).
   */
  async proofSpent(unspentProof: OnceKey): Promise<boolean> {
    return this.#dpop.spent(unspentProof);
  }

  /**
   * Verifies signature, `typ: at+jwt`, issuer, audience and lifetime (RFC 9068 §4).
   * `audience: undefined` skips the audience check (a token presented back to Deputy as an
   * RFC 8693 `subject_token`, whose audience is some other service).
   */
  async verify(token: string, audience: string | undefined, now = Date.now()): Promise<AccessTokenClaims> {
    return this.#verify(token, audience, now, undefined);
  }

  /** {@link verify}; `scope` (the resource's required scope) only completes a wrong-audience refusal. */
  async #verify(token: string, audience: string | undefined, now: number, scope: string | undefined): Promise<AccessTokenClaims> {
    if (token.length > MAX_TOKEN_LENGTH) throw new InvalidToken('access token is too large');
    const keySet = this.#keySet(now);
    const cacheKey = sha256Base64url(`${audience ?? ''}\0${token}`);
    const hit = this.#verified.get(cacheKey);
    if (hit) {
      const seconds = Math.floor(now / 1000);
      // jose's own time rules (RFC 7519 §4.1.4-§4.1.5, no clock tolerance): expired at `exp`.
      if (hit.exp! <= seconds) {
        this.#verified.delete(cacheKey);
        throw new InvalidToken('access token has expired');
      }
      if (hit.nbf === undefined || hit.nbf <= seconds) return hit;
    }
    try {
      const { payload } = await jwtVerify(token, keySet, {
        issuer: this.#issuer,
        ...(audience === undefined ? {} : { audience }),
        typ: 'at+jwt',
        algorithms: [...ACCESS_TOKEN_ALGS],
        requiredClaims: ['exp', 'iat', 'jti', 'client_id'],
        currentDate: new Date(now),
      });
      setBounded(this.#verified, cacheKey, payload as AccessTokenClaims, MAX_VERIFIED);
      return payload as AccessTokenClaims;
    } catch (cause) {
      throw new InvalidToken(describeJoseError(cause, audience === undefined ? undefined : { audience, scope }), { cause });
    }
  }

  #keySet(now: number): ReturnType<typeof createLocalJWKSet> {
    if (!this.#jwks || now - this.#jwks.at > JWKS_REFRESH_MS || now < this.#jwks.at) {
      const jwks = this.#keys.publicJwks(Math.floor(now / 1000));
      const kids = JSON.stringify(jwks.keys);
      // A key left the set (or another came): what was verified under the old set is re-verified.
      if (this.#jwks && this.#jwks.kids !== kids) this.#verified.clear();
      this.#jwks = { set: createLocalJWKSet(jwks), at: now, kids };
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
    err.challenge = { schemes: ['DPoP'], realm: REALM, error: false, algs: DPOP_ALGS };
    return err;
  }
  err.challenge = undefined;
  return withChallenge(err, 'DPoP') as DeputyError;
}

/**
 * RFC 6750 §3.1: a request without credentials gets the challenges and no error code. Both
 * schemes Deputy's resources accept are offered (RFC 9449 §7.1): `Bearer` first — PEPs and
 * admin clients use Bearer tokens — then `DPoP` for DPoP-bound tokens.
 */
function credentialsRequired(scope: string | undefined): InvalidToken {
  const err = new CredentialsRequired('an access token is required (Authorization: Bearer <token> or DPoP <token>)');
  err.challenge = { schemes: ['Bearer', 'DPoP'], realm: REALM, error: false, ...(scope ? { scope } : {}), algs: DPOP_ALGS };
  return err;
}

function describeJoseError(err: unknown, resource?: { audience: string; scope: string | undefined }): string {
  if (err instanceof joseErrors.JWTExpired) return 'access token has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'aud' && resource) return wrongAudience(err.payload, resource);
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `access token "${err.claim}" claim check failed`;
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'access token is signed with an unknown key';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'access token signature is invalid';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'access token algorithm is not allowed';
  return 'access token is malformed or invalid';
}

/**
 * The refusal of a token Deputy signed for another resource (jose checks the signature before the
 * claims, so `payload` is Deputy's own): it names what this resource needs — its audience and, for
 * Deputy's own surfaces, the scope (an operator who sent a PEP's token to `/metrics` learns it
 * needs a `deputy:admin` token for `<issuer>/admin`) — and which audience the token has instead.
 * Audiences are resource identifiers, never secrets.
 */
function wrongAudience(payload: { aud?: unknown }, resource: { audience: string; scope: string | undefined }): string {
  const auds = (Array.isArray(payload.aud) ? payload.aud : [payload.aud]).filter((a): a is string => typeof a === 'string');
  const has = auds.length === 0 ? 'no audience' : auds.slice(0, 3).map((a) => a.slice(0, 200)).join(', ');
  const needs = `${resource.audience}${resource.scope === undefined ? '' : ` with the ${resource.scope} scope`}`;
  return `access token "aud" claim check failed: this resource needs a token for ${needs}; this one is for ${has}`;
}

/**
 * Adds the RFC 6750 §3 / RFC 9449 §7.1 challenge (naming the error) to 401/403 errors (and 400s
 * of the Authorization header); an error that has one keeps it. The serializer writes it.
 */
export function withChallenge(err: unknown, scheme: 'Bearer' | 'DPoP', scope?: string): unknown {
  if (!(err instanceof DeputyError) || (err.status !== 401 && err.status !== 403 && err.status !== 400)) return err;
  if (err.challenge) return err;
  err.challenge = { schemes: [scheme], realm: REALM, error: true, ...(scope ? { scope } : {}), ...(scheme === 'DPoP' ? { algs: DPOP_ALGS } : {}) };
  return err;
}

/** RFC 6750 §3 `realm` of Deputy's protected resources. */
const REALM = 'deputy';

