/**
 * RevocationCache: what it caches and for how long, over a stub of TokenRecords.find (whose
 * answer already applies the lineage rule; see test/store/contract.ts for that rule).
 */
import { describe, expect, it } from 'vitest';
import { RevocationCache, type TokenRecord, type TokenRecords } from '../../src/oauth/token-records.js';

/** A TokenRecords stand-in: `state` decides each answer; `gate`, when set, holds lookups until released. */
function stubRecords() {
  const state = new Map<string, 'live' | 'revoked'>();
  let gate: Promise<void> | undefined;
  let lookups = 0;
  const records = {
    async find(jti: string): Promise<TokenRecord | undefined> {
      lookups++;
      const answer = state.get(jti);
      if (gate) await gate;
      if (answer === undefined) return undefined;
      return { jti, expiresAt: Math.floor(Date.now() / 1000) + 600, revokedAt: answer === 'revoked' ? 1 : undefined } as TokenRecord;
    },
  } as unknown as TokenRecords;
  return {
    records,
    state,
    lookups: () => lookups,
    hold(): () => void {
      let release!: () => void;
      gate = new Promise<void>((r) => (release = r));
      return () => {
        gate = undefined;
        release();
      };
    },
  };
}

describe('RevocationCache', () => {
  it('caches "live" for activeTtlMs only; unknown tokens count as revoked', async () => {
    const stub = stubRecords();
    const cache = new RevocationCache(stub.records, { activeTtlMs: 2000 });
    stub.state.set('t', 'live');
    expect(await cache.isRevoked('t', 10_000)).toBe(false);
    stub.state.set('t', 'revoked');
    expect(await cache.isRevoked('t', 11_999)).toBe(false); // within the bound: the cached answer
    expect(await cache.isRevoked('t', 12_000)).toBe(true); // bound reached: read again
    expect(await cache.isRevoked('unknown', 10_000)).toBe(true);
  });

  it('a clock that jumps back does not stretch a "live" answer past activeTtlMs (a revocation on another instance is still seen within the bound)', async () => {
    const stub = stubRecords();
    const cache = new RevocationCache(stub.records, { activeTtlMs: 2000 });
    stub.state.set('t', 'live');
    expect(await cache.isRevoked('t', 3_600_000)).toBe(false);
    stub.state.set('t', 'revoked'); // committed elsewhere, then the wall clock steps back an hour (NTP)
    expect(await cache.isRevoked('t', 1_000)).toBe(true);
    expect(cache.knownLive('t', 1_000)).toBe(false);
  });

  it('a caller does not join a slow read that started more than activeTtlMs before it (its answer could predate a revocation by more than the bound)', async () => {
    const stub = stubRecords();
    const cache = new RevocationCache(stub.records, { activeTtlMs: 2000 });
    stub.state.set('t', 'live');
    const release = stub.hold();
    const slow = cache.isRevoked('t', 0); // reads "live", then the store stalls
    stub.state.set('t', 'revoked'); // committed on another instance at ~0 s
    const late = cache.isRevoked('t', 5_000);
    release();
    expect(await slow).toBe(false);
    expect(await late).toBe(true);
  });

  it('after a local revocation (forget), no cached "live" answer survives, whichever token it was for', async () => {
    const stub = stubRecords();
    const cache = new RevocationCache(stub.records);
    // A descendant the revoker never listed (committed late): cached live before the revocation.
    for (const jti of ['root', 'late-child']) stub.state.set(jti, 'live');
    expect(await cache.isRevoked('late-child', 0)).toBe(false);
    stub.state.set('late-child', 'revoked');
    cache.forget();
    expect(await cache.isRevoked('late-child', 1)).toBe(true);
  });

  it('a lookup that started before a local revocation does not cache its stale "live" answer', async () => {
    const stub = stubRecords();
    const cache = new RevocationCache(stub.records);
    stub.state.set('t', 'live');
    const release = stub.hold();
    const pending = cache.isRevoked('t', 0); // reads "live", then waits
    stub.state.set('t', 'revoked');
    cache.forget();
    release();
    expect(await pending).toBe(false); // its own answer, read before the revocation
    const before = stub.lookups();
    expect(await cache.isRevoked('t', 1)).toBe(true); // not served from a stale entry
    expect(stub.lookups()).toBe(before + 1);
  });

  it('"revoked" is final: served from the cache without reading again', async () => {
    const stub = stubRecords();
    const cache = new RevocationCache(stub.records);
    stub.state.set('t', 'revoked');
    expect(await cache.isRevoked('t', 0)).toBe(true);
    const before = stub.lookups();
    cache.forget();
    expect(await cache.isRevoked('t', 100_000)).toBe(true);
    expect(stub.lookups()).toBe(before);
  });

  it('liveRecord: the record while live, read once per bound; undefined once revoked (at once after a local revocation)', async () => {
    const stub = stubRecords();
    const cache = new RevocationCache(stub.records, { activeTtlMs: 2000 });
    stub.state.set('t', 'live');
    expect(await cache.liveRecord('t', 10_000)).toMatchObject({ jti: 't' });
    const before = stub.lookups();
    expect(await cache.liveRecord('t', 11_400)).toMatchObject({ jti: 't' });
    expect(stub.lookups()).toBe(before);
    stub.state.set('t', 'revoked');
    cache.forget();
    expect(await cache.liveRecord('t', 11_999)).toBeUndefined();
    expect(await cache.liveRecord('unknown', 10_000)).toBeUndefined();
  });

  it('concurrent misses share one read; a call after a local revocation does not join a read begun before it', async () => {
    const stub = stubRecords();
    const cache = new RevocationCache(stub.records, { activeTtlMs: 2000 });
    stub.state.set('t', 'live');
    const release = stub.hold();
    const many = Array.from({ length: 8 }, () => cache.liveRecord('t', 0));
    expect(stub.lookups()).toBe(1);
    stub.state.set('t', 'revoked');
    cache.forget();
    const after = cache.isRevoked('t', 1);
    expect(stub.lookups()).toBe(2);
    release();
    expect((await Promise.all(many)).every((r) => r?.jti === 't')).toBe(true);
    expect(await after).toBe(true);
  });

  it('re-reads a live answer in the background in its bound\'s last quarter; answers stay within the bound', async () => {
    const stub = stubRecords();
    const cache = new RevocationCache(stub.records, { activeTtlMs: 2000 });
    stub.state.set('t', 'live');
    expect(await cache.isRevoked('t', 0)).toBe(false);
    expect(await cache.isRevoked('t', 1400)).toBe(false);
    expect(stub.lookups()).toBe(1); // not yet in the last quarter
    stub.state.set('t', 'revoked'); // revoked on another instance
    expect(await cache.isRevoked('t', 1600)).toBe(false); // the cached answer (read at 0), a re-read started
    expect(stub.lookups()).toBe(2);
    await new Promise((r) => setImmediate(r));
    // The background read saw the revocation: refused at once, not at 2000.
    expect(await cache.isRevoked('t', 1700)).toBe(true);
    expect(stub.lookups()).toBe(2);
  });

  it('a failing background re-read changes nothing: the next call past the bound reads and fails closed', async () => {
    let fail = false;
    let lookups = 0;
    const records = {
      async find(jti: string) {
        lookups++;
        if (fail) throw new Error('store down');
        return { jti, expiresAt: Math.floor(Date.now() / 1000) + 600 } as TokenRecord;
      },
    } as unknown as TokenRecords;
    const cache = new RevocationCache(records, { activeTtlMs: 2000 });
    expect(await cache.isRevoked('t', 0)).toBe(false);
    fail = true;
    expect(await cache.isRevoked('t', 1900)).toBe(false);
    await new Promise((r) => setImmediate(r));
    await expect(cache.isRevoked('t', 2000)).rejects.toThrow('store down');
    expect(lookups).toBe(3);
  });
});

describe('RevocationCache bounds', () => {
  /** Records whose user attributes (from the IdP token) are `attrBytes` long. */
  function largeRecords(attrBytes: number) {
    let lookups = 0;
    const records = {
      async find(jti: string): Promise<TokenRecord | undefined> {
        lookups++;
        return { jti, expiresAt: Math.floor(Date.now() / 1000) + 600, revokedAt: undefined, userAttrs: { groups: 'g'.repeat(attrBytes) } } as unknown as TokenRecord;
      },
    } as unknown as TokenRecords;
    return { records, lookups: () => lookups };
  }

  it('a flood of tokens with large records stays within the byte budget; the newest still hit, the oldest were forgotten', async () => {
    const stub = largeRecords(64 * 1024);
    const cache = new RevocationCache(stub.records, { activeTtlMs: 60_000, budgetBytes: 4 * 1024 * 1024 });
    const now = Date.now();
    // 200 answers of ~128 KiB: ~25 MiB by entries alone (the entry bound is 50,000).
    for (let i = 0; i < 200; i++) expect(await cache.isRevoked(`jti-${i}`, now)).toBe(false);
    expect(cache.bytes).toBeLessThanOrEqual(4 * 1024 * 1024);
    expect(cache.size).toBeLessThan(200);
    expect(cache.size).toBeGreaterThanOrEqual(20);
    expect(cache.knownLive('jti-199', now)).toBe(true);
    expect(cache.knownLive('jti-0', now)).toBe(false);
    const before = stub.lookups();
    expect(await cache.isRevoked('jti-199', now)).toBe(false);
    expect(stub.lookups()).toBe(before);
  });

  it('the default budget bounds what entries alone did not; an answer larger than the budget is answered, not cached', async () => {
    expect(RevocationCache.BUDGET_BYTES).toBeLessThan(RevocationCache.MAX_ENTRIES * 64 * 1024);
    const stub = largeRecords(2 * 1024 * 1024);
    const cache = new RevocationCache(stub.records, { activeTtlMs: 60_000, budgetBytes: 1024 * 1024 });
    const now = Date.now();
    expect(await cache.isRevoked('big', now)).toBe(false);
    expect(cache.size).toBe(0);
    expect(cache.bytes).toBe(0);
    expect(await cache.isRevoked('big', now)).toBe(false);
    expect(stub.lookups()).toBe(2);
  });

  it('small answers are bounded by entries, the bytes the sum of what is cached after invalidation', async () => {
    const stub = largeRecords(10);
    const cache = new RevocationCache(stub.records, { activeTtlMs: 60_000, maxEntries: 5 });
    const now = Date.now();
    for (let i = 0; i < 12; i++) await cache.isRevoked(`jti-${i}`, now);
    expect(cache.size).toBe(5);
    expect(cache.bytes).toBeGreaterThan(0);
    cache.forget();
    expect(cache.size).toBe(0);
    expect(cache.bytes).toBe(0);
  });
});
