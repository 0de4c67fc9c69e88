/**
 * The receipt service on an embedded database: append order, transactions that roll back,
 * input checks, request digests. (Concurrency across connections and instances is in
 * test/features/receipts.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { canonicalJson, requestDigest } from '../../src/audit/digest.js';
import { InvalidRequest } from '../../src/errors/index.js';
import { genesisHash, type ReceiptInput } from '../../src/audit/receipt.js';
import { AlreadyRecorded, ReceiptService } from '../../src/audit/receipts.js';
import { verifyReceipts } from '../../src/audit/verify.js';
import { formatLine } from '../../src/audit/jsonl.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeProtectedHeader } from 'jose';
import { generateSigningKey, KeyError, loadKeyStore, RECEIPT_KEYS_FILE, rotateReceiptKeys, toPublicJwk } from '../../src/keys/keystore.js';
import { migrate, type Store } from '../../src/store/index.js';
import { createPGliteStore } from '../../src/store/pglite.js';
import type { OnceKey } from '../../src/oauth/adapter.js';
import { gatewayReceiptInput } from '../support/receipt-crossing.js';

let store: Store;
let service: ReceiptService;
let jwks: { keys: ReturnType<typeof toPublicJwk>[] };
let signingKey: Awaited<ReturnType<typeof generateSigningKey>>;

beforeAll(async () => {
  store = await createPGliteStore({ dataDir: 'memory://' });
  await migrate(store);
  const key = await generateSigningKey('EdDSA');
  signingKey = key;
  jwks = { keys: [toPublicJwk(key.jwk)] };
  service = new ReceiptService({ store, issuer: 'https://deputy.example.com', key, maxBatch: 7, now: () => 1_800_000_000_000 });
});
afterAll(() => store?.close());

const input = gatewayReceiptInput;

/**
 * `store`, except that the first receipt append (`INSERT INTO receipts`) waits for `release()`
 * before it reaches the database; `issued` resolves once it was sent.
 */
function holdFirstAppend(inner: Store): { store: Store; issued: Promise<void>; release: () => void } {
  let release!: () => void;
  let issue!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const issued = new Promise<void>((r) => (issue = r));
  let held = false;
  const query: Store['query'] = async (sql, params, options) => {
    if (!held && sql.includes('INSERT INTO receipts')) {
      held = true;
      issue();
      await gate;
    }
    return inner.query(sql, params, options);
  };
  const store = new Proxy(inner, { get: (target, prop) => (prop === 'query' ? query : Reflect.get(target, prop, target)) });
  return { store, issued, release };
}

async function exported(agent: string): Promise<string> {
  let text = '';
  for await (const r of service.range(agent, 1, Number.MAX_SAFE_INTEGER, 4)) text += formatLine(r);
  return text;
}

describe('ReceiptService', () => {
  it('gives one agent\'s concurrent appends seqs in call order, in groups, on one chain', async () => {
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => service.append(input('ordered', i))));
    expect(results.map((r) => r.seq)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(results.map((r) => r.claims.resource)).toEqual(Array.from({ length: 30 }, (_, i) => `https://api.example.com/items/${i}`));
    expect(results[0]!.prev).toBe(genesisHash('ordered'));
    results.slice(1).forEach((r, i) => expect(r.prev).toBe(results[i]!.hash));
    expect(results[0]!.claims).toMatchObject({ iss: 'https://deputy.example.com', iat: 1_800_000_000, policies: [] });
    expect(await service.head('ordered')).toEqual({ seq: 30, hash: results[29]!.hash });
    // Paging through `range` (page size 4) returns the same chain, which verifies.
    const report = await verifyReceipts(await exported('ordered'), jwks);
    expect(report).toMatchObject({ ok: true, chains: [{ agent: 'ordered', first: 1, last: 30 }] });
  });

  it('an append inside a transaction that rolls back leaves no receipt and no gap', async () => {
    const first = await service.append(input('tx', 1));
    await expect(
      store.transaction(async (tx) => {
        const r = await service.append(input('tx', 2), tx);
        expect(r.seq).toBe(2);
        throw new Error('the exchange failed after its receipt');
      }),
    ).rejects.toThrow('the exchange failed');
    const next = await store.transaction((tx) => service.append(input('tx', 3), tx));
    expect(next).toMatchObject({ seq: 2, prev: first.hash });
    expect((await verifyReceipts(await exported('tx'), jwks)).ok).toBe(true);
  });

  it('appendOnce with `ready` (the gateway proof signature): nothing is written before it resolves; one that rejects writes nothing, records no key, and its group is written without it', async () => {
    const once = (key: string) => ({ namespace: 'DPoPProof', key, ttlSeconds: 300 });
    let verify!: () => void;
    const verifying = new Promise<void>((resolve) => (verify = resolve));
    const forged = Promise.reject(new Error('DPoP proof signature is invalid'));
    forged.catch(() => {});
    const waiting = service.appendOnce(input('gated', 1), once('g1'), verifying);
    await new Promise((r) => setTimeout(r, 20));
    expect(await service.head('gated')).toBeUndefined();
    verify();
    expect((await waiting).seq).toBe(1);
    // A group of three with the forged one in the middle: it is refused with its own error.
    const hold = service.append(input('gated', 2));
    const settled = await Promise.allSettled([
      service.appendOnce(input('gated', 3), once('g3'), Promise.resolve()),
      service.appendOnce(input('gated', 4), once('g4'), forged),
      service.appendOnce(input('gated', 5), once('g5')),
    ]);
    await hold;
    expect(settled.map((x) => (x.status === 'fulfilled' ? x.value.claims.resource : (x.reason as Error).message))).toEqual([
      'https://api.example.com/items/3', 'DPoP proof signature is invalid', 'https://api.example.com/items/5',
    ]);
    const keys = await store.query<{ id: string }>("SELECT id FROM oidc_models WHERE model = 'DPoPProof' AND id = ANY($1::text[]) ORDER BY id", [['g1', 'g3', 'g4', 'g5']]);
    expect(keys.map((k) => k.id)).toEqual(['g1', 'g3', 'g5']);
    expect(await verifyReceipts(await exported('gated'), jwks)).toMatchObject({ ok: true, chains: [{ agent: 'gated', first: 1, last: 4 }] });
  });

  it('appendOnce: the key and the receipt are written together; a key seen before (or twice in one group) writes nothing and leaves no gap', async () => {
    const once = (key: string) => ({ namespace: 'DPoPProof', key, ttlSeconds: 300 });
    // A first append holds the writer, so the next four queue up as one group: two of them share
    // a key, a third has its own; only the first of the pair is written.
    const first = service.append(input('once', 0));
    const settled = await Promise.allSettled([
      service.appendOnce(input('once', 1), once('k1')),
      service.appendOnce(input('once', 2), once('k1')),
      service.appendOnce(input('once', 3), once('k2')),
      service.append(input('once', 4)),
    ]);
    expect((await first).seq).toBe(1);
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect((settled[1] as PromiseRejectedResult).reason).toBeInstanceOf(AlreadyRecorded);
    const written = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    expect(written.map((r) => [r.seq, r.claims.resource])).toEqual([[2, 'https://api.example.com/items/1'], [3, 'https://api.example.com/items/3'], [4, 'https://api.example.com/items/4']]);
    // A later group: the key recorded before is refused, whatever the receipt says.
    await expect(service.appendOnce(input('once', 5), once('k2'))).rejects.toBeInstanceOf(AlreadyRecorded);
    expect((await service.appendOnce(input('once', 6), once('k3'))).seq).toBe(5);
    const keys = await store.query<{ id: string }>("SELECT id FROM oidc_models WHERE model = 'DPoPProof' AND id = ANY($1::text[]) ORDER BY id", [['k1', 'k2', 'k3']]);
    expect(keys.map((k) => k.id)).toEqual(['k1', 'k2', 'k3']);
    expect(await verifyReceipts(await exported('once'), jwks)).toMatchObject({ ok: true, chains: [{ agent: 'once', first: 1, last: 5 }] });
  });

  it('appendWith: a group statement the server refused is decided per append; a lost connection is not retried (it may have committed)', async () => {
    let fail: { code: string } | undefined;
    let failures = 0;
    // The store as it is, except that a group statement with parts (`appendIfHead`) fails while `failures` last.
    const flaky = new Proxy(store, {
      get(target, name, receiver) {
        if (name !== 'query') return Reflect.get(target, name, receiver) as unknown;
        return async (sql: string, params?: unknown[]) => {
          if (fail && failures > 0 && sql.includes('WITH moved AS') && sql.includes('Probe')) {
            failures--;
            throw Object.assign(new Error('injected'), fail);
          }
          return target.query(sql, params);
        };
      },
    });
    const key = await generateSigningKey('EdDSA');
    const flakyService = new ReceiptService({ store: flaky, issuer: 'https://deputy.example.com', key });
    let alone = 0;
    const writes = () => ({ once: [], parts: [{ sql: () => 'INSERT INTO oidc_models (model, id, payload, expires_at) SELECT \'Probe\', gen_random_uuid()::text, \'{}\'::jsonb, now()', params: [] }], inTransaction: async () => { alone++; } });
    fail = { code: '08006' };
    failures = 10;
    const lost = await Promise.allSettled([1, 2, 3].map((n) => flakyService.appendWith(input('lost', n), writes())));
    expect(lost.map((s) => s.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(alone).toBe(0);
    expect(await flakyService.head('lost')).toBeUndefined();
    // One plain append first holds the writer, so the next three form one group; its statement fails once.
    fail = { code: '23505' };
    failures = 1;
    const first = flakyService.append(input('refused', 0));
    const refused = await Promise.allSettled([1, 2, 3].map((n) => flakyService.appendWith(input('refused', n), writes())));
    expect((await first).seq).toBe(1);
    expect(refused.map((s) => s.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
    expect(alone).toBe(3);
    expect(await verifyReceipts(await exported('refused'), { keys: [toPublicJwk(key.jwk)] })).toMatchObject({ ok: true, chains: [{ agent: 'refused', first: 1, last: 4 }] });
  });

  it('appendWith: a replayed once-key in a group is refused alone; the group\'s other appends are still written together', async () => {
    const key = (k: string) => ({ namespace: 'DPoPProof', key: k, ttlSeconds: 300 });
    const alone: string[] = [];
    // Each append's own transaction (the locked path) runs its `inTransaction` (its rows), then
    // records its keys and throws `replayed`'s error for a replay: what the token exchange hands it.
    const writes = (k: string) => ({
      once: [key(k)],
      parts: [],
      inTransaction: async () => {
        alone.push(k);
      },
      replayed: (o: OnceKey) => new Error(`replayed ${o.key}`),
    });
    expect((await service.appendWith(input('replays', 0), writes('r0'))).seq).toBe(1);
    // A plain append holds the writer, so the next four form one group; the second replays r0.
    const first = service.append(input('replays', 1));
    const settled = await Promise.allSettled(['r1', 'r0', 'r2', 'r3'].map((k, i) => service.appendWith(input('replays', i + 2), writes(k))));
    expect((await first).seq).toBe(2);
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(String((settled[1] as PromiseRejectedResult).reason)).toMatch(/replayed r0/);
    // Only the replay was decided in a transaction of its own; the three fresh ones shared one statement.
    expect(alone).toEqual(['r0']);
    expect(settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value.seq] : []))).toEqual([3, 4, 5]);
    expect(await verifyReceipts(await exported('replays'), jwks)).toMatchObject({ ok: true, chains: [{ agent: 'replays', first: 1, last: 5 }] });
  });

  it('appendWith: nothing is written before `ready` resolves; one that rejects writes nothing of its own and its group\'s others are written', async () => {
    const key = (k: string) => ({ namespace: 'DPoPProof', key: `ready-${k}`, ttlSeconds: 300 });
    const part = (id: string) => ({ sql: (first: number) => `INSERT INTO oidc_models (model, id, payload, expires_at) SELECT 'ReadyProbe', $${first}::text, '{}'::jsonb, now() + interval '5 minutes'`, params: [id] });
    const writes = (k: string, ready: Promise<unknown>) => ({ once: [key(k)], parts: [part(k)], inTransaction: async () => {}, ready });
    const rows = async (model: string, ids: string[]) =>
      (await store.query<{ n: number }>('SELECT count(*)::int AS n FROM oidc_models WHERE model = $1 AND id = ANY($2::text[])', [model, ids]))[0]!.n;
    let open!: (v: unknown) => void;
    const late = service.appendWith(input('ready', 1), writes('a', new Promise((resolve) => (open = resolve))));
    await new Promise((r) => setTimeout(r, 50));
    // Signed, maybe, but not written: the statement waits for `ready`.
    expect(await service.head('ready')).toBeUndefined();
    expect(await rows('ReadyProbe', ['a'])).toBe(0);
    open('signed');
    expect((await late).seq).toBe(1);
    expect(await rows('ReadyProbe', ['a'])).toBe(1);
    // A plain append holds the writer, so the next three form one group; the second is never ready.
    const first = service.append(input('ready', 2));
    const failed = new Error('the token failed to sign');
    const never = Promise.reject(failed);
    // The caller awaits its own `ready` too (the exchange: Promise.all), so its rejection is handled.
    never.catch(() => {});
    const settled = await Promise.allSettled([
      service.appendWith(input('ready', 3), writes('b', Promise.resolve())),
      service.appendWith(input('ready', 4), writes('c', never)),
      service.appendWith(input('ready', 5), writes('d', Promise.resolve())),
    ]);
    expect((await first).seq).toBe(2);
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((settled[1] as PromiseRejectedResult).reason).toBe(failed);
    expect(settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value.seq] : []))).toEqual([3, 4]);
    // The refused append's part and once-key were not written; the others' were.
    expect(await rows('ReadyProbe', ['b', 'c', 'd'])).toBe(2);
    expect(await rows('ReadyProbe', ['c'])).toBe(0);
    expect(await rows('DPoPProof', ['ready-c'])).toBe(0);
    expect(await rows('DPoPProof', ['ready-b', 'ready-d'])).toBe(2);
    expect(await verifyReceipts(await exported('ready'), jwks)).toMatchObject({ ok: true, chains: [{ agent: 'ready', first: 1, last: 4 }] });
  });

  it('refuses bad input before writing: wrong types, oversize values, anything shaped like a token', async () => {
    const jwt = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlc2lnbmF0dXJl';
    const bad: Array<[Partial<ReceiptInput>, RegExp]> = [
      [{ agent: '' }, /receipt agent must be a string/],
      [{ decision: 'allow' as 'permit' }, /decision must be "permit" or "deny"/],
      [{ event: 'other' as 'gateway_call' }, /receipt event must be one of/],
      [{ resource: 'x'.repeat(2049) }, /receipt resource must be a string of 1 to 2048/],
      [{ chain: 'a' as unknown as string[] }, /receipt chain must be an array/],
      [{ reason: `upstream said: Bearer ${jwt}` }, /receipt reason looks like a token/],
      [{ requestDigest: jwt }, /receipt requestDigest looks like a token/],
      [{ policies: [jwt] }, /receipt policies\[0\] looks like a token/],
    ];
    for (const [extra, message] of bad) {
      await expect(service.append(input('checked', 1, extra))).rejects.toThrow(message);
      await expect(service.append(input('checked', 1, extra))).rejects.toBeInstanceOf(TypeError);
      // Every append method rejects (never throws where it is called), writing nothing.
      await expect(service.appendOnce(input('checked', 1, extra), { namespace: 'DPoPProof', key: 'checked-bad', ttlSeconds: 300 })).rejects.toThrow(message);
      await expect(service.appendWith(input('checked', 1, extra), { once: [], parts: [], inTransaction: async () => {} })).rejects.toThrow(message);
    }
    expect(await service.head('checked')).toBeUndefined();
  });

  it('signs the next group while the statement before it is in flight, and writes it with those signatures', async () => {
    const held = holdFirstAppend(store);
    const signs = vi.spyOn(crypto.subtle, 'sign');
    try {
      const ahead = new ReceiptService({ store: held.store, issuer: 'https://deputy.example.com', key: signingKey, maxBatch: 7 });
      const first = ahead.append(input('ahead', 1));
      await held.issued;
      const rest = [ahead.append(input('ahead', 2)), ahead.append(input('ahead', 3))];
      // Before this round the next group was signed only after the statement returned: this waited in vain.
      await vi.waitFor(() => expect(signs).toHaveBeenCalledTimes(3), { timeout: 10_000 });
      held.release();
      const written = await Promise.all([first, ...rest]);
      expect(written.map((r) => r.seq)).toEqual([1, 2, 3]);
      expect(signs).toHaveBeenCalledTimes(3);
      expect((await verifyReceipts(await exported('ahead'), jwks)).ok).toBe(true);
    } finally {
      signs.mockRestore();
      held.release();
    }
  });

  it('on PostgreSQL, sends the next group\'s statement before the group written before it is settled (its callers continue after)', async () => {
    const held = holdFirstAppend(store);
    const events: string[] = [];
    const query: Store['query'] = (sql, params, options) => {
      if (sql.includes('INSERT INTO receipts')) events.push('statement');
      return held.store.query(sql, params, options);
    };
    // Seen as PostgreSQL, where the statement leaves the process (on PGlite the writer settles at once: nothing to send ahead).
    const watched = new Proxy(held.store, { get: (target, prop) => (prop === 'query' ? query : prop === 'kind' ? 'postgres' : Reflect.get(target, prop, target)) });
    const signs = vi.spyOn(crypto.subtle, 'sign');
    try {
      const writer = new ReceiptService({ store: watched, issuer: 'https://deputy.example.com', key: signingKey, maxBatch: 7 });
      const first = writer.append(input('settled', 1));
      void first.then(() => events.push('first settled'));
      await held.issued;
      const rest = [writer.append(input('settled', 2)), writer.append(input('settled', 3))];
      // The next group signed ahead, as while a statement's WAL flush is awaited: nothing else to wait for.
      await vi.waitFor(() => expect(signs).toHaveBeenCalledTimes(3), { timeout: 10_000 });
      await new Promise((r) => setTimeout(r, 50));
      held.release();
      const written = await Promise.all([first, ...rest]);
      // Before this round the first append was settled (its caller's response ran) before the next statement was sent.
      expect(events).toEqual(['statement', 'statement', 'first settled']);
      expect(written.map((r) => r.seq)).toEqual([1, 2, 3]);
      expect((await verifyReceipts(await exported('settled'), jwks)).ok).toBe(true);
    } finally {
      signs.mockRestore();
      held.release();
    }
  });

  it('discards receipts signed ahead when the statement before them did not move the head (another instance did)', async () => {
    const held = holdFirstAppend(store);
    const ahead = new ReceiptService({ store: held.store, issuer: 'https://deputy.example.com', key: signingKey, maxBatch: 7 });
    const other = new ReceiptService({ store, issuer: 'https://deputy.example.com', key: signingKey });
    const first = ahead.append(input('raced', 1));
    await held.issued;
    const rest = [ahead.append(input('raced', 2)), ahead.append(input('raced', 3))];
    const elsewhere = await other.append(input('raced', 0));
    held.release();
    const written = await Promise.all([first, ...rest]);
    expect(elsewhere.seq).toBe(1);
    expect(written.map((r) => r.seq)).toEqual([2, 3, 4]);
    expect(written[0]!.prev).toBe(elsewhere.hash);
    expect(written[1]!.prev).toBe(written[0]!.hash);
    expect((await verifyReceipts(await exported('raced'), jwks)).ok).toBe(true);
  });

  it('an append refused by its `ready` (a forged proof) costs its group only the signatures after it: those before it are kept', async () => {
    const once = (k: string) => ({ namespace: 'DPoPProof', key: `forged-${k}-${Math.random()}`, ttlSeconds: 300 });
    const signs = vi.spyOn(crypto.subtle, 'sign');
    try {
      const writer = new ReceiptService({ store, issuer: 'https://deputy.example.com', key: signingKey, maxBatch: 7 });
      // A plain append holds the writer, so the next three form one group, signed when it is cut.
      const first = writer.append(input('forged', 1));
      let refuse!: (e: unknown) => void;
      const forged = new Promise((_, reject) => (refuse = reject));
      forged.catch(() => {});
      const bad = new Error('invalid_dpop_proof');
      const settled = Promise.allSettled([
        writer.appendOnce(input('forged', 2), once('a'), Promise.resolve()),
        writer.appendOnce(input('forged', 3), once('x'), forged),
        writer.appendOnce(input('forged', 4), once('b'), Promise.resolve()),
      ]);
      await first;
      // The group [a, x, b] is signed (1 + 3) and waits for x's proof, which then fails.
      await vi.waitFor(() => expect(signs).toHaveBeenCalledTimes(4), { timeout: 10_000 });
      refuse(bad);
      const out = await settled;
      expect(out.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      expect((out[1] as PromiseRejectedResult).reason).toBe(bad);
      expect(out.flatMap((o) => (o.status === 'fulfilled' ? [o.value.seq] : []))).toEqual([2, 3]);
      // Only b (whose predecessor changed) was signed again; before, a and b both were (6).
      expect(signs).toHaveBeenCalledTimes(5);
      expect(await verifyReceipts(await exported('forged'), jwks)).toMatchObject({ ok: true, chains: [{ agent: 'forged', first: 1, last: 3 }] });
    } finally {
      signs.mockRestore();
    }
  });

  it('an append already refused when its group is cut is left out before signing; receipts signed ahead before it are kept', async () => {
    const once = (k: string) => ({ namespace: 'DPoPProof', key: `known-${k}-${Math.random()}`, ttlSeconds: 300 });
    const held = holdFirstAppend(store);
    const signs = vi.spyOn(crypto.subtle, 'sign');
    try {
      const writer = new ReceiptService({ store: held.store, issuer: 'https://deputy.example.com', key: signingKey, maxBatch: 7 });
      const first = writer.append(input('known', 1));
      await held.issued;
      const bad = new Error('invalid_dpop_proof');
      const forged = Promise.reject(bad);
      forged.catch(() => {});
      const settled = Promise.allSettled([
        writer.appendOnce(input('known', 2), once('a'), Promise.resolve()),
        writer.appendOnce(input('known', 3), once('x'), forged),
        writer.appendOnce(input('known', 4), once('b'), Promise.resolve()),
      ]);
      // Signed ahead while the first statement is held: 1 + 3.
      await vi.waitFor(() => expect(signs).toHaveBeenCalledTimes(4), { timeout: 10_000 });
      held.release();
      const out = await settled;
      await first;
      expect(out.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      expect((out[1] as PromiseRejectedResult).reason).toBe(bad);
      // a's signature made ahead is written; b is signed once more; before, the whole group was re-signed (6).
      expect(signs).toHaveBeenCalledTimes(5);
      expect(await verifyReceipts(await exported('known'), jwks)).toMatchObject({ ok: true, chains: [{ agent: 'known', first: 1, last: 3 }] });
    } finally {
      signs.mockRestore();
      held.release();
    }
  });

  it('an append refused before its group is signed is never signed', async () => {
    const once = (k: string) => ({ namespace: 'DPoPProof', key: `unsigned-${k}-${Math.random()}`, ttlSeconds: 300 });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const signs = vi.spyOn(crypto.subtle, 'sign');
    try {
      const writer = new ReceiptService({ store, issuer: 'https://deputy.example.com', key: signingKey, maxBatch: 7 });
      // The first append's own `ready` holds the writer (nothing in flight, nothing signed ahead).
      const first = writer.appendOnce(input('unsigned', 1), once('h'), gate);
      const bad = new Error('invalid_dpop_proof');
      const forged = Promise.reject(bad);
      forged.catch(() => {});
      const settled = Promise.allSettled([writer.appendOnce(input('unsigned', 2), once('x'), forged), writer.appendOnce(input('unsigned', 3), once('b'), Promise.resolve())]);
      await vi.waitFor(() => expect(signs).toHaveBeenCalledTimes(1), { timeout: 10_000 });
      await new Promise((r) => setTimeout(r, 0));
      release();
      await first;
      const out = await settled;
      expect(out.map((o) => o.status)).toEqual(['rejected', 'fulfilled']);
      expect((out[0] as PromiseRejectedResult).reason).toBe(bad);
      // h, then b alone: the forged append's receipt was never signed (before: x and b, then b again — 4).
      expect(signs).toHaveBeenCalledTimes(2);
    } finally {
      signs.mockRestore();
    }
  });

  it('lists in pages and finds a receipt by id', async () => {
    const page1 = await service.list('ordered', { limit: 20 });
    expect(page1.receipts.map((r) => r.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(page1.next).toBe(20);
    const page2 = await service.list('ordered', { afterSeq: page1.next, limit: 20 });
    expect(page2.receipts.map((r) => r.seq)).toEqual(Array.from({ length: 10 }, (_, i) => i + 21));
    expect(page2.next).toBeUndefined();
    expect(await service.get(page2.receipts[0]!.id)).toEqual(page2.receipts[0]);
    expect(await service.get('missing')).toBeUndefined();
  });
});

describe('request digests', () => {
  it('are canonical: member order and undefined members do not matter, values do', () => {
    expect(canonicalJson({ b: 1, a: [true, null, 'x'], c: { z: 'é', y: undefined } })).toBe('{"a":[true,null,"x"],"b":1,"c":{"z":"é"}}');
    const d = requestDigest({ grant_type: 'g', resource: ['r1', 'r2'], scope: 's' });
    expect(d).toMatch(/^sha-256:[A-Za-z0-9_-]{43}$/);
    expect(requestDigest({ scope: 's', resource: ['r1', 'r2'], grant_type: 'g', audience: undefined })).toBe(d);
    expect(requestDigest({ grant_type: 'g', resource: ['r2', 'r1'], scope: 's' })).not.toBe(d);
    expect(requestDigest({ grant_type: 'g', resource: ['r1', 'r2'], scope: 's ' })).not.toBe(d);
    expect(() => canonicalJson({ n: Number.NaN })).toThrow(InvalidRequest);
  });
});

describe('receipt keys', () => {
  it('rotation keeps every retired receipt key published: receipts signed before still verify', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deputy-receipt-keys-'));
    try {
      const opts = { dir, signingAlg: 'ES256' as const, generate: true, maxTokenLifetime: 300 };
      const before = await loadKeyStore(opts);
      const oldKid = before.activeReceiptKey.jwk.kid;
      expect(before.activeReceiptKey.jwk.alg).toBe('ES256');
      expect(oldKid).not.toBe(before.activeSigningKey.jwk.kid);
      const first = await new ReceiptService({ store, issuer: 'https://deputy.example.com', key: before.activeReceiptKey }).append(input('rotated', 1));

      // Years later: token keys would have been dropped by now; receipt keys never are.
      const newKid = await rotateReceiptKeys(dir, 'EdDSA', 2_000_000_000);
      const after = await loadKeyStore(opts);
      expect(after.activeReceiptKey.jwk).toMatchObject({ kid: newKid, alg: 'EdDSA' });
      const second = await new ReceiptService({ store, issuer: 'https://deputy.example.com', key: after.activeReceiptKey }).append(input('rotated', 2));
      expect([decodeProtectedHeader(first.jws).kid, decodeProtectedHeader(second.jws).kid]).toEqual([oldKid, newKid]);
      expect(second.prev).toBe(first.hash);

      const published = after.receiptJwks();
      expect(published.keys.map((k) => k.kid)).toEqual([newKid, oldKid]);
      for (const k of published.keys) for (const m of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) expect(k).not.toHaveProperty(m);
      const report = await verifyReceipts([first.jws, second.jws], published);
      expect(report).toMatchObject({ ok: true, chains: [{ agent: 'rotated', first: 1, last: 2 }] });
      // Without the retired key, the old receipt no longer verifies: the key set is what proves it.
      expect((await verifyReceipts([first.jws, second.jws], { keys: [published.keys[0]!] })).problems).toMatchObject([{ position: 1, code: 'unknown_key' }]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a receipt key file with a token-only algorithm, naming the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deputy-receipt-keys-'));
    try {
      writeFileSync(join(dir, RECEIPT_KEYS_FILE), JSON.stringify({ keys: [await generateSigningKey('RS256')] }), { mode: 0o600 });
      const err = await loadKeyStore({ dir, signingAlg: 'ES256', generate: true, maxTokenLifetime: 300 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeyError);
      expect((err as Error).message).toBe(`${join(dir, RECEIPT_KEYS_FILE)}: keys[0].jwk.alg must be ES256 or EdDSA for receipts`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
