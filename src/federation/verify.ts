/**
 * Verification of subject tokens (RFC 8693 §2.1 `subject_token`) issued by trusted enterprise
 * IdPs: Okta, Microsoft Entra ID, generic OpenID Connect.
 *
 * The checks run in this order; the first failure throws a {@link FederationError} whose code
 * names the check:
 *
 * | # | check | code |
 * |---|-------|------|
 * | 1 | at most {@link MAX_SUBJECT_TOKEN_BYTES} bytes | `ERR_FEDERATION_TOO_LARGE` |
 * | 2 | a compact JWS (RFC 7515 §7.1) with a JSON header and a JSON-object claims set; a JWE (5 parts) is refused | `ERR_FEDERATION_MALFORMED` |
 * | 3 | `iss` names a trusted issuer (exact match, or an Entra v2.0/v1.0 template) | `ERR_FEDERATION_UNTRUSTED_ISSUER` |
 * | 4 | Entra: the tenant in `iss` is allowed | `ERR_FEDERATION_TENANT` |
 * | 5 | header `alg` is in the issuer's `algorithms` (so `none` and HS256-with-the-public-key are refused before any key is used) | `ERR_FEDERATION_ALG` |
 * | 6 | Entra: not a Microsoft Graph token (header `nonce`) | `ERR_FEDERATION_UNVERIFIABLE` |
 * | 7 | Okta: not an access token of the org authorization server | `ERR_FEDERATION_UNVERIFIABLE` |
 * | 8 | the issuer's keys can be obtained (discovery, JWKS) | `ERR_FEDERATION_ISSUER_UNAVAILABLE` |
 * | 9 | a key of the issuer's JWKS matches the header `kid` (after one refetch) | `ERR_FEDERATION_UNKNOWN_KID` |
 * | 10 | the signature verifies | `ERR_FEDERATION_SIGNATURE` |
 * | 11 | `exp` present and not past, `nbf` / `iat` not in the future (with `clockToleranceSeconds`) | `ERR_FEDERATION_EXPIRED`, `ERR_FEDERATION_NOT_YET_VALID` |
 * | 12 | every restricting or identifying claim present is well-formed, identifiers at most 255 characters and never shaped like a token (`./claims.ts`) | `ERR_FEDERATION_CLAIMS` |
 * | 13 | the token is of the declared kind (`./token-kind.ts`): `aud` names that kind's audience (API audience, or OIDC client id) | `ERR_FEDERATION_AUDIENCE` |
 * | 14 | …and it satisfies that kind's `typ` and claim rules; `jwt`: exactly one kind's | `ERR_FEDERATION_TOKEN_TYPE` |
 * | 15 | `sub` present; the preset's own claims (Entra `tid` = tenant of `iss`, `oid`) | `ERR_FEDERATION_CLAIMS` |
 *
 * Before any of this, an `id_token` from an issuer without `idToken.clientId` is refused
 * (`ERR_FEDERATION_TOKEN_TYPE_NOT_ACCEPTED`).
 *
 * Steps 1–7 only look at the unverified token and never fetch anything, so refused tokens cost
 * no request to the IdP. A token accepted before as the same declared kind is accepted again
 * after only the key (step 9) and the clock (step 11) are re-checked: every other check is a
 * function of its bytes and the configuration (`AcceptedSubjectTokens` below). Keys come only
 * from the issuer's discovered `jwks_uri`: header members such as `jku`, `x5u` or `jwk` are
 * never used to find a key.
 *
 * Token kinds (from RFC 8693 `subject_token_type`; rules in `./token-kind.ts`):
 * - `access_token`: `aud` is the configured `audience`, Deputy's API as registered at the IdP
 *   (Okta: the custom authorization server's audience, e.g. `api://deputy`; Entra: the API's
 *   application id GUID for v2.0 tokens, its App ID URI for v1.0 tokens). Its scopes are the
 *   token's `scp` / `scope`.
 * - `id_token`: an OpenID Connect ID Token; `aud` is the **OIDC client id** configured in
 *   `idToken.clientId` (OpenID Connect Core §2), never the API audience, and it must not carry
 *   the claims of access tokens. It delegates the scopes of `idToken.scopes` only (default none).
 *   Okta org authorization server ID tokens are accepted.
 * - `jwt`: either kind, when the token satisfies the rules of exactly one; an Okta org
 *   authorization server token carrying `cid` or `scp` counts as an access token and is refused.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2.1 RFC 8693 §2.1}
 * @see {@link https://www.rfc-editor.org/rfc/rfc7519#section-7.2 RFC 7519 §7.2} (validating a JWT)
 * @see {@link https://www.rfc-editor.org/rfc/rfc8725 RFC 8725} (JWT best current practices)
 * @module
 */
import { decodeJwt, decodeProtectedHeader, errors, jwtVerify, UnsecuredJWT, type FlattenedJWSInput, type JWTHeaderParameters, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions, type ProtectedHeaderParameters } from 'jose';
import { checkClaimShapes } from './claims.js';
import type { TrustedIssuerConfig } from './config.js';
import { FederationError, refuse } from './errors.js';
import type { FederatedIdentity, PresetIdentity } from './identity.js';
import { audienceOf, kindName, kindProblem, type FederatedTokenKind } from './token-kind.js';
import { TrustedIssuer, type IssuerMatch, type RemoteKeySet } from './issuer.js';
import { entraIdentity, refuseGraphToken } from './presets/entra.js';
import { oidcIdentity } from './presets/oidc.js';
import { oktaIdentity, refuseOktaOrgAccessToken } from './presets/okta.js';
import { setBounded } from '../util/bounded-map.js';
import { sha256Base64url } from '../util/sha256.js';

/** What the client says the subject token is (RFC 8693 §3 token type identifiers). */
export type SubjectTokenKind = 'access_token' | 'id_token' | 'jwt';

/** Largest accepted subject token, in UTF-8 bytes. Real Okta / Entra tokens are 1–4 KiB. */
export const MAX_SUBJECT_TOKEN_BYTES = 16 * 1024;

/** Three base64url segments; the signature may be empty so that `alg: none` reaches the alg check. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** The longest `iss` copied into an error's `cause` (logs only). */
const MAX_LOGGED_ISS = 200;

type Trusted = Extract<IssuerMatch, { kind: 'trusted' }>;

/**
 * Verifies subject tokens against the configured trusted issuers. One instance per process:
 * it owns the issuers' discovery results and JWKS caches. When several configured issuers
 * match one `iss`, the first in configuration order verifies the token (an Entra entry that
 * allows the tenant wins over one that does not).
 */
export class FederationVerifier {
  readonly #issuers: readonly TrustedIssuer[];
  /** Subject tokens whose signature verified (the same IdP token is exchanged many times). */
  readonly #verified = new VerifiedSignatures();
  /** Subject tokens accepted, per declared kind: the answer of every check but the clock's and the key's. */
  readonly #accepted = new AcceptedSubjectTokens();

  constructor(issuers: readonly TrustedIssuerConfig[]) {
    this.#issuers = issuers.map((config) => new TrustedIssuer(config));
  }

  /** The configured issuers, in configuration order. */
  get issuers(): readonly TrustedIssuer[] {
    return this.#issuers;
  }

  /** The TrustedIssuer whose iss matches (unverified peek), for routing; undefined if none. */
  issuerFor(iss: string): TrustedIssuer | undefined {
    const routed = this.#route(iss);
    return routed?.match.kind === 'trusted' ? routed.issuer : undefined;
  }

  /**
   * Verifies a subject token and returns the identity, or throws FederationError.
   *
   * `options.signInClientId`: the token is the ID token of Deputy's own sign-in at that IdP
   * (src/signin/): it must be an ID token issued to that client id, and delegates no scope. The
   * checks and the identity mapping are otherwise exactly those of a subject token, so a user
   * signed in is the same user id as their subject tokens name.
   */
  async verify(token: string, kind: SubjectTokenKind, options: { signInClientId?: string } = {}): Promise<FederatedIdentity> {
    // The cheap checks first, then the remembered tokens: a non-string or oversized input gets
    // its own refusal whether or not anything is remembered, and is never hashed.
    checkShape(token);
    const remembered = options.signInClientId === undefined ? await this.#accepted.recall(token, kind) : undefined;
    if (remembered !== undefined) return remembered;
    const { header, claims } = decodeParts(token);
    const { issuer, match } = this.#trustedIssuerOf(claims);
    const config: TrustedIssuerConfig =
      options.signInClientId === undefined ? issuer.config : { ...issuer.config, idToken: { clientId: options.signInClientId, scopes: [] } };

    checkAlgorithm(header, config);
    if (config.preset === 'entra') refuseGraphToken(header, config.audience);
    if (config.preset === 'okta') refuseOktaOrgAccessToken(match.iss, claims, kind);
    const candidates = candidateKinds(kind, config);

    const keys = await keysOf(issuer);
    let payload: JWTPayload;
    let key: unknown;
    try {
      ({ payload, key } = await this.#verified.verify(config.id, token, header, keys, {
        issuer: match.iss,
        audience: candidates.flatMap((k) => audienceOf(k, config) ?? []),
        algorithms: config.algorithms,
        clockTolerance: config.clockToleranceSeconds,
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (cause) {
      throw verificationError(cause, config, kind);
    }
    // jose checks `iat` against the clock only with `maxTokenAge`; a token from the future is refused here.
    if (typeof payload.iat === 'number' && payload.iat > Date.now() / 1000 + config.clockToleranceSeconds) {
      throw refuse('ERR_FEDERATION_NOT_YET_VALID', 'the subject token was issued in the future (iat; check clock skew)');
    }
    checkClaimShapes(payload, options.signInClientId === undefined ? 'the subject token' : 'the sign-in ID token');
    const tokenKind = kindOf(kind, candidates, header, payload, config);
    const identity = identityOf(payload, config, match);
    // An ID token authenticates the user; it grants no client anything (OpenID Connect Core §2).
    // What an ID-token subject may delegate is the operator's decision, per issuer.
    const scopes = tokenKind === 'id_token' ? [...(config.idToken?.scopes ?? [])] : identity.scopes;
    const accepted: FederatedIdentity = { ...identity, tokenKind, scopes };
    if (options.signInClientId === undefined) this.#accepted.remember(token, kind, { identity: accepted, header, payload, issuer, key });
    return accepted;
  }

  /** The issuer to verify with: a trusted match wins over an Entra match of a disallowed tenant. */
  #route(iss: string): { issuer: TrustedIssuer; match: IssuerMatch } | undefined {
    let disallowed: { issuer: TrustedIssuer; match: IssuerMatch } | undefined;
    for (const issuer of this.#issuers) {
      const match = issuer.match(iss);
      if (match.kind === 'trusted') return { issuer, match };
      if (match.kind === 'tenant_not_allowed') disallowed ??= { issuer, match };
    }
    return disallowed;
  }

  #trustedIssuerOf(claims: JWTPayload): { issuer: TrustedIssuer; match: Trusted } {
    const iss = claims.iss;
    if (typeof iss !== 'string' || iss.length === 0) throw refuse('ERR_FEDERATION_UNTRUSTED_ISSUER', 'the token has no "iss" (issuer) claim');
    const routed = this.#route(iss);
    if (routed === undefined) {
      const ids = this.#issuers.map((i) => i.id);
      const configured = ids.length === 0 ? 'no trusted issuers are configured' : `trusted issuers: ${ids.join(', ')}`;
      throw refuse('ERR_FEDERATION_UNTRUSTED_ISSUER', `the token's issuer is not trusted (${configured})`, { iss: iss.slice(0, MAX_LOGGED_ISS) });
    }
    if (routed.match.kind !== 'trusted') {
      throw refuse('ERR_FEDERATION_TENANT', `the token's Entra ID tenant is not allowed by trusted issuer "${routed.issuer.id}"`, { iss: iss.slice(0, MAX_LOGGED_ISS) });
    }
    return { issuer: routed.issuer, match: routed.match };
  }

  /**
   * Verifies an Identity Assertion JWT Authorization Grant (ID-JAG,
   * draft-ietf-oauth-identity-assertion-authz-grant §3.1) with its issuer's keys, by the same
   * steps as a subject token where they apply (size, syntax, trusted `iss`, tenant, `alg`,
   * JWKS, signature, times, claim shapes) and returns the identity the preset maps — the same
   * user id a subject token of that IdP names. ID-JAG rules instead of the token-kind rules:
   * header `typ` `oauth-id-jag+jwt` (RFC 8725 §3.11), `aud` = `options.audience` (Deputy's
   * issuer), `iat`, `exp`, `jti`, `sub` and `client_id` required, at most `options.maxAgeSeconds`
   * old and lived. Single use, the client and the issuer allow-list are the caller's checks.
   *
   * @throws FederationError naming the failed check (descriptions say "the ID-JAG")
   */
  async verifyIdJag(token: string, options: { audience: string; maxAgeSeconds: number }): Promise<FederatedIdentity> {
    try {
      const { header, claims } = decode(token);
      const { issuer, match } = this.#trustedIssuerOf(claims);
      const { config } = issuer;
      checkAlgorithm(header, config);
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerifyEachKey(token, await keysOf(issuer), {
          issuer: match.iss,
          audience: options.audience,
          typ: ID_JAG_TYP,
          algorithms: config.algorithms,
          clockTolerance: config.clockToleranceSeconds,
          maxTokenAge: options.maxAgeSeconds,
          requiredClaims: ['exp', 'iat', 'sub', 'jti', 'client_id'],
        }));
      } catch (cause) {
        throw idJagClaimError(cause, options.audience) ?? verificationError(cause, config, 'jwt');
      }
      if ((payload.exp as number) - (payload.iat as number) > options.maxAgeSeconds) {
        throw refuse('ERR_FEDERATION_CLAIMS', `the ID-JAG lives longer than ${options.maxAgeSeconds} seconds (exp - iat)`);
      }
      checkClaimShapes(payload, 'the ID-JAG');
      // An ID-JAG is an authorization grant, neither kind of subject token; `access_token` is the
      // kind whose scopes it carries (the preset's `scopes` are re-read by the grant from `scope`).
      return { ...identityOf(payload, config, match), tokenKind: 'access_token' };
    } catch (err) {
      // One wording for both uses of the shared steps: here the token is an ID-JAG.
      if (err instanceof FederationError) throw refuse(err.code, err.description.replaceAll('the subject token', 'the ID-JAG'), err.cause);
      throw err;
    }
  }
}

/** Subject tokens remembered at most (each entry: a digest, a key reference and a time). */
const MAX_VERIFIED_SIGNATURES = 10_000;
/**
 * The most bytes of subject tokens {@link AcceptedSubjectTokens} remembers at once. Its entries
 * hold decoded claims sets, ~1.5 times the token's size on the heap plus ~1 KB (measured: 1.6 KB
 * for a 0.5 KB token, 7.6 KB at 4.5 KB, 23.5 KB at 16 KB): 10,000 tokens of the largest size
 * accepted would hold ~235 MB. 16 MiB of tokens keeps all 10,000 of up to 1.6 KB, ~35 MB at most.
 */
export const MAX_ACCEPTED_TOKEN_BYTES = 16 * 1024 * 1024;
/** The protected header of an unsecured JWT, base64url: `{"alg":"none"}`. */
const NONE_HEADER = Buffer.from('{"alg":"none"}').toString('base64url');

/**
 * Steps 9–11 with the signature verification (step 10) remembered: an agent exchanges the same
 * IdP token many times in its lifetime (one exchange per audience, per sub-agent), and a
 * signature that verified cannot stop verifying — unless the issuer's keys change.
 *
 * An entry is the SHA-256 of (trusted issuer id, token) with the key object that verified it, and
 * lives until the token's `exp`. A hit still resolves the header's key from the issuer's current
 * key set and counts only if it is the very same key object: a refetched JWK Set imports its keys
 * anew, so any change of the issuer's keys (a key removed, rotated, or the set merely refetched)
 * makes every entry verify again. Every claim check (`iss`, `aud`, `exp`, `nbf`, `iat`, required
 * claims: jose's own `validateClaimsSet`, run here on the same claims set) still runs whenever
 * this runs, as do the checks after it (restricting claims, token-kind rules, identity mapping):
 * on a token's first use as each declared kind, and whenever {@link AcceptedSubjectTokens} has
 * no answer. Bounded at {@link MAX_VERIFIED_SIGNATURES} entries (a new one past it evicts the one
 * verified longest ago).
 */
class VerifiedSignatures {
  readonly #entries = new Map<string, { key: unknown; untilMs: number }>();

  /**
   * jose's `jwtVerify(token, keys, options)` payload; the signature verified once per token.
   * @throws what `jwtVerify` (or the key resolver) throws
   */
  async verify(issuerId: string, token: string, header: ProtectedHeaderParameters, keys: JWTVerifyGetKey, options: JWTVerifyOptions): Promise<{ payload: JWTPayload; key: unknown }> {
    const digest = sha256Base64url(`${issuerId}\0${token}`);
    const hit = this.#entries.get(digest);
    if (hit && hit.untilMs > Date.now() && (await resolvesTo(keys, header, token, hit.key))) {
      // The same claims set, validated by jose's own rules and errors (as `jwtVerify` would).
      return { payload: UnsecuredJWT.decode(`${NONE_HEADER}.${token.split('.')[1]}.`, options).payload, key: hit.key };
    }
    if (hit) this.#entries.delete(digest);
    const { payload, key } = await jwtVerifyEachKey(token, keys, options);
    if (typeof payload.exp === 'number') {
      setBounded(this.#entries, digest, { key, untilMs: payload.exp * 1000 }, MAX_VERIFIED_SIGNATURES);
    }
    return { payload, key };
  }
}

/** What {@link AcceptedSubjectTokens} keeps of an accepted token: the answer, and what a later use re-checks. */
interface AcceptedToken {
  /** The identity {@link FederationVerifier.verify} returned. */
  identity: FederatedIdentity;
  header: ProtectedHeaderParameters;
  /** Its verified claims set (for `exp`, `nbf`, `iat`). */
  payload: JWTPayload;
  /** The trusted issuer that verified it, and the key it verified with. */
  issuer: TrustedIssuer;
  key: unknown;
}

/**
 * Subject tokens {@link FederationVerifier.verify} accepted, per declared kind: an agent exchanges
 * the same IdP token many times (issue 16, ninth round: decoding it, jose's claim checks and
 * the identity mapping again cost ~25–40 µs of each exchange's main thread). Every check but the
 * key and the clock is a function of the token's bytes, the declared kind and the trusted
 * issuers' configuration — which is fixed for the verifier's life — so a later use of the same
 * token gets the same answer, and re-checks only those two:
 * - the key: the issuer's current key set must still resolve the header to the very key object
 *   that verified the token (as {@link VerifiedSignatures}: a refetched set imports its keys anew);
 * - the clock: it must be past `nbf` and `iat` and before `exp`, with no tolerance.
 * When either fails, or the token is not remembered, the whole verification runs (and refuses
 * with its own error); nothing is remembered but accepted tokens, each until its `exp`. Keyed by
 * the SHA-256 of (declared kind, token); bounded at {@link MAX_VERIFIED_SIGNATURES} entries and
 * {@link MAX_ACCEPTED_TOKEN_BYTES} bytes of tokens (a new one past either evicts the ones accepted
 * longest ago): an entry holds the decoded claims set, ~1.5 times the token's size. Each recall
 * returns a copy: callers never share the remembered arrays.
 */
class AcceptedSubjectTokens {
  readonly #entries = new Map<string, AcceptedToken & { bytes: number }>();
  /** The sum of the remembered tokens' lengths. */
  #bytes = 0;

  /** The identity of an accepted token still valid now (key and clock re-checked), else undefined. */
  async recall(token: string, kind: SubjectTokenKind): Promise<FederatedIdentity | undefined> {
    if (this.#entries.size === 0) return undefined;
    const digest = AcceptedSubjectTokens.#digest(token, kind);
    const entry = this.#entries.get(digest);
    if (entry === undefined) return undefined;
    if (!withinTimes(entry.payload, Date.now() / 1000) || !(await stillResolves(entry, token))) {
      this.#forget(digest);
      return undefined;
    }
    return copyOf(entry.identity);
  }

  /**
   * Remembers an accepted token until its `exp`: a copy of the identity (the caller keeps its own
   * arrays), whose claims set is frozen all the way down — `may_act`, `cnf` and every array in it
   * are shared by every later answer (and by the caller's), so none of them can be changed.
   */
  remember(token: string, kind: SubjectTokenKind, accepted: AcceptedToken): void {
    if (typeof accepted.payload.exp !== 'number') return;
    deepFreeze(accepted.identity.claims);
    const digest = AcceptedSubjectTokens.#digest(token, kind);
    this.#forget(digest);
    for (const oldest of this.#entries.keys()) {
      if (this.#entries.size < MAX_VERIFIED_SIGNATURES && this.#bytes + token.length <= MAX_ACCEPTED_TOKEN_BYTES) break;
      this.#forget(oldest);
    }
    this.#entries.set(digest, { ...accepted, identity: copyOf(accepted.identity), bytes: token.length });
    this.#bytes += token.length;
  }

  /** Drops one entry, and its bytes from the sum. */
  #forget(digest: string): void {
    const entry = this.#entries.get(digest);
    if (entry === undefined) return;
    this.#entries.delete(digest);
    this.#bytes -= entry.bytes;
  }

  static #digest(token: string, kind: SubjectTokenKind): string {
    return sha256Base64url(`${kind}\0${token}`);
  }
}

/**
 * A copy of an identity whose arrays are its own. Its claims set (and `mayAct`, a member of it)
 * is the remembered one, frozen by {@link AcceptedSubjectTokens.remember}.
 */
function copyOf(identity: FederatedIdentity): FederatedIdentity {
  return { ...identity, groups: [...identity.groups], roles: [...identity.roles], scopes: [...identity.scopes] };
}

/**
 * Freezes a verified claims set and every object and array inside it (JSON: no cycles), without
 * recursion, so that no nesting depth a token can carry overflows the stack.
 */
function deepFreeze(claims: Readonly<Record<string, unknown>>): void {
  const pending: object[] = [claims];
  for (let value = pending.pop(); value !== undefined; value = pending.pop()) {
    Object.freeze(value);
    for (const member of Object.values(value)) if (typeof member === 'object' && member !== null) pending.push(member);
  }
}

/**
 * Whether `now` (epoch seconds) is inside the claims set's times with no clock tolerance: at or
 * past `nbf` and `iat`, before `exp` — stricter than the full verification, which decides (and
 * words the refusal) whenever this says no.
 */
function withinTimes(payload: JWTPayload, now: number): boolean {
  const { exp, nbf, iat } = payload;
  return typeof exp === 'number' && now < exp && (typeof nbf !== 'number' || nbf <= now) && (typeof iat !== 'number' || iat <= now);
}

/** Whether the issuer's current key set still resolves the remembered header to the key that verified it (false when it resolves none, or cannot). */
async function stillResolves(entry: AcceptedToken, token: string): Promise<boolean> {
  try {
    return await resolvesTo(await keysOf(entry.issuer), entry.header, token, entry.key);
  } catch {
    return false;
  }
}

/**
 * Whether `keys` resolves `header` to the very key object `key`: the one key it resolves to, or —
 * several keys matching (no `kid`) — one of the candidates (jose imports each JWK once per key
 * set, so a candidate is the same object the verification was handed).
 * @throws what the resolver throws but `JWKSMultipleMatchingKeys`
 */
async function resolvesTo(keys: JWTVerifyGetKey, header: ProtectedHeaderParameters, token: string, key: unknown): Promise<boolean> {
  try {
    return (await keys(header as JWTHeaderParameters, jwsParts(token))) === key;
  } catch (error) {
    if (!(error instanceof errors.JWKSMultipleMatchingKeys)) throw error;
    for await (const candidate of error) if (candidate === key) return true;
    return false;
  }
}

/**
 * jose's `jwtVerify` with an issuer's key set, trying each matching key when several match the
 * token's header — a token without `kid` from an issuer publishing two keys of its `alg` (a key
 * rotation's overlap; `kid` is optional, RFC 7515 §4.1.4). jose refuses such a token with
 * `JWKSMultipleMatchingKeys` and hands the candidates as its async iterator; trying each is its
 * documented way (`createRemoteJWKSet`'s docs). A candidate the signature does not verify with
 * is skipped, and so is one jose will not verify with at all (a published 1024-bit RSA key: a
 * `TypeError` before any signature check, which ended the candidates and refused a token the
 * next one verifies); only a claims-set error ({@link claimsStageError}), raised once a
 * candidate verified the signature, is the answer. Returns the key that verified.
 * @throws what `jwtVerify` throws; `JWSSignatureVerificationFailed` when no candidate verifies
 */
async function jwtVerifyEachKey(token: string, keys: JWTVerifyGetKey, options: JWTVerifyOptions): Promise<{ payload: JWTPayload; key: unknown }> {
  try {
    const { payload, key } = await jwtVerify(token, keys, options);
    return { payload, key };
  } catch (error) {
    if (!(error instanceof errors.JWKSMultipleMatchingKeys)) throw error;
    for await (const candidate of error) {
      try {
        return { payload: (await jwtVerify(token, candidate, options)).payload, key: candidate };
      } catch (inner) {
        if (claimsStageError(inner)) throw inner;
      }
    }
    throw new errors.JWSSignatureVerificationFailed();
  }
}

/**
 * Whether `error`, from `jwtVerify` with one key, was raised after that key verified the
 * signature — the claims set's checks (`JWTClaimValidationFailed`, `JWTExpired`, `JWTInvalid`) —
 * rather than by the key itself (a signature that does not verify, a key jose refuses to use).
 */
function claimsStageError(error: unknown): boolean {
  return error instanceof errors.JWTClaimValidationFailed || error instanceof errors.JWTExpired || error instanceof errors.JWTInvalid;
}

/** The compact JWS as the flattened input a key resolver is handed (RFC 7515 §7.2.2). */
function jwsParts(token: string): FlattenedJWSInput {
  const [protectedHeader, payload, signature] = token.split('.') as [string, string, string];
  return { protected: protectedHeader, payload, signature };
}

/**
 * Step 5 (module table): the header `alg` is one of the issuer's `algorithms` — checked before
 * any key is fetched or used, so `none` and HS256-with-the-public-key never reach jose.
 * @throws FederationError `ERR_FEDERATION_ALG`
 */
function checkAlgorithm(header: { alg?: unknown }, config: TrustedIssuerConfig): void {
  const alg = header.alg;
  if (typeof alg !== 'string' || !(config.algorithms as readonly string[]).includes(alg)) {
    throw refuse('ERR_FEDERATION_ALG', `the token's signing algorithm (header alg) is not accepted for trusted issuer "${config.id}"; accepted: ${config.algorithms.join(', ')}`);
  }
}

/** The ID-JAG checks whose wording the subject-token mapping would get wrong: `aud` and `typ`. */
function idJagClaimError(error: unknown, audience: string): FederationError | undefined {
  if (!(error instanceof errors.JWTClaimValidationFailed) || error.reason !== 'check_failed') return undefined;
  if (error.claim === 'aud') return refuse('ERR_FEDERATION_AUDIENCE', `the ID-JAG's audience (aud) is not Deputy's issuer ${audience}`, diagnostic(error));
  if (error.claim === 'typ') return refuse('ERR_FEDERATION_TOKEN_TYPE', `the ID-JAG's header typ is not "${ID_JAG_TYP}"`, diagnostic(error));
  return undefined;
}

/** Header `typ` of an ID-JAG (draft-ietf-oauth-identity-assertion-authz-grant §3.1). */
export const ID_JAG_TYP = 'oauth-id-jag+jwt';

/**
 * The kinds a declared `subject_token_type` may turn out to be. `id_token` from an issuer
 * without `idToken.clientId` is refused here, before any key is fetched.
 */
function candidateKinds(declared: SubjectTokenKind, config: TrustedIssuerConfig): FederatedTokenKind[] {
  if (declared === 'access_token') return ['access_token'];
  if (declared === 'id_token') {
    if (config.idToken === undefined) {
      throw refuse(
        'ERR_FEDERATION_TOKEN_TYPE_NOT_ACCEPTED',
        `trusted issuer "${config.id}" accepts no ID tokens as subject tokens: its OIDC client id is not configured (trustedIssuers[].idToken.clientId)`,
      );
    }
    return ['id_token'];
  }
  return config.idToken === undefined ? ['access_token'] : ['access_token', 'id_token'];
}

/**
 * Steps 13–14: the kind the verified token is. Declared `access_token` / `id_token`: it must
 * satisfy that kind's rules. Declared `jwt`: it must satisfy exactly one candidate's rules.
 */
function kindOf(declared: SubjectTokenKind, candidates: readonly FederatedTokenKind[], header: ProtectedHeaderParameters, claims: JWTPayload, config: TrustedIssuerConfig): FederatedTokenKind {
  const problems = candidates.map((kind) => ({ kind, problem: kindProblem(kind, header, claims, config) }));
  const satisfied = problems.filter((p) => p.problem === undefined).map((p) => p.kind);
  if (satisfied.length === 1) return satisfied[0]!;
  // Unreachable with today's rules (access tokens need a claim ID tokens must not carry); kept so
  // that a future rule change can never make `jwt` mean "whichever kind suits the presenter".
  if (satisfied.length > 1) {
    throw refuse(
      'ERR_FEDERATION_TOKEN_TYPE',
      `the subject token of type jwt is ambiguous: it satisfies the rules of both access tokens and ID tokens of trusted issuer "${config.id}"; send it as subject_token_type access_token or id_token`,
    );
  }
  const failed = problems.map((p) => ({ kind: p.kind, problem: p.problem! }));
  const code = failed.every((f) => f.problem.rule === 'audience') ? 'ERR_FEDERATION_AUDIENCE' : 'ERR_FEDERATION_TOKEN_TYPE';
  if (declared !== 'jwt') {
    return reject(code, `the subject token is not ${kindName(failed[0]!.kind)} of trusted issuer "${config.id}": ${failed[0]!.problem.description}`);
  }
  const reasons = failed.map((f) => `not ${kindName(f.kind)} (${f.problem.description})`).join('; ');
  return reject(code, `the subject token of type jwt is neither kind of token trusted issuer "${config.id}" accepts: ${reasons}`);
}

function reject(code: 'ERR_FEDERATION_AUDIENCE' | 'ERR_FEDERATION_TOKEN_TYPE', description: string): never {
  throw refuse(code, description);
}

/** Steps 1–2: size, compact JWS syntax, decodable header and claims set. */
function decode(token: string): { header: ProtectedHeaderParameters; claims: JWTPayload } {
  checkShape(token);
  return decodeParts(token);
}

/** Steps 1–2 without decoding: a non-empty string within the size bound, in compact JWS syntax (not a JWE). */
function checkShape(token: unknown): asserts token is string {
  if (typeof token !== 'string' || token.length === 0) throw refuse('ERR_FEDERATION_MALFORMED', 'the subject token is empty');
  if (token.length > MAX_SUBJECT_TOKEN_BYTES || Buffer.byteLength(token, 'utf8') > MAX_SUBJECT_TOKEN_BYTES) {
    throw refuse('ERR_FEDERATION_TOO_LARGE', `the subject token is larger than ${MAX_SUBJECT_TOKEN_BYTES} bytes`);
  }
  const parts = token.split('.').length;
  if (parts === 5) throw refuse('ERR_FEDERATION_MALFORMED', 'encrypted tokens (JWE) are not accepted; the subject token must be a signed JWT (compact JWS)');
  if (parts !== 3 || !COMPACT_JWS.test(token)) throw refuse('ERR_FEDERATION_MALFORMED', 'the subject token is not a JWT in compact JWS serialization (three base64url parts)');
}

/** Step 2's decoding of a token {@link checkShape} passed: a JSON-object header and claims set. */
function decodeParts(token: string): { header: ProtectedHeaderParameters; claims: JWTPayload } {
  let header: ProtectedHeaderParameters;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw refuse('ERR_FEDERATION_MALFORMED', 'the subject token\'s header is not a base64url-encoded JSON object');
  }
  let claims: JWTPayload;
  try {
    claims = decodeJwt(token);
  } catch {
    throw refuse('ERR_FEDERATION_MALFORMED', 'the subject token\'s claims set is not a base64url-encoded JSON object');
  }
  return { header, claims };
}

/**
 * The issuer's key resolver. Failures to obtain keys (discovery, JWKS fetch, timeout, bad JWKS)
 * become `ISSUER_UNAVAILABLE`; "no key for this kid" and "several keys match" pass through
 * unchanged: the first is refused as an unknown `kid`, the second carries the candidates, which
 * jose does not try itself — {@link jwtVerifyEachKey} does.
 */
async function keysOf(issuer: TrustedIssuer): Promise<JWTVerifyGetKey> {
  let keys: RemoteKeySet;
  try {
    keys = await issuer.keySet();
  } catch (cause) {
    throw cause instanceof FederationError ? cause : unavailable(issuer.config, cause);
  }
  return async (header: JWTHeaderParameters, token) => {
    try {
      return await keys(header, token);
    } catch (cause) {
      if (cause instanceof errors.JWKSNoMatchingKey || cause instanceof errors.JWKSMultipleMatchingKeys) throw cause;
      throw unavailable(issuer.config, cause);
    }
  };
}

function unavailable(config: TrustedIssuerConfig, error: unknown): FederationError {
  const timeout = error instanceof errors.JWKSTimeout;
  return refuse('ERR_FEDERATION_ISSUER_UNAVAILABLE', `the signing keys of trusted issuer "${config.id}" could not be fetched${timeout ? ' (timeout)' : ''}; try again later`, diagnostic(error));
}

/**
 * What of a jose error may go to logs: jose's claim errors carry the whole claims set
 * (`payload`, and again in `cause`), which a {@link FederationError} cause must not hold.
 */
function diagnostic(error: unknown): unknown {
  if (!(error instanceof errors.JOSEError)) return error;
  const claim = error instanceof errors.JWTClaimValidationFailed || error instanceof errors.JWTExpired ? { claim: error.claim, reason: error.reason } : {};
  // jose's claim errors also put the claims set in `cause` (a plain object); keep only real errors (network, timeout).
  return { name: error.name, code: error.code, message: error.message, ...claim, ...(error.cause instanceof Error ? { cause: error.cause } : {}) };
}

function audienceText(config: TrustedIssuerConfig, kind: SubjectTokenKind): string {
  const kinds: FederatedTokenKind[] = kind === 'jwt' ? ['access_token', 'id_token'] : [kind];
  return kinds.flatMap((k) => audienceOf(k, config) ?? []).join(' or ');
}

/** Maps an error of `jwtVerify` (or of the key resolver) to a {@link FederationError}. */
function verificationError(error: unknown, config: TrustedIssuerConfig, kind: SubjectTokenKind): FederationError {
  if (error instanceof FederationError) return error;
  const cause = diagnostic(error);
  const id = config.id;
  if (error instanceof errors.JWTExpired) {
    return refuse('ERR_FEDERATION_EXPIRED', 'the subject token has expired (exp)', cause);
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    const { claim, reason } = error;
    if (reason === 'missing') return refuse('ERR_FEDERATION_CLAIMS', `the subject token must carry a "${claim}" claim`, cause);
    if (reason === 'check_failed') {
      if (claim === 'nbf') return refuse('ERR_FEDERATION_NOT_YET_VALID', 'the subject token is not yet valid (nbf is in the future; check clock skew)', cause);
      if (claim === 'iat') return refuse('ERR_FEDERATION_NOT_YET_VALID', 'the subject token was issued in the future (iat; check clock skew)', cause);
      if (claim === 'aud') {
        const what = kind === 'id_token' ? 'the OIDC client id configured' : kind === 'jwt' && config.idToken !== undefined ? 'the audience (or OIDC client id) required' : 'the audience required';
        return refuse('ERR_FEDERATION_AUDIENCE', `the subject token's audience (aud) does not include ${what} by trusted issuer "${id}": ${audienceText(config, kind)}`, cause);
      }
    }
    return refuse('ERR_FEDERATION_CLAIMS', `the subject token's "${claim}" claim is invalid`, cause);
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return refuse('ERR_FEDERATION_SIGNATURE', `the subject token's signature does not verify with the keys of trusted issuer "${id}"`, cause);
  }
  if (error instanceof errors.JWKSNoMatchingKey) {
    return refuse('ERR_FEDERATION_UNKNOWN_KID', `no signing key of trusted issuer "${id}" matches the subject token's key id (kid) and algorithm`, cause);
  }
  if (error instanceof errors.JOSEAlgNotAllowed || error instanceof errors.JOSENotSupported) {
    return refuse('ERR_FEDERATION_ALG', `the subject token's signing algorithm or key type is not accepted for trusted issuer "${id}"`, cause);
  }
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) {
    return refuse('ERR_FEDERATION_MALFORMED', 'the subject token is not a valid signed JWT', cause);
  }
  return refuse('ERR_FEDERATION_SIGNATURE', `the subject token could not be verified with the keys of trusted issuer "${id}"`, cause);
}

/** Step 15: the preset's identity mapping of the verified claims. */
function identityOf(payload: JWTPayload, config: TrustedIssuerConfig, match: Trusted): PresetIdentity {
  switch (config.preset) {
    case 'okta':
      return oktaIdentity(payload, config.id);
    case 'entra':
      if (match.tenant === undefined) throw refuse('ERR_FEDERATION_TENANT', `the token's Entra ID tenant could not be determined for trusted issuer "${config.id}"`);
      return entraIdentity(payload, config.id, match.tenant);
    case 'oidc':
      return oidcIdentity(payload, config.id);
  }
}
