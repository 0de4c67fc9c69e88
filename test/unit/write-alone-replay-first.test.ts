/**
 * Red team (issue 16, ninth round, the write-alone lock order): an append with attested writes
 * decided alone (src/audit/receipts.ts `#writeAlone`) now writes its rows before it locks the
 * chain head and records its once-keys. A replay whose rows are refused too — the token
 * exchange's proof replayed while its agent is disabled or its parent revoked, a vault row's
 * unique violation — was refused with the row's error (`unauthorized_client`, `invalid_grant`, a
 * store error) where the keys-first order, and an appender without `appendWith`, answer the
 * replay (`invalid_dpop_proof`, `invalid_client`). The replay's own error must win, nothing be
 * written, the head stay; a fresh append whose row is refused keeps the row's error and spends
 * no key. Both stores.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReceiptInput } from '../../src/audit/receipt.js';
import { ReceiptService, type AttestedWrites } from '../../src/audit/receipts.js';
import { generateSigningKey } from '../../src/keys/keystore.js';
import { recordEachOnce, type OnceKey } from '../../src/oauth/adapter.js';
import { migrate, type Queryable, type Store } from '../../src/store/index.js';
import { createPGliteStore } from '../../src/store/pglite.js';
import { createPostgresStore } from '../../src/store/postgres.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let db: TestDatabase;
let store: Store;
let service: ReceiptService;

beforeAll(async () => {
  db = await createTestDatabase();
  store = db.url ? await createPostgresStore({ connectionString: db.url, poolSize: 4 }) : await createPGliteStore({ dataDir: 'memory://' });
  await migrate(store);
  service = new ReceiptService({ store, issuer: 'https://deputy.example.com', key: await generateSigningKey('EdDSA') });
}, 60_000);
afterAll(async () => {
  await store?.close();
  await db?.drop();
});

const input = (agent: string, n: number): ReceiptInput => ({ agent, chain: [agent], event: 'token_exchange', action: 'delegate', resource: `https://api.example.com/${n}`, decision: 'permit' });
const proof = (k: string): OnceKey => ({ namespace: 'DPoPProof', key: k, ttlSeconds: 60 });
const assertion = (k: string): OnceKey => ({ namespace: 'ClientAssertion', key: k, ttlSeconds: 60 });

/** The row the token exchange refuses when its agent was disabled meanwhile (a typed error, thrown after a statement that succeeded). */
class RowRefused extends Error {
  readonly code = 'ROW_REFUSED';
}

/** A statement part that writes no row (the group statement refuses its append). */
const noRow = { sql: () => "INSERT INTO oidc_models (model, id, payload, expires_at) SELECT 'Never', 'x', '{}'::jsonb, now() WHERE false", params: [] };

/**
 * Writes whose rows are refused in their own transaction: by a typed error after a statement
 * (`typed`), or by the server (`server`: a division by zero, SQLSTATE 22012, as a unique
 * violation would be: the transaction is aborted). A replay gets `replayed <key>`.
 */
function refusedWrites(once: OnceKey[], how: 'typed' | 'server'): AttestedWrites {
  return {
    once,
    parts: [noRow],
    inTransaction: async (tx: Queryable) => {
      if (how === 'server') await tx.query('SELECT 1 / 0');
      await tx.query('SELECT 1');
      throw new RowRefused('the agent is not active');
    },
    replayed: (k: OnceKey) => new Error(`replayed ${k.namespace} ${k.key}`),
  };
}

async function recorded(keys: OnceKey[]): Promise<number> {
  const rows = await store.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM oidc_models WHERE (model, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))',
    [keys.map((k) => k.namespace), keys.map((k) => k.key)],
  );
  return rows[0]!.n;
}

describe('a replay decided alone is refused as a replay even when its rows are refused too', () => {
  for (const how of ['typed', 'server'] as const) {
    it(`a replayed proof whose row is refused (${how}): the replay's error, nothing written, head unmoved`, async () => {
      const agent = `replay-first-${randomUUID()}`;
      const p = proof(randomUUID());
      const a = assertion(randomUUID());
      const first = await service.append(input(agent, 0));
      await recordEachOnce(store, [p]);
      const err = await service.appendWith(input(agent, 1), refusedWrites([a, p], how)).then(() => undefined, (e: unknown) => e);
      // Before: the row's error (RowRefused, or the server's 22012).
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toBe(`replayed DPoPProof ${p.key}`);
      expect(await service.head(agent)).toEqual({ seq: first.seq, hash: first.hash });
      // The fresh assertion was not spent by the refused replay.
      expect(await recorded([a])).toBe(0);
    });
  }

  it('the first of several replayed keys (in the given order) names the error, as when the keys were recorded first', async () => {
    const agent = `replay-first-${randomUUID()}`;
    const p = proof(randomUUID());
    const a = assertion(randomUUID());
    await recordEachOnce(store, [p, a]);
    const err = await service.appendWith(input(agent, 1), refusedWrites([p, a], 'typed')).then(() => undefined, (e: unknown) => e);
    expect((err as Error).message).toBe(`replayed DPoPProof ${p.key}`);
    expect(await service.head(agent)).toBeUndefined();
  });

  it('a fresh append whose row is refused keeps the row\'s error and spends none of its keys', async () => {
    const agent = `replay-first-${randomUUID()}`;
    const keys = [assertion(randomUUID()), proof(randomUUID())];
    const err = await service.appendWith(input(agent, 1), refusedWrites(keys, 'typed')).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(RowRefused);
    expect(await recorded(keys)).toBe(0);
    expect(await service.head(agent)).toBeUndefined();
    const server = await service.appendWith(input(agent, 2), refusedWrites(keys, 'server')).then(() => undefined, (e: unknown) => e);
    expect((server as { code?: string }).code).toBe('22012');
    expect(await recorded(keys)).toBe(0);
  });
});
