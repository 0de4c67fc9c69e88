/**
 * Red team (issue 16, eleventh round): the group statement's parts placed in the order of their
 * text (src/audit/chain.ts `inShapeOrder`), with the exchange's real parts rather than stand-ins —
 * a new IdP token's vault row and its token record (which names the row), a remembered token's
 * record on the condition that its row exists, a sub-delegation's record with its lineage check —
 * in every call order: every row written, or, when one part in any place refuses (the remembered
 * row gone, the parent revoked) or a once-key is replayed, nothing and the head unmoved. Both stores.
 */
import { describe, expect, it } from 'vitest';
import { appendIfHead, readHead, type ChainHead } from '../../src/audit/chain.js';
import { chainRows as rows } from '../support/receipt-rows.js';
import { genesisHash } from '../../src/audit/receipt.js';
import { TokenRecords, type NewTokenRecord } from '../../src/oauth/token-records.js';
import type { StatementPart, Store } from '../../src/store/index.js';
import { hex, insertAgent, now, testVault, tokenRecord, UPSTREAM_KIND as KIND, useTestStore } from '../support/exchange-parts.js';

let store: Store;
useTestStore((s) => {
  store = s;
});

const vault = testVault();

const record = (agent: string, extra: Partial<NewTokenRecord> = {}): NewTokenRecord => tokenRecord(agent, { userAttrs: {} as NewTokenRecord['userAttrs'], ...extra });


type Kind = 'new' | 'remembered' | 'sub';
interface Built { parts: StatementPart[]; jti: string; handle?: string }

describe('the group statement with the exchange\'s real parts, in every order', () => {
  it('writes every row, or nothing with the head unmoved when any one part refuses or a key is replayed', async () => {
    const records = new TokenRecords(store);
    const orders: Kind[][] = [['new', 'remembered', 'sub'], ['sub', 'new', 'remembered'], ['remembered', 'sub', 'new'], ['sub', 'remembered', 'new', 'new', 'sub']];
    for (const order of orders) {
      const agent = `real-parts-${hex()}`;
      await insertAgent(store, agent);
      const root = record(agent);
      await records.insert(store, root);
      const remembered = `upt-${hex()}`;
      await vault.put(store, { handle: remembered, kind: KIND, plaintext: 'idp-token', expiresAt: now() + 3600 });
      const build = async (kind: Kind, parent = root): Promise<Built> => {
        if (kind === 'new') {
          const handle = `upt-${hex()}`;
          const rec = record(agent, { upstream: handle });
          return { parts: [await vault.putPart({ handle, kind: KIND, plaintext: 'idp-token', expiresAt: now() + 3600 }), records.insertPart(rec)], jti: rec.jti, handle };
        }
        if (kind === 'remembered') {
          const rec = record(agent, { upstream: remembered });
          return { parts: [records.insertPart(rec, vault.exists(remembered))], jti: rec.jti };
        }
        const rec = record(agent, { parentJti: parent.jti, rootJti: parent.rootJti });
        return { parts: [records.insertPart(rec)], jti: rec.jti };
      };
      const written = async (built: Built[]) => {
        const jtis = await store.query<{ jti: string }>('SELECT jti FROM token_records WHERE jti = ANY($1::text[])', [built.map((b) => b.jti)]);
        const handles = built.flatMap((b) => (b.handle ? [b.handle] : []));
        const secrets = await store.query<{ handle: string }>('SELECT handle FROM vault_secrets WHERE handle = ANY($1::text[])', [handles]);
        return { records: jtis.length, secrets: secrets.length };
      };

      let head: ChainHead = { seq: 0, hash: genesisHash(agent) };
      const ok = await Promise.all(order.map((k) => build(k)));
      const receipts = rows(agent, head, order.length);
      const once = [{ namespace: 'RealPartsJti', key: `k-${hex()}`, ttlSeconds: 60 }];
      expect(await appendIfHead(store, agent, head, receipts, once, ok.flatMap((b) => b.parts))).toBe('written');
      expect(await written(ok)).toEqual({ records: order.length, secrets: order.filter((k) => k === 'new').length });
      head = { seq: receipts.at(-1)!.seq, hash: receipts.at(-1)!.hash };
      expect(await readHead(store, agent)).toEqual(head);

      // A replayed key: nothing of any part.
      const replay = await Promise.all(order.map((k) => build(k)));
      expect(await appendIfHead(store, agent, head, rows(agent, head, order.length), once, replay.flatMap((b) => b.parts))).toBe('recorded');
      expect(await written(replay)).toEqual({ records: 0, secrets: 0 });
      expect(await readHead(store, agent)).toEqual(head);

      // One refusing part in each place it can take.
      for (let at = 0; at < order.length; at++) {
        const kind = order[at]!;
        if (kind === 'new') continue;
        const revoked = record(agent);
        await records.insert(store, revoked);
        await store.query('UPDATE token_records SET revoked_at = now() WHERE jti = $1', [revoked.jti]);
        const built = await Promise.all(order.map((k, i) => (i === at && k === 'sub' ? build('sub', revoked) : build(k))));
        if (kind === 'remembered') await store.query('DELETE FROM vault_secrets WHERE handle = $1', [remembered]);
        const fresh = [{ namespace: 'RealPartsJti', key: `k-${hex()}`, ttlSeconds: 60 }];
        expect(await appendIfHead(store, agent, head, rows(agent, head, order.length), fresh, built.flatMap((b) => b.parts))).toBe('recorded');
        expect(await written(built)).toEqual({ records: 0, secrets: 0 });
        expect(await readHead(store, agent)).toEqual(head);
        const key = await store.query('SELECT 1 FROM oidc_models WHERE model = $1 AND id = $2', ['RealPartsJti', fresh[0]!.key]);
        expect(key).toEqual([]);
        if (kind === 'remembered') await vault.put(store, { handle: remembered, kind: KIND, plaintext: 'idp-token', expiresAt: now() + 3600 });
      }
      const count = await store.query<{ n: number }>('SELECT count(*)::int AS n FROM receipts WHERE agent_id = $1', [agent]);
      expect(count[0]!.n).toBe(order.length);
    }
  }, 60_000);
});
