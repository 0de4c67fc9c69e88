/**
 * SingleFlight and BoundedReadCache (src/util/single-flight.ts), the mechanism behind the agent
 * registry's and the revocation cache's reads: sharing, invalidation during a read, failing reads,
 * the staleness bound under a stalled read and a clock step, final answers, refresh ahead, size.
 * The clock is the `now` argument; reads are held by hand. No timing.
 */
import { describe, expect, it } from 'vitest';
import { BoundedReadCache, SingleFlight } from '../../src/util/single-flight.js';

/** A store read stand-in: answers `value(key)`, counts reads, and can hold them until released. */
function source<V>(value: (key: string, n: number) => V) {
  let reads = 0;
  const held: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  let holding = false;
  return {
    read: async (key: string): Promise<V> => {
      const n = ++reads;
      if (holding) await new Promise<void>((resolve, reject) => held.push({ resolve, reject }));
      return value(key, n);
    },
    reads: () => reads,
    hold: () => {
      holding = true;
    },
    release: () => {
      holding = false;
      for (const h of held.splice(0)) h.resolve();
    },
    fail: (e: unknown) => {
      holding = false;
      for (const h of held.splice(0)) h.reject(e);
    },
  };
}

describe('SingleFlight', () => {
  it('concurrent calls share the running promise; a settled one (even failed) is never reused', async () => {
    const flight = new SingleFlight<string, number>();
    let starts = 0;
    const fail = new Error('down');
    const first = [1, 2, 3].map(() => flight.run('k', async () => { starts++; throw fail; }, undefined));
    for (const r of await Promise.allSettled(first)) expect(r).toEqual({ status: 'rejected', reason: fail });
    expect(starts).toBe(1);
    expect(await flight.run('k', async () => ++starts, undefined)).toBe(2);
  });

  it('a caller that refuses to join starts its own call, which later callers join', async () => {
    const flight = new SingleFlight<string, string, number>();
    const a = flight.run('k', async () => 'a', 1);
    const b = flight.run('k', async () => 'b', 2, (m) => m === 2);
    const c = flight.run('k', async () => 'c', 2, (m) => m === 2);
    expect(await Promise.all([a, b, c])).toEqual(['a', 'b', 'b']);
  });
});

describe('BoundedReadCache', () => {
  const ttlMs = 2000;

  it('concurrent misses share one read; the answer is reused within the bound, re-read after it', async () => {
    const s = source((k, n) => `${k}#${n}`);
    const cache = new BoundedReadCache(s.read, { ttlMs, maxEntries: 10 });
    s.hold();
    const answers = Array.from({ length: 5 }, () => cache.get('a', 1000));
    s.release();
    expect(await Promise.all(answers)).toEqual(Array(5).fill('a#1'));
    expect(await cache.get('a', 1000 + ttlMs - 1)).toBe('a#1');
    expect(cache.peek('a', 1000 + ttlMs)).toBeUndefined();
    expect(await cache.get('a', 1000 + ttlMs)).toBe('a#2');
    expect(s.reads()).toBe(2);
  });

  it('a read under way at an invalidation caches nothing and is not joined by a later caller', async () => {
    const s = source((k, n) => `${k}#${n}`);
    const cache = new BoundedReadCache(s.read, { ttlMs, maxEntries: 10 });
    s.hold();
    const before = cache.get('a', 1000);
    cache.invalidate();
    const after = cache.get('a', 1000);
    expect(s.reads()).toBe(2);
    s.release();
    expect(await before).toBe('a#1');
    expect(await after).toBe('a#2');
    expect(cache.peek('a', 1000)?.value).toBe('a#2');
  });

  it('invalidate(drop) drops only the selected answers, but detaches every read under way', async () => {
    const s = source((k, n) => `${k}#${n}`);
    const cache = new BoundedReadCache(s.read, { ttlMs, maxEntries: 10 });
    await cache.get('a', 1000);
    await cache.get('b', 1000);
    s.hold();
    const running = cache.get('c', 1000);
    cache.invalidate((k) => k === 'a');
    s.release();
    await running;
    expect(cache.peek('a', 1000)).toBeUndefined();
    expect(cache.peek('b', 1000)?.value).toBe('b#2');
    expect(cache.peek('c', 1000)).toBeUndefined();
  });

  it('a failing read reaches every caller that shared it, caches nothing, and the next call reads again', async () => {
    const s = source((k, n) => `${k}#${n}`);
    const cache = new BoundedReadCache(s.read, { ttlMs, maxEntries: 10 });
    s.hold();
    const shared = [cache.get('a', 1000), cache.get('a', 1000)];
    const down = new Error('store unavailable');
    s.fail(down);
    for (const r of await Promise.allSettled(shared)) expect(r).toEqual({ status: 'rejected', reason: down });
    expect(cache.peek('a', 1000)).toBeUndefined();
    expect(await cache.get('a', 1000)).toBe('a#2');
  });

  it('a caller does not join a read that started more than the bound before it (a stalled store)', async () => {
    const s = source((k, n) => `${k}#${n}`);
    const cache = new BoundedReadCache(s.read, { ttlMs, maxEntries: 10 });
    s.hold();
    const stalled = cache.get('a', 1000);
    const joined = cache.get('a', 1000 + ttlMs);
    const late = cache.get('a', 1000 + ttlMs + 1);
    expect(s.reads()).toBe(2);
    s.release();
    expect(await Promise.all([stalled, joined, late])).toEqual(['a#1', 'a#1', 'a#2']);
  });

  it('a clock stepped back does not stretch a non-final answer past the bound; a final one stands until its end', async () => {
    const s = source((k, n) => ({ k, n, final: k === 'revoked' }));
    const cache = new BoundedReadCache(s.read, {
      ttlMs,
      maxEntries: 10,
      lifetime: (v, startedAt) => (v.final ? { until: startedAt + 3_600_000, final: true } : { until: startedAt + ttlMs, final: false }),
    });
    await cache.get('live', 1_000_000);
    await cache.get('revoked', 1_000_000);
    const stepBack = 1_000_000 - 3_600_000 / 2;
    expect(cache.peek('live', stepBack)).toBeUndefined();
    expect(cache.peek('revoked', stepBack)?.value.n).toBe(2);
    // A final answer read while an invalidation happened is cached all the same, and survives it.
    cache.invalidate();
    expect(cache.peek('revoked', 1_000_000)?.value.n).toBe(2);
  });

  it('refresh ahead: in the last quarter of the bound the cached answer is served and a re-read starts; answers stay within the bound', async () => {
    const s = source((k, n) => `${k}#${n}`);
    const cache = new BoundedReadCache(s.read, { ttlMs, maxEntries: 10, refreshAhead: true });
    await cache.get('a', 1000);
    expect(await cache.get('a', 1000 + ttlMs / 2)).toBe('a#1');
    expect(s.reads()).toBe(1);
    expect(await cache.get('a', 1000 + (ttlMs * 3) / 4)).toBe('a#1');
    expect(s.reads()).toBe(2);
    await new Promise((r) => setImmediate(r));
    expect(cache.peek('a', 1000 + ttlMs)?.value).toBe('a#2');
    expect(cache.peek('a', 1000 + (ttlMs * 3) / 4 + ttlMs)).toBeUndefined();
  });

  it('keep: an equal previous answer is kept (identity), a different one replaced', async () => {
    let version = 1;
    const cache = new BoundedReadCache(async () => ({ version }), { ttlMs, maxEntries: 10, keep: (p, n) => (p.version === n.version ? p : n) });
    const first = await cache.get('a', 1000);
    expect(await cache.get('a', 1000 + ttlMs)).toBe(first);
    version = 2;
    const changed = await cache.get('a', 1000 + 2 * ttlMs);
    expect(changed).not.toBe(first);
    expect(changed.version).toBe(2);
  });

  it('never holds more than maxEntries answers; a full cache evicts the one read longest ago and keeps the recent ones', async () => {
    const s = source((k, n) => `${k}#${n}`);
    const cache = new BoundedReadCache(s.read, { ttlMs, maxEntries: 3 });
    const kept = (now: number): string[] => ['a', 'b', 'c', 'd'].filter((k) => cache.peek(k, now) !== undefined);
    await cache.get('a', 1000);
    await cache.get('b', 1500);
    await cache.get('c', 2000);
    // a's answer has gone stale at 3100 and is read again: a re-read moves its key to the end,
    // so d evicts b, the one read longest ago, and the others stay.
    expect(await cache.get('a', 3100)).toBe('a#4');
    await cache.get('d', 3100);
    expect(kept(3100)).toEqual(['a', 'c', 'd']);
    for (const k of ['e', 'f', 'g', 'h']) await cache.get(k, 3200);
    expect(['a', 'c', 'd', 'f', 'g', 'h'].filter((k) => cache.peek(k, 3200) !== undefined)).toEqual(['f', 'g', 'h']);
  });

  it('joinWithinMs sets how long a running read may be joined; a per-call read; a non-final lifetime is cut to the bound', async () => {
    const s = source((k, n) => `${k}#${n}`);
    const cache = new BoundedReadCache(s.read, { ttlMs: 10_000, joinWithinMs: 100, maxEntries: 10, lifetime: (_v, startedAt) => ({ until: startedAt + 50_000, final: false }) });
    s.hold();
    const stalled = cache.get('a', 1000);
    const joined = cache.get('a', 1100);
    const own = cache.get('a', 1101);
    expect(s.reads()).toBe(2);
    s.release();
    expect(await Promise.all([stalled, joined, own])).toEqual(['a#1', 'a#1', 'a#2']);
    // Cut to ttlMs from its read's start (1101), not the 50 s the lifetime asked for.
    expect(cache.peek('a', 1101 + 9_999)?.value).toBe('a#2');
    expect(cache.peek('a', 1101 + 10_000)).toBeUndefined();
    expect(await cache.get('b', 1000, async (k) => `${k} by the caller's read`)).toBe("b by the caller's read");
    expect(cache.peek('b', 999)).toBeUndefined();
  });
});
