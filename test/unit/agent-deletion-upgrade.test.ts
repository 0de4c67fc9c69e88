/**
 * Red team of issue 16's seventh round (agent deletion at scale): on a database an older Deputy
 * migrated to 017 and filled, migration 018 applies, and a deletion's two reshaped statements —
 * `deleteClientGrants` (the partial `clientId` index) and `TokenRecords.detachUpstream` (the
 * lineage walk) — touch exactly the rows the statements they replaced touched: a depth-5
 * sub-delegation whose descendants belong to other agents, one agent's repeated roots sharing one
 * handle, another agent's root handed on to the deleted agent, grants, codes, refresh tokens and
 * sessions of two clients, replay rows. Each pair runs in a rolled-back transaction on the same
 * data. Both stores.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deleteClientGrants } from '../../src/oauth/oidc-provider/adapter.js';
import { MAX_LINEAGE, TokenRecords, type NewTokenRecord } from '../../src/oauth/token-records.js';
import { migrate, openStore, type Queryable, type Store } from '../../src/store/index.js';
import { listMigrations } from '../../src/store/migrate.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let db: TestDatabase;
let store: Store;

/** The statements before the seventh round (48d2006^), as they were. */
const OLD_DETACH = `WITH captured AS (SELECT DISTINCT upstream FROM token_records WHERE agent_id = $1 AND parent_jti IS NULL AND upstream IS NOT NULL),
      cleared AS (UPDATE token_records SET upstream = NULL WHERE upstream IN (SELECT upstream FROM captured) RETURNING 1)
 SELECT upstream FROM captured`;
const OLD_DELETE_GRANTS = `WITH d AS (
   DELETE FROM oidc_models WHERE payload->>'clientId' = $1
      OR grant_id IN (SELECT id FROM oidc_models WHERE model = 'Grant' AND payload->>'clientId' = $1)
   RETURNING 1)
 SELECT count(*)::int AS n FROM d`;

const AGENTS = ['gone', 'b', 'c', 'd', 'e'];

beforeAll(async () => {
  db = await createTestDatabase();
  store = await openStore({ databaseUrl: db.url, dataDir: 'memory://', poolSize: 2 });
  // An existing database: migrated by a Deputy that predates 018, holding data.
  expect(await migrate(store, listMigrations().filter((m) => m.version < 18))).not.toContain(18);
  for (const id of AGENTS) {
    await store.query(`INSERT INTO agents (id, name, owner, jwks, source) VALUES ($1, $1, 'o@example.com', '{"keys":[]}'::jsonb, 'api')`, [id]);
  }
  await fillTokenRecords();
  await fillOidcModels();
  expect(await migrate(store)).toEqual([18]);
});
afterAll(async () => {
  await store?.close();
  await db?.drop();
});

async function insertRecord(agent: string, parent: { jti: string; root: string } | undefined, upstream: string | null): Promise<{ jti: string; root: string }> {
  const jti = randomUUID();
  const root = parent?.root ?? jti;
  await store.query(
    `INSERT INTO token_records (jti, parent_jti, root_jti, agent_id, user_id, issuer_id, audience, scope, chain, depth, upstream, issued_at, expires_at)
     VALUES ($1, $2, $3, $4, 'alice', 'okta', 'https://api.example.com', 'read', '[]'::jsonb, 1, $5, now(), now() + interval '10 minutes')`,
    [jti, parent?.jti ?? null, root, agent, upstream],
  );
  return { jti, root };
}

async function fillTokenRecords(): Promise<void> {
  // Depth 5: gone → b → c → d → e, and a branch from each link held by another agent.
  let link = await insertRecord('gone', undefined, 'upt-deep');
  for (const agent of ['b', 'c', 'd', 'e']) {
    await insertRecord(AGENTS[(AGENTS.indexOf(agent) + 2) % AGENTS.length]!, link, 'upt-deep');
    link = await insertRecord(agent, link, 'upt-deep');
  }
  // One agent's repeated exchanges of one IdP token sharing one row (the exchange branch's reuse).
  for (let i = 0; i < 3; i++) await insertRecord('e', await insertRecord('gone', undefined, 'upt-shared'), 'upt-shared');
  // Another agent's root handed on to the deleted agent, and on again: not captured by it.
  const other = await insertRecord('b', undefined, 'upt-b');
  await insertRecord('c', await insertRecord('gone', other, 'upt-b'), 'upt-b');
  await selfReexchanges();
  // Roots of other agents, and a root of the deleted agent without an upstream.
  await insertRecord('c', undefined, 'upt-c');
  await insertRecord('gone', undefined, null);
}

/**
 * The deleted agent re-exchanging its own token (the chain does not grow, so the depth limit does
 * not stop it) as deep as the product's insert allows: its check accepts a parent exactly
 * MAX_LINEAGE hops from its root, so the last record lies MAX_LINEAGE + 1 hops down (dead on
 * arrival by the lineage rule, but carrying the handle).
 */
async function selfReexchanges(): Promise<void> {
  const records = new TokenRecords(store);
  let parent: NewTokenRecord | undefined;
  for (let hops = 0; hops <= MAX_LINEAGE + 1; hops++) {
    const jti = randomUUID();
    const now = Math.floor(Date.now() / 1000);
    const r: NewTokenRecord = {
      jti, parentJti: parent?.jti, rootJti: parent?.rootJti ?? jti, agentId: 'gone', userId: 'alice', userAttrs: { groups: [], roles: [] },
      issuerId: 'okta', audience: 'https://api.example.com', scope: 'read', chain: ['gone'], cnfJkt: undefined, mayAct: undefined,
      upstream: 'upt-self', issuedAt: now, expiresAt: now + 600,
    };
    await store.transaction((tx) => records.insert(tx, r));
    parent = r;
  }
}

async function fillOidcModels(): Promise<void> {
  const row = (model: string, id: string, payload: object, grantId: string | null) =>
    store.query('INSERT INTO oidc_models (model, id, payload, grant_id) VALUES ($1, $2, $3::jsonb, $4)', [model, id, JSON.stringify(payload), grantId]);
  for (const client of ['gone', 'b']) {
    await row('Grant', `g-${client}`, { clientId: client, accountId: 'alice' }, null);
    await row('RefreshToken', `rt-${client}`, { clientId: client, grantId: `g-${client}` }, `g-${client}`);
    await row('AuthorizationCode', `ac-${client}`, { clientId: client, grantId: `g-${client}` }, `g-${client}`);
    await row('Interaction', `i-${client}`, { grantId: `g-${client}`, params: { client_id: client } }, `g-${client}`);
    await row('Session', `s-${client}`, { accountId: 'alice', authorizations: { [client]: { grantId: `g-${client}` } } }, null);
  }
  // A client id that is not a string, and replay detection's single-use rows (payload {}).
  await row('ClientCredentials', 'cc-num', { clientId: 42 }, null);
  for (let i = 0; i < 20; i++) await row('ReplayDetection', `jti-${i}`, {}, null);
}

/** Runs `statement` in a transaction that is rolled back, and returns its answer and the rows it left. */
async function effectOf<T>(statement: (tx: Queryable) => Promise<T>): Promise<{ answer: T; records: unknown[]; models: unknown[] }> {
  const rollback = new Error('rollback');
  let seen: { answer: T; records: unknown[]; models: unknown[] } | undefined;
  await store
    .transaction(async (tx) => {
      const answer = await statement(tx);
      const records = await tx.query('SELECT jti, upstream FROM token_records ORDER BY jti');
      const models = await tx.query('SELECT model, id FROM oidc_models ORDER BY model, id');
      seen = { answer, records, models };
      throw rollback;
    })
    .catch((err: unknown) => {
      if (err !== rollback) throw err;
    });
  return seen!;
}

describe('agent deletion after migration 018 on an existing database', () => {
  it('detachUpstream clears and returns exactly what the old statement did', async () => {
    const before = await effectOf(async (tx) => (await tx.query<{ upstream: string }>(OLD_DETACH, ['gone'])).map((r) => r.upstream).sort());
    const now = await effectOf(async (tx) => (await new TokenRecords(store).detachUpstream('gone', tx)).sort());
    expect(now.answer).toEqual(['upt-deep', 'upt-self', 'upt-shared']);
    expect(now).toEqual(before);
  });

  it("deleteClientGrants deletes exactly the client's rows the old statement did", async () => {
    const before = await effectOf((tx) => tx.query<{ n: number }>(OLD_DELETE_GRANTS, ['gone']).then((r) => r[0]!.n));
    const now = await effectOf((tx) => deleteClientGrants(tx, 'gone'));
    expect(now.answer).toBe(4);
    expect(now).toEqual(before);
    for (const id of ['cc-num']) expect(now.models).toContainEqual({ model: 'ClientCredentials', id });
  });
});
