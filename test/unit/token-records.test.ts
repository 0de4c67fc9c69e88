/**
 * TokenRecords (src/oauth/token-records.ts) over the suite's store: what an insert refuses and
 * why (a refusal matrix), the fields a record keeps, the liveness rule of `find` (the earliest
 * revocation of the lineage; a missing or too-deep lineage counts as revoked), what
 * `revokeCascade` reports and `purgeExpired` deletes. Races between writers are the store
 * contract's (test/store/contract.ts).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentNotActive, MAX_LINEAGE, ParentRevoked, TokenRecords, type NewTokenRecord } from '../../src/oauth/token-records.js';
import { migrate, openStore, type Store } from '../../src/store/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let db: TestDatabase;
let store: Store;
let records: TokenRecords;
const now = () => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  db = await createTestDatabase();
  store = await openStore({ databaseUrl: db.url, dataDir: 'memory://', poolSize: 2 });
  await migrate(store);
  records = new TokenRecords(store);
  for (const [id, status] of [['agent-a', 'active'], ['agent-b', 'active'], ['agent-off', 'disabled']] as const) {
    await store.query(
      `INSERT INTO agents (id, name, owner, jwks, source, status) VALUES ($1, $1, 'owner@example.com', '{"keys":[]}'::jsonb, 'api', $2)`,
      [id, status],
    );
  }
});
afterAll(async () => {
  await store?.close();
  await db?.drop();
});

function record(agentId: string, parent?: NewTokenRecord, fields: Partial<NewTokenRecord> = {}): NewTokenRecord {
  const jti = randomUUID();
  return {
    jti,
    parentJti: parent?.jti,
    rootJti: parent?.rootJti ?? jti,
    agentId,
    userId: 'alice',
    userAttrs: { groups: ['eng'], roles: [] },
    issuerId: 'okta',
    audience: 'https://api.example.com',
    scope: 'deputy.read',
    chain: [...(parent?.chain ?? []), agentId],
    cnfJkt: undefined,
    mayAct: undefined,
    upstream: undefined,
    issuedAt: now(),
    expiresAt: now() + 600,
    ...fields,
  };
}

const insert = (r: NewTokenRecord) => store.transaction((tx) => records.insert(tx, r));

describe('TokenRecords.insert', () => {
  it('keeps every field; find returns it live', async () => {
    const r = record('agent-a', undefined, { cnfJkt: 'jkt-1', mayAct: { sub: 'agent-b' }, upstream: 'urn:x', userAttrs: { groups: ['eng'], roles: ['admin'], email: 'a@example.com' } as NewTokenRecord['userAttrs'] });
    await insert(r);
    const found = await records.find(r.jti);
    expect(found).toEqual({ ...r, revokedAt: undefined, revokedReason: undefined });
  });

  it('find of a token Deputy never recorded is undefined', async () => {
    expect(await records.find(randomUUID())).toBeUndefined();
  });

  const refusals: Array<[string, () => Promise<NewTokenRecord>, new (...args: never[]) => Error]> = [
    ['an unknown agent', async () => record('agent-nobody'), AgentNotActive],
    ['a disabled agent', async () => record('agent-off'), AgentNotActive],
    ['an unknown parent', async () => record('agent-b', record('agent-a')), ParentRevoked],
    ['a revoked parent', async () => {
      const parent = record('agent-a');
      await insert(parent);
      await records.revokeCascade(parent.jti, 'test');
      return record('agent-b', parent);
    }, ParentRevoked],
    ['a parent whose own parent was revoked', async () => {
      const root = record('agent-a');
      const parent = record('agent-b', root);
      await insert(root);
      await insert(parent);
      await records.revokeCascade(root.jti, 'test');
      return record('agent-a', parent);
    }, ParentRevoked],
  ];

  it.each(refusals)('refuses a record for %s, writing nothing', async (_what, make, error) => {
    const r = await make();
    await expect(insert(r)).rejects.toBeInstanceOf(error);
    expect(await records.find(r.jti)).toBeUndefined();
  });
});

describe('TokenRecords.find: the lineage rule', () => {
  it('a revoked ancestor revokes every descendant, with the earliest revocation and its reason', async () => {
    const a = record('agent-a');
    const b = record('agent-b', a);
    const c = record('agent-a', b);
    for (const r of [a, b, c]) await insert(r);
    expect(await records.revokeCascade(b.jti, 'admin')).toEqual([b.jti, c.jti]);
    expect(await records.revokeCascade(b.jti, 'again')).toEqual([]); // already revoked: nothing reported
    expect((await records.find(a.jti))?.revokedAt).toBeUndefined();
    const found = await records.find(c.jti);
    expect(found?.revokedReason).toBe('admin');
    expect(found?.revokedAt).toBeGreaterThan(0);
  });

  it('a lineage with a missing link is revoked ("no longer exists")', async () => {
    const a = record('agent-a');
    const b = record('agent-b', a);
    await insert(a);
    await insert(b);
    await store.query('DELETE FROM token_records WHERE jti = $1', [a.jti]);
    expect(await records.find(b.jti)).toMatchObject({ revokedReason: 'a token it was exchanged from no longer exists' });
  });

  it(`a lineage deeper than MAX_LINEAGE (${MAX_LINEAGE}) counts as broken`, async () => {
    let parent = record('agent-a');
    await insert(parent);
    const lineage = [parent];
    for (let i = 0; i <= MAX_LINEAGE; i++) {
      // Written directly: the insert's parent check would walk the whole lineage every time.
      const child = record(i % 2 ? 'agent-a' : 'agent-b', parent, { chain: ['agent-a'] });
      await store.query(
        `INSERT INTO token_records (jti, parent_jti, root_jti, agent_id, user_id, issuer_id, audience, scope, chain, depth, expires_at)
         VALUES ($1, $2, $3, $4, 'alice', 'okta', 'https://api.example.com', 'deputy.read', '["agent-a"]'::jsonb, 1, now() + interval '10 minutes')`,
        [child.jti, parent.jti, child.rootJti, child.agentId],
      );
      lineage.push(child);
      parent = child;
    }
    expect((await records.find(lineage[MAX_LINEAGE]!.jti))?.revokedAt).toBeUndefined(); // exactly MAX_LINEAGE hops up: whole
    expect((await records.find(lineage[MAX_LINEAGE + 1]!.jti))?.revokedReason).toBe('a token it was exchanged from no longer exists');
  });
});

describe('TokenRecords.purgeExpired', () => {
  it('deletes records expired for longer than the grace, and only those', async () => {
    const old = record('agent-a', undefined, { issuedAt: now() - 7200, expiresAt: now() - 3700 });
    const recent = record('agent-a', undefined, { issuedAt: now() - 700, expiresAt: now() - 100 });
    await insert(old);
    await insert(recent);
    expect(await records.purgeExpired(3600)).toBeGreaterThanOrEqual(1);
    expect(await records.find(old.jti)).toBeUndefined();
    expect(await records.find(recent.jti)).toBeDefined();
  });
});

describe('TokenRecords.detachUpstream', () => {
  it("clears the handles the agent's first links captured on every token that carries them, whoever holds it, and returns them", async () => {
    await store.query(`INSERT INTO agents (id, name, owner, jwks, source) VALUES ('agent-gone', 'gone', 'owner@example.com', '{"keys":[]}'::jsonb, 'api')`);
    const [u1, u2, other] = ['upt-1', 'upt-2', 'upt-other'].map((h) => `${h}-${randomUUID()}`) as [string, string, string];
    const root1 = record('agent-gone', undefined, { upstream: u1 });
    const child = record('agent-b', root1, { upstream: u1 });
    const grandchild = record('agent-a', child, { upstream: u1 });
    const root2 = record('agent-gone', undefined, { upstream: u2 });
    const noUpstream = record('agent-gone');
    // Another agent's first link, handed on to the deleted agent: not captured by it, kept.
    const otherRoot = record('agent-b', undefined, { upstream: other });
    const heldByGone = record('agent-gone', otherRoot, { upstream: other });
    for (const r of [root1, child, grandchild, root2, noUpstream, otherRoot, heldByGone]) await insert(r);

    const detached = await store.transaction((tx) => records.detachUpstream('agent-gone', tx));

    expect([...detached].sort()).toEqual([u1, u2].sort());
    const upstreamOf = async (r: NewTokenRecord) => (await store.query<{ upstream: string | null }>('SELECT upstream FROM token_records WHERE jti = $1', [r.jti]))[0]?.upstream;
    for (const r of [root1, child, grandchild, root2, noUpstream]) expect(await upstreamOf(r)).toBeNull();
    for (const r of [otherRoot, heldByGone]) expect(await upstreamOf(r)).toBe(other);
  });
});
