/**
 * Issue 16, ninth round: two Deputy instances whose group statements (src/audit/chain.ts
 * `appendIfHead`) record the same single-use keys (`oidc_models`) in opposite orders — agent A's
 * group holding proof k1 and a replay of k2, agent B's holding k2 and a replay of k1. Each
 * statement locks its own chain head, inserts its first key and waits for the other's uncommitted
 * second: a deadlock, broken by PostgreSQL after `deadlock_timeout` (one statement aborted with
 * 40P01, both chains stalled a second). Keys are now recorded in one order (namespace, key)
 * whatever the order given — in the group statement and in `recordEachOnce` (the locked path) —
 * so the second statement waits for the first and then finds its replay recorded.
 *
 * PostgreSQL only (two connections; PGlite runs one statement at a time). A third transaction
 * holds the first key until both statements wait, so they are under way at once ({@link crossed}).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { appendIfHead } from '../../src/audit/chain.js';
import { genesisHash, type SignedReceipt } from '../../src/audit/receipt.js';
import { recordEachOnce, type OnceKey } from '../../src/oauth/adapter.js';
import { usingPostgres } from '../support/database.js';
import { deadlocks, lockWaits, postgresStoreForFile } from '../support/pg-locks.js';

const pg = postgresStoreForFile();

/** Rounds per case: before the fix, each round deadlocked about one time in two. */
const ROUNDS = 6;
const key = (k: string): OnceKey => ({ namespace: 'DPoPProof', key: k, ttlSeconds: 60 });
const receipt = (agent: string): SignedReceipt => ({ id: `r-${randomBytes(6).toString('hex')}`, agent, seq: 1, hash: randomBytes(16).toString('hex'), prev: genesisHash(agent), jws: 'x.y.z' });

/**
 * Runs `record([k1, k2])` and `record([k2, k1])` concurrently, so that both are under way at once:
 * a third transaction holds k1 (inserted, uncommitted) until both wait for a lock, then rolls
 * back. (Before the fix the second held k2 by then and both waited for k1; whichever got k1 then
 * waited for the other's k2: a deadlock about half the time.) Returns each outcome: the call's
 * answer, or the SQLSTATE it failed with.
 */
async function crossed(round: number, record: (keys: OnceKey[]) => Promise<string>): Promise<string[]> {
  const [k1, k2] = [key(`k1-${round}-${randomBytes(4).toString('hex')}`), key(`k2-${round}-${randomBytes(4).toString('hex')}`)];
  let both!: Promise<PromiseSettledResult<string>[]>;
  const held = pg.store.transaction(async (tx) => {
    await recordEachOnce(tx, [k1]);
    both = Promise.allSettled([record([k1, k2]), record([k2, k1])]);
    await lockWaits(pg.store, 2);
    throw new Error('rolled back on purpose');
  });
  await expect(held).rejects.toThrow('rolled back on purpose');
  return (await both).map((s) => (s.status === 'fulfilled' ? s.value : String((s.reason as { code?: string }).code))).sort();
}

describe.skipIf(!usingPostgres)('single-use keys recorded by two instances in opposite orders (PostgreSQL)', () => {
  it('two agents\' group statements with crossed replayed keys: one is written, the other refused as a replay; no deadlock', async () => {
    const before = await deadlocks(pg.store);
    for (let round = 0; round < ROUNDS; round++) {
      const [a, b] = [`agent-a-${round}`, `agent-b-${round}`];
      const agents = [a, b];
      const outcome = await crossed(round, (keys) => {
        const agent = agents.shift()!;
        return appendIfHead(pg.store, agent, { seq: 0, hash: genesisHash(agent) }, [receipt(agent)], keys);
      });
      // Before: 40P01 for one of the two in about half the rounds.
      expect(outcome).toEqual(['recorded', 'written']);
    }
    expect(await deadlocks(pg.store)).toBe(before);
  }, 60_000);

  it('two agents\' small groups from a head (the scalar statement, groups of 2) with crossed replayed keys: one written, the other refused; no deadlock', async () => {
    const before = await deadlocks(pg.store);
    for (let round = 0; round < ROUNDS; round++) {
      const [a, b] = [`agent-sa-${round}`, `agent-sb-${round}`];
      const heads = new Map<string, { seq: number; hash: string }>();
      for (const agent of [a, b]) {
        const first = receipt(agent);
        expect(await appendIfHead(pg.store, agent, { seq: 0, hash: genesisHash(agent) }, [first])).toBe('written');
        heads.set(agent, { seq: 1, hash: first.hash });
      }
      const agents = [a, b];
      const outcome = await crossed(round, (keys) => {
        const agent = agents.shift()!;
        const head = heads.get(agent)!;
        const second = { ...receipt(agent), seq: 2, prev: head.hash };
        const third = { ...receipt(agent), seq: 3, prev: second.hash };
        return appendIfHead(pg.store, agent, head, [second, third], keys);
      });
      expect(outcome).toEqual(['recorded', 'written']);
    }
    expect(await deadlocks(pg.store)).toBe(before);
  }, 60_000);

  it('the locked path\'s recordEachOnce with crossed keys in two transactions: one records both, the other neither; no deadlock', async () => {
    const before = await deadlocks(pg.store);
    for (let round = 0; round < ROUNDS; round++) {
      const outcome = await crossed(round, (keys) => pg.store.transaction(async (t) => String((await recordEachOnce(t, keys)).size)));
      expect(outcome).toEqual(['0', '2']);
    }
    expect(await deadlocks(pg.store)).toBe(before);
  }, 60_000);
});
