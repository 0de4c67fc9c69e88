/**
 * Red team (issue 16, twelfth round: row sets): one agent's group of token exchanges of every kind
 * — new IdP tokens (vault row + record), remembered ones (record on the condition of the row),
 * sub-delegations (record with its lineage), an actor-token exchange (three once-keys) — written
 * with the group statement's row sets, with one member replayed, one whose remembered row was
 * purged, one whose caller's `ready` rejects mid-group, and, in a second group, the agent disabled
 * while the group waits: exactly the right ones refused (with their own errors), nothing else
 * lost, no partial rows, the exported chain gap-free and verifying. Both stores.
 */
import { describe, expect, it } from 'vitest';
import type { ReceiptInput } from '../../src/audit/receipt.js';
import { ReceiptService, type AppendedReceipt, type AttestedWrites } from '../../src/audit/receipts.js';
import { generateSigningKey } from '../../src/keys/keystore.js';
import { recordOnce, type OnceKey } from '../../src/oauth/adapter.js';
import { AgentNotActive, TokenRecords, type NewTokenRecord } from '../../src/oauth/token-records.js';
import type { Queryable, StatementPart, Store } from '../../src/store/index.js';
import { hex, insertAgent, now, testVault, tokenRecord, UPSTREAM_KIND as KIND, useTestStore } from '../support/exchange-parts.js';
import { exportedChain } from '../support/receipt-rows.js';

let store: Store;
useTestStore((s) => {
  store = s;
});

const vault = testVault();
const secret = (handle: string) => ({ handle, kind: KIND, plaintext: `idp-token-${hex()}`, expiresAt: now() + 3600 });

class Replayed extends Error {}
class Purged extends Error {}
class NotSigned extends Error {}

const record = (agent: string, extra: Partial<NewTokenRecord> = {}): NewTokenRecord =>
  tokenRecord(agent, { userAttrs: { groups: ['g'], roles: [], email: 'a@example.com' }, cnfJkt: `jkt-${hex()}`, ...extra });

type Kind = 'new' | 'remembered' | 'purged' | 'sub' | 'actor' | 'replayed' | 'unready';
interface Exchange { kind: Kind; jti: string; handle?: string; resource: string; input: ReceiptInput; writes: AttestedWrites }

async function setUp(): Promise<{ agent: string; records: TokenRecords; root: NewTokenRecord; remembered: string; purged: string }> {
  const agent = `rt-mixed-${hex()}`;
  await insertAgent(store, agent);
  const records = new TokenRecords(store);
  const root = record(agent);
  await records.insert(store, root);
  const remembered = `upt-${hex()}`;
  const purged = `upt-${hex()}`;
  await vault.put(store, secret(remembered));
  await vault.put(store, secret(purged));
  return { agent, records, root, remembered, purged };
}

/** One exchange of `kind`, its writes as token-exchange.ts builds them (the row refused in its transaction as the exchange refuses it). */
async function exchange(kind: Kind, ctx: Awaited<ReturnType<typeof setUp>>, ready?: Promise<unknown>): Promise<Exchange> {
  const { agent, records, root, remembered, purged } = ctx;
  let rec: NewTokenRecord;
  let parts: StatementPart[];
  let also: StatementPart | undefined;
  let handle: string | undefined;
  if (kind === 'new' || kind === 'replayed' || kind === 'unready') {
    handle = `upt-${hex()}`;
    rec = record(agent, { upstream: handle });
    also = await vault.putPart(secret(handle));
    parts = [also, records.insertPart(rec)];
  } else if (kind === 'remembered' || kind === 'purged') {
    const h = kind === 'remembered' ? remembered : purged;
    rec = record(agent, { upstream: h });
    parts = [records.insertPart(rec, vault.exists(h))];
  } else {
    rec = record(agent, { parentJti: root.jti, rootJti: root.rootJti, chain: [agent, agent] });
    parts = [records.insertPart(rec)];
  }
  const once: OnceKey[] = [
    { namespace: 'RtMixedDpop', key: `p-${rec.jti}`, ttlSeconds: 300 },
    { namespace: 'RtMixedClient', key: `c-${rec.jti}`, ttlSeconds: 300 },
    ...(kind === 'actor' ? [{ namespace: 'RtMixedActor', key: `a-${rec.jti}`, ttlSeconds: 600 }] : []),
  ];
  if (kind === 'replayed') await recordOnce(store, once[1]!.namespace, once[1]!.key, 300);
  const upstream = kind === 'remembered' || kind === 'purged' ? rec.upstream! : undefined;
  const inTransaction = async (tx: Queryable): Promise<void> => {
    if (upstream !== undefined && (await tx.query('SELECT 1 FROM vault_secrets WHERE handle = $1 FOR KEY SHARE', [upstream])).length === 0) throw new Purged(upstream);
    await records.insert(tx, rec, also);
  };
  const resource = `https://api.example.com/${rec.jti}`;
  const input: ReceiptInput = { agent, user: 'alice', chain: [agent], event: 'token_exchange', action: 'delegate', resource, decision: 'permit', tokenId: rec.jti };
  const writes: AttestedWrites = { once, parts, inTransaction, replayed: (k) => new Replayed(k.key), ...(ready ? { ready } : {}) };
  return { kind, jti: rec.jti, resource, input, writes, ...(handle ? { handle } : {}) };
}

/** The agent's chain as exported: receipts in order, each resource once, the chain verifying. */
const exported = (agent: string, key: Awaited<ReturnType<typeof generateSigningKey>>): Promise<Map<string, number>> => exportedChain(store, agent, key);

async function rowsOf(calls: readonly Exchange[]): Promise<{ jtis: Set<string>; handles: Set<string>; keys: Set<string> }> {
  const jtis = new Set((await store.query<{ jti: string }>('SELECT jti FROM token_records WHERE jti = ANY($1::text[])', [calls.map((c) => c.jti)])).map((r) => r.jti));
  const handles = new Set((await store.query<{ handle: string }>('SELECT handle FROM vault_secrets WHERE handle = ANY($1::text[])', [calls.flatMap((c) => (c.handle ? [c.handle] : []))])).map((r) => r.handle));
  const keys = new Set((await store.query<{ id: string }>("SELECT id FROM oidc_models WHERE model LIKE 'RtMixed%'")).map((r) => r.id));
  return { jtis, handles, keys };
}

describe('a group of mixed exchanges written with row sets', () => {
  it('refuses exactly the replayed, purged and unready members; writes every other one whole; the chain verifies', async () => {
    const key = await generateSigningKey('EdDSA');
    const ctx = await setUp();
    // The group reached a statement with row sets (a set of vault rows and of records).
    let sets = 0;
    const query: Store['query'] = (sql, params, options) => {
      if (sql.includes('AS v(c0')) sets++;
      return store.query(sql, params, options);
    };
    const counting = new Proxy(store, { get: (t, p) => (p === 'query' ? query : Reflect.get(t, p, t)) });
    const service = new ReceiptService({ store: counting, issuer: 'https://deputy.example.com', key });
    // A first exchange alone (the lone statement), then a group queued behind it.
    const first = await exchange('new', ctx);
    let fail!: (e: unknown) => void;
    const unready = new Promise((_, reject) => (fail = reject));
    const kinds: Kind[] = ['sub', 'new', 'remembered', 'purged', 'replayed', 'actor', 'new', 'sub', 'unready', 'remembered', 'actor'];
    const group = await Promise.all(kinds.map((k) => exchange(k, ctx, k === 'unready' ? unready : undefined)));
    await store.query('DELETE FROM vault_secrets WHERE handle = $1', [ctx.purged]);
    const calls = [first, ...group];
    const settled = calls.map((c) => service.appendWith(c.input, c.writes));
    fail(new NotSigned('the token was not signed'));
    const outcomes = await Promise.allSettled(settled);
    await service.flush();

    const chain = await exported(ctx.agent, key);
    const { jtis, handles } = await rowsOf(calls);
    const refused: Record<string, new (...a: never[]) => Error> = { purged: Purged, replayed: Replayed, unready: NotSigned };
    calls.forEach((c, i) => {
      const o = outcomes[i]!;
      const label = `${i} ${c.kind}: ${o.status === 'rejected' ? String(o.reason) : 'written'}`;
      if (refused[c.kind]) {
        expect(o.status, label).toBe('rejected');
        expect((o as PromiseRejectedResult).reason, label).toBeInstanceOf(refused[c.kind]);
        expect(jtis.has(c.jti), label).toBe(false);
        if (c.handle) expect(handles.has(c.handle), label).toBe(false);
        expect(chain.has(c.resource), label).toBe(false);
      } else {
        expect(o.status, label).toBe('fulfilled');
        expect(chain.get(c.resource), label).toBe((o as PromiseFulfilledResult<AppendedReceipt>).value.seq);
        expect(jtis.has(c.jti), label).toBe(true);
        if (c.handle) expect(handles.has(c.handle), label).toBe(true);
      }
    });
    expect(chain.size).toBe(calls.length - 3);
    expect(sets).toBeGreaterThan(0);
  }, 60_000);

  it('refuses every member of a group whose agent is disabled while it waits, writing none of their rows or keys', async () => {
    const key = await generateSigningKey('ES256');
    const ctx = await setUp();
    const service = new ReceiptService({ store, issuer: 'https://deputy.example.com', key });
    const before = await exchange('new', ctx);
    expect((await service.appendWith(before.input, before.writes)).seq).toBe(1);
    let go!: () => void;
    const gate = new Promise<void>((resolve) => (go = resolve));
    const kinds: Kind[] = ['new', 'sub', 'remembered', 'actor', 'new', 'sub', 'remembered'];
    const group = await Promise.all(kinds.map((k) => exchange(k, ctx, gate)));
    const settled = Promise.allSettled(group.map((c) => service.appendWith(c.input, c.writes)));
    // Signed and waiting for `ready` (the token's signature): the agent is disabled now.
    await new Promise((resolve) => setTimeout(resolve, 20));
    await store.query("UPDATE agents SET status = 'disabled' WHERE id = $1", [ctx.agent]);
    go();
    const outcomes = await settled;
    await service.flush();
    outcomes.forEach((o, i) => {
      expect(o.status, `${i} ${group[i]!.kind}`).toBe('rejected');
      expect((o as PromiseRejectedResult).reason, `${i} ${group[i]!.kind}: ${String((o as PromiseRejectedResult).reason)}`).toBeInstanceOf(AgentNotActive);
    });
    const chain = await exported(ctx.agent, key);
    expect([...chain.keys()]).toEqual([before.resource]);
    const { jtis, handles, keys } = await rowsOf(group);
    expect([...jtis]).toEqual([]);
    expect([...handles]).toEqual([]);
    const groupKeys = group.flatMap((c) => c.writes.once.map((k) => k.key));
    expect(groupKeys.filter((k) => keys.has(k))).toEqual([]);
  }, 60_000);
});
