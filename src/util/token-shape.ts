/**
 * The shape of a JWS / JWT in text (RFC 7515 §7.1 compact serialization: three base64url
 * segments, the first a JSON header, so starting `eyJ`). Receipts, logs and identifiers Deputy
 * derives from claims never hold such a run: a last defence for "no token in evidence".
 *
 * @module
 */

/** A compact JWS / JWT run: `eyJ…` header, payload, signature (the signature may be empty: `alg: none`). */
export const JWS_SHAPE = /eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/;

/** Whether `text` holds a run shaped like a JWS / JWT ({@link JWS_SHAPE}). */
export function looksLikeToken(text: string): boolean {
  return JWS_SHAPE.test(text);
}
