/**
 * Generic OpenID Connect / OAuth 2.0 issuer: standard claims only.
 *
 * @see {@link https://openid.net/specs/openid-connect-core-1_0.html#StandardClaims OpenID Connect Core §5.1}
 * @see {@link https://www.rfc-editor.org/rfc/rfc9068#section-2.2 RFC 9068 §2.2} (JWT access token claims)
 * @module
 */
import type { JWTPayload } from 'jose';
import { commonIdentity, listClaim, stringClaim, withOptional, type PresetIdentity } from '../identity.js';

/** `scope` (RFC 8693 §4.2, space-separated) or, failing that, `scp` (string or array). */
function scopesOf(claims: JWTPayload): string[] {
  const scope = listClaim(claims, 'scope');
  return scope.length > 0 ? scope : listClaim(claims, 'scp');
}

/** Maps verified claims to a {@link PresetIdentity}: `userId` is `{iss}#{sub}`. */
export function oidcIdentity(claims: JWTPayload, issuerId: string): PresetIdentity {
  const common = commonIdentity(claims, issuerId);
  const identity = { ...common, preset: 'oidc' as const, userId: `${common.issuer}#${common.subject}`, scopes: scopesOf(claims) };
  return withOptional(identity, {
    email: stringClaim(claims, 'email'),
    clientId: stringClaim(claims, 'azp') ?? stringClaim(claims, 'client_id'),
  });
}
