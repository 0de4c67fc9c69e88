/**
 * The JWS algorithms (RFC 7518 §3.1, RFC 8037 §3.1) Deputy signs with and accepts, one named
 * list per use: the one place that says which algorithms each kind of JWT may carry.
 *
 * Every list is asymmetric only: `none` and the HMAC family (`HS*`) never appear, so a token can
 * never pick a key-confusion algorithm (RFC 8725 §3.1, §3.2). Verifiers pin their list on every
 * `jwtVerify` (`algorithms: [...LIST]`); configuration schemas build their enums from these lists.
 *
 * @module
 */

/** Algorithms of Deputy's own token-signing keys (access tokens, `keys.signingAlg`). */
export const SIGNING_ALGS = ['ES256', 'RS256', 'EdDSA'] as const;
/** One of {@link SIGNING_ALGS}. */
export type SigningAlg = (typeof SIGNING_ALGS)[number];

/** Algorithms of Deputy's signed receipts (DESIGN capability 4; compact, fast to verify offline). */
export const RECEIPT_ALGS = ['ES256', 'EdDSA'] as const;
/** One of {@link RECEIPT_ALGS}. */
export type ReceiptAlg = (typeof RECEIPT_ALGS)[number];

/** Access tokens Deputy verifies are the ones it signed: exactly its signing algorithms. */
export const ACCESS_TOKEN_ALGS: readonly SigningAlg[] = SIGNING_ALGS;

/**
 * Client authentication (`private_key_jwt`, RFC 7523 §3; `token_endpoint_auth_signing_alg_values_supported`
 * of RFC 8414 §2) — the keys agents register.
 */
export const CLIENT_AUTH_ALGS = ['ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'RS256', 'Ed25519', 'EdDSA'] as const;

/** RFC 8693 §2.1 `actor_token`: signed with one of the agent's registered client-authentication keys. */
export const ACTOR_TOKEN_ALGS: readonly string[] = CLIENT_AUTH_ALGS;

/**
 * DPoP proofs (RFC 9449 §4.2; `dpop_signing_alg_values_supported`, RFC 9449 §5.1), in the order
 * the `algs` parameter of a DPoP challenge lists them (RFC 9449 §7.1).
 */
export const DPOP_ALGS = ['ES256', 'ES384', 'ES512', 'PS256', 'Ed25519', 'EdDSA', 'RS256'] as const;

/**
 * What a trusted enterprise IdP (`trustedIssuers[].algorithms`) may be configured to sign subject
 * tokens with: every asymmetric JWS algorithm jose verifies.
 */
export const IDP_TOKEN_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;

/** A trusted issuer's algorithms when the configuration names none (what Okta and Entra sign with). */
export const DEFAULT_IDP_TOKEN_ALGS: readonly (typeof IDP_TOKEN_ALGS)[number][] = ['RS256'];
