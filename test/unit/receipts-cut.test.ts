/**
 * The chain writer's cut on PostgreSQL (issue 16, eleventh round; src/audit/receipts.ts
 * `#cutSigned`): when a group's statement could be sent and at least two of the receipts signed
 * ahead for it are signed, those go out at once and the appends whose signatures are still in
 * progress are carried over to the next group; with fewer signed the group waits for all, as
 * before. The receipts carried over name the cut group's last receipt, so the chain stays one
 * gap-free hash chain in call order — under signatures that finish late and out of step with the
 * statements, refusals, and two instances on one PostgreSQL. Both stores (on PGlite the writer is
 * told the store is PostgreSQL: the cut is the writer's logic; PGlite itself never cuts).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ReceiptInput } from '../../src/audit/receipt.js';
import { ReceiptService, type AppendedReceipt } from '../../src/audit/receipts.js';
import { verifyReceipts } from '../../src/audit/verify.js';
import { formatLine } from '../../src/audit/jsonl.js';
import { generateSigningKey, toPublicJwk } from '../../src/keys/keystore.js';
import type { Store } from '../../src/store/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { twoInstanceStores } from '../support/two-instances.js';

let db: TestDatabase;
/** Two instances' stores on PostgreSQL; one store twice on PGlite. */
let stores: Store[];
let key: Awaited<ReturnType<typeof generateSigningKey>>;
/** The second instance's receipt key: ES256, so that its signatures are told apart from the first's (EdDSA). */
let key2: Awaited<ReturnType<typeof generateSigningKey>>;
let jwks: { keys: ReturnType<typeof toPublicJwk>[] };

beforeAll(async () => {
  db = await createTestDatabase();
  stores = await twoInstanceStores(db);
  key = await generateSigningKey('EdDSA');
  key2 = await generateSigningKey('ES256');
  jwks = { keys: [toPublicJwk(key.jwk), toPublicJwk(key2.jwk)] };
}, 60_000);
afterAll(async () => {
  for (const s of new Set(stores)) await s.close();
  await db?.drop();
});

const input = (agent: string, n: number): ReceiptInput => ({
  agent, chain: [agent], event: 'gateway_call', action: 'invoke', resource: `https://api.example.com/${agent}/${n}`, decision: 'permit',
});

/** A deterministic pseudo-random sequence (mulberry32), so that a failing run replays. */
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
 * `inner` seen as PostgreSQL (the store where the writer cuts), its receipt statements logged in
 * `log` as they are sent and answered, the first one held until `release()` and each delayed by
 * `delayMs()` (a round trip and a WAL flush).
 */
function watched(inner: Store, log: string[], delayMs: () => number = () => 0): { store: Store; issued: Promise<void>; release: () => void } {
  let release!: () => void;
  let issue!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const issued = new Promise<void>((r) => (issue = r));
  let first = true;
  const query: Store['query'] = async (sql, params, options) => {
    if (!sql.includes('INSERT INTO receipts')) return inner.query(sql, params, options);
    log.push('statement');
    if (first) {
      first = false;
      issue();
      await gate;
    }
    const ms = delayMs();
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
    try {
      return await inner.query(sql, params, options);
    } finally {
      log.push('answered');
    }
  };
  const store = new Proxy(inner, { get: (t, p) => (p === 'query' ? query : p === 'kind' ? 'postgres' : Reflect.get(t, p, t)) });
  return { store, issued, release };
}

/**
 * Holds the `n`th receipt signature from now (1-based) until `release()`; the others run at once.
 * Returns also how many signatures have completed.
 */
function holdSignature(n: number): { release: () => void; done: () => number; restore: () => void } {
  const sign = crypto.subtle.sign.bind(crypto.subtle);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let calls = 0;
  let completed = 0;
  const spy = vi.spyOn(crypto.subtle, 'sign').mockImplementation(async (...args: Parameters<typeof crypto.subtle.sign>) => {
    calls += 1;
    if (calls === n) await gate;
    const out = await sign(args[0], args[1], args[2]);
    completed += 1;
    return out;
  });
  return { release, done: () => completed, restore: () => spy.mockRestore() };
}

/** The `prev` claim of a JWS signing input (`header.payload`). */
function prevOf(input: string): string | undefined {
  const payload = input.split('.')[1] ?? '';
  const prev = (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { prev?: unknown }).prev;
  return typeof prev === 'string' ? prev : undefined;
}

async function exported(service: ReceiptService, agent: string): Promise<string> {
  let text = '';
  for await (const r of service.range(agent, 1, Number.MAX_SAFE_INTEGER, 50)) text += formatLine(r);
  return text;
}

/** Every receipt links to the one before it, `seq` 1…n without a gap, and the chain verifies offline. */
async function expectOneChain(service: ReceiptService, agent: string, written: readonly AppendedReceipt[]): Promise<void> {
  const bySeq = [...written].sort((a, b) => a.seq - b.seq);
  expect(bySeq.map((r) => r.seq)).toEqual(bySeq.map((_, i) => i + 1));
  for (let i = 1; i < bySeq.length; i++) expect(bySeq[i]!.prev).toBe(bySeq[i - 1]!.hash);
  const text = await exported(service, agent);
  expect(text.trim().split('\n')).toHaveLength(written.length);
  expect((await verifyReceipts(text, jwks)).ok).toBe(true);
}

describe('the chain writer cuts a group once two of its receipts are signed (PostgreSQL)', () => {
  it('sends the two signed while a later signature is still in progress; the rest follow, carried over, on one chain', async () => {
    const agent = `cut-${Math.random()}`;
    const log: string[] = [];
    const held = watched(stores[0]!, log);
    const writer = new ReceiptService({ store: held.store, issuer: 'https://deputy.example.com', key, maxBatch: 10 });
    const first = writer.append(input(agent, 1));
    await held.issued;
    // Signed ahead behind the held statement: the 1st and 2nd at once, the 3rd held, the 4th after it.
    const sig = holdSignature(3);
    try {
      const rest = [2, 3, 4, 5].map((n) => writer.append(input(agent, n)));
      await vi.waitFor(() => expect(sig.done()).toBe(2), { timeout: 10_000 });
      held.release();
      // Before this round the second statement waited for the held signature: this timed out.
      const [two, three] = await Promise.race([
        Promise.all(rest.slice(0, 2)),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the signed receipts waited for the held signature')), 5_000)),
      ]);
      expect([two!.seq, three!.seq]).toEqual([2, 3]);
      expect(log).toEqual(['statement', 'answered', 'statement', 'answered']);
      sig.release();
      const written = await Promise.all([first, ...rest]);
      expect(written.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
      expect(written[3]!.prev).toBe(written[2]!.hash);
      await expectOneChain(writer, agent, written);
    } finally {
      sig.release();
      sig.restore();
      held.release();
    }
  });

  it('with only one signed, the group waits for a second (no statement of one while others are being signed)', async () => {
    const agent = `floor-${Math.random()}`;
    const log: string[] = [];
    const held = watched(stores[0]!, log);
    const writer = new ReceiptService({ store: held.store, issuer: 'https://deputy.example.com', key, maxBatch: 10 });
    const first = writer.append(input(agent, 1));
    await held.issued;
    const sig = holdSignature(2);
    try {
      const rest = [2, 3, 4].map((n) => writer.append(input(agent, n)));
      await vi.waitFor(() => expect(sig.done()).toBe(1), { timeout: 10_000 });
      held.release();
      await first;
      await new Promise((r) => setTimeout(r, 100));
      // The group's first receipt is signed, its second held: no statement for the one alone.
      expect(log).toEqual(['statement', 'answered']);
      sig.release();
      const written = await Promise.all([first, ...rest]);
      // Then cut once two are signed (the third may still be in progress): at most two more statements.
      expect(log.filter((e) => e === 'statement').length).toBeLessThanOrEqual(3);
      await expectOneChain(writer, agent, written);
    } finally {
      sig.release();
      sig.restore();
      held.release();
    }
  });

  it('closed-loop appenders on two instances, signatures finishing late at random, statements of random latency and refusals: every accepted append once, one gap-free chain, and cuts happened', async () => {
    const agent = `storm-${Math.random()}`;
    const rnd = random(20261130);
    const log: string[] = [];
    const instances = stores.map((s) => watched(s, log, () => Math.floor(rnd() * 6)));
    for (const i of instances) i.release();
    const keys = [key, key2];
    const sign = crypto.subtle.sign.bind(crypto.subtle);
    // Some signatures finish late (those after them in the chain wait). Per instance (told apart
    // by its key's algorithm), the `prev` of each receipt being signed.
    const signing = [new Set<string>(), new Set<string>()];
    let cuts = 0;
    const spy = vi.spyOn(crypto.subtle, 'sign').mockImplementation(async (...args: Parameters<typeof crypto.subtle.sign>) => {
      const alg = args[0] as { name?: string } | string;
      const w = (typeof alg === 'string' ? alg : alg.name) === 'ECDSA' ? 1 : 0;
      const prev = prevOf(Buffer.from(args[2] as Uint8Array).toString('latin1'));
      if (prev !== undefined) signing[w]!.add(prev);
      try {
        if (rnd() < 0.35) await new Promise((r) => setTimeout(r, 1 + Math.floor(rnd() * 8)));
        return await sign(args[0], args[1], args[2]);
      } finally {
        if (prev !== undefined) signing[w]!.delete(prev);
      }
    });
    const countCuts = (s: Store, w: number): Store => {
      const query: Store['query'] = (sql, params, options) => {
        // A cut: a group statement sent while its instance is signing the receipt after its last
        // one (whose `prev` is the last one's hash: `$3` of every receipt statement). Before this
        // round a group's statement was sent once all of it was signed, and the receipts after
        // it were signed ahead only from its send on.
        if (sql.includes('INSERT INTO receipts') && signing[w]!.has(String(params?.[2]))) cuts += 1;
        return s.query(sql, params, options);
      };
      return new Proxy(s, { get: (t, p) => (p === 'query' ? query : Reflect.get(t, p, t)) });
    };
    const counted = instances.map((i, w) => new ReceiptService({ store: countCuts(i.store, w), issuer: 'https://deputy.example.com', key: keys[w]!, maxBatch: 6 }));
    try {
      const accepted: Array<{ n: number; receipt: AppendedReceipt }> = [];
      const refused: number[] = [];
      let next = 0;
      const loop = async (w: number) => {
        for (let k = 0; k < 30; k++) {
          const n = next++;
          const service = counted[w]!;
          const forged = rnd() < 0.15;
          const ready = forged ? new Promise((_, reject) => setTimeout(() => reject(new Error(`forged ${n}`)), Math.floor(rnd() * 6))) : undefined;
          ready?.catch(() => {});
          try {
            const receipt = await service.appendOnce(input(agent, n), { namespace: 'CutKey', key: `${agent}-${n}`, ttlSeconds: 300 }, ready);
            accepted.push({ n, receipt });
          } catch (err) {
            expect(forged).toBe(true);
            expect((err as Error).message).toBe(`forged ${n}`);
            refused.push(n);
          }
        }
      };
      await Promise.all(Array.from({ length: 8 }, (_, i) => loop(i % counted.length)));
      for (const w of counted) await w.flush();
      expect(accepted.length + refused.length).toBe(240);
      // Each instance keeps call order within itself: its accepted appends' seqs rise with their start.
      await expectOneChain(counted[0]!, agent, accepted.map((a) => a.receipt));
      expect(new Set(accepted.map((a) => a.receipt.id)).size).toBe(accepted.length);
      expect(cuts).toBeGreaterThan(0);
    } finally {
      spy.mockRestore();
    }
  }, 60_000);
});
