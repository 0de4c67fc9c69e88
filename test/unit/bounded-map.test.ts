/**
 * `setBounded` (src/util/bounded-map.ts), the size bound every in-memory cache of Deputy's uses
 * (issue 16, ninth round): a full cache forgets the entry set longest ago, one per new entry,
 * and keeps the recent ones — before, each cache emptied itself when full, dropping its hot
 * entries with the cold.
 */
import { describe, expect, it } from 'vitest';
import { setBounded } from '../../src/util/bounded-map.js';

describe('setBounded', () => {
  it('keeps at most max entries; a full map loses the one set longest ago, and a key set again is the newest', () => {
    const map = new Map<string, number>();
    for (const [i, k] of ['a', 'b', 'c'].entries()) setBounded(map, k, i, 3);
    expect([...map.keys()]).toEqual(['a', 'b', 'c']);
    setBounded(map, 'a', 10, 3);
    expect([...map.entries()]).toEqual([['b', 1], ['c', 2], ['a', 10]]);
    setBounded(map, 'd', 3, 3);
    expect([...map.keys()]).toEqual(['c', 'a', 'd']);
    for (let i = 0; i < 100; i++) setBounded(map, `burst-${i}`, i, 3);
    expect(map.size).toBe(3);
    expect([...map.keys()]).toEqual(['burst-97', 'burst-98', 'burst-99']);
  });

  it('a map already over the bound (a bound lowered) is brought back within it', () => {
    const map = new Map([['a', 1], ['b', 2], ['c', 3], ['d', 4]]);
    setBounded(map, 'e', 5, 2);
    expect([...map.keys()]).toEqual(['d', 'e']);
  });

  it('a bound below one — 0, negative, NaN (a size option left unset or mistyped) — keeps nothing; a fractional one keeps its whole part (before: 0 and negatives kept one entry, NaN kept every entry)', () => {
    for (const max of [0, -1, Number.NaN]) {
      const map = new Map([['a', 1]]);
      for (let i = 0; i < 5; i++) setBounded(map, `k${i}`, i, max);
      expect(map.size, `max ${max}`).toBe(0);
    }
    const map = new Map<string, number>();
    for (let i = 0; i < 5; i++) setBounded(map, `k${i}`, i, 2.5);
    expect([...map.keys()]).toEqual(['k3', 'k4']);
  });
});
