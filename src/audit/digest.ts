/**
 * The request digest a receipt carries instead of the request: whoever holds the original
 * request can recompute it and match it to the receipt; whoever holds only the receipt learns
 * nothing from it (SHA-256 preimage resistance, and every hashed request holds high-entropy
 * tokens or proofs).
 *
 * Format: `sha-256:` + base64url (RFC 4648 §5) of SHA-256 over the canonical JSON of the
 * request's fields: object members sorted by name at every level, no whitespace, `undefined`
 * members left out (RFC 8785-style canonicalization for the string / array / object values
 * requests carry).
 *
 * @module
 */
import { sha256Base64url } from '../util/sha256.js';

/** A request reduced to JSON values (form parameters, AuthZEN bodies). */
export type DigestValue = string | number | boolean | null | undefined | readonly DigestValue[] | { readonly [k: string]: DigestValue };

/** Deterministic JSON: sorted member names, no insignificant whitespace. */
export function canonicalJson(value: DigestValue): string {
  if (value === undefined) return 'null';
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('canonical JSON has no representation for non-finite numbers');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v)).join(',')}]`;
  // Member names sorted by UTF-16 code units (the default sort's order, as `<` compares strings), the
  // text built in one pass: no entry pairs, filtered and mapped copies per object (every receipt's
  // request digest; issue 16, twelfth round).
  const object = value as { readonly [k: string]: DigestValue };
  let out = '{';
  for (const k of Object.keys(object).sort()) {
    const v = object[k];
    if (v === undefined) continue;
    if (out.length > 1) out += ',';
    out += `${JSON.stringify(k)}:${canonicalJson(v)}`;
  }
  return `${out}}`;
}

/** `sha-256:<base64url>` of the canonical JSON of `request`. */
export function requestDigest(request: { readonly [k: string]: DigestValue }): string {
  return `sha-256:${sha256Base64url(canonicalJson(request))}`;
}
