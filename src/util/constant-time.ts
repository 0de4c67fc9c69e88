/**
 * Constant-time comparison of secrets and digests: the one helper every comparison of a secret,
 * nonce, state, `ath` or hash goes through (never `===`, whose early exit leaks the length of the
 * common prefix through timing).
 *
 * @module
 */
import { timingSafeEqual } from 'node:crypto';
import { sha256 } from './sha256.js';

/**
 * Whether `a` and `b` are equal, in time independent of where they differ. Both sides are
 * hashed (SHA-256) first, so inputs of different lengths are compared in constant time too
 * and `crypto.timingSafeEqual` always sees equal-length buffers; strings are compared as UTF-8.
 *
 * @param a a secret or digest (string as UTF-8, or bytes).
 * @param b the value to compare it with.
 * @returns `true` only when both are byte-for-byte equal.
 */
export function constantTimeEqual(a: string | Uint8Array, b: string | Uint8Array): boolean {
  const x = digest(a);
  const y = digest(b);
  // The digests are equal-length; a length difference of the inputs still makes them unequal.
  return timingSafeEqual(x, y) && byteLength(a) === byteLength(b);
}

function digest(value: string | Uint8Array): Buffer {
  return sha256(value);
}

function byteLength(value: string | Uint8Array): number {
  return typeof value === 'string' ? Buffer.byteLength(value) : value.byteLength;
}
