/**
 * SHA-256 (FIPS 180-4) in one call, for digests and cache keys on the per-request paths.
 *
 * Node's one-shot `crypto.hash()` (Node ≥ 20.12 / 21.7) where it exists: unlike `createHash()` it
 * builds no `Hash` object — a native object with a weak handle, which every scavenge that finds it
 * dead must process (issue 16, tenth round: a gateway call made 9 of them, and that phase was ~1 ms
 * of a 64 MiB scavenge). Node 20.11 (the oldest `engines` allows) falls back to `createHash()`.
 *
 * @module
 */
import * as crypto from 'node:crypto';

const oneShot: typeof crypto.hash | undefined = typeof crypto.hash === 'function' ? crypto.hash : undefined;

/**
 * SHA-256 of `data` (a string is hashed as its UTF-8 bytes), as 32 bytes.
 * @param data - the input: a string (UTF-8) or bytes.
 * @returns the digest, a new Buffer of 32 bytes.
 */
export function sha256(data: string | Uint8Array): Buffer {
  return oneShot ? oneShot('sha256', data, 'buffer') : crypto.createHash('sha256').update(data).digest();
}

/**
 * SHA-256 of `data` (a string is hashed as its UTF-8 bytes) in base64url without padding (RFC 4648 §5).
 * @param data - the input: a string (UTF-8) or bytes.
 * @returns 43 base64url characters.
 */
export function sha256Base64url(data: string | Uint8Array): string {
  return oneShot ? oneShot('sha256', data, 'base64url') : crypto.createHash('sha256').update(data).digest('base64url');
}
