/**
 * Red team of src/util/sha256.ts (issue 16, tenth round): the one-shot digest must give
 * `createHash`'s bytes for what the per-request paths can be handed — strings with lone
 * surrogates (UTF-8 replacement, as `Buffer.from`), non-BMP text, and byte views with an offset
 * into a larger buffer (a subarray hashes its own bytes only) — on both paths: `crypto.hash`
 * and the `createHash` fallback of Node versions without it.
 */
import * as crypto from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';

const pool = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz');
const inputs: Array<[string, string | Uint8Array, Buffer]> = [
  ['a lone high surrogate', 'a\uD800b', Buffer.from('a\uFFFDb')],
  ['a lone low surrogate', '\uDC00', Buffer.from('\uFFFD')],
  ['a reversed pair', '\uDE00\uD83D', Buffer.from('\uFFFD\uFFFD')],
  ['a non-BMP pair', '\u{1F600}\u{10FFFF}', Buffer.from([0xf0, 0x9f, 0x98, 0x80, 0xf4, 0x8f, 0xbf, 0xbf])],
  ['a Buffer subarray', pool.subarray(3, 9), Buffer.from('345678')],
  ['a Uint8Array view with an offset', new Uint8Array(pool.buffer, pool.byteOffset + 10, 5), Buffer.from('abcde')],
  ['an empty view at an offset', pool.subarray(7, 7), Buffer.alloc(0)],
];

/** The digests under test, imported afresh (`oneShot` is chosen at import). */
async function load(): Promise<typeof import('../../src/util/sha256.js')> {
  vi.resetModules();
  return import('../../src/util/sha256.js');
}

describe('sha256 on awkward inputs', () => {
  afterEach(() => {
    vi.doUnmock('node:crypto');
    vi.resetModules();
  });

  for (const fallback of [false, true]) {
    it(`${fallback ? 'the createHash fallback' : 'crypto.hash'}: the bytes' digest, as createHash of the same bytes`, async () => {
      let created = 0;
      if (fallback) {
        vi.doMock('node:crypto', async (original) => {
          const real = await original<typeof crypto>();
          return { ...real, hash: undefined, createHash: (...args: Parameters<typeof crypto.createHash>) => (created++, real.createHash(...args)) };
        });
      }
      const { sha256, sha256Base64url } = await load();
      for (const [, input, bytes] of inputs) {
        const expected = crypto.createHash('sha256').update(bytes).digest();
        expect(sha256(input).equals(expected)).toBe(true);
        expect(sha256Base64url(input)).toBe(expected.toString('base64url'));
        expect(sha256(input).length).toBe(32);
      }
      expect(created).toBe(fallback ? 3 * inputs.length : 0); // the path under test is the one taken
    });
  }

  it('a digest is its own 32 bytes (not a view of a shared pool another digest overwrites)', async () => {
    const { sha256 } = await load();
    const a = sha256('a');
    const copy = Buffer.from(a);
    sha256('b');
    expect(a.equals(copy)).toBe(true);
    expect(a.byteOffset === 0 && a.buffer.byteLength === 32).toBe(true);
  });
});
