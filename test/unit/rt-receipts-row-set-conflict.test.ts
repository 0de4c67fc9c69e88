/**
 * Red team (issue 16, twelfth round: row sets). A set whose one row conflicts with a stored row —
 * a vault handle already present, a token record's jti already present — or that repeats a row
 * of its own must undo the whole statement: no row of any part, no key, no receipt, the head
 * unmoved; the receipt service then decides each append alone and refuses exactly the one
 * conflicting. Both stores.
 */
import { describe, expect, it } from 'vitest';
import { appendIfHead, readHead, type ChainHead } from '../../src/audit/chain.js';
import { genesisHash } from '../../src/audit/receipt.js';
import { ReceiptService } from '../../src/audit/receipts.js';
import { generateSigningKey } from '../../src/keys/keystore.js';
import { TokenRecords, type NewTokenRecord } from '../../src/oauth/token-records.js';
import type { Queryable, StatementPart, Store } from '../../src/store/index.js';
import { chainRows as rows } from '../support/receipt-rows.js';
import { hex, insertAgent, now, testVault, tokenRecord as record, UPSTREAM_KIND as KIND, useTestStore } from '../support/exchange-parts.js';

let store: Store;
useTestStore((s) => {
  store = s;
});

const vault = testVault();
const secret = (handle: string) => ({ handle, kind: KIND, plaintext: 'idp-token', expiresAt: now() + 3600 });


async function agentWithRoot(records: TokenRecords): Promise<{ agent: string; root: NewTokenRecord }> {
  const agent = `rt-conflict-${hex()}`;
  await insertAgent(store, agent);
  const root = record(agent);
  await records.insert(store, root);
  return { agent, root };
}

interface Exchange { rec: NewTokenRecord; handle: string; parts: StatementPart[] }

async function newExchange(records: TokenRecords, agent: string, handle = `upt-${hex()}`, jti?: string): Promise<Exchange> {
  const rec = record(agent, { upstream: handle, ...(jti ? { jti, rootJti: jti } : {}) });
  return { rec, handle, parts: [await vault.putPart(secret(handle)), records.insertPart(rec)] };
}

describe('a row set with one conflicting row', () => {
  it('undoes the whole statement: nothing of any part, no key, no receipt, the head unmoved', async () => {
    const records = new TokenRecords(store);
    const { agent } = await agentWithRoot(records);
    const taken = `upt-${hex()}`;
    await vault.put(store, secret(taken));
    const stored = record(agent);
    await records.insert(store, stored);
    const head: ChainHead = { seq: 0, hash: genesisHash(agent) };
    const cases: Array<() => Promise<Exchange[]>> = [
      // A vault handle already stored, in the middle of a set of vault rows.
      async () => [await newExchange(records, agent), await newExchange(records, agent, taken), await newExchange(records, agent)],
      // A record's jti already stored, in a set of records.
      async () => [await newExchange(records, agent), await newExchange(records, agent), await newExchange(records, agent, undefined, stored.jti)],
      // Two rows of one set with the same handle.
      async () => {
        const h = `upt-${hex()}`;
        return [await newExchange(records, agent, h), await newExchange(records, agent), await newExchange(records, agent, h)];
      },
    ];
    for (const make of cases) {
      const group = await make();
      const once = group.map((g) => ({ namespace: 'RtConflict', key: `k-${g.rec.jti}-${hex()}`, ttlSeconds: 60 }));
      const outcome = await appendIfHead(store, agent, head, rows(agent, head, group.length), once, group.flatMap((g) => g.parts)).then(
        (o) => o,
        (err: { code?: string }) => err.code,
      );
      // Refused by the store (a unique violation: the receipt service's locked path decides) or undone by the statement's own check.
      expect(['23505', 'recorded']).toContain(outcome);
      expect(await readHead(store, agent)).toBeUndefined();
      const fresh = group.filter((g) => g.handle !== taken && g.rec.jti !== stored.jti);
      const jtis = await store.query('SELECT 1 FROM token_records WHERE jti = ANY($1::text[])', [fresh.map((g) => g.rec.jti)]);
      const handles = await store.query('SELECT 1 FROM vault_secrets WHERE handle = ANY($1::text[]) AND handle <> $2', [fresh.map((g) => g.handle), taken]);
      const keys = await store.query('SELECT 1 FROM oidc_models WHERE model = $1 AND id = ANY($2::text[])', ['RtConflict', once.map((k) => k.key)]);
      const receipts = await store.query('SELECT 1 FROM receipts WHERE agent_id = $1', [agent]);
      expect({ jtis: jtis.length, handles: handles.length, keys: keys.length, receipts: receipts.length }).toEqual({ jtis: 0, handles: 0, keys: 0, receipts: 0 });
    }
  });

  it('through the receipt service: exactly the conflicting exchange refused, the rest of its group written', async () => {
    const records = new TokenRecords(store);
    const { agent } = await agentWithRoot(records);
    const taken = `upt-${hex()}`;
    await vault.put(store, secret(taken));
    const service = new ReceiptService({ store, issuer: 'https://deputy.example.com', key: await generateSigningKey('EdDSA') });
    const group = [await newExchange(records, agent), await newExchange(records, agent), await newExchange(records, agent, taken), await newExchange(records, agent), await newExchange(records, agent)];
    const outcomes = await Promise.allSettled(
      group.map((g) =>
        service.appendWith(
          { agent, chain: [agent], event: 'token_exchange', action: 'delegate', resource: `https://api.example.com/${g.rec.jti}`, decision: 'permit' },
          { once: [{ namespace: 'RtConflictSvc', key: g.rec.jti, ttlSeconds: 60 }], parts: g.parts, inTransaction: (tx: Queryable) => records.insert(tx, g.rec, g.parts[0]) },
        ),
      ),
    );
    await service.flush();
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    const written = await store.query<{ jti: string }>('SELECT jti FROM token_records WHERE jti = ANY($1::text[])', [group.map((g) => g.rec.jti)]);
    expect(written.map((r) => r.jti).sort()).toEqual(group.filter((g) => g.handle !== taken).map((g) => g.rec.jti).sort());
    expect((await readHead(store, agent))?.seq).toBe(4);
  });
});
