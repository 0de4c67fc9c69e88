/**
 * Red team (issue 16, thirteenth round) of the once-keys as a plain INSERT in the receipt
 * statements: one agent's concurrent appends from two instances mixing fresh keys, a live replay
 * and a key expired but not purged (sent by both instances at once) — every fresh append written
 * exactly once, the live replay refused, the expired key taken over by exactly one, the chain
 * linear; then the purge removes the rows those statements wrote once they expire. Both stores.
 */
import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { readHead, readRange } from '../../src/audit/chain.js';
import type { ReceiptInput } from '../../src/audit/receipt.js';
import { AlreadyRecorded, ReceiptService } from '../../src/audit/receipts.js';
import { generateSigningKey } from '../../src/keys/keystore.js';
import { purgeExpired, type OnceKey } from '../../src/oauth/adapter.js';
import type { Store } from '../../src/store/index.js';
import { useTwoInstanceStores } from '../support/two-instances.js';

const opened = useTwoInstanceStores();
let stores: [Store, Store];
beforeAll(() => {
  stores = opened();
});

const NS = 'RtPlainInsert';
const key = (k: string): OnceKey => ({ namespace: NS, key: k, ttlSeconds: 60 });

describe('once-keys as a plain INSERT in the receipt statements', () => {
  it('two instances, one agent: fresh keys written once, a live replay refused, an expired unpurged key taken over by exactly one; the purge removes the rows once expired', async () => {
    const agent = `rt-plain-${randomUUID()}`;
    const signing = await generateSigningKey('ES256');
    const services = stores.map((store) => new ReceiptService({ store, issuer: 'https://deputy.example.com', key: signing }));
    const input = (n: number): ReceiptInput => ({ agent, chain: [agent], event: 'gateway_call', action: 'invoke', resource: `https://api.example.com/${n}`, decision: 'permit' });
    const [live, expired] = [randomUUID(), randomUUID()];
    await stores[0].query(`INSERT INTO oidc_models (model, id, payload, expires_at) VALUES ($1, $2, '{}'::jsonb, now() + interval '1 minute'), ($1, $3, '{}'::jsonb, now() - interval '1 minute')`, [NS, live, expired]);
    const fresh = Array.from({ length: 6 }, () => randomUUID());
    const calls = [
      ...fresh.map((k, i) => services[i % 2]!.appendOnce(input(i), key(k))),
      services[0]!.appendOnce(input(10), key(live)),
      services[1]!.appendOnce(input(11), key(live)),
      services[0]!.appendOnce(input(12), key(expired)),
      services[1]!.appendOnce(input(13), key(expired)),
    ];
    const settled = await Promise.allSettled(calls);
    const ok = settled.filter((s) => s.status === 'fulfilled');
    const refused = settled.flatMap((s) => (s.status === 'rejected' ? [s.reason as unknown] : []));
    expect(settled.slice(0, 6).every((s) => s.status === 'fulfilled')).toBe(true);
    expect(settled.slice(6, 8).every((s) => s.status === 'rejected')).toBe(true);
    expect(settled.slice(8).filter((s) => s.status === 'fulfilled')).toHaveLength(1);
    expect(refused).toHaveLength(3);
    for (const r of refused) expect(r).toBeInstanceOf(AlreadyRecorded);
    const chain = await readRange(stores[0], agent, 1, 20, 20);
    expect(chain.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(await readHead(stores[0], agent)).toMatchObject({ seq: 7 });
    expect(new Set(chain.map((r) => r.id)).size).toBe(ok.length);
    const rows = await stores[0].query<{ n: number }>('SELECT count(*)::int AS n FROM oidc_models WHERE model = $1 AND expires_at > now()', [NS]);
    expect(rows[0]!.n).toBe(fresh.length + 2);
    // The rows the statements wrote expire like any other: the purge removes every one.
    await stores[0].query(`UPDATE oidc_models SET expires_at = now() - interval '1 second' WHERE model = $1`, [NS]);
    expect(await purgeExpired(stores[1])).toBeGreaterThanOrEqual(fresh.length + 2);
    expect(await stores[0].query('SELECT 1 FROM oidc_models WHERE model = $1', [NS])).toEqual([]);
  });
});
