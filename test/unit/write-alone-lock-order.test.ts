/**
 * Red team (issue 16, ninth round): the lock order of the receipt writer's write-alone path
 * (src/audit/receipts.ts `#writeAlone`: an append with attested writes — the token exchange's
 * token record and vault row — decided in a transaction of its own once its group's statement
 * refused). It recorded the once-keys (the exchange's proof and client assertion `jti`s) with its
 * rows first and locked the chain head after; the group statement and the locked path take the
 * head first. An exchange's proof replayed to a second instance while the first instance's
 * exchange is on this path: the write-alone transaction held the key and waited for the head,
 * the second instance's statement held the head and waited for the key — a deadlock PostgreSQL
 * breaks only after `deadlock_timeout` (one side aborted with 40P01). Every path now agrees on
 * rows, then head, then keys (an agent's deletion takes its rows, then the head:
 * test/unit/upstream-lock-order.test.ts): the statement waits for the head, then finds the key
 * spent.
 *
 * PostgreSQL only (two connections; PGlite runs one statement at a time).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ReceiptInput } from '../../src/audit/receipt.js';
import { ReceiptService, type AppendedReceipt, type AttestedWrites } from '../../src/audit/receipts.js';
import { generateSigningKey } from '../../src/keys/keystore.js';
import type { OnceKey } from '../../src/oauth/adapter.js';
import type { Queryable, StatementPart } from '../../src/store/index.js';
import { usingPostgres } from '../support/database.js';
import { deadlocks, lockWaits, postgresStoreForFile } from '../support/pg-locks.js';
import { crossedOutcomes, pausedAfter, verifiedChain } from '../support/receipt-crossing.js';

const pg = postgresStoreForFile();

const input = (agent: string, n: number): ReceiptInput => ({ agent, chain: [agent], event: 'token_exchange', action: 'delegate', resource: `https://api.example.com/${n}`, decision: 'permit' });
const proof = (k: string): OnceKey => ({ namespace: 'DPoPProof', key: k, ttlSeconds: 60 });

/** A row the receipt attests; with `divisor` 0 the statement writing it is refused (22012), as a vault row's unique violation would be. */
const row = (id: string, divisor: number): StatementPart => ({
  sql: (first: number) => `INSERT INTO oidc_models (model, id, payload, expires_at) SELECT 'AttestedRow', $${first}::text, '{}'::jsonb, now() + interval '5 minutes' WHERE 1 / $${first + 1}::int = 1`,
  params: [id, divisor],
});

/** What the token exchange hands the group writer: its keys, its row (refused by the group statement here), the row again in its own transaction. */
function exchangeWrites(k: string, id: string, refusedInStatement: boolean): AttestedWrites {
  const written = row(id, 1);
  return {
    once: [proof(k)],
    parts: [refusedInStatement ? row(id, 0) : written],
    inTransaction: async (tx: Queryable) => {
      await tx.query(written.sql(1), written.params);
    },
  };
}

describe.skipIf(!usingPostgres)('the write-alone path takes rows, head and keys in the order every path agrees on (PostgreSQL, two instances)', () => {
  it('an exchange\'s proof replayed to another instance while this one writes it alone: one written, the other refused as a replay; no deadlock', async () => {
    const key = await generateSigningKey('EdDSA');
    const agent = `write-alone-${randomBytes(6).toString('hex')}`;
    const k = `jti-${randomBytes(8).toString('hex')}`;
    const first = new ReceiptService({ store: pg.store, issuer: 'https://deputy.example.com', key });
    await first.append(input(agent, 0));
    let replayOnFirst: Promise<AppendedReceipt> | undefined;
    const second = new ReceiptService({
      key,
      issuer: 'https://deputy.example.com',
      store: pausedAfter(pg.store, (sql) => sql.includes('INSERT INTO oidc_models') && sql.includes('unnest'), async () => {
        // The same proof on the first instance (its group statement), while the second's transaction holds what it took so far.
        replayOnFirst = first.appendWith(input(agent, 2), exchangeWrites(k, `row-first-${k}`, false));
        replayOnFirst.catch(() => {});
        await lockWaits(pg.store, 1);
      }),
    });
    const before = await deadlocks(pg.store);
    const onSecond = second.appendWith(input(agent, 1), exchangeWrites(k, `row-second-${k}`, true));
    expect(await crossedOutcomes(onSecond, () => replayOnFirst)).toEqual(['replay', 'written']);
    await first.flush();
    await second.flush();
    // Before: 40P01 on one side, and the server's deadlock count went up.
    expect(await deadlocks(pg.store)).toBe(before);
    const rows = await pg.store.query<{ id: string }>("SELECT id FROM oidc_models WHERE model = 'AttestedRow' AND id LIKE $1", [`%${k}`]);
    expect(rows.map((r) => r.id)).toEqual([`row-second-${k}`]);
    const report = await verifiedChain(first, agent, key);
    expect(report.ok, JSON.stringify(report.problems)).toBe(true);
    expect(report.chains).toMatchObject([{ agent, first: 1, last: 2 }]);
  }, 30_000);
});
