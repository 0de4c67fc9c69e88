/**
 * Errors raised while verifying a subject token issued by a trusted enterprise IdP.
 *
 * The token-exchange grant (RFC 8693 §2.2.2) maps every {@link FederationError} to the OAuth
 * error `invalid_grant` and sends {@link FederationError.description} as `error_description`
 * (RFC 6749 §5.2). Descriptions therefore name the failed check only: they never contain the
 * token, nor a claim value taken from it. Issuer and audience names from configuration are fine.
 *
 * @module
 */

/** Stable codes, one per check of the verification pipeline (see `./verify.ts`). */
export type FederationErrorCode =
  /** Not a compact JWS (RFC 7515 §7.1), or its header / claims set is not JSON. */
  | 'ERR_FEDERATION_MALFORMED'
  /** The token is larger than the accepted maximum. */
  | 'ERR_FEDERATION_TOO_LARGE'
  /** The `iss` claim names no configured trusted issuer. */
  | 'ERR_FEDERATION_UNTRUSTED_ISSUER'
  /** The JOSE header `alg` is not in the issuer's allow-list (covers `none` and HS* confusion). */
  | 'ERR_FEDERATION_ALG'
  /** `exp` is in the past (RFC 7519 §4.1.4). */
  | 'ERR_FEDERATION_EXPIRED'
  /** `nbf` is in the future (RFC 7519 §4.1.5). */
  | 'ERR_FEDERATION_NOT_YET_VALID'
  /** `aud` does not include the audience Deputy requires (RFC 7519 §4.1.3). */
  | 'ERR_FEDERATION_AUDIENCE'
  /** The signature does not verify with the issuer's key. */
  | 'ERR_FEDERATION_SIGNATURE'
  /** No key in the issuer's JWKS matches the token's `kid` / `alg`, even after a refetch. */
  | 'ERR_FEDERATION_UNKNOWN_KID'
  /** Entra ID: the token's tenant is not allowed for this issuer. */
  | 'ERR_FEDERATION_TENANT'
  /** A token the IdP documents as not verifiable by third parties (Graph, Okta org AS access). */
  | 'ERR_FEDERATION_UNVERIFIABLE'
  /** A claim the preset requires is missing, or a claim that restricts the token is malformed. */
  | 'ERR_FEDERATION_CLAIMS'
  /**
   * The token is not of the declared `subject_token_type` (RFC 8693 §3): it fails that kind's
   * rules (audience, `typ`, claims only the other kind carries), or, declared `jwt`, it
   * satisfies the rules of both kinds or of neither.
   */
  | 'ERR_FEDERATION_TOKEN_TYPE'
  /** The declared type is not accepted from this issuer (ID tokens without `idToken.clientId`). */
  | 'ERR_FEDERATION_TOKEN_TYPE_NOT_ACCEPTED'
  /** Discovery or the JWKS of the issuer could not be fetched. */
  | 'ERR_FEDERATION_ISSUER_UNAVAILABLE';

/**
 * A subject token was refused. `description` is safe to send to the client; `cause` holds
 * diagnostics for logs only (never a token, never a whole claims set).
 */
export class FederationError extends Error {
  constructor(
    readonly code: FederationErrorCode,
    readonly description: string,
    options?: { cause?: unknown },
  ) {
    super(description, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FederationError';
  }
}

/** Short factory so throw sites stay on one line. */
export function refuse(code: FederationErrorCode, description: string, cause?: unknown): FederationError {
  return new FederationError(code, description, cause === undefined ? undefined : { cause });
}
