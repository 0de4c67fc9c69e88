/**
 * Red team (issue 16, eleventh round): the exchange's group statement with its parts in the order
 * of their text (src/audit/chain.ts `inShapeOrder`), under a storm from two writers (two
 * instances on PostgreSQL) on one agent's chain, with the exchange's real parts mixed in every
 * group: new IdP tokens (vault row + token record), remembered ones (record on the condition of
 * the row; some rows deleted meanwhile: the locked path writes them again), sub-delegations (some
 * of a revoked parent: refused). Every resolved append is in the chain once with its rows; every
 * refused one wrote none; the chain is gap-free and verifies. Both stores.
 */
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ReceiptInput } from '../../src/audit/receipt.js';
import { ReceiptService, type AppendedReceipt } from '../../src/audit/receipts.js';
import { generateSigningKey } from '../../src/keys/keystore.js';
import { ParentRevoked, TokenRecords, type NewTokenRecord } from '../../src/oauth/token-records.js';
import type { Queryable, StatementPart, Store } from '../../src/store/index.js';
import { EnvelopeVault } from '../../src/vault/envelope.js';
import { useTwoInstanceStores } from '../support/two-instances.js';
import { exportedChain } from '../support/receipt-rows.js';

const opened = useTwoInstanceStores();
let stores: [Store, Store];
beforeAll(() => {
  stores = opened();
});

const KIND = 'upstream_subject_token';
const vkey = randomBytes(32);
const vault = new EnvelopeVault({ active: { kid: 'k1', key: vkey }, all: new Map([['k1', vkey]]) });
const now = () => Math.floor(Date.now() / 1000);
const hex = () => randomBytes(6).toString('hex');
const secret = (handle: string) => ({ handle, kind: KIND, plaintext: 'idp-token', expiresAt: now() + 3600 });

function record(agent: string, extra: Partial<NewTokenRecord> = {}): NewTokenRecord {
  const jti = `jti-${hex()}`;
  return {
    jti, parentJti: undefined, rootJti: jti, agentId: agent, userId: 'alice', userAttrs: {} as NewTokenRecord['userAttrs'], issuerId: 'okta',
    audience: 'https://api.example.com', scope: 'read', chain: [agent], cnfJkt: undefined, mayAct: undefined, upstream: undefined, issuedAt: now(), expiresAt: now() + 300, ...extra,
  };
}

type Kind = 'new' | 'remembered' | 'sub' | 'revoked-sub';
interface Call { kind: Kind; jti: string; handle?: string; resource: string; outcome?: PromiseSettledResult<AppendedReceipt> }

describe('the group statement with real mixed parts under a storm from two writers', () => {
  it('every resolved exchange is in the chain once with its rows; every refused one wrote none; the chain verifies', async () => {
    const key = await generateSigningKey('EdDSA');
    const agent = `real-storm-${hex()}`;
    await stores[0]!.query("INSERT INTO agents (id, name, owner, source, jwks) VALUES ($1, $1, 'test', 'api', '{\"keys\":[]}'::jsonb)", [agent]);
    const records = new TokenRecords(stores[0]!);
    const root = record(agent);
    await records.insert(stores[0]!, root);
    const dead = record(agent);
    await records.insert(stores[0]!, dead);
    await stores[0]!.query('UPDATE token_records SET revoked_at = now() WHERE jti = $1', [dead.jti]);
    const remembered = Array.from({ length: 4 }, () => `upt-${hex()}`);
    for (const h of remembered) await vault.put(stores[0]!, secret(h));
    // Groups of mixed parts reached the statement (two parts of two kinds or more: `w1`, both writers).
    let mixed = 0;
    const counting = (inner: Store): Store => {
      const query: Store['query'] = async (sql, params, options) => {
        if (sql.includes('w1 AS (')) mixed++;
        return inner.query(sql, params, options);
      };
      return new Proxy(inner, { get: (t, p) => (p === 'query' ? query : Reflect.get(t, p, t)) });
    };
    const services = stores.map((store) => new ReceiptService({ store: counting(store), issuer: 'https://deputy.example.com', key, maxBatch: 6 }));
    const kinds: Kind[] = ['new', 'remembered', 'sub', 'revoked-sub'];
    const calls: Call[] = [];
    const running: Promise<void>[] = [];
    for (let n = 0; n < 120; n++) {
      const kind = kinds[(n * 7 + (n >> 2)) % kinds.length]!;
      const writer = (n * 5 + (n >> 3)) % 2;
      let parts: StatementPart[];
      let rec: NewTokenRecord;
      let also: () => Promise<StatementPart | undefined>;
      let handle: string | undefined;
      if (kind === 'new') {
        handle = `upt-${hex()}`;
        rec = record(agent, { upstream: handle });
        const row = await vault.putPart(secret(handle));
        parts = [row, records.insertPart(rec)];
        also = async () => row;
      } else if (kind === 'remembered') {
        handle = remembered[n % remembered.length]!;
        rec = record(agent, { upstream: handle });
        parts = [records.insertPart(rec, vault.exists(handle))];
        const h = handle;
        also = () => vault.putPart(secret(h), { ifAbsent: true });
      } else {
        const parent = kind === 'sub' ? root : dead;
        rec = record(agent, { parentJti: parent.jti, rootJti: parent.rootJti });
        parts = [records.insertPart(rec)];
        also = async () => undefined;
      }
      const resource = `https://api.example.com/${rec.jti}`;
      const call: Call = { kind, jti: rec.jti, resource, ...(handle ? { handle } : {}) };
      calls.push(call);
      const input: ReceiptInput = { agent, chain: [agent], event: 'token_exchange', action: 'delegate', resource, decision: 'permit' };
      const once = [{ namespace: 'RealStormJti', key: rec.jti, ttlSeconds: 300 }];
      const r = rec;
      const done = services[writer]!.appendWith(input, { once, parts, inTransaction: async (tx: Queryable) => records.insert(tx, r, await also()) });
      running.push(done.then((value) => void (call.outcome = { status: 'fulfilled', value }), (reason: unknown) => void (call.outcome = { status: 'rejected', reason })));
      // A remembered row deleted now and then (a purge): its statements refuse, the locked path writes it again.
      if (n % 17 === 5) await stores[1]!.query('DELETE FROM vault_secrets WHERE handle = $1', [remembered[n % remembered.length]]);
      if (n % 3 === 0) await new Promise((res) => setImmediate(res));
    }
    await Promise.all(running);
    for (const s of services) await s.flush();

    const chain = await exportedChain(stores[0]!, agent, key);
    const jtis = new Set((await stores[0]!.query<{ jti: string }>('SELECT jti FROM token_records WHERE agent_id = $1', [agent])).map((r) => r.jti));
    const handles = new Set((await stores[0]!.query<{ handle: string }>('SELECT handle FROM vault_secrets')).map((r) => r.handle));
    for (const c of calls) {
      const o = c.outcome!;
      if (c.kind === 'revoked-sub') {
        expect(o.status, c.jti).toBe('rejected');
        expect((o as PromiseRejectedResult).reason).toBeInstanceOf(ParentRevoked);
        expect(jtis.has(c.jti)).toBe(false);
        expect(chain.has(c.resource)).toBe(false);
        continue;
      }
      expect(o.status, `${c.kind} ${c.jti}: ${o.status === 'rejected' ? String(o.reason) : ''}`).toBe('fulfilled');
      expect(chain.get(c.resource)).toBe((o as PromiseFulfilledResult<AppendedReceipt>).value.seq);
      expect(jtis.has(c.jti), c.jti).toBe(true);
      if (c.kind === 'new') expect(handles.has(c.handle!)).toBe(true);
    }
    expect(mixed).toBeGreaterThan(3);
    expect(chain.size).toBe(calls.filter((c) => c.kind !== 'revoked-sub').length);
  }, 120_000);
});
