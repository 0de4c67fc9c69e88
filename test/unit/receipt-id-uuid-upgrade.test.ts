/**
 * Migration 019 (issue 16, eleventh round): receipt ids become `uuid`. On a database an older
 * Deputy migrated to 018 and filled with signed chains (ids stored as text, as it wrote them), 019
 * applies; every receipt reads back byte for byte (id, hash, prev, JWS), by id and by range; the
 * chains continue where they were — a lone append, a concurrent burst (groups of every statement
 * shape: the scalar one, the `unnest` one over `uuid[]`) and a replayed once-key (the locked path)
 * — and the whole export verifies offline. Ids keep their uniqueness, and text that is no UUID
 * names no receipt (no database error). Both stores.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readById } from '../../src/audit/chain.js';
import { formatLine } from '../../src/audit/jsonl.js';
import type { ReceiptInput, SignedReceipt } from '../../src/audit/receipt.js';
import { AlreadyRecorded, ReceiptService } from '../../src/audit/receipts.js';
import { verifyReceipts } from '../../src/audit/verify.js';
import { generateSigningKey, toPublicJwk } from '../../src/keys/keystore.js';
import { migrate, openStore, type Store } from '../../src/store/index.js';
import { listMigrations } from '../../src/store/migrate.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let db: TestDatabase;
let store: Store;
let signing: Awaited<ReturnType<typeof generateSigningKey>>;
/** The rows as the older Deputy stored them, per agent, in chain order. */
const before = new Map<string, SignedReceipt[]>();
const AGENTS = ['agent-old-a', 'agent-old-b'];

const input = (agent: string, resource: string): ReceiptInput => ({
  agent, user: 'alice', chain: [agent], event: 'gateway_call', action: 'GET', resource, decision: 'permit', policies: ['p'],
});
const service = (s: Store) => new ReceiptService({ store: s, issuer: 'https://deputy.example.com', key: signing });

/** Signed chains made on a scratch store, copied into the old schema as pre-019 rows (text ids). */
async function fillOldChains(): Promise<void> {
  const scratch = await openStore({ dataDir: 'memory://', poolSize: 1 });
  try {
    await migrate(scratch);
    const writer = service(scratch);
    for (const [i, agent] of AGENTS.entries()) {
      for (let n = 0; n < 3 + i; n++) await writer.append(input(agent, `doc:${n}`));
      const rows: SignedReceipt[] = [];
      for await (const r of writer.range(agent, 1, Number.MAX_SAFE_INTEGER)) rows.push(r);
      for (const r of rows) {
        await store.query('INSERT INTO receipts (agent_id, seq, id, hash, prev, jws) VALUES ($1, $2, $3, $4, $5, $6)', [r.agent, r.seq, r.id, r.hash, r.prev, r.jws]);
      }
      const head = rows.at(-1)!;
      await store.query('INSERT INTO receipt_chains (agent_id, seq, head) VALUES ($1, $2, $3)', [agent, head.seq, head.hash]);
      before.set(agent, rows);
    }
  } finally {
    await scratch.close();
  }
}

async function chainOf(agent: string): Promise<SignedReceipt[]> {
  const rows: SignedReceipt[] = [];
  for await (const r of service(store).range(agent, 1, Number.MAX_SAFE_INTEGER)) rows.push(r);
  return rows;
}

beforeAll(async () => {
  db = await createTestDatabase();
  store = await openStore({ databaseUrl: db.url, dataDir: 'memory://', poolSize: 4 });
  signing = await generateSigningKey('ES256');
  expect(await migrate(store, listMigrations().filter((m) => m.version < 19))).not.toContain(19);
  await fillOldChains();
  expect(await migrate(store)).toEqual([19]);
}, 60_000);
afterAll(async () => {
  await store?.close();
  await db?.drop();
});

describe('migration 019 on a database with receipts', () => {
  it('stores ids as uuid and reads every receipt back as it was, by range and by id', async () => {
    const type = await store.query<{ t: string }>(`SELECT data_type AS t FROM information_schema.columns WHERE table_name = 'receipts' AND column_name = 'id'`);
    expect(type).toEqual([{ t: 'uuid' }]);
    for (const agent of AGENTS) {
      const old = before.get(agent)!;
      expect(await chainOf(agent)).toEqual(old);
      for (const r of old) expect(await readById(store, r.id)).toEqual(r);
    }
  });

  it('continues each chain: a lone append, a concurrent burst, a replayed key refused; the export verifies', async () => {
    const [a] = AGENTS as [string];
    const writer = service(store);
    const spent = { namespace: 'UpgradeKey', key: randomUUID(), ttlSeconds: 60 };
    await writer.appendOnce(input(a, 'once'), spent);
    // 20 at once: groups larger than the scalar statement's 8 (the `unnest` form over `uuid[]`) and smaller ones.
    const burst = await Promise.allSettled(Array.from({ length: 20 }, (_, n) => writer.append(input(a, `burst:${n}`))));
    expect(burst.every((s) => s.status === 'fulfilled')).toBe(true);
    await expect(writer.appendOnce(input(a, 'replay'), spent)).rejects.toBeInstanceOf(AlreadyRecorded);
    const chain = await chainOf(a);
    expect(chain.map((r) => r.seq)).toEqual(Array.from({ length: before.get(a)!.length + 21 }, (_, i) => i + 1));
    expect(chain.slice(0, before.get(a)!.length)).toEqual(before.get(a));
    const report = await verifyReceipts(chain.map(formatLine).join(''), { keys: [toPublicJwk(signing.jwk)] });
    expect(report.ok, JSON.stringify(report.problems)).toBe(true);
    expect(report.records).toBe(chain.length);
  });

  it('keeps ids unique, and answers text that is no UUID with nothing rather than a database error', async () => {
    const taken = before.get(AGENTS[1]!)![0]!;
    await expect(
      store.query('INSERT INTO receipts (agent_id, seq, id, hash, prev, jws) VALUES ($1, 99, $2, $3, $4, $5)', ['agent-other', taken.id, 'h', 'p', 'x.y.z']),
    ).rejects.toMatchObject({ code: '23505' });
    for (const id of ['nope', '', `${taken.id}x`, taken.id.replaceAll('-', ''), `{${taken.id}}`, "' OR 1=1 --", '00000000-0000-0000-0000-00000000000g']) {
      expect(await readById(store, id)).toBeUndefined();
    }
    expect(await readById(store, randomUUID())).toBeUndefined();
    // The same UUID in capitals names the same receipt (a UUID's hex is case-insensitive, RFC 9562 §4).
    expect(await readById(store, taken.id.toUpperCase())).toEqual(taken);
  });
});
