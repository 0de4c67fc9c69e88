/**
 * Red team (issue 16, ninth round): the order in which the receipt writer's two paths take the
 * chain head and the once-keys (DPoP proof `jti`s) on PostgreSQL. The optimistic statement
 * (src/audit/chain.ts `appendIfHead`, the scalar group or the array one) moves the head first and
 * records the keys after; the locked path of a plain or once-keyed group (src/audit/receipts.ts
 * `#writeLocked`) recorded the keys first and locked the head after. A proof replayed to a second
 * instance while the first spends it, with the second's group on its locked path (its optimistic
 * statements lost three races for the head to the first instance): the locked path holds the key
 * and waits for the head, the statement holds the head and waits for the key — a deadlock,
 * broken by PostgreSQL after `deadlock_timeout` (a second's stall; one side aborted with 40P01, a
 * gateway call answered with a store error instead of a replay refusal). The locked path now
 * locks the head first, in the statement's order: the statement waits for the head, then finds
 * the key spent. (The same fix landed from the leftovers red team, tested there with the
 * statements answered "moved" and on crossed rounds: test/unit/locked-path-lock-order.test.ts;
 * this case is the end-to-end one — two service instances, real head moves, one interleaving.)
 *
 * PostgreSQL only (two connections; PGlite runs one statement at a time).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ReceiptInput } from '../../src/audit/receipt.js';
import { ReceiptService, type AppendedReceipt } from '../../src/audit/receipts.js';
import { generateSigningKey } from '../../src/keys/keystore.js';
import type { OnceKey } from '../../src/oauth/adapter.js';
import type { Store } from '../../src/store/index.js';
import { usingPostgres } from '../support/database.js';
import { deadlocks, lockWaits, postgresStoreForFile } from '../support/pg-locks.js';
import { crossedOutcomes, pausedAfter, verifiedChain } from '../support/receipt-crossing.js';

const pg = postgresStoreForFile();

const input = (agent: string, n: number): ReceiptInput => ({ agent, chain: [agent], event: 'gateway_call', action: 'invoke', resource: `https://api.example.com/items/${n}`, decision: 'permit' });
const proof = (k: string): OnceKey => ({ namespace: 'DPoPProof', key: k, ttlSeconds: 60 });

/**
 * The second instance's store: each of its first `races` optimistic receipt statements is
 * preceded by `race()` (the first instance moving the head: the statement finds it moved), and
 * in its first transaction, right after the once-keys are recorded there, `meanwhile()` runs
 * before the transaction goes on.
 */
function steered(inner: Store, races: number, race: () => Promise<unknown>, meanwhile: () => Promise<void>): Store {
  let lost = 0;
  const query: Store['query'] = async (sql, params, options) => {
    if (sql.includes('INSERT INTO receipts') && lost < races) {
      lost++;
      await race();
    }
    return inner.query(sql, params, options);
  };
  const paused = pausedAfter(inner, (sql) => sql.includes('INSERT INTO oidc_models'), meanwhile);
  return new Proxy(paused, { get: (t, p) => (p === 'query' ? query : Reflect.get(t, p, t)) });
}

describe.skipIf(!usingPostgres)('the locked path and the optimistic statement take the head and the keys in one order (PostgreSQL)', () => {
  it('a proof spent on one instance while replayed to another on its locked path: one append written, the other refused as a replay; no deadlock', async () => {
    const key = await generateSigningKey('EdDSA');
    const agent = `locked-order-${randomBytes(6).toString('hex')}`;
    const k = `jti-${randomBytes(8).toString('hex')}`;
    const first = new ReceiptService({ store: pg.store, issuer: 'https://deputy.example.com', key });
    await first.append(input(agent, 0));
    let n = 1;
    let replayOnFirst: Promise<AppendedReceipt> | undefined;
    const second = new ReceiptService({
      key,
      issuer: 'https://deputy.example.com',
      store: steered(
        pg.store,
        3,
        () => first.append(input(agent, n++)),
        async () => {
          // The same proof on the first instance, while the second's locked path holds what it took so far.
          replayOnFirst = first.appendOnce(input(agent, 100), proof(k));
          replayOnFirst.catch(() => {});
          await lockWaits(pg.store, 1);
        },
      ),
    });
    const before = await deadlocks(pg.store);
    const onSecond = second.appendOnce(input(agent, 200), proof(k));
    expect(await crossedOutcomes(onSecond, () => replayOnFirst)).toEqual(['replay', 'written']);
    await first.flush();
    await second.flush();
    expect(await deadlocks(pg.store)).toBe(before);
    const report = await verifiedChain(first, agent, key);
    expect(report.ok, JSON.stringify(report.problems)).toBe(true);
    // The three appends that won the races, the first, and the one of the two that spent the proof.
    expect(report.chains).toMatchObject([{ agent, first: 1, last: 5 }]);
  }, 30_000);
});
