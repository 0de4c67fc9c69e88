/**
 * The cached PDP path's answer set counts what an entry keeps on the heap, not only its key and
 * body bytes, so its byte budget bounds the memory it says it bounds (issue 16, seventh round).
 */
import { describe, expect, it } from 'vitest';
import { AnswerSet, footprint, requestHash, type Remembered } from '../../src/http/authzen-cached.js';
import { parseEvaluations, type EvaluationInput } from '../../src/pdp/authzen.js';
import type { DecisionBasis } from '../../src/pdp/index.js';

function answer(bodyBytes: number): Remembered {
  const body = Buffer.alloc(bodyBytes, 0x61);
  return { inputs: [], basis: {} as DecisionBasis, body, head: ['X-Request-ID', '', 'Content-Type', 'application/json', 'Content-Length', String(bodyBytes)], permits: 1, denies: 0 };
}

const PATH = '/access/v1/evaluation';
const bytes = (text: string): Buffer => Buffer.from(text, 'latin1');

describe('AnswerSet', () => {
  it('counts an entry at more than its request and body bytes (their copy, the parsed request, the head, the entry itself)', () => {
    const raw = bytes('x'.repeat(400));
    const value = answer(60);
    expect(footprint(PATH, raw, value)).toBeGreaterThanOrEqual(4 * (PATH.length + raw.length) + value.body.length + 512);
  });

  it('counts a batch\'s defaults once per item that inherits them (parsing copies them), not once as in the text', () => {
    const properties = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`p${i}`, i]));
    const text = JSON.stringify({ subject: { type: 'user', id: 'alice', properties }, action: { name: 'read' }, resource: { type: 'doc', id: 'd' }, evaluations: Array.from({ length: 500 }, () => ({})) });
    const parsed = parseEvaluations(JSON.parse(text), 500);
    const inputs = parsed.kind === 'batch' ? parsed.items.map((item) => (item as { evaluation: EvaluationInput }).evaluation) : [];
    const value = { ...answer(60), inputs };
    // Each item's subject holds its own record of 200 slots: two pointers each at the very least.
    // Before: 4 bytes a character of the 3.6 KB text (~15 KB) where the heap grew by ~6 MB.
    expect(footprint('/access/v1/evaluations', bytes(text), value)).toBeGreaterThanOrEqual(500 * 200 * 16);
  });

  it('a full set forgets only the answers remembered longest ago, as many as make room, and never counts more than its budget', () => {
    const value = answer(60);
    // Keys of one length (two digits), so every entry counts the same.
    const key = (i: number): Buffer => bytes(`{"i":"${String(i).padStart(2, '0')}","pad":"${'p'.repeat(400)}"}`);
    const size = footprint(PATH, key(0), value);
    const set = new AnswerSet(10 * size);
    for (let i = 0; i < 10; i += 1) set.set(PATH, key(i), value);
    expect(set.get(PATH, key(0))).toBe(value);
    // The eleventh entry would pass the budget: the oldest alone makes room for it.
    set.set(PATH, key(10), value);
    expect(set.get(PATH, key(0))).toBeUndefined();
    for (let i = 1; i <= 10; i += 1) expect(set.get(PATH, key(i)), `entry ${i}`).toBe(value);
    expect(set.bytes).toBe(10 * size);
    // Remembered again, an entry is the newest: the next eviction takes the one after it.
    set.set(PATH, key(1), value);
    set.set(PATH, key(11), value);
    expect([1, 2, 3].map((i) => set.get(PATH, key(i)) !== undefined)).toEqual([true, false, true]);
    // An answer three entries large takes the place of the three oldest, no more.
    const large = { ...answer(60 + 2 * size), head: answer(60).head };
    set.set(PATH, key(12), large);
    expect(footprint(PATH, key(12), large)).toBeGreaterThan(2 * size);
    expect([3, 4, 5, 6, 7].map((i) => set.get(PATH, key(i)) !== undefined)).toEqual([false, false, false, true, true]);
    expect(set.get(PATH, key(12))).toBe(large);
    expect(set.bytes).toBeLessThanOrEqual(10 * size);
  });

  it('an answer larger than the whole budget is not remembered, and forgets nothing', () => {
    const value = answer(60);
    const small = bytes('{"a":1}');
    const set = new AnswerSet(4 * footprint(PATH, small, value));
    set.set(PATH, small, value);
    const huge = answer(5 * footprint(PATH, small, value));
    set.set(PATH, bytes('{"b":2}'), huge);
    expect(set.get(PATH, bytes('{"b":2}'))).toBeUndefined();
    expect(set.get(PATH, small)).toBe(value);
    expect(set.bytes).toBe(footprint(PATH, small, value));
  });

  it('a batch the cached path takes (within 16 KiB) that counts past the default 8 MiB is not remembered: one entry no longer holds tens of MB', () => {
    const properties = Object.fromEntries(Array.from({ length: 1200 }, (_, i) => [`p${i}`, i]));
    const text = JSON.stringify({ subject: { type: 'user', id: 'alice', properties }, action: { name: 'read' }, resource: { type: 'doc', id: 'd' }, evaluations: Array.from({ length: 500 }, () => ({})) });
    expect(text.length).toBeLessThanOrEqual(16 * 1024);
    const parsed = parseEvaluations(JSON.parse(text), 500);
    const inputs = parsed.kind === 'batch' ? parsed.items.map((item) => (item as { evaluation: EvaluationInput }).evaluation) : [];
    const large = { ...answer(60), inputs };
    const budget = 8 * 1024 * 1024;
    expect(footprint('/access/v1/evaluations', bytes(text), large)).toBeGreaterThan(budget);
    const set = new AnswerSet(budget);
    const small = bytes('{"a":1}');
    set.set(PATH, small, answer(60));
    set.set('/access/v1/evaluations', bytes(text), large);
    expect(set.get('/access/v1/evaluations', bytes(text))).toBeUndefined();
    expect(set.get(PATH, small)).toBeDefined();
    expect(set.bytes).toBeLessThanOrEqual(budget);
  });

  it('a colliding request refused by a full bucket forgets nothing for it; a bucket emptied by eviction takes new entries', () => {
    const value = answer(60);
    const raw = (i: number): Buffer => bytes(`{"c":${i}}`);
    const size = footprint(PATH, raw(0), value);
    const set = new AnswerSet(5 * size, () => 7); // every request collides
    for (let i = 0; i < 4; i += 1) set.set(PATH, raw(i), value);
    set.set(PATH, raw(4), value);
    expect([0, 1, 2, 3, 4].map((i) => set.get(PATH, raw(i)) !== undefined)).toEqual([true, true, true, true, false]);
    const apart = new AnswerSet(2 * size, (b) => b[5]!); // the hash of '{"c":N}' is N's digit
    for (let i = 0; i < 6; i += 1) apart.set(PATH, raw(i), value);
    expect([0, 1, 2, 3, 4, 5].map((i) => apart.get(PATH, raw(i)) !== undefined)).toEqual([false, false, false, false, true, true]);
    apart.set(PATH, raw(0), value);
    expect(apart.get(PATH, raw(0))).toBe(value);
    expect(apart.bytes).toBe(2 * size);
    expect(set.bytes).toBe(4 * size);
  });

  it('replacing an entry counts it once', () => {
    const value = answer(60);
    const key = bytes('{"a":1}');
    const set = new AnswerSet(3 * footprint(PATH, key, value));
    for (let i = 0; i < 50; i += 1) set.set(PATH, key, value);
    set.set(PATH, bytes('{"a":1} '), value);
    expect(set.get(PATH, key)).toBe(value);
  });

  it('answers only the exact bytes on the exact path, and keeps its own copy of them', () => {
    const value = answer(60);
    const set = new AnswerSet(1 << 20);
    const pooled = Buffer.from('..{"a":1}..', 'latin1');
    const raw = pooled.subarray(2, 9);
    set.set(PATH, raw, value);
    pooled.fill(0x20); // the socket's buffer reused for the next read
    expect(set.get(PATH, bytes('{"a":1}'))).toBe(value);
    expect(set.get(`${PATH}s`, bytes('{"a":1}'))).toBeUndefined();
    expect(set.get(PATH, bytes('{"a":2}'))).toBeUndefined();
    expect(set.get(PATH, bytes('{"a":1} '))).toBeUndefined();
  });

  it('never answers a request whose hash collides with a remembered one, and keeps at most four under one hash', () => {
    const set = new AnswerSet(1 << 20, () => 7); // every request collides
    const values = Array.from({ length: 6 }, (_, i) => answer(60 + i));
    values.forEach((value, i) => set.set(PATH, bytes(`{"c":${i}}`), value));
    // Each is told apart by its bytes; past four, a colliding request is not remembered (it is evaluated).
    expect([0, 1, 2, 3, 4, 5].map((i) => set.get(PATH, bytes(`{"c":${i}}`)))).toEqual([...values.slice(0, 4), undefined, undefined]);
    expect(set.get(PATH, bytes('{"c":9}'))).toBeUndefined();
    // A remembered request's answer is still replaced in a full bucket.
    set.set(PATH, bytes('{"c":1}'), values[5]!);
    expect(set.get(PATH, bytes('{"c":1}'))).toBe(values[5]);
  });

  it('hashes every byte (a change anywhere in the request changes the hash, as a rule)', () => {
    const raw = bytes(JSON.stringify({ subject: { id: 'alice' }, pad: 'p'.repeat(1000) }));
    const hashes = new Set([requestHash(raw)]);
    for (let at = 0; at < raw.length; at += 97) {
      const changed = Buffer.from(raw);
      changed[at] = changed[at]! ^ 1;
      hashes.add(requestHash(changed));
    }
    expect(hashes.size).toBe(1 + Math.ceil(raw.length / 97));
  });
});
