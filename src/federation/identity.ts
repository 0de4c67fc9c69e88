/**
 * The stable user identity Deputy derives from a verified enterprise IdP token, and the small
 * claim readers the presets share.
 *
 * @module
 */
import type { JWTPayload } from 'jose';
import type { FederationPreset } from './config.js';
import { refuse } from './errors.js';
import type { FederatedTokenKind } from './token-kind.js';

/**
 * A verified subject (RFC 8693 §2.1 `subject_token`) as Deputy sees it.
 *
 * `userId` is namespaced by preset so two IdPs can never produce the same id:
 * - `entra:{tid}:{oid}` — tenant id and object id are GUIDs; `oid` is the same for the user in
 *   every app of the tenant, unlike the pairwise `sub`.
 * - `okta:{issuerHost}:{uid ?? sub}` — `uid` is the org-wide Okta user id (`00u…`), present in
 *   access tokens; ID tokens carry the same id in `sub`. The host (with port, if any) scopes it to
 *   the Okta org, so every authorization server of one org yields the same id.
 * - `{iss}#{sub}` (generic OIDC) — `sub` is unique per issuer (OpenID Connect Core §2); an issuer
 *   identifier never contains `#`, so the first `#` separates the two unambiguously, and the
 *   `https:`/`http:` scheme cannot be confused with the `entra:` / `okta:` prefixes.
 */
export interface FederatedIdentity {
  /** Stable user id; see the interface documentation for the per-preset format. */
  userId: string;
  /** The token's `iss`. */
  issuer: string;
  /** The `id` of the trusted issuer configuration that accepted the token. */
  issuerId: string;
  preset: FederationPreset;
  /** What the verified token is (`./token-kind.ts`); for a `jwt` subject token, the kind it proved to be. */
  tokenKind: FederatedTokenKind;
  /** The raw `sub` claim. */
  subject: string;
  /** Entra tenant id (`tid`). */
  tenant?: string;
  /** `email`, or for Entra `preferred_username` / `upn`; for display and audit, not for authorization. */
  email?: string;
  name?: string;
  groups: string[];
  roles: string[];
  /**
   * What the subject may delegate. Access tokens: Okta `scp` (array), Entra `scp`
   * (space-separated), OIDC `scope` (RFC 8693 §4.2) or `scp`. ID tokens: the issuer's
   * configured `idToken.scopes` (none by default).
   */
  scopes: string[];
  /** The client the token was issued to: Okta `cid`, Entra `azp`/`appid`, OIDC `azp`/`client_id`. */
  clientId?: string;
  /** `exp`, epoch seconds. */
  expiresAt: number;
  /** `iat`, epoch seconds. */
  issuedAt?: number;
  /** RFC 8693 §4.4 `may_act`, when present (a malformed one refuses the token, `./claims.ts`). */
  mayAct?: Record<string, unknown>;
  /** `jti` (RFC 7519 §4.1.7) or Entra `uti`. */
  tokenId?: string;
  /** Every verified claim. */
  claims: Readonly<Record<string, unknown>>;
}

/** A {@link FederatedIdentity} as a preset maps it, before the token's kind is known. */
export type PresetIdentity = Omit<FederatedIdentity, 'tokenKind'>;

/**
 * The token's own claim `name`, or undefined: every claim reader below goes through it. A key
 * inherited from a polluted `Object.prototype` (`groups`, `roles`, `may_act`, `email`) is no claim
 * of the token's; read as one, it would put a user in groups their IdP never named (the Okta org
 * check's `cid` / `scp`, ./presets/okta.ts, was one such read).
 */
function ownClaim(claims: JWTPayload, name: string): unknown {
  return Object.hasOwn(claims, name) ? claims[name] : undefined;
}

/** A string claim, or undefined when absent or not a non-empty string. */
export function stringClaim(claims: JWTPayload, name: string): string | undefined {
  const value = ownClaim(claims, name);
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

/** A claim that the preset requires to be a non-empty string. */
export function requiredStringClaim(claims: JWTPayload, name: string, label = 'the token'): string {
  const value = stringClaim(claims, name);
  if (value === undefined) throw refuse('ERR_FEDERATION_CLAIMS', `${label} must carry a "${name}" claim (non-empty string)`);
  return value;
}

function requiredTimestamp(claims: JWTPayload, name: 'exp'): number {
  const value = ownClaim(claims, name);
  if (typeof value !== 'number') throw refuse('ERR_FEDERATION_CLAIMS', `the token must carry a numeric "${name}" claim`);
  return value;
}

/** An array-of-strings claim; a space-separated string is split (RFC 8693 §4.2 `scope`). */
export function listClaim(claims: JWTPayload, name: string): string[] {
  const value = ownClaim(claims, name);
  if (typeof value === 'string') return value.split(' ').filter((item) => item.length > 0);
  if (Array.isArray(value)) return value.filter((item): item is string => typeof item === 'string');
  return [];
}

/** A JSON-object claim (e.g. RFC 8693 §4.4 `may_act`), or undefined. */
export function objectClaim(claims: JWTPayload, name: string): Record<string, unknown> | undefined {
  const value = ownClaim(claims, name);
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

/** The fields every preset fills the same way. `sub` and `exp` are required by verification. */
export function commonIdentity(claims: JWTPayload, issuerId: string): Omit<PresetIdentity, 'userId' | 'preset' | 'scopes' | 'clientId' | 'email'> {
  const identity: Omit<PresetIdentity, 'userId' | 'preset' | 'scopes' | 'clientId' | 'email'> = {
    issuer: requiredStringClaim(claims, 'iss'),
    issuerId,
    subject: requiredStringClaim(claims, 'sub'),
    groups: listClaim(claims, 'groups'),
    roles: listClaim(claims, 'roles'),
    expiresAt: requiredTimestamp(claims, 'exp'),
    claims: Object.freeze({ ...claims }),
  };
  return withOptional(identity, {
    name: stringClaim(claims, 'name'),
    issuedAt: typeof ownClaim(claims, 'iat') === 'number' ? claims.iat : undefined,
    mayAct: objectClaim(claims, 'may_act'),
    tokenId: stringClaim(claims, 'jti') ?? stringClaim(claims, 'uti'),
  });
}

/** Copies the defined members of `extra` onto `base`, so absent claims stay absent (not `undefined`). */
export function withOptional<T extends object, E extends object>(base: T, extra: E): T & Partial<E> {
  const result = Object.assign({}, base) as Record<string, unknown>;
  for (const [key, value] of Object.entries(extra)) if (value !== undefined) result[key] = value;
  return result as T & Partial<E>;
}
