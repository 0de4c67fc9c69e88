/**
 * The request digest a receipt carries instead of the request: whoever holds the original
 * request can recompute it and match it to the receipt; whoever holds only the receipt learns
 * nothing from it (SHA-256 preimage resistance, and every hashed request holds high-entropy
 * tokens or proofs).
 *
 * Format: `sha-256:` + base64url (RFC 4648 §5) of SHA-256 over the RFC 8785 (JCS) canonical JSON
 * of the request's fields, from the `canonicalize` library (the one JCS implementation Deputy
 * uses: tool pins, chain evaluation and MCP argument digests too). `undefined` members are left
 * out, `undefined` array elements are written `null` (as `JSON.stringify` does).
 *
 * Input that is not I-JSON is refused, never digested: a string holding a lone surrogate
 * (RFC 7493 §2.1; RFC 8785 §3.2.2.2 says a JCS implementation must then fail) and a non-finite
 * number; so is input nested deeper than `MAX_JSON_DEPTH` (src/util/i-json.ts), checked before
 * the canonicalizer recurses, so an engine stack overflow is never the check. Each refusal says
 * which of the three it is and where. Until issue 16's thirteenth round Deputy's own serializer
 * escaped lone surrogates (`"\ud800"`); every other value digests to the same bytes as before.
 *
 * @module
 */
import canonicalize from 'canonicalize';
import { InvalidRequest } from '../errors/index.js';
import { iJsonProblem } from '../util/i-json.js';
import { sha256Base64url } from '../util/sha256.js';

/** A request reduced to JSON values (form parameters, AuthZEN bodies). */
export type DigestValue = string | number | boolean | null | undefined | readonly DigestValue[] | { readonly [k: string]: DigestValue };

/**
 * RFC 8785 canonical JSON of a request's fields.
 *
 * @throws InvalidRequest (400 `invalid_request`) naming the member when a value is not I-JSON (a
 *   lone surrogate in a string or member name, a non-finite number) or nests deeper than
 *   `MAX_JSON_DEPTH` levels.
 */
export function canonicalJson(request: { readonly [k: string]: DigestValue }): string {
  const problem = iJsonProblem(request, 'the request');
  if (problem) throw new InvalidRequest(problem);
  return canonicalize(request)!;
}

/** `sha-256:<base64url>` of the canonical JSON of `request` ({@link canonicalJson}; throws as it does). */
export function requestDigest(request: { readonly [k: string]: DigestValue }): string {
  return `sha-256:${sha256Base64url(canonicalJson(request))}`;
}
