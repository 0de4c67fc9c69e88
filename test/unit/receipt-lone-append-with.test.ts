/**
 * The token exchange's append when it is alone (every exchange at concurrency 1): one receipt, its
 * request's once-keys and its parts (src/audit/chain.ts `loneAppendWith`; issue 16, twelfth round)
 * go in scalar parameters, not in arrays (`unnest`) — and the statement still writes every row, or
 * nothing: a key recorded before, a part that writes no row (the remembered vault row gone, the
 * agent disabled) or a moved head leave the head, the keys, the token record and the receipts as
 * they were. From a new chain and from a head; with two keys and with three (an actor token). Both stores.
 */
import { describe, expect, it } from 'vitest';
import { appendIfHead, readHead, type ChainHead } from '../../src/audit/chain.js';
import { genesisHash } from '../../src/audit/receipt.js';
import type { OnceKey } from '../../src/oauth/adapter.js';
import { TokenRecords, type NewTokenRecord } from '../../src/oauth/token-records.js';
import type { Queryable, StatementPart, Store } from '../../src/store/index.js';
import { chainRows as rows } from '../support/receipt-rows.js';
import { hex, insertAgent, now, onceKeys as keys, testVault, tokenRecord, UPSTREAM_KIND as KIND, useTestStore } from '../support/exchange-parts.js';

let store: Store;
useTestStore((s) => {
  store = s;
});

const vault = testVault();

const record = (agent: string, upstream: string): NewTokenRecord => tokenRecord(agent, { upstream });

/** A new agent, its remembered vault row, and what one exchange of it writes. */
async function setUp(): Promise<{ agent: string; handle: string; records: TokenRecords }> {
  const agent = `lone-${hex()}`;
  await insertAgent(store, agent);
  const handle = `upt-${hex()}`;
  await vault.put(store, { handle, kind: KIND, plaintext: 'idp-token', expiresAt: now() + 3600 });
  return { agent, handle, records: new TokenRecords(store) };
}

/** What the agent's chain, the keys and the record look like. */
async function state(agent: string, once: readonly OnceKey[], jti: string) {
  const head = await readHead(store, agent);
  const receipts = await store.query<{ n: number }>('SELECT count(*)::int AS n FROM receipts WHERE agent_id = $1', [agent]);
  const spent = await store.query<{ n: number }>('SELECT count(*)::int AS n FROM oidc_models WHERE id = ANY($1::text[])', [once.map((k) => k.key)]);
  const recorded = await store.query<{ n: number }>('SELECT count(*)::int AS n FROM token_records WHERE jti = $1', [jti]);
  return { seq: head?.seq ?? 0, receipts: receipts[0]!.n, spent: spent[0]!.n, records: recorded[0]!.n };
}

describe('the lone append with parts (the token exchange at concurrency 1)', () => {
  it('sends its receipt and keys as scalar parameters, no arrays', async () => {
    const sent: { sql: string; params: readonly unknown[] }[] = [];
    const recorder: Queryable = {
      async query<R extends object>(sql: string, params: readonly unknown[] = []): Promise<R[]> {
        sent.push({ sql, params });
        return [{ moved: 1 } as R];
      },
      async exec() {},
    };
    const part: StatementPart = { params: ['x'], sql: (f) => `INSERT INTO oidc_models (model, id, payload, expires_at) SELECT 'LonePart', $${f}::text, '{}'::jsonb, now()` };
    for (const head of [{ seq: 0, hash: genesisHash('agent') }, { seq: 4, hash: 'h4' }]) {
      for (const n of [0, 2, 3]) await appendIfHead(recorder, 'agent', head, rows('agent', head, 1), keys(n), [part]);
    }
    expect(sent).toHaveLength(6);
    for (const { sql, params } of sent) {
      expect(sql).not.toMatch(/unnest|\[\]/);
      expect(params.some((p) => Array.isArray(p))).toBe(false);
    }
  });

  for (const n of [2, 3]) {
    it(`writes the record, ${n} keys, the receipt and the head — from a new chain and from a head`, async () => {
      const { agent, handle, records } = await setUp();
      let head: ChainHead = { seq: 0, hash: genesisHash(agent) };
      for (let i = 0; i < 2; i++) {
        const once = keys(n);
        const rec = record(agent, handle);
        const [receipt] = rows(agent, head, 1);
        expect(await appendIfHead(store, agent, head, [receipt!], once, [records.insertPart(rec, vault.exists(handle))])).toBe('written');
        expect(await state(agent, once, rec.jti)).toEqual({ seq: i + 1, receipts: i + 1, spent: n, records: 1 });
        head = { seq: receipt!.seq, hash: receipt!.hash };
      }
    });
  }

  it('writes nothing when a key was recorded before, the remembered row is gone, the agent is disabled, or the head moved', async () => {
    const { agent, handle, records } = await setUp();
    const [first] = rows(agent, { seq: 0, hash: genesisHash(agent) }, 1);
    const firstKeys = keys(2);
    expect(await appendIfHead(store, agent, { seq: 0, hash: genesisHash(agent) }, [first!], firstKeys, [records.insertPart(record(agent, handle), vault.exists(handle))])).toBe('written');
    const head: ChainHead = { seq: 1, hash: first!.hash };
    const before = { seq: 1, receipts: 1 };

    // A replayed proof: its key was recorded by the first exchange.
    const replayed = [firstKeys[0]!, ...keys(2).slice(1)];
    const rec1 = record(agent, handle);
    expect(await appendIfHead(store, agent, head, rows(agent, head, 1), replayed, [records.insertPart(rec1, vault.exists(handle))])).toBe('recorded');
    expect(await state(agent, replayed.slice(1), rec1.jti)).toEqual({ ...before, spent: 0, records: 0 });

    // The remembered vault row is gone (purged): the record's condition writes no row.
    const gone = `upt-${hex()}`;
    const once2 = keys(3);
    const rec2 = record(agent, gone);
    expect(await appendIfHead(store, agent, head, rows(agent, head, 1), once2, [records.insertPart(rec2, vault.exists(gone))])).toBe('recorded');
    expect(await state(agent, once2, rec2.jti)).toEqual({ ...before, spent: 0, records: 0 });

    // A head that moved: another instance appended meanwhile.
    const stale: ChainHead = { seq: 0, hash: genesisHash(agent) };
    const once3 = keys(2);
    const rec3 = record(agent, handle);
    expect(await appendIfHead(store, agent, stale, rows(agent, stale, 1), once3, [records.insertPart(rec3, vault.exists(handle))])).not.toBe('written');
    expect(await state(agent, once3, rec3.jti)).toEqual({ ...before, spent: 0, records: 0 });

    // The agent disabled: the token record's part writes no row.
    await store.query("UPDATE agents SET status = 'disabled' WHERE id = $1", [agent]);
    const once4 = keys(2);
    const rec4 = record(agent, handle);
    expect(await appendIfHead(store, agent, head, rows(agent, head, 1), once4, [records.insertPart(rec4, vault.exists(handle))])).toBe('recorded');
    expect(await state(agent, once4, rec4.jti)).toEqual({ ...before, spent: 0, records: 0 });
  });
});
