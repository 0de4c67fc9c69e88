/**
 * Red team (issue 16, twelfth and thirteenth rounds). The request digest a receipt carries must
 * stay the same across versions — an auditor recomputes it from the request. The thirteenth
 * round replaced Deputy's own serializer with the `canonicalize` library (RFC 8785); this file
 * keeps the serializer as it was (src/audit/digest.ts at 3eb5306) and checks, by property, that
 * the library gives the same text for every value a request carries — nested objects and arrays,
 * `undefined` members and elements, astral, empty and `__proto__` names, numbers incl. -0, 1e21,
 * 5e-324 — and that the one difference, strings with lone surrogates (not I-JSON, RFC 7493 §2.1;
 * RFC 8785 §3.2.2.2 refuses them), is refused with a 400 `invalid_request`, never digested.
 */
import canonicalize from 'canonicalize';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, requestDigest, type DigestValue } from '../../src/audit/digest.js';
import { InvalidRequest } from '../../src/errors/index.js';
import { previousCanonicalJson } from '../support/previous-canonical-json.js';
import { MAX_JSON_DEPTH } from '../../src/util/i-json.js';


const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const hasLoneSurrogate = (v: DigestValue): boolean =>
  typeof v === 'string' ? LONE_SURROGATE.test(v) : Array.isArray(v) ? v.some(hasLoneSurrogate) : v !== null && typeof v === 'object' ? Object.entries(v).some(([k, x]) => LONE_SURROGATE.test(k) || hasLoneSurrogate(x)) : false;

const NAMES = fc.oneof(fc.constantFrom('', '__proto__', 'constructor', 'toString', '1', '10', '😀', '\ufb01', 'é', 'e\u0301'), fc.string({ unit: 'grapheme', maxLength: 6 }), fc.string({ unit: 'binary', maxLength: 4 }));
const NUMBERS = fc.oneof(fc.constantFrom(0, -0, 1e21, 1e-7, 5e-324, 1.7976931348623157e308, 2 ** 53, 0.1 + 0.2, 333333333.3333333), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer());
const STRINGS = fc.oneof(fc.string({ unit: 'grapheme', maxLength: 8 }), fc.string({ unit: 'binary', maxLength: 8 }), fc.constantFrom('\u2028', '\u0000', '"', '\\', '\ud800', '\udfff'));

/** Objects with own enumerable members of any name (defineProperty: `__proto__` stays a member, as JSON.parse makes it). */
const objectOf = (value: fc.Arbitrary<DigestValue>) =>
  fc.array(fc.tuple(NAMES, fc.option(value, { nil: undefined, freq: 5 })), { maxLength: 5 }).map((entries) => {
    const o: Record<string, DigestValue> = {};
    for (const [k, v] of entries) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
    return o;
  });

const { value } = fc.letrec<{ value: DigestValue }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, STRINGS, NUMBERS, fc.constantFrom(true, false, null), fc.array(fc.option(tie('value'), { nil: undefined, freq: 6 }), { maxLength: 4 }), objectOf(tie('value'))),
}));
const request = objectOf(value);

describe('the request digest from the canonicalize library (RFC 8785)', () => {
  it('gives the previous serializer\'s text for every value without lone surrogates, and refuses the others', () => {
    fc.assert(
      fc.property(request, (r) => {
        if (hasLoneSurrogate(r)) {
          expect(() => requestDigest(r)).toThrow(InvalidRequest);
        } else {
          expect(canonicalJson(r)).toBe(previousCanonicalJson(r));
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('orders by UTF-16 code units, keeps __proto__ as a member, writes -0 as 0 and 1e21 as 1e+21', () => {
    const parsed = JSON.parse('{"\\ufb01":1,"\\ud83d\\ude00":2,"__proto__":{"b":-0,"a":[1e21, 5e-324]},"a":null,"":[null]}') as { [k: string]: DigestValue };
    expect(canonicalJson(parsed)).toBe('{"":[null],"__proto__":{"a":[1e+21,5e-324],"b":0},"a":null,"😀":2,"ﬁ":1}');
    expect(canonicalJson(parsed)).toBe(previousCanonicalJson(parsed));
    expect(canonicalJson({ a: [undefined, 1], b: undefined })).toBe('{"a":[null,1]}');
  });

  it('refuses what is not I-JSON with a 400 invalid_request: lone surrogates in values and names, non-finite numbers', () => {
    for (const bad of [{ s: '\ud800' }, { s: 'x\udfffy' }, { ['\udc00']: 1 }, { a: [{ b: '\ud83d' }] }, { n: Number.POSITIVE_INFINITY }, { n: Number.NaN }]) {
      expect(() => requestDigest(bad)).toThrow(InvalidRequest);
      try {
        requestDigest(bad);
      } catch (err) {
        expect((err as InvalidRequest).status).toBe(400);
        expect((err as InvalidRequest).code).toBe('invalid_request');
      }
    }
    // A well-formed surrogate pair is an ordinary astral character.
    expect(canonicalJson({ s: '\ud83d\ude00' })).toBe('{"s":"😀"}');
  });

  it('says which rule a refusal broke and where: a lone surrogate, a non-finite number, nesting past MAX_JSON_DEPTH (checked before the canonicalizer recurses)', () => {
    const messageOf = (r: { [k: string]: DigestValue }): string => {
      try {
        requestDigest(r);
      } catch (err) {
        expect(err).toBeInstanceOf(InvalidRequest);
        return (err as Error).message;
      }
      throw new Error('not refused');
    };
    expect(messageOf({ a: [{ b: '\ud83d' }] })).toBe('the request.a[0].b holds a lone surrogate (not I-JSON, RFC 7493 §2.1)');
    expect(messageOf({ ['x\udc00']: 1 })).toMatch(/^the request\["x\\udc00"\]: the member name holds a lone surrogate/);
    expect(messageOf({ n: Number.NaN })).toBe('the request.n is a non-finite number (not I-JSON, RFC 7493 §2.2)');
    // Deeper than any engine stack: the check, not a RangeError from the library, refuses it.
    let deep: DigestValue = 1;
    for (let i = 0; i < 200_000; i++) deep = [deep];
    expect(messageOf({ deep })).toMatch(new RegExp(`^the request\\.deep(\\[0\\])+ is nested deeper than ${MAX_JSON_DEPTH} levels`));
    let atLimit: DigestValue = 1;
    for (let i = 1; i < MAX_JSON_DEPTH; i++) atLimit = [atLimit];
    expect(canonicalJson({ atLimit })).toMatch(/^\{"atLimit":\[+1\]+\}$/);
    expect(messageOf({ over: [atLimit] })).toMatch(/nested deeper than/);
  });

  it('is what the library gives for parsed JSON (the one implementation)', () => {
    fc.assert(
      fc.property(request, (r) => {
        fc.pre(!hasLoneSurrogate(r));
        const json = JSON.parse(JSON.stringify(r)) as { [k: string]: DigestValue };
        expect(canonicalJson(json)).toBe(canonicalize(json));
      }),
      { numRuns: 500 },
    );
  });
});
