/**
 * Red team (issue 16, twelfth round: row sets). The group statement writes several exchanges'
 * records and vault rows as `unnest` over one array per column, each array a literal the driver
 * builds (pg) or PGlite serialises: a value that is special inside an array literal — quotes,
 * backslashes, braces, commas, whitespace, the text NULL, empty text, unicode beyond the BMP — must
 * reach its column as the part alone writes it, a JSON `null` stay distinct from SQL NULL, and
 * parameters stay numbered right with several sets and scalar parts in one statement. Records read
 * back equal those written alone; secrets decrypt. Both stores.
 */
import { describe, expect, it } from 'vitest';
import { appendIfHead, type ChainHead } from '../../src/audit/chain.js';
import { genesisHash } from '../../src/audit/receipt.js';
import { TokenRecords, type NewTokenRecord } from '../../src/oauth/token-records.js';
import type { StatementPart, Store } from '../../src/store/index.js';
import { chainRows as rows } from '../support/receipt-rows.js';
import { hex, insertAgent, now, testVault, tokenRecord, UPSTREAM_KIND as KIND, useTestStore } from '../support/exchange-parts.js';

let store: Store;
useTestStore((s) => {
  store = s;
});

const vault = testVault();

/** Text special in an array literal (or to a serialiser), one per record. */
const NASTY = ['NULL', 'null', '', ' ', '"', '\\', '\\"', '{}', '{a,b}', 'a,b', ' lead', 'trail ', 'x\ny', 'x\ty', '😀 é', '\u2028', "it's", '{"a":"b"}', '[1,2]', 'NULL "x" \\ {,}'];

function record(agent: string, n: number, extra: Partial<NewTokenRecord> = {}): NewTokenRecord {
  const v = NASTY[n % NASTY.length]!;
  const w = NASTY[(n + 7) % NASTY.length]!;
  return tokenRecord(agent, {
    userId: v || 'u', userAttrs: { groups: [v, w], roles: [], email: w, [v]: null } as unknown as NewTokenRecord['userAttrs'],
    audience: `https://api.example.com/${w}`, scope: v || 'read', cnfJkt: n % 3 === 0 ? undefined : w, mayAct: n % 2 === 0 ? undefined : { sub: v, note: null } as never, ...extra,
  });
}

describe('row sets carry any value as the part alone does', () => {
  it('records with array-literal-special text, JSON nulls and SQL NULLs read back equal; secrets decrypt; keys and several sets numbered right', async () => {
    const records = new TokenRecords(store);
    const agent = `rt-values-${hex()}`;
    await insertAgent(store, agent);
    const root = record(agent, 0);
    await records.insert(store, root);
    const remembered = `upt-${hex()}`;
    await vault.put(store, { handle: remembered, kind: KIND, plaintext: 'idp', expiresAt: now() + 3600 });
    const written: { rec: NewTokenRecord; handle?: string; plaintext?: string }[] = [];
    const parts: StatementPart[] = [];
    for (let n = 0; n < NASTY.length; n++) {
      const kind = n % 3;
      if (kind === 0) {
        const handle = `upt-${hex()}`;
        const plaintext = `${NASTY[n]}-${hex()}`;
        const rec = record(agent, n, { upstream: handle });
        parts.push(await vault.putPart({ handle, kind: KIND, plaintext, expiresAt: n % 2 ? undefined : now() + 3600 } as never), records.insertPart(rec));
        written.push({ rec, handle, plaintext });
      } else if (kind === 1) {
        const rec = record(agent, n, { upstream: remembered });
        parts.push(records.insertPart(rec, vault.exists(remembered)));
        written.push({ rec });
      } else {
        const rec = record(agent, n, { parentJti: root.jti, rootJti: root.rootJti, chain: [agent, agent] });
        parts.push(records.insertPart(rec));
        written.push({ rec });
      }
    }
    const head: ChainHead = { seq: 0, hash: genesisHash(agent) };
    const once = [0, 1, 2].map((i) => ({ namespace: `RtValues${i}`, key: NASTY[i + 3]! + hex(), ttlSeconds: 60 }));
    expect(await appendIfHead(store, agent, head, rows(agent, head, written.length), once, parts)).toBe('written');
    for (const { rec, handle, plaintext } of written) {
      const found = await records.find(rec.jti);
      expect(found, rec.jti).toMatchObject({ ...rec, revokedAt: undefined });
      const raw = await store.query<{ cnf_jkt: string | null; may_act: unknown }>('SELECT cnf_jkt, may_act FROM token_records WHERE jti = $1', [rec.jti]);
      expect(raw[0]!.cnf_jkt).toBe(rec.cnfJkt ?? null);
      expect(raw[0]!.may_act).toEqual(rec.mayAct ?? null);
      if (handle) expect(await vault.get(store, handle, KIND)).toBe(plaintext);
    }
    const keys = await store.query<{ id: string }>("SELECT id FROM oidc_models WHERE model LIKE 'RtValues%' ORDER BY model");
    expect(keys.map((k) => k.id)).toEqual(once.map((k) => k.key));
  });
});
