/**
 * Red team (issue 16, twelfth round: canonicalJson rewritten in one pass). The request digest a
 * receipt carries must stay the same across versions — an auditor recomputes it from the request
 * — so the rewrite must give the text the previous implementation gave (kept here as it was at
 * 12dfa6f), and, for JSON values, RFC 8785's (the `canonicalize` dependency): member names in
 * UTF-16 code-unit order (not code-point order: U+FB01 sorts after U+1F600's surrogates),
 * `__proto__` an ordinary member, -0 as 0, ECMAScript number text; lone surrogates (which RFC 8785
 * refuses) escaped as before.
 * Adversarial values generated deterministically; no timing.
 */
import canonicalize from 'canonicalize';
import { describe, expect, it } from 'vitest';
import { canonicalJson, type DigestValue } from '../../src/audit/digest.js';

/** canonicalJson as it was before the twelfth round (src/audit/digest.ts at 12dfa6f). */
function previous(value: DigestValue): string {
  if (value === undefined) return 'null';
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('canonical JSON has no representation for non-finite numbers');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => previous(v)).join(',')}]`;
  const members = Object.entries(value as { readonly [k: string]: DigestValue })
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${JSON.stringify(k)}:${previous(v)}`);
  return `{${members.join(',')}}`;
}

const STRINGS = ['', 'a', 'B', 'é', 'e\u0301', '\ud800', '\udfff', '😀', '\ufb01', '\uffff', '__proto__', 'constructor', 'toString', '1', '10', '2', '\u0000', '"', '\\', '\u2028', '\u007f'];
const NUMBERS = [0, -0, 1, -1, 1e21, 1e-7, 123456789012345680000, 5e-324, 1.7976931348623157e308, 0.1 + 0.2, 2 ** 53, -(2 ** 53) - 2, 333333333.3333333];

function generator(seed: number) {
  const next = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const value = (depth: number): DigestValue => {
    const t = next(depth > 3 ? 4 : 6);
    if (t === 0) return STRINGS[next(STRINGS.length)]! + STRINGS[next(STRINGS.length)]!;
    if (t === 1) return NUMBERS[next(NUMBERS.length)]!;
    if (t === 2) return [true, false, null][next(3)]!;
    if (t === 3) return STRINGS[next(STRINGS.length)]!;
    if (t === 4) return Array.from({ length: next(4) }, () => value(depth + 1));
    const object: Record<string, DigestValue> = {};
    // defineProperty: a member named __proto__ stays a member (as JSON.parse makes it).
    for (let i = next(5); i > 0; i--) Object.defineProperty(object, STRINGS[next(STRINGS.length)]! + STRINGS[next(STRINGS.length)]!, { value: next(6) === 0 ? undefined : value(depth + 1), enumerable: true, writable: true, configurable: true });
    return object;
  };
  return value;
}

describe('canonicalJson (the request digest) across versions and against RFC 8785', () => {
  it('gives the previous text for every generated value, and RFC 8785 text for JSON values', () => {
    const value = generator(16);
    for (let i = 0; i < 5000; i++) {
      const v = value(0);
      expect(canonicalJson(v)).toBe(previous(v));
      const json = JSON.parse(JSON.stringify(v)) as DigestValue;
      // RFC 8785 refuses lone surrogates (`canonicalize` throws); the digest escapes them, as it always did.
      let rfc: string | undefined;
      try {
        rfc = canonicalize(json);
      } catch {
        rfc = undefined;
      }
      if (rfc !== undefined) expect(canonicalJson(json)).toBe(rfc);
    }
  });

  it('orders by UTF-16 code units, keeps __proto__ as a member, writes -0 as 0', () => {
    const parsed = JSON.parse('{"\\ufb01":1,"\\ud83d\\ude00":2,"__proto__":{"b":-0,"a":[1e21]},"a":null}') as DigestValue;
    expect(canonicalJson(parsed)).toBe('{"__proto__":{"a":[1e+21],"b":0},"a":null,"😀":2,"ﬁ":1}');
    expect(canonicalJson(parsed)).toBe(canonicalize(parsed));
  });
});
