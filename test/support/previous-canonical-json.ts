/**
 * Deputy's own canonical JSON as it was before the thirteenth round of issue 16 (src/audit/digest.ts
 * at 3eb5306), kept only to prove — and measure — that the `canonicalize` library which replaced it
 * gives every request digest the same text (test/unit/rt-digest-canonical.test.ts,
 * scripts/bench/digest-micro.ts).
 */
import type { DigestValue } from '../../src/audit/digest.js';

/** Sorted member names, no whitespace, `undefined` members left out, `undefined` elements `null`. */
export function previousCanonicalJson(value: DigestValue): string {
  if (value === undefined) return 'null';
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('canonical JSON has no representation for non-finite numbers');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => previousCanonicalJson(v)).join(',')}]`;
  const object = value as { readonly [k: string]: DigestValue };
  let out = '{';
  for (const k of Object.keys(object).sort()) {
    const v = object[k];
    if (v === undefined) continue;
    if (out.length > 1) out += ',';
    out += `${JSON.stringify(k)}:${previousCanonicalJson(v)}`;
  }
  return `${out}}`;
}
