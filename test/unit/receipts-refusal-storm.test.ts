/**
 * Red team (issue 16, eighth round): the chain writer keeps the signatures made before a refused
 * append (a forged proof, `ready` rejecting) and, on PostgreSQL, settles a group only after the
 * next group's statement started (src/audit/receipts.ts `#write`, `#writeGroup`). A storm of
 * appends from two writers on one agent's chain — plain, once-keyed (some replayed), with
 * attested writes — whose `ready` rejects at every moment (before the append, while it queues,
 * while its group is signed ahead or in flight), with group statements the server refuses or a
 * connection lost before they reach it: every resolved append is in the chain once, at its `seq`,
 * with the writes it attests; every refused one wrote nothing and got its own error; the
 * exported chain verifies. Both stores. (Call order is kept between groups, not inside one that
 * a refusal sends down the locked path: replays and attested writes are decided after the
 * others there, as before this round.)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReceiptInput } from '../../src/audit/receipt.js';
import { AlreadyRecorded, ReceiptService, type AppendedReceipt, type AttestedWrites } from '../../src/audit/receipts.js';
import { verifyReceipts } from '../../src/audit/verify.js';
import { formatLine } from '../../src/audit/jsonl.js';
import { generateSigningKey, toPublicJwk } from '../../src/keys/keystore.js';
import type { OnceKey } from '../../src/oauth/adapter.js';
import type { Queryable, Store } from '../../src/store/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { twoInstanceStores } from '../support/two-instances.js';

let db: TestDatabase;
/** One store per writer on PostgreSQL (two instances, two pools); one shared on PGlite. */
let stores: Store[];
let key: Awaited<ReturnType<typeof generateSigningKey>>;

beforeAll(async () => {
  db = await createTestDatabase();
  stores = await twoInstanceStores(db);
  key = await generateSigningKey('EdDSA');
}, 60_000);
afterAll(async () => {
  for (const s of new Set(stores)) await s.close();
  await db?.drop();
});

/** A deterministic pseudo-random sequence (mulberry32), so that a failing storm replays. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `inner`, except that a receipt statement (the group's or a locked one) fails, before reaching
 * the database, when `fail()` says so: refused by the server (40001) or a lost connection.
 */
function flaky(inner: Store, fail: () => { code: string } | undefined): Store {
  const query: Store['query'] = async (sql, params, options) => {
    const f = sql.includes('INSERT INTO receipts') ? fail() : undefined;
    if (f) throw Object.assign(new Error(`injected ${f.code}`), f);
    return inner.query(sql, params, options);
  };
  return new Proxy(inner, { get: (t, p) => (p === 'query' ? query : Reflect.get(t, p, t)) });
}

const once = (k: string): OnceKey => ({ namespace: 'StormKey', key: k, ttlSeconds: 300 });
const rowSql = (first: number) => `INSERT INTO oidc_models (model, id, payload, expires_at) SELECT 'StormRow', $${first}::text, '{}'::jsonb, now() + interval '5 minutes'`;

/** Attested writes: a once-key and a row, the same in the group statement and alone. */
function writes(id: string, ready: Promise<unknown>): AttestedWrites {
  return {
    once: [once(id)],
    parts: [{ sql: rowSql, params: [id] }],
    // The row only: the service records the key after the head (a replay: AlreadyRecorded).
    async inTransaction(tx: Queryable) {
      await tx.query(rowSql(1), [id]);
    },
    ready,
  };
}

/** How one append's `ready` ends: settled before the call, after some turns, or never gated. */
type Ready = { ok: boolean; turns: number } | undefined;

/** A promise settling as `r` says, after `r.turns` timer turns (0: already settled); its rejection handled (the caller awaits it too). */
function readyOf(r: NonNullable<Ready>, error: Error): Promise<unknown> {
  const p = r.turns === 0 ? (r.ok ? Promise.resolve() : Promise.reject(error)) : new Promise((resolve, reject) => setTimeout(() => (r.ok ? resolve(undefined) : reject(error)), r.turns));
  p.catch(() => {});
  return p;
}

interface Call {
  writer: number;
  id: string;
  kind: 'plain' | 'once' | 'replay' | 'with';
  forged?: Error;
  outcome?: PromiseSettledResult<AppendedReceipt>;
}

/** One append of the storm, drawn from `rnd`, started on `service`. */
function start(service: ReceiptService, writer: number, agent: string, n: number, rnd: () => number, spent: string[]): { call: Call; done: Promise<AppendedReceipt> } {
  const id = `${agent}-${writer}-${n}`;
  const input: ReceiptInput = { agent, chain: [agent], event: 'gateway_call', action: 'invoke', resource: `https://api.example.com/${id}`, decision: 'permit' };
  const x = rnd();
  const gate: Ready = rnd() < 0.5 ? undefined : { ok: rnd() < 0.6, turns: Math.floor(rnd() * 4) };
  const forged = gate && !gate.ok ? new Error(`forged ${id}`) : undefined;
  const ready = gate ? readyOf(gate, forged!) : undefined;
  if (x < 0.2) return { call: { writer, id, kind: 'plain' }, done: service.append(input) };
  if (x < 0.3 && spent.length > 0) {
    const again = spent[Math.floor(rnd() * spent.length)]!;
    return { call: { writer, id, kind: 'replay', ...(forged ? { forged } : {}) }, done: service.appendOnce(input, once(again), ready) };
  }
  spent.push(id);
  if (x < 0.65) return { call: { writer, id, kind: 'once', ...(forged ? { forged } : {}) }, done: service.appendOnce(input, once(id), ready) };
  return { call: { writer, id, kind: 'with', ...(forged ? { forged } : {}) }, done: service.appendWith(input, writes(id, ready ?? Promise.resolve())) };
}

async function storm(agent: string, seed: number, total: number): Promise<Call[]> {
  const rnd = random(seed);
  const failRnd = random(seed + 1);
  const fail = () => {
    const x = failRnd();
    return x < 0.04 ? { code: '40001' } : x < 0.06 ? { code: 'ECONNRESET' } : undefined;
  };
  const services = stores.map((s) => new ReceiptService({ store: flaky(s, fail), issuer: 'https://deputy.example.com', key, maxBatch: 5 }));
  const spent: string[] = [];
  const calls: Call[] = [];
  const running: Array<Promise<void>> = [];
  for (let n = 0; n < total; n++) {
    const writer = rnd() < 0.5 ? 0 : 1;
    const { call, done } = start(services[writer]!, writer, agent, n, rnd, spent);
    calls.push(call);
    running.push(done.then((value) => void (call.outcome = { status: 'fulfilled', value }), (reason: unknown) => void (call.outcome = { status: 'rejected', reason })));
    // Bursts: several appends in one turn (one group), then a pause of a few turns.
    if (rnd() < 0.3) await new Promise((r) => (rnd() < 0.5 ? setImmediate(r) : setTimeout(r, Math.floor(rnd() * 3))));
  }
  await Promise.all(running);
  for (const s of services) await s.flush();
  return calls;
}

/** The chain as stored (verified offline), by resource. */
async function stored(agent: string): Promise<Map<string, { seq: number; id: string }>> {
  const reader = new ReceiptService({ store: stores[0]!, issuer: 'https://deputy.example.com', key });
  let text = '';
  const byResource = new Map<string, { seq: number; id: string }>();
  const seqs: number[] = [];
  for await (const r of reader.range(agent, 1, Number.MAX_SAFE_INTEGER)) {
    text += formatLine(r);
    seqs.push(r.seq);
    const resource = JSON.parse(Buffer.from(r.jws.split('.')[1]!, 'base64url').toString()).resource as string;
    expect(byResource.has(resource), `${resource} twice in the chain`).toBe(false);
    byResource.set(resource, { seq: r.seq, id: r.id });
  }
  if (seqs.length > 0) {
    const report = await verifyReceipts(text, { keys: [toPublicJwk(key.jwk)] });
    expect(report.ok, JSON.stringify(report.problems)).toBe(true);
  }
  expect(seqs).toEqual(seqs.map((_, i) => i + 1));
  return byResource;
}

async function rowsOf(model: string, ids: string[]): Promise<Set<string>> {
  const rows = await stores[0]!.query<{ id: string }>('SELECT id FROM oidc_models WHERE model = $1 AND id = ANY($2::text[])', [model, ids]);
  return new Set(rows.map((r) => r.id));
}

describe('the chain writer under a storm of refusals, two writers on one chain', () => {
  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: every resolved append is in the chain once, in order, with its writes; every refused one wrote nothing and got its own error`, async () => {
      const agent = `storm-${seed}`;
      const calls = await storm(agent, seed, 160);
      const chain = await stored(agent);
      const keys = await rowsOf('StormKey', calls.map((c) => c.id));
      const rows = await rowsOf('StormRow', calls.map((c) => c.id));
      for (const c of calls) {
        const o = c.outcome!;
        const where = `${c.id} (${c.kind}${c.forged ? ', forged' : ''})`;
        if (o.status === 'fulfilled') {
          expect(c.forged, `${where} resolved`).toBeUndefined();
          expect(chain.get(`https://api.example.com/${c.id}`), where).toEqual({ seq: o.value.seq, id: o.value.id });
          if (c.kind === 'once' || c.kind === 'with') expect(keys.has(c.id), `${where} key`).toBe(true);
          if (c.kind === 'with') expect(rows.has(c.id), `${where} row`).toBe(true);
          continue;
        }
        expect(chain.has(`https://api.example.com/${c.id}`), `${where} refused yet written`).toBe(false);
        if (c.kind === 'with') expect(rows.has(c.id), `${where} row`).toBe(false);
        const reason = o.reason as { code?: string };
        if (c.forged) {
          // Its own error — or, when its group failed first, the store's (the proof never counted).
          if (reason !== c.forged) expect(reason.code, `${where}: ${String(reason)}`).toMatch(/^(40001|ECONNRESET|ERR_ALREADY_RECORDED)$/);
        } else if (c.kind === 'replay') {
          if (!(reason instanceof AlreadyRecorded)) expect(reason.code, `${where}: ${String(reason)}`).toMatch(/^(40001|ECONNRESET)$/);
        } else {
          expect(reason.code, `${where}: ${String(reason)}`).toMatch(/^(40001|ECONNRESET|ERR_ALREADY_RECORDED)$/);
        }
      }
      const resolved = calls.filter((c) => c.outcome!.status === 'fulfilled').length;
      expect(chain.size).toBe(resolved);
      expect(resolved).toBeGreaterThan(20);
      expect(calls.filter((c) => c.forged && c.outcome!.status === 'rejected').length).toBeGreaterThan(5);
    }, 120_000);
  }
});
