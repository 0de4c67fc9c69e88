/**
 * I-JSON's one string rule Deputy checks outside canonical JSON (RFC 7493 §2.1): no lone
 * surrogate. JSON text may spell one (`"\ud800"`), but it is no Unicode text: RFC 8785 cannot
 * canonicalize it and Cedar cannot take it (it throws).
 *
 * @module
 */

/** A surrogate code unit standing alone (with the `u` flag a well-formed pair is one code point, never matched). */
const LONE_SURROGATE = /\p{Surrogate}/u;

/** Whether `text` holds a lone surrogate (is not well-formed UTF-16). */
export function hasLoneSurrogate(text: string): boolean {
  return LONE_SURROGATE.test(text);
}
