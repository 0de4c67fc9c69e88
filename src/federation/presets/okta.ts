/**
 * Okta: custom authorization servers (`https://{domain}/oauth2/{authServerId}`) and the org
 * authorization server (`https://{domain}`).
 *
 * Claims: `uid` (Okta user id), `cid` (client id), `scp` (array of scopes), `groups` (array,
 * when a groups claim is configured).
 *
 * @see {@link https://developer.okta.com/docs/guides/validate-access-tokens/main/ Okta: Validate access tokens}
 * @module
 */
import type { JWTPayload } from 'jose';
import { refuse } from '../errors.js';
import { commonIdentity, listClaim, stringClaim, withOptional, type PresetIdentity } from '../identity.js';

/**
 * Whether `issuer` is an Okta org authorization server: no `/oauth2/{id}` path. Its access
 * tokens are meant for Okta's own APIs only and cannot be validated locally (Okta KB
 * "Validation Failed on Access Token Issued by the Org Authorization Server"); its ID tokens can.
 */
export function isOktaOrgAuthorizationServer(issuer: string): boolean {
  return !new URL(issuer).pathname.startsWith('/oauth2/');
}

/** Okta access tokens carry `cid` and `scp`; Okta ID tokens carry neither. */
function looksLikeOktaAccessToken(claims: JWTPayload): boolean {
  // Own claims only: a key inherited from a polluted Object.prototype is no claim of the token's.
  return Object.hasOwn(claims, 'cid') || Object.hasOwn(claims, 'scp');
}

/**
 * Refuses, before signature verification, an access token from an org authorization server.
 * A token presented as `jwt` counts as an access token when it carries `cid` or `scp`.
 */
export function refuseOktaOrgAccessToken(issuer: string, claims: JWTPayload, tokenType: string): void {
  if (!isOktaOrgAuthorizationServer(issuer)) return;
  if (tokenType === 'access_token' || (tokenType === 'jwt' && looksLikeOktaAccessToken(claims))) {
    throw refuse(
      'ERR_FEDERATION_UNVERIFIABLE',
      `access tokens from the Okta org authorization server (${issuer}) are for Okta's own APIs and cannot be verified by third parties; use a custom authorization server (${issuer}/oauth2/{authServerId}) or present an ID token`,
    );
  }
}

/**
 * Maps verified Okta claims to a {@link PresetIdentity}: `userId` is
 * `okta:{issuerHost}:{uid ?? sub}`.
 */
export function oktaIdentity(claims: JWTPayload, issuerId: string): PresetIdentity {
  const common = commonIdentity(claims, issuerId);
  const user = stringClaim(claims, 'uid') ?? common.subject;
  const identity = { ...common, preset: 'okta' as const, userId: `okta:${new URL(common.issuer).host}:${user}`, scopes: listClaim(claims, 'scp') };
  return withOptional(identity, {
    email: stringClaim(claims, 'email') ?? stringClaim(claims, 'preferred_username'),
    clientId: stringClaim(claims, 'cid') ?? stringClaim(claims, 'azp'),
  });
}
