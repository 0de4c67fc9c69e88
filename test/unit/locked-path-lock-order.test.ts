/**
 * Red team of issue 16, ninth round (single-use keys in one order): the group statement
 * (src/audit/chain.ts `appendIfHead`) locks the agent's chain head first and records its
 * once-keys after; the receipt service's locked path (src/audit/receipts.ts `#writeLocked`,
 * `#writeAlone`) recorded the keys first and locked the head after. Two instances, one on each
 * path for the same agent with the same key (a gateway proof replayed to both while the chain is
 * contended, which sends a group down the locked path): each holds what the other waits for — a
 * deadlock PostgreSQL breaks only after `deadlock_timeout`, aborting one (40P01; seen on
 * PostgreSQL with the two paths' statements). Sorting the keys did not reach it: the order is
 * between the head and the keys. The plain appends' locked transaction now locks the head before
 * it records a key. (An append with attested writes keeps its writes-then-head order: an agent's
 * deletion takes its rows before the head, test/unit/upstream-lock-order.test.ts.)
 *
 * On PostgreSQL, the deadlock itself (two connections, rounds); on PGlite, the order of the locked
 * path's statements in its transaction:
 * the group statements are answered "the head moved" (another instance kept moving it) without
 * running, so every append takes the locked path. No timing.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendIfHead } from '../../src/audit/chain.js';
import { genesisHash, type ReceiptInput, type SignedReceipt } from '../../src/audit/receipt.js';
import { AlreadyRecorded, ReceiptService } from '../../src/audit/receipts.js';
import { recordEachOnce } from '../../src/oauth/adapter.js';
import { generateSigningKey } from '../../src/keys/keystore.js';
import { migrate, type Queryable, type Store } from '../../src/store/index.js';
import { createPGliteStore } from '../../src/store/pglite.js';
import { usingPostgres } from '../support/database.js';
import { gatewayReceiptInput } from '../support/receipt-crossing.js';
import { deadlocks, lockWaits, postgresStoreForFile } from '../support/pg-locks.js';

const pg = postgresStoreForFile();
let inner: Store;
let service: ReceiptService;
/** Each transaction's statements, in order, as `head` (the head locked), `key` (a once-key recorded) or `receipt`. */
const transactions: string[][] = [];

/** What a statement of the locked path does, for the order checked here; undefined for others. */
function kind(sql: string): string | undefined {
  if (/FROM receipt_chains WHERE agent_id = \$1 FOR UPDATE/.test(sql)) return 'head';
  if (sql.includes('INSERT INTO oidc_models')) return 'key';
  if (sql.includes('INSERT INTO receipts')) return 'receipt';
  return undefined;
}

/** `inner`, except that every group statement answers "moved" unrun, and each transaction's statements are noted. */
function contended(store: Store): Store {
  const query: Store['query'] = async <R extends object>(sql: string, params?: readonly unknown[], options?: Parameters<Store['query']>[2]) =>
    sql.trimStart().startsWith('WITH moved AS') ? ([{ moved: 0, inserted: 0 }] as unknown as R[]) : store.query<R>(sql, params, options);
  const transaction: Store['transaction'] = (fn) =>
    store.transaction((tx) => {
      const seen: string[] = [];
      transactions.push(seen);
      const noted: Queryable = {
        query: (sql, params, options) => {
          const k = kind(sql);
          // A head locked twice in a row (a new chain: its genesis row created, then locked) is one step.
          if (k && seen.at(-1) !== k) seen.push(k);
          return tx.query(sql, params, options);
        },
        exec: (sql) => tx.exec(sql),
      };
      return fn(noted);
    });
  return new Proxy(store, { get: (target, prop) => (prop === 'query' ? query : prop === 'transaction' ? transaction : Reflect.get(target, prop, target)) });
}

beforeAll(async () => {
  inner = await createPGliteStore({ dataDir: 'memory://' });
  await migrate(inner);
  service = new ReceiptService({ store: contended(inner), issuer: 'https://deputy.example.com', key: await generateSigningKey('EdDSA'), now: () => 1_800_000_000_000 });
});
afterAll(() => inner?.close());

const input = (agent: string, n: number): ReceiptInput => gatewayReceiptInput(agent, n);
const key = (k: string) => ({ namespace: 'DPoPProof', key: k, ttlSeconds: 300 });

describe('the receipt service\'s locked path takes the chain head before any single-use key, as the group statement does', () => {
  it('a once-keyed append (the gateway\'s proof): head, then key, then receipt (before: key, then head)', async () => {
    transactions.length = 0;
    expect((await service.appendOnce(input('lock-order-once', 1), key('p1'))).seq).toBe(1);
    expect(transactions).toEqual([['head', 'key', 'receipt']]);
  });
});

/** Rounds: before the fix, each deadlocked about one time in two. */
const ROUNDS = 6;

describe.skipIf(!usingPostgres)('the locked path against another instance\'s group statement holding the same proof (PostgreSQL)', () => {
  it('one is written, the other refused as a replay; no deadlock (before: 40P01 in about half the rounds)', async () => {
    const locked = new ReceiptService({ store: contended(pg.store), issuer: 'https://deputy.example.com', key: await generateSigningKey('EdDSA') });
    const before = await deadlocks(pg.store);
    for (let round = 0; round < ROUNDS; round++) {
      const agent = `crossed-paths-${round}-${randomBytes(4).toString('hex')}`;
      const proof = key(`proof-${randomBytes(6).toString('hex')}`);
      const receipt: SignedReceipt = { id: `r-${randomBytes(6).toString('hex')}`, agent, seq: 1, hash: randomBytes(16).toString('hex'), prev: genesisHash(agent), jws: 'x.y.z' };
      let both!: Promise<PromiseSettledResult<unknown>[]>;
      // A third transaction holds the proof until both wait: the other instance's statement has
      // taken the head by then; the locked path had recorded nothing yet (before: it waited for the proof, then took it, then waited for the head).
      const held = pg.store.transaction(async (tx) => {
        await recordEachOnce(tx, [proof]);
        const statement = appendIfHead(pg.store, agent, { seq: 0, hash: genesisHash(agent) }, [receipt], [proof]);
        await lockWaits(pg.store, 1);
        both = Promise.allSettled([statement, locked.appendOnce(input(agent, round), proof)]);
        await lockWaits(pg.store, 2);
        throw new Error('rolled back on purpose');
      });
      await expect(held).rejects.toThrow('rolled back on purpose');
      const [statement, append] = await both;
      expect(statement).toEqual({ status: 'fulfilled', value: 'written' });
      expect(append.status === 'rejected' && append.reason instanceof AlreadyRecorded).toBe(true);
    }
    expect(await deadlocks(pg.store)).toBe(before);
  }, 60_000);
});
