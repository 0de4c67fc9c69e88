/**
 * The general receipt statement's text (src/audit/chain.ts `appendIfHead` with parts, the token
 * exchange's group statement) depends on how many parts of each kind a group holds, not on their
 * order (`inShapeOrder`; issue 16, eleventh round): in call order a group of k mixed exchanges
 * took up to 2^k texts, and past the store's bound on named shapes half of them ran unnamed. And
 * whatever place a part takes, the statement still writes every part's row, the receipts and the
 * head — or, when one part (in any place) writes no row, nothing. Both stores.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendIfHead, readHead } from '../../src/audit/chain.js';
import { chainRows as rows } from '../support/receipt-rows.js';
import { genesisHash } from '../../src/audit/receipt.js';
import type { Queryable, StatementPart, Store } from '../../src/store/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { twoInstanceStores } from '../support/two-instances.js';

let db: TestDatabase;
let store: Store;

beforeAll(async () => {
  db = await createTestDatabase();
  [store] = await twoInstanceStores(db);
}, 60_000);
afterAll(async () => {
  await store?.close();
  await db?.drop();
});

/**
 * Two kinds of part, as the exchange's (two texts, two parameter counts): each writes one row, or
 * none when its id starts with `refuse-` (as a token record for an agent no longer active).
 */
const single = (id: string): StatementPart => ({
  params: [id],
  sql: (f) => `INSERT INTO oidc_models (model, id, payload, expires_at) SELECT 'ShapeSingle', $${f}::text, '{}'::jsonb, now() + interval '5 minutes' WHERE $${f}::text NOT LIKE 'refuse-%'`,
});
const pair = (id: string): StatementPart => ({
  params: ['ShapePair', id],
  sql: (f) => `INSERT INTO oidc_models (model, id, payload, expires_at) SELECT $${f}::text, $${f + 1}::text, '{}'::jsonb, now() + interval '5 minutes' WHERE $${f + 1}::text NOT LIKE 'refuse-%'`,
});


describe('the receipt statement with parts', () => {
  it('takes one text for a group whatever the order of its parts\' kinds', async () => {
    const texts = new Set<string>();
    const recorder: Queryable = {
      async query<R extends object>(sql: string): Promise<R[]> {
        texts.add(sql);
        return [{ moved: 1 } as R];
      },
      async exec() {},
    };
    const head = { seq: 5, hash: 'h5' };
    const orders = [['s', 'p', 'p'], ['p', 's', 'p'], ['p', 'p', 's']];
    for (const order of orders) {
      const parts = order.map((k, i) => (k === 's' ? single(`o${i}`) : pair(`o${i}`)));
      await appendIfHead(recorder, 'agent', head, rows('agent', head, 3), [], parts);
    }
    // Before this round: one text per order.
    expect(texts.size).toBe(1);
  });

  it('writes every part\'s row wherever its kind puts it, and nothing when one part in any place writes none', async () => {
    for (const order of [['s', 'p', 'p', 's'], ['p', 's', 's', 'p']]) {
      const agent = `shape-${randomUUID()}`;
      const genesis = { seq: 0, hash: genesisHash(agent) };
      const ids = order.map(() => randomUUID());
      const parts = order.map((k, i) => (k === 's' ? single(ids[i]!) : pair(ids[i]!)));
      const written = rows(agent, genesis, 2);
      expect(await appendIfHead(store, agent, genesis, written, [], parts)).toBe('written');
      const found = await store.query<{ id: string }>("SELECT id FROM oidc_models WHERE model IN ('ShapeSingle', 'ShapePair') AND id = ANY($1::text[])", [ids]);
      expect(found.map((r) => r.id).sort()).toEqual([...ids].sort());
      const head = written.at(-1)!;
      expect(await readHead(store, agent)).toEqual({ seq: head.seq, hash: head.hash });
      // Each position in turn holds a part that writes no row: nothing is written.
      for (let refused = 0; refused < order.length; refused++) {
        const fresh = order.map(() => randomUUID());
        fresh[refused] = `refuse-${randomUUID()}`;
        const again = order.map((k, i) => (k === 's' ? single(fresh[i]!) : pair(fresh[i]!)));
        const next = rows(agent, { seq: head.seq, hash: head.hash }, 2);
        expect(await appendIfHead(store, agent, { seq: head.seq, hash: head.hash }, next, [], again)).toBe('recorded');
        const none = await store.query<{ id: string }>('SELECT id FROM oidc_models WHERE id = ANY($1::text[])', [fresh.filter((_, i) => i !== refused)]);
        expect(none).toEqual([]);
        expect(await readHead(store, agent)).toEqual({ seq: head.seq, hash: head.hash });
      }
    }
  });
});
