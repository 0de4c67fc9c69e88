/**
 * The cached PDP path's answer set counts what an entry keeps on the heap, not only its key and
 * body bytes, so its byte budget bounds the memory it says it bounds (issue 16, seventh round).
 */
import { describe, expect, it } from 'vitest';
import { AnswerSet, footprint, type Remembered } from '../../src/http/authzen-cached.js';
import { parseEvaluations, type EvaluationInput } from '../../src/pdp/authzen.js';
import type { DecisionBasis } from '../../src/pdp/index.js';

function answer(bodyBytes: number): Remembered {
  const body = Buffer.alloc(bodyBytes, 0x61);
  return { inputs: [], basis: {} as DecisionBasis, body, head: ['X-Request-ID', '', 'Content-Type', 'application/json', 'Content-Length', String(bodyBytes)], permits: 1, denies: 0 };
}

describe('AnswerSet', () => {
  it('counts an entry at more than its key and body bytes (the key as UTF-16, the parsed request, the head, the entry itself)', () => {
    const key = `/access/v1/evaluation\0${'x'.repeat(400)}`;
    const value = answer(60);
    expect(footprint(key, value)).toBeGreaterThanOrEqual(4 * key.length + value.body.length + 512);
  });

  it('counts a batch\'s defaults once per item that inherits them (parsing copies them), not once as in the text', () => {
    const properties = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`p${i}`, i]));
    const text = JSON.stringify({ subject: { type: 'user', id: 'alice', properties }, action: { name: 'read' }, resource: { type: 'doc', id: 'd' }, evaluations: Array.from({ length: 500 }, () => ({})) });
    const parsed = parseEvaluations(JSON.parse(text), 500);
    const inputs = parsed.kind === 'batch' ? parsed.items.map((item) => (item as { evaluation: EvaluationInput }).evaluation) : [];
    const value = { ...answer(60), inputs };
    // Each item's subject holds its own record of 200 slots: two pointers each at the very least.
    // Before: 4 bytes a character of the 3.6 KB text (~15 KB) where the heap grew by ~6 MB.
    expect(footprint(`/access/v1/evaluations\0${text}`, value)).toBeGreaterThanOrEqual(500 * 200 * 16);
  });

  it('empties itself before the counted footprint passes the budget', () => {
    const value = answer(60);
    const key = (i: number): string => `/access/v1/evaluation\0{"i":${i},"pad":"${'p'.repeat(400)}"}`;
    const size = footprint(key(0), value);
    const set = new AnswerSet(10 * size);
    for (let i = 0; i < 10; i += 1) set.set(key(i), value);
    expect(set.get(key(0))).toBe(value);
    // The eleventh entry would pass the budget: the set starts again with it alone.
    set.set(key(10), value);
    expect(set.get(key(0))).toBeUndefined();
    expect(set.get(key(10))).toBe(value);
  });

  it('replacing an entry counts it once', () => {
    const value = answer(60);
    const key = `/access/v1/evaluation\0{"a":1}`;
    const set = new AnswerSet(3 * footprint(key, value));
    for (let i = 0; i < 50; i += 1) set.set(key, value);
    set.set(`${key} `, value);
    expect(set.get(key)).toBe(value);
  });
});
