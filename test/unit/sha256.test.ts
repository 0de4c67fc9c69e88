/**
 * src/util/sha256.ts: the one-shot SHA-256 the per-request paths use (issue 16, tenth round) gives
 * the bytes `createHash` gives, for every kind of input those paths hash: empty, ASCII, non-ASCII
 * and astral UTF-8, NUL-joined keys, long JWS-sized text, raw bytes — and the FIPS 180-4 vectors.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { sha256, sha256Base64url } from '../../src/util/sha256.js';

const inputs: Array<string | Uint8Array> = ['', 'abc', 'héllo wörld', '𝄞 emoji 🎉', `jkt\0jti-${'x'.repeat(40)}`, 'eyJ'.padEnd(5000, 'A.b_-'), new Uint8Array([0, 1, 2, 255]), Buffer.from('buffer input')];

describe('sha256', () => {
  it('matches createHash on every kind of input, as bytes and as base64url', () => {
    for (const input of inputs) {
      const expected = createHash('sha256').update(input).digest();
      expect(sha256(input).equals(expected)).toBe(true);
      expect(sha256Base64url(input)).toBe(expected.toString('base64url'));
    }
  });
  it('gives the FIPS 180-4 test vectors', () => {
    expect(sha256('abc').toString('hex')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(sha256('').toString('hex')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(sha256Base64url('abc')).toBe('ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0');
  });
});
