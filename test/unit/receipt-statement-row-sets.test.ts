/**
 * The exchange's group statement writes the parts of one kind as one set over `unnest`
 * (src/audit/chain.ts `asWrites`, `StatementPart.row`; issue 16, twelfth round): its text depends on
 * which kinds a group holds (one or several of each), not on how many — three kinds in groups of
 * up to 8 took 145 texts before, past the store's bound on named shapes. The rows are those the
 * parts write alone: each record as `TokenRecords.find` reads it back, each secret decrypting to
 * its plaintext. Both stores (the refusals inside a set: receipt-statement-real-parts.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { appendIfHead, readHead, type ChainHead } from '../../src/audit/chain.js';
import { genesisHash } from '../../src/audit/receipt.js';
import { TokenRecords, type NewTokenRecord } from '../../src/oauth/token-records.js';
import type { Queryable, StatementPart, Store } from '../../src/store/index.js';
import { chainRows as rows } from '../support/receipt-rows.js';
import { hex, insertAgent, now, testVault, tokenRecord, UPSTREAM_KIND as KIND, useTestStore } from '../support/exchange-parts.js';

let store: Store;
useTestStore((s) => {
  store = s;
});

const vault = testVault();

/** A record with attributes, a binding and an actor, so that every column carries a value. */
const record = (agent: string, extra: Partial<NewTokenRecord> = {}): NewTokenRecord =>
  tokenRecord(agent, { userAttrs: { groups: ['g'], roles: [], email: 'a@example.com' }, cnfJkt: `jkt-${hex()}`, mayAct: { sub: 'x' }, ...extra });

type Kind = 'new' | 'remembered' | 'sub';
interface Built { parts: StatementPart[]; record: NewTokenRecord; plaintext?: string }

/** The parts of one exchange of `kind` for `agent`, as token-exchange.ts builds them. */
async function build(records: TokenRecords, kind: Kind, agent: string, root: NewTokenRecord, remembered: string): Promise<Built> {
  if (kind === 'new') {
    const handle = `upt-${hex()}`;
    const rec = record(agent, { upstream: handle, mayAct: undefined });
    const plaintext = `idp-token-${hex()}`;
    return { parts: [await vault.putPart({ handle, kind: KIND, plaintext, expiresAt: now() + 3600 }), records.insertPart(rec)], record: rec, plaintext };
  }
  if (kind === 'remembered') {
    const rec = record(agent, { upstream: remembered });
    return { parts: [records.insertPart(rec, vault.exists(remembered))], record: rec };
  }
  const rec = record(agent, { parentJti: root.jti, rootJti: root.rootJti, chain: [agent, agent], cnfJkt: undefined });
  return { parts: [records.insertPart(rec)], record: rec };
}

describe('the group statement writes the parts of one kind as one set', () => {
  it('takes one text per set of kinds present (one or several of each), whatever how many', async () => {
    const records = new TokenRecords(undefined as unknown as Store);
    const texts = new Map<string, Set<string>>();
    let last = '';
    const recorder: Queryable = {
      async query<R extends object>(sql: string): Promise<R[]> {
        last = sql;
        return [{ moved: 1 } as R];
      },
      async exec() {},
    };
    const root = record('a');
    const head = { seq: 5, hash: 'h5' };
    for (const kinds of [['new'], ['remembered'], ['sub'], ['new', 'remembered'], ['new', 'remembered', 'sub']] as Kind[][]) {
      for (const n of [2, 3, 5]) {
        const built = await Promise.all(kinds.flatMap((k) => Array.from({ length: n }, () => build(records, k, 'a', root, 'h'))));
        await appendIfHead(recorder, 'a', head, rows('a', head, built.length), [], built.flatMap((b) => b.parts));
        const set = texts.get(kinds.join()) ?? new Set<string>();
        set.add(last);
        texts.set(kinds.join(), set);
      }
    }
    // Before this round: one text per count of each kind (3 here for every set of kinds).
    for (const [kinds, set] of texts) expect([kinds, set.size]).toEqual([kinds, 1]);
  });

  it('writes the rows the parts write alone: records read back equal, secrets decrypt, the head moved', async () => {
    const records = new TokenRecords(store);
    const agent = `row-sets-${hex()}`;
    await insertAgent(store, agent);
    const root = record(agent);
    await records.insert(store, root);
    const remembered = `upt-${hex()}`;
    await vault.put(store, { handle: remembered, kind: KIND, plaintext: 'idp-token', expiresAt: now() + 3600 });
    const order: Kind[] = ['sub', 'new', 'remembered', 'new', 'sub', 'new', 'remembered'];
    const built = await Promise.all(order.map((k) => build(records, k, agent, root, remembered)));
    const head: ChainHead = { seq: 0, hash: genesisHash(agent) };
    const receipts = rows(agent, head, order.length);
    expect(await appendIfHead(store, agent, head, receipts, [{ namespace: 'RowSetsJti', key: `k-${hex()}`, ttlSeconds: 60 }], built.flatMap((b) => b.parts))).toBe('written');
    expect(await readHead(store, agent)).toEqual({ seq: receipts.at(-1)!.seq, hash: receipts.at(-1)!.hash });
    for (const b of built) {
      const found = await records.find(b.record.jti);
      expect(found).toMatchObject({ ...b.record, revokedAt: undefined, mayAct: b.record.mayAct, cnfJkt: b.record.cnfJkt });
      if (b.plaintext !== undefined) expect(await vault.get(store, b.record.upstream!, KIND)).toBe(b.plaintext);
    }
  });
});
