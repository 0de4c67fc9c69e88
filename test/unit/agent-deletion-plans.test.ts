/**
 * The statements an agent deletion runs against the tables that grow with traffic —
 * `token_records` (every issued token) and `oidc_models` (every DPoP proof's `jti` until purged) —
 * have an index path: planned with sequential scans priced out (`enable_seqscan = off`), none is
 * left on either table. Without one, the deletion reads every row under its locks (issue 16,
 * seventh round; scripts/bench/deletion-plans.ts shows the plans at 10⁵–10⁶ rows). A plan, not a
 * time: it is what the store would do at any size.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deleteClientGrants } from '../../src/oauth/oidc-provider/adapter.js';
import { TokenRecords } from '../../src/oauth/token-records.js';
import { migrate, openStore, type Queryable, type Store } from '../../src/store/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let db: TestDatabase;
let store: Store;

beforeAll(async () => {
  db = await createTestDatabase();
  store = await openStore({ databaseUrl: db.url, dataDir: 'memory://', poolSize: 2 });
  await migrate(store);
});
afterAll(async () => {
  await store?.close();
  await db?.drop();
});

/**
 * The plan of every statement `run` sends, without executing any (`EXPLAIN`, no `ANALYZE`), with
 * sequential scans disabled: a scan that remains is one no index can replace.
 */
async function plansOf(run: (db: Queryable) => Promise<unknown>): Promise<string> {
  const plans: string[] = [];
  await store.transaction(async (tx) => {
    await tx.query('SET LOCAL enable_seqscan = off');
    const explaining: Queryable = {
      query: async <R extends object>(sql: string, params?: readonly unknown[]) => {
        const rows = await tx.query<{ 'QUERY PLAN': string }>(`EXPLAIN (COSTS OFF) ${sql}`, params);
        plans.push(...rows.map((r) => r['QUERY PLAN']));
        return [] as R[];
      },
      exec: (sql) => tx.exec(sql),
    };
    await run(explaining);
  });
  expect(plans.length).toBeGreaterThan(0);
  return plans.join('\n');
}

describe("an agent deletion's statements on the growing tables", () => {
  it('detachUpstream finds the carriers of the captured handles by index, never by scanning token_records', async () => {
    const plan = await plansOf((tx) => new TokenRecords(store).detachUpstream('agent-x', tx));
    expect(plan).toContain('token_records');
    expect(plan).not.toMatch(/Seq Scan on token_records/);
  });

  it("deleteClientGrants finds the client's oidc-provider rows by index, never by scanning oidc_models", async () => {
    const plan = await plansOf((tx) => deleteClientGrants(tx, 'agent-x'));
    expect(plan).toContain('oidc_models');
    expect(plan).not.toMatch(/Seq Scan on oidc_models/);
  });
});
