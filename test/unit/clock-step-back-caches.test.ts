/**
 * Red team (issue 16, tenth round, second pass): the short-lived caches that kept an expiry on
 * the wall clock (`until = lookedUpAt + bound`, trusted while `until > now`) — operator-token
 * "not revoked" answers, connection rows, the PDP's agent list — were stretched by a backward
 * clock step (NTP, an operator, a VM snapshot restored): an hour back kept an answer an hour and
 * its bound, past the documented staleness bound (a token revoked on another instance still
 * accepted, a rotated connection's settings still used). Each now trusts an answer only while the
 * clock reads within `[lookedUpAt, lookedUpAt + bound)` (src/util/fresh.ts `withinBound`). Seen by
 * counting the store reads: a clock stepped back reads again.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Agent, AgentRegistry } from '../../src/agents/index.js';
import { OperatorTokenRevocations } from '../../src/oauth/operator-token-revocation.js';
import { AgentCache } from '../../src/pdp/entities.js';
import type { Store } from '../../src/store/index.js';
import { withinBound } from '../../src/util/index.js';
import { ConnectionStore } from '../../src/vault/connections/store.js';
import type { EnvelopeVault } from '../../src/vault/index.js';
import { countingRevocationStore } from '../support/revocation-store.js';

const T = Date.parse('2026-11-30T12:00:00Z');
const HOUR = 3_600_000;

afterEach(() => vi.restoreAllMocks());

describe('withinBound', () => {
  it('trusts an answer only while the clock reads within [lookedUpAt, lookedUpAt + bound)', () => {
    expect(withinBound(T, T, 2000)).toBe(true);
    expect(withinBound(T, T + 1999, 2000)).toBe(true);
    expect(withinBound(T, T + 2000, 2000)).toBe(false);
    expect(withinBound(T, T - 1, 2000)).toBe(false);
    expect(withinBound(T, T - HOUR, 2000)).toBe(false);
  });
});

describe('a wall clock stepped back does not stretch a cached answer past its bound', () => {
  it('operator tokens: "not revoked" is read again, and a revocation on another instance is seen', async () => {
    const { store, lookups } = countingRevocationStore();
    const here = new OperatorTokenRevocations(store);
    const there = new OperatorTokenRevocations(store);
    const exp = Math.floor(T / 1000) + 2 * 3600;
    expect(await here.isRevoked('jti-1', exp, T)).toBe(false);
    expect(here.knownLive('jti-1', T + 1)).toBe(true);
    await there.revoke('jti-1', exp, T + 1);
    // The clock steps an hour back: before, the answer stood until T + 2 s, an hour and 2 s away.
    expect(here.knownLive('jti-1', T - HOUR)).toBe(false);
    expect(await here.isRevoked('jti-1', exp, T - HOUR)).toBe(true);
    expect(lookups()).toBe(2);
    // A revocation stands whatever the clock does.
    expect(await here.isRevoked('jti-1', exp, T - 2 * HOUR)).toBe(true);
    expect(lookups()).toBe(2);
  });

  it('connections: a row is read again', async () => {
    let reads = 0;
    const store = {
      async query() {
        reads++;
        return [];
      },
    } as unknown as Store;
    const connections = new ConnectionStore(store, {} as EnvelopeVault);
    const now = vi.spyOn(Date, 'now').mockReturnValue(T);
    await connections.get('openai');
    await connections.get('openai');
    expect(reads).toBe(1);
    now.mockReturnValue(T - HOUR);
    await connections.get('openai');
    expect(reads).toBe(2);
  });

  it("the PDP's agent list is read again", async () => {
    let lists = 0;
    const registry = {
      onChange: () => {},
      async list() {
        lists++;
        return { agents: [] as Agent[] };
      },
    } as unknown as AgentRegistry;
    const cache = new AgentCache(registry, 2);
    await cache.list(10, T);
    await cache.list(10, T + 1000);
    expect(lists).toBe(1);
    await cache.list(10, T - HOUR);
    expect(lists).toBe(2);
  });
});
