/**
 * JWS algorithms Deputy accepts from clients (asymmetric only: no `none`, no `HS*`).
 *
 * @module
 */

/** Client authentication (`private_key_jwt`, RFC 7523 §3) and actor tokens (RFC 8693 §2.1). */
export const CLIENT_AUTH_ALGS = ['ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'RS256', 'Ed25519', 'EdDSA'] as const;
/** DPoP proofs (RFC 9449 §4.2, §5.1). */
export const DPOP_ALGS = ['ES256', 'ES384', 'ES512', 'PS256', 'Ed25519', 'EdDSA', 'RS256'] as const;
