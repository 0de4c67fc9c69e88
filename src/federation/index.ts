/**
 * Federation: subject tokens from trusted enterprise IdPs (Okta, Microsoft Entra ID, generic
 * OpenID Connect) verified into a {@link FederatedIdentity} — RFC 8693 §2.1 `subject_token`,
 * RFC 9068 / OpenID Connect Core §2 claims, RFC 8414 / OIDC discovery for the issuer's keys.
 * `verify.ts` lists the checks in order with the error code each throws.
 *
 * @module
 */
export { FederationVerifier, MAX_SUBJECT_TOKEN_BYTES, type SubjectTokenKind } from './verify.js';
export { FederationError, refuse, type FederationErrorCode } from './errors.js';
export type { FederatedIdentity, PresetIdentity } from './identity.js';
export { CachedJwks, type CachedJwksOptions } from './jwks.js';
export { TrustedIssuer, discoveryUrl, peekIssuer, type IssuerMatch, type RemoteKeySet } from './issuer.js';
export {
  trustedIssuerSchema,
  tenantOfIssuerUrl,
  TENANT_PLACEHOLDER,
  type EntraIssuerConfig,
  type FederationPreset,
  type IdTokenConfig,
  type TrustedIssuerConfig,
  type TrustedIssuerConfigInput,
} from './config.js';
export type { FederatedTokenKind } from './token-kind.js';
