/**
 * Red team (issue 16, seventh round): the chain writer signs the next group while the statement
 * before it is in flight (src/audit/receipts.ts `#presignNext`). Whatever becomes of that
 * statement — a store outage before it reaches the database, one after it committed, a replayed
 * once-key, a `ready` that rejects, another instance moving the head — no receipt signed over a
 * head that never existed is written, none is lost or duplicated, `seq` follows the calls' order,
 * and the chain verifies end to end. On PGlite (the writer's logic; the head check itself is the
 * same statement on both stores).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReceiptInput } from '../../src/audit/receipt.js';
import { AlreadyRecorded, ReceiptService, type AppendedReceipt } from '../../src/audit/receipts.js';
import { verifyReceipts } from '../../src/audit/verify.js';
import { formatLine } from '../../src/audit/jsonl.js';
import { generateSigningKey, toPublicJwk } from '../../src/keys/keystore.js';
import { migrate, type Store } from '../../src/store/index.js';
import { createPGliteStore } from '../../src/store/pglite.js';

let store: Store;
let key: Awaited<ReturnType<typeof generateSigningKey>>;
let jwks: { keys: ReturnType<typeof toPublicJwk>[] };

beforeAll(async () => {
  store = await createPGliteStore({ dataDir: 'memory://' });
  await migrate(store);
  key = await generateSigningKey('EdDSA');
  jwks = { keys: [toPublicJwk(key.jwk)] };
});
afterAll(() => store?.close());

const input = (agent: string, n: number): ReceiptInput => ({
  agent, chain: [agent], event: 'gateway_call', action: 'invoke', resource: `https://api.example.com/items/${n}`, decision: 'permit',
});
const once = (k: string) => ({ namespace: 'DPoPProof', key: k, ttlSeconds: 300 });

type Fate = 'hold' | 'lost-before' | 'lost-after';

/**
 * `store`, except that the first receipt statement waits for `release()` (so that appends queue
 * and are signed ahead behind it), then — by `fate` — runs, or fails as a lost connection before
 * reaching the database, or after committing (the client never hears back).
 */
function firstStatement(inner: Store, fate: Fate): { store: Store; issued: Promise<void>; release: () => void } {
  let release!: () => void;
  let issue!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const issued = new Promise<void>((r) => (issue = r));
  let seen = false;
  const lost = () => Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' });
  const query: Store['query'] = async (sql, params, options) => {
    if (seen || !sql.includes('INSERT INTO receipts')) return inner.query(sql, params, options);
    seen = true;
    issue();
    await gate;
    if (fate === 'hold') return inner.query(sql, params, options);
    if (fate === 'lost-after') await inner.query(sql, params, options);
    throw lost();
  };
  return { store: new Proxy(inner, { get: (t, p) => (p === 'query' ? query : Reflect.get(t, p, t)) }), issued, release };
}

/** The agent's chain as stored: verified offline, `seq` 1..n without gap or duplicate. */
async function chainOf(service: ReceiptService, agent: string): Promise<AppendedReceipt['seq'][]> {
  let text = '';
  const seqs: number[] = [];
  for await (const r of service.range(agent, 1, Number.MAX_SAFE_INTEGER)) {
    text += formatLine(r);
    seqs.push(r.seq);
  }
  const report = await verifyReceipts(text, jwks);
  expect(report.ok, JSON.stringify(report.problems)).toBe(true);
  expect(seqs).toEqual(seqs.map((_, i) => i + 1));
  return seqs;
}

/** One append held in flight, then `behind` queued (and signed ahead) behind it; returns both outcomes. */
async function behindHeld(agent: string, fate: Fate, behind: (s: ReceiptService) => Array<Promise<AppendedReceipt>>) {
  const held = firstStatement(store, fate);
  const service = new ReceiptService({ store: held.store, issuer: 'https://deputy.example.com', key, maxBatch: 7 });
  const first = service.append(input(agent, 0));
  await held.issued;
  const rest = behind(service);
  held.release();
  const [f, ...r] = await Promise.allSettled([first, ...rest]);
  await service.flush();
  return { service, first: f!, rest: r };
}

describe('the chain writer\'s receipts signed ahead', () => {
  it('a store outage before the in-flight statement reached the database: it is refused, and the group signed ahead over its head is signed again', async () => {
    const { service, first, rest } = await behindHeld('lost-before', 'lost-before', (s) => [1, 2, 3].map((n) => s.append(input('lost-before', n))));
    expect(first.status).toBe('rejected');
    const written = rest.map((r) => (r.status === 'fulfilled' ? r.value : undefined));
    expect(written.map((r) => r?.seq)).toEqual([1, 2, 3]);
    expect(written[0]!.claims.resource).toBe('https://api.example.com/items/1');
    expect(await chainOf(service, 'lost-before')).toEqual([1, 2, 3]);
  });

  it('a store outage after the in-flight statement committed: its receipt stays, the group signed ahead follows it, no seq twice', async () => {
    const { service, first, rest } = await behindHeld('lost-after', 'lost-after', (s) => [1, 2, 3].map((n) => s.append(input('lost-after', n))));
    expect(first.status).toBe('rejected');
    expect(rest.map((r) => (r.status === 'fulfilled' ? r.value.seq : r.reason))).toEqual([2, 3, 4]);
    expect(await chainOf(service, 'lost-after')).toEqual([1, 2, 3, 4]);
  });

  it('a replay of a once-key the in-flight statement spends, signed ahead with fresh appends: refused alone, the others written in order', async () => {
    const { service, rest } = await behindHeld('replayed', 'hold', (s) => [
      s.appendOnce(input('replayed', 1), once('presign-k1')),
      s.appendOnce(input('replayed', 2), once('presign-k1')),
      s.appendOnce(input('replayed', 3), once('presign-k3')),
    ]);
    expect(rest[0]).toMatchObject({ status: 'fulfilled', value: { seq: 2 } });
    expect(rest[1]!.status === 'rejected' && rest[1]!.reason).toBeInstanceOf(AlreadyRecorded);
    expect(rest[2]).toMatchObject({ status: 'fulfilled', value: { seq: 3 } });
    // Spent before it is signed ahead: the in-flight group's own key, replayed behind it.
    const again = await behindHeld('replayed', 'hold', (s) => [s.appendOnce(input('replayed', 4), once('presign-k3')), s.append(input('replayed', 5))]);
    expect(again.rest[0]!.status === 'rejected' && again.rest[0]!.reason).toBeInstanceOf(AlreadyRecorded);
    expect(again.rest[1]).toMatchObject({ status: 'fulfilled', value: { seq: 5 } });
    expect(await chainOf(service, 'replayed')).toEqual([1, 2, 3, 4, 5]);
  });

  it('an append signed ahead whose `ready` rejects (a forged proof): refused with its error, the others written, the chain unbroken', async () => {
    const forged = new Error('DPoP proof signature is invalid');
    const never = Promise.reject(forged);
    never.catch(() => {});
    const { service, first, rest } = await behindHeld('forged', 'hold', (s) => [
      s.appendOnce(input('forged', 1), once('forged-a')),
      s.appendOnce(input('forged', 2), once('forged-b'), never),
      s.appendOnce(input('forged', 3), once('forged-c'), Promise.resolve()),
    ]);
    expect(first).toMatchObject({ status: 'fulfilled', value: { seq: 1 } });
    expect(rest.map((r) => (r.status === 'fulfilled' ? r.value.seq : r.reason))).toEqual([2, forged, 3]);
    const spent = await store.query<{ id: string }>("SELECT id FROM oidc_models WHERE model = 'DPoPProof' AND id LIKE 'forged-%' ORDER BY id");
    expect(spent.map((r) => r.id)).toEqual(['forged-a', 'forged-c']);
    expect(await chainOf(service, 'forged')).toEqual([1, 2, 3]);
  });
});
