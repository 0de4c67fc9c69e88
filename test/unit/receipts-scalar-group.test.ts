/**
 * Red team (issue 16, ninth round): a small group of receipts from a head (2–8, one once-key per
 * receipt or none, no parts) is written by a statement with scalar `VALUES` parameters
 * (src/audit/chain.ts `groupAppend`) instead of the `unnest` statement over arrays that still
 * writes every other group. Each case runs on groups of 2, 8 (the scalar statement) and 9 (the
 * array statement, as every group was before): the answers, the rows, the keys spent and the head
 * must be the same whichever statement wrote them — a stale head, a replayed key anywhere in the
 * group, an expired key taken over, keys given out of order, two keys on one receipt and none on
 * another. Then the receipt service: one agent's concurrent appends (a replay and a forged proof
 * among them, a group statement lost before or refused by the server) from two instances on one
 * database, whose chain verifies end to end. Both stores.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendIfHead, readHead, readRange, type ChainHead } from '../../src/audit/chain.js';
import { chainRows as rows } from '../support/receipt-rows.js';
import { formatLine } from '../../src/audit/jsonl.js';
import { genesisHash, type ReceiptInput } from '../../src/audit/receipt.js';
import { AlreadyRecorded, ReceiptService, type AppendedReceipt } from '../../src/audit/receipts.js';
import { verifyReceipts } from '../../src/audit/verify.js';
import { generateSigningKey, toPublicJwk } from '../../src/keys/keystore.js';
import type { OnceKey } from '../../src/oauth/adapter.js';
import type { Store } from '../../src/store/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { twoInstanceStores } from '../support/two-instances.js';

let db: TestDatabase;
/** Two instances on PostgreSQL (two pools on one database); one store twice on PGlite. */
let stores: [Store, Store];
let signing: Awaited<ReturnType<typeof generateSigningKey>>;

beforeAll(async () => {
  db = await createTestDatabase();
  stores = await twoInstanceStores(db);
  signing = await generateSigningKey('EdDSA');
}, 60_000);
afterAll(async () => {
  for (const s of new Set(stores)) await s.close();
  await db?.drop();
});

const NS = 'ScalarGroupKey';
const key = (k: string, ttlSeconds = 60): OnceKey => ({ namespace: NS, key: k, ttlSeconds });


/** A chain of one receipt: every case starts from a head past genesis (where the scalar statement applies). */
async function headed(): Promise<{ agent: string; head: ChainHead }> {
  const agent = `scalar-${randomUUID()}`;
  const genesis = { seq: 0, hash: genesisHash(agent) };
  const [first] = rows(agent, genesis, 1);
  expect(await appendIfHead(stores[0], agent, genesis, [first!])).toBe('written');
  return { agent, head: { seq: 1, hash: first!.hash } };
}

/** Which of `ks` are recorded in {@link NS}, sorted. */
async function spent(ks: readonly string[]): Promise<string[]> {
  const found = await stores[0].query<{ id: string }>('SELECT id FROM oidc_models WHERE model = $1 AND id = ANY($2::text[]) ORDER BY id', [NS, ks]);
  return found.map((r) => r.id);
}

/** The chain as stored: ids in seq order, and the head. */
async function chainOf(agent: string): Promise<{ ids: string[]; seqs: number[]; head: ChainHead | undefined }> {
  const all = await readRange(stores[1], agent, 1, Number.MAX_SAFE_INTEGER, 1000);
  return { ids: all.map((r) => r.id), seqs: all.map((r) => r.seq), head: await readHead(stores[1], agent) };
}

const fresh = (n: number) => Array.from({ length: n }, () => randomUUID());

describe('a small group written with scalar parameters answers as the array statement (groups of 2, 8 and 9)', () => {
  for (const n of [2, 8, 9]) {
    it(`${n} receipts: without keys from the head, written; from a stale head, nothing`, async () => {
      const { agent, head } = await headed();
      expect(await appendIfHead(stores[1], agent, { seq: 1, hash: 'stale' }, rows(agent, { seq: 1, hash: 'stale' }, n))).toBe('moved');
      expect(await chainOf(agent)).toMatchObject({ seqs: [1], head });
      const group = rows(agent, head, n);
      expect(await appendIfHead(stores[1], agent, head, group)).toBe('written');
      const chain = await chainOf(agent);
      expect(chain.ids.slice(1)).toEqual(group.map((r) => r.id));
      expect(chain.head).toEqual({ seq: n + 1, hash: group.at(-1)!.hash });
      // The same head again (another instance's group signed over it): nothing.
      expect(await appendIfHead(stores[0], agent, head, rows(agent, head, n))).toBe('moved');
      expect((await chainOf(agent)).seqs).toHaveLength(n + 1);
    });

    for (const where of ['first', 'middle', 'last'] as const) {
      it(`${n} receipts with a key each, the ${where} (in lock order) replayed: recorded, no key spent, nothing written; then written without it`, async () => {
        const { agent, head } = await headed();
        const ks = fresh(n).sort();
        const at = where === 'first' ? 0 : where === 'last' ? n - 1 : Math.floor(n / 2);
        expect(await appendIfHead(stores[0], agent, head, rows(agent, head, 1), [key(ks[at]!)])).toBe('written');
        const now = { seq: 2, hash: (await readHead(stores[0], agent))!.hash };
        // Given in reverse: the statement records them in its own order.
        expect(await appendIfHead(stores[1], agent, now, rows(agent, now, n), [...ks].reverse().map((k) => key(k)))).toBe('recorded');
        expect(await spent(ks)).toEqual([ks[at]]);
        expect(await chainOf(agent)).toMatchObject({ seqs: [1, 2], head: now });
        // A stale head with fresh keys: nothing, not even the keys.
        const others = fresh(n);
        expect(await appendIfHead(stores[1], agent, head, rows(agent, head, n), others.map((k) => key(k)))).toBe('moved');
        expect(await spent(others)).toEqual([]);
        const group = rows(agent, now, n);
        expect(await appendIfHead(stores[1], agent, now, group, others.map((k) => key(k)))).toBe('written');
        expect(await spent(others)).toEqual([...others].sort());
        expect((await chainOf(agent)).ids.slice(2)).toEqual(group.map((r) => r.id));
      });
    }

    it(`${n} receipts with keys, one receipt's id taken already (a server error mid-statement): the store's error, no key spent, no receipt, the head where it was`, async () => {
      const { agent, head } = await headed();
      const taken = (await readRange(stores[0], agent, 1, 1, 1))[0]!.id;
      const group = rows(agent, head, n);
      group[n - 1] = { ...group[n - 1]!, id: taken };
      const ks = fresh(n);
      const err = await appendIfHead(stores[1], agent, head, group, ks.map((k) => key(k))).then(
        () => undefined,
        (e: unknown) => e as { code?: string },
      );
      expect(err?.code).toBe('23505');
      expect(await spent(ks)).toEqual([]);
      expect(await chainOf(agent)).toMatchObject({ seqs: [1], head });
    });

    it(`${n} receipts: a prepared group shape still answers after another instance changed the receipts table`, async () => {
      const { agent, head } = await headed();
      const first = rows(agent, head, n);
      expect(await appendIfHead(stores[0], agent, head, first, fresh(n).map((k) => key(k)))).toBe('written');
      const column = `probe_${randomUUID().replaceAll('-', '')}`;
      await stores[1].query(`ALTER TABLE receipts ADD COLUMN ${column} text`);
      try {
        const now = { seq: n + 1, hash: first.at(-1)!.hash };
        const [replayed, ...others] = fresh(n);
        await stores[1].query(`INSERT INTO oidc_models (model, id, payload, expires_at) VALUES ($1, $2, '{}'::jsonb, now() + interval '1 minute')`, [NS, replayed]);
        expect(await appendIfHead(stores[0], agent, now, rows(agent, now, n), [replayed!, ...others].map((k) => key(k)))).toBe('recorded');
        const second = rows(agent, now, n);
        expect(await appendIfHead(stores[0], agent, now, second, fresh(n).map((k) => key(k)))).toBe('written');
        expect((await chainOf(agent)).head).toEqual({ seq: 2 * n + 1, hash: second.at(-1)!.hash });
      } finally {
        await stores[1].query(`ALTER TABLE receipts DROP COLUMN ${column}`);
      }
    });

    it(`${n} receipts: a key recorded and expired, its row kept, refuses the statement (the locked path takes it over); two keys on one receipt and none on another count as one each`, async () => {
      const { agent, head } = await headed();
      const ks = fresh(n);
      // Recorded, then expired (its row kept): the statement spends nothing and leaves the key to
      // the locked path (recordEachOnce); once the row is gone, the group is written whole.
      await stores[0].query(`INSERT INTO oidc_models (model, id, payload, expires_at) VALUES ($1, $2, '{}'::jsonb, now() - interval '1 minute')`, [NS, ks[0]]);
      expect(await appendIfHead(stores[1], agent, head, rows(agent, head, n), ks.map((k) => key(k, 90.2)))).toBe('recorded');
      expect(await spent(ks.slice(1))).toEqual([]);
      await stores[0].query('DELETE FROM oidc_models WHERE model = $1 AND id = $2', [NS, ks[0]]);
      const group = rows(agent, head, n);
      expect(await appendIfHead(stores[1], agent, head, group, ks.map((k) => key(k, 90.2)))).toBe('written');
      const ttl = await stores[0].query<{ ok: boolean }>(`SELECT expires_at > now() + interval '80 seconds' AS ok FROM oidc_models WHERE model = $1 AND id = ANY($2::text[])`, [NS, ks]);
      expect(ttl.map((r) => r.ok)).toEqual(ks.map(() => true));
      // As many keys as receipts, not one per receipt (the writer passes the group's keys flat): all or nothing still.
      const now = { seq: n + 1, hash: group.at(-1)!.hash };
      const more = fresh(n);
      expect(await appendIfHead(stores[0], agent, now, rows(agent, now, n), [...more.slice(1), key(ks[1]!).key].map((k) => key(k)))).toBe('recorded');
      expect(await spent(more)).toEqual([]);
      expect(await appendIfHead(stores[0], agent, now, rows(agent, now, n), more.map((k) => key(k)))).toBe('written');
      expect((await chainOf(agent)).seqs).toEqual(Array.from({ length: 2 * n + 1 }, (_, i) => i + 1));
    });
  }
});

const input = (agent: string, n: number): ReceiptInput => ({ agent, chain: [agent], event: 'gateway_call', action: 'invoke', resource: `https://api.example.com/items/${n}`, decision: 'permit' });

/** `inner`, except that its receipt statements fail with `failure()` (before reaching the database) while it returns one. */
function failing(inner: Store, failure: () => { code: string } | undefined): Store {
  const query: Store['query'] = async (sql, params, options) => {
    const f = sql.includes('INSERT INTO receipts') ? failure() : undefined;
    if (f) throw Object.assign(new Error(`injected ${f.code}`), f);
    return inner.query(sql, params, options);
  };
  return new Proxy(inner, { get: (t, p) => (p === 'query' ? query : Reflect.get(t, p, t)) });
}

/** The exported chain of `agent` verified offline; returns its receipts' resources in order. */
async function verified(agent: string): Promise<string[]> {
  const reader = new ReceiptService({ store: stores[0], issuer: 'https://deputy.example.com', key: signing });
  let text = '';
  const resources: string[] = [];
  for await (const r of reader.range(agent, 1, Number.MAX_SAFE_INTEGER)) {
    text += formatLine(r);
    resources.push(JSON.parse(Buffer.from(r.jws.split('.')[1]!, 'base64url').toString()).resource as string);
  }
  const report = await verifyReceipts(text, { keys: [toPublicJwk(signing.jwk)] });
  expect(report.ok, JSON.stringify(report.problems)).toBe(true);
  return resources;
}

const service = (store: Store, maxBatch = 8) => new ReceiptService({ store, issuer: 'https://deputy.example.com', key: signing, maxBatch });
const outcome = (s: PromiseSettledResult<AppendedReceipt>) => (s.status === 'fulfilled' ? s.value.claims.resource : String((s.reason as { code?: string }).code ?? s.reason));

describe('the receipt service writing groups of 2–8 (two instances on one database)', () => {
  it('a group of eight with a replay and a forged proof in it: only those two refused, with their own errors; the rest written in call order', async () => {
    const agent = `svc-${randomUUID()}`;
    const s = service(stores[0]);
    const replayed = randomUUID();
    await s.appendOnce(input(agent, 0), key(replayed));
    const forged = Promise.reject(new Error('DPoP proof signature is invalid'));
    forged.catch(() => {});
    const hold = s.append(input(agent, 1));
    const calls = Array.from({ length: 8 }, (_, i) => {
      const n = i + 2;
      if (i === 3) return s.appendOnce(input(agent, n), key(replayed));
      if (i === 5) return s.appendOnce(input(agent, n), key(randomUUID()), forged);
      return s.appendOnce(input(agent, n), key(randomUUID()), Promise.resolve());
    });
    const settled = await Promise.allSettled(calls);
    await hold;
    const names = settled.map(outcome);
    expect(names[3]).toBe('ERR_ALREADY_RECORDED');
    expect((settled[3] as PromiseRejectedResult).reason).toBeInstanceOf(AlreadyRecorded);
    expect(names[5]).toBe('Error: DPoP proof signature is invalid');
    const written = names.filter((_, i) => i !== 3 && i !== 5);
    expect(written).toEqual([2, 3, 4, 6, 8, 9].map((n) => `https://api.example.com/items/${n}`));
    expect(await verified(agent)).toEqual([0, 1, 2, 3, 4, 6, 8, 9].map((n) => `https://api.example.com/items/${n}`));
  });

  it('two keys on one append and none on the other (a group of two, two keys): a replay of one of them refuses that append alone, with its own error', async () => {
    const agent = `two-keys-${randomUUID()}`;
    const s = service(stores[0]);
    const [a, b, c, d] = fresh(4);
    const refused = new Error('the attested writes were refused');
    const replayed = new Error('the key was replayed');
    // Its rows refused too: the replay's own error wins (as when the keys were recorded first; test/unit/write-alone-replay-first.test.ts).
    const withKeys = (ks: string[]) => ({
      once: ks.map((k) => key(k)),
      parts: [],
      async inTransaction() {
        throw refused;
      },
      replayed: () => replayed,
    });
    await s.append(input(agent, 0));
    const hold = s.append(input(agent, 1));
    const first = await Promise.all([s.appendWith(input(agent, 2), withKeys([a!, b!])), s.append(input(agent, 3))]);
    await hold;
    expect(first.map((r) => r.seq)).toEqual([3, 4]);
    expect(await spent([a!, b!])).toEqual([a!, b!].sort());
    const hold2 = s.append(input(agent, 4));
    const second = await Promise.allSettled([s.appendWith(input(agent, 5), withKeys([c!, b!])), s.append(input(agent, 6))]);
    await hold2;
    expect(second[0]).toMatchObject({ status: 'rejected', reason: replayed });
    expect(second[1]).toMatchObject({ status: 'fulfilled', value: { seq: 6 } });
    expect(await spent([c!, d!])).toEqual([]);
    expect(await verified(agent)).toEqual([0, 1, 2, 3, 4, 6].map((n) => `https://api.example.com/items/${n}`));
  });

  for (const code of ['40001', '40P01']) {
    it(`a group statement the server aborts for a conflict (${code}) committed nothing: the locked path (which retries a conflict) writes each append once, in order`, async () => {
      const agent = `conflict-${code}-${randomUUID()}`;
      let fail = false;
      const s = service(failing(stores[0], () => (fail ? { code } : undefined)));
      await s.append(input(agent, 0));
      const ks = fresh(5);
      fail = true;
      const settled = await Promise.allSettled(ks.map((k, i) => s.appendOnce(input(agent, i + 1), key(k))));
      fail = false;
      expect(settled.map(outcome)).toEqual(ks.map((_, i) => `https://api.example.com/items/${i + 1}`));
      expect(await spent(ks)).toEqual([...ks].sort());
      expect(await verified(agent)).toEqual([0, 1, 2, 3, 4, 5].map((n) => `https://api.example.com/items/${n}`));
    });
  }

  for (const code of ['ECONNRESET']) {
    it(`a group statement that fails (${code}) rejects every append of its group with the store's error, writes nothing, and the next group follows`, async () => {
      const agent = `fail-${code}-${randomUUID()}`;
      let fail = false;
      const s = service(failing(stores[0], () => (fail ? { code } : undefined)));
      await s.append(input(agent, 0));
      const ks = fresh(5);
      fail = true;
      const settled = await Promise.allSettled(ks.map((k, i) => s.appendOnce(input(agent, i + 1), key(k))));
      expect(settled.map(outcome)).toEqual(ks.map(() => code));
      expect(await spent(ks)).toEqual([]);
      fail = false;
      const after = await Promise.all([6, 7, 8].map((n) => s.appendOnce(input(agent, n), key(randomUUID()))));
      expect(after.map((r) => r.seq)).toEqual([2, 3, 4]);
      expect(await verified(agent)).toEqual([0, 6, 7, 8].map((n) => `https://api.example.com/items/${n}`));
    });
  }

  it('two instances appending bursts of 1–9 once-keyed and plain appends to one agent make one chain that verifies; every key spent once', async () => {
    const agent = `two-${randomUUID()}`;
    const services = [service(stores[0]), service(stores[1])];
    const shared = fresh(6);
    const calls: Array<{ resource: string; kind: 'once' | 'plain' | 'shared'; shared?: string; done: Promise<AppendedReceipt> }> = [];
    let n = 0;
    for (let burst = 0; burst < 24; burst++) {
      const size = (burst % 9) + 1;
      const keyed = burst % 3 !== 2;
      for (let i = 0; i < size; i++) {
        const s = services[(burst + i) % 2]!;
        const m = n++;
        const resource = `https://api.example.com/items/${m}`;
        // A key sent to both instances (a replayed proof): spent by one append at most.
        const again = shared[burst % shared.length]!;
        if (keyed && i === 0 && burst % 4 === 0) calls.push({ resource, kind: 'shared', shared: again, done: s.appendOnce(input(agent, m), key(again)) });
        else calls.push({ resource, kind: keyed ? 'once' : 'plain', done: keyed ? s.appendOnce(input(agent, m), key(randomUUID())) : s.append(input(agent, m)) });
      }
      if (burst % 2 === 1) await new Promise((r) => setImmediate(r));
    }
    const settled = await Promise.allSettled(calls.map((c) => c.done));
    for (const s of services) await s.flush();
    const chain = await verified(agent);
    const resolved = calls.filter((_, i) => settled[i]!.status === 'fulfilled').map((c) => c.resource);
    expect([...chain].sort()).toEqual([...resolved].sort());
    settled.forEach((s, i) => {
      if (s.status === 'rejected') {
        expect(calls[i]!.kind).toBe('shared');
        expect(s.reason).toBeInstanceOf(AlreadyRecorded);
      }
    });
    // Each shared key was spent by exactly one append.
    const used = new Set(calls.flatMap((c) => (c.shared ? [c.shared] : [])));
    expect(used.size).toBeLessThan(calls.filter((c) => c.kind === 'shared').length);
    expect(calls.filter((c, i) => c.kind === 'shared' && settled[i]!.status === 'fulfilled')).toHaveLength(used.size);
  }, 60_000);
});
