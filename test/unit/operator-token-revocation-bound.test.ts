/**
 * Red team (issue 16, ninth round): `OperatorTokenRevocations.revoke` cached its entry without
 * the size bound (only the next lookup trimmed the map), so revocations alone — an admin
 * revoking in bulk, no lookups between — grew it past `maxEntries`. Bounded where it is added
 * now (src/util/bounded-map.ts `setBounded`): the oldest answer goes first. Seen from outside by
 * what a forgotten answer costs: a lookup that reads the store again.
 */
import { describe, expect, it } from 'vitest';
import { OperatorTokenRevocations } from '../../src/oauth/operator-token-revocation.js';
import { countingRevocationStore as countingStore } from '../support/revocation-store.js';

describe('OperatorTokenRevocations: the cache bound holds where revocations are added', () => {
  it('revoking more tokens than maxEntries forgets the oldest answer (read from the store again), keeps the newest', async () => {
    const { store, lookups } = countingStore();
    const revocations = new OperatorTokenRevocations(store, { maxEntries: 2 });
    const exp = Math.floor(Date.now() / 1000) + 600;
    for (const jti of ['a', 'b', 'c']) await revocations.revoke(jti, exp);
    // The newest two are cached: answered without the store.
    expect(await revocations.isRevoked('c', exp)).toBe(true);
    expect(await revocations.isRevoked('b', exp)).toBe(true);
    expect(lookups()).toBe(0);
    // The oldest was forgotten when `c` was added (before: kept, the map at three entries past its bound of two).
    expect(await revocations.isRevoked('a', exp)).toBe(true);
    expect(lookups()).toBe(1);
  });
});
