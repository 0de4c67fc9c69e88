/**
 * Red team (issue 16, twelfth round: receipts without async wrappers — derived promises in
 * #sign, #signGroup, #writeGroup, whenOneReady, settled, runConditional). Every way an append can
 * fail mid-flight rejects exactly the appends it concerns, with their error, and leaves no
 * rejection unhandled: the store failing mid-group (connection lost: not a refusal) while callers'
 * `ready` promises reject afterwards; the signer's key import failing, for lone appends and for
 * appends queued behind one in flight; an `appendWith` whose input is invalid while its `ready`
 * rejects. The service writes again once the store answers.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ReceiptInput, ReceiptSigningKey } from '../../src/audit/receipt.js';
import { ReceiptService, type AttestedWrites } from '../../src/audit/receipts.js';
import { generateSigningKey } from '../../src/keys/keystore.js';
import type { Store } from '../../src/store/index.js';

let unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);
beforeEach(() => {
  unhandled = [];
  process.on('unhandledRejection', onUnhandled);
});
afterEach(() => {
  process.off('unhandledRejection', onUnhandled);
});

/** Lets every pending rejection be reported (unhandled ones are reported after the microtask queue drains). */
const drained = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 20));
};

const input = (agent = 'agent-a'): ReceiptInput => ({ agent, user: 'u', chain: [agent], event: 'token_exchange', action: 'delegate', resource: `https://api.example/${randomUUID()}`, decision: 'permit' });

/** A store that reads an empty chain and fails (or answers) every append statement after `delay` ms. */
function flakyStore(kind: 'postgres' | 'pglite', state: { fail: boolean }): Store {
  const store = {
    kind,
    query: async (sql: string) => {
      if (sql.startsWith('SELECT seq, head')) return [];
      await new Promise((r) => setTimeout(r, 5));
      if (state.fail) throw Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' });
      return sql.includes('moved') ? [{ moved: 1 }] : [];
    },
    exec: async () => {},
    transaction: async (body: (tx: unknown) => unknown) => body(store),
  };
  return store as unknown as Store;
}

function writes(ready?: Promise<unknown>): AttestedWrites {
  return {
    once: [{ namespace: 'RtRej', key: randomUUID(), ttlSeconds: 60 }],
    parts: [{ sql: (first) => `INSERT INTO t VALUES ($${first})`, params: ['x'] }],
    inTransaction: async () => {},
    ...(ready ? { ready } : {}),
  };
}

describe('receipt appends failing mid-flight', () => {
  for (const kind of ['postgres', 'pglite'] as const) {
    it(`a store failing mid-group rejects its appends with the store's error, callers' late refusals unhandled nowhere (${kind})`, async () => {
      const state = { fail: true };
      const service = new ReceiptService({ store: flakyStore(kind, state), issuer: 'https://deputy.example', key: await generateSigningKey('EdDSA') });
      const rejects: ((e: unknown) => void)[] = [];
      const appends = Array.from({ length: 6 }, (_, i) => {
        const ready = i % 2 ? new Promise((_, reject) => rejects.push(reject)) : Promise.resolve();
        return i % 3 === 2 ? service.appendOnce(input(), { namespace: 'RtRejOnce', key: randomUUID(), ttlSeconds: 60 }, ready) : service.appendWith(input(), writes(ready));
      });
      // The callers' promises reject after the statement failed (and while later groups wait on them).
      setTimeout(() => rejects.forEach((r) => r(new Error('late'))), 8);
      const outcomes = await Promise.allSettled(appends);
      await service.flush();
      await drained();
      expect(outcomes.every((o) => o.status === 'rejected')).toBe(true);
      expect(unhandled).toEqual([]);
      state.fail = false;
      expect((await service.append(input())).seq).toBe(1);
    });
  }

  it('a signing key that cannot be imported rejects every append with the import error, lone or queued, no rejection unhandled', async () => {
    const good = await generateSigningKey('EdDSA');
    const bad = { jwk: { ...good.jwk, d: 'not-a-key', x: 'AA' } } as ReceiptSigningKey;
    const service = new ReceiptService({ store: flakyStore('postgres', { fail: false }), issuer: 'https://deputy.example', key: bad });
    await expect(service.append(input())).rejects.toThrow();
    let fail!: (e: unknown) => void;
    const ready = new Promise((_, reject) => (fail = reject));
    const many = [service.appendWith(input(), writes(ready)), service.append(input()), service.appendWith(input(), writes(Promise.reject(new Error('early')))), service.append(input('agent-b'))];
    fail(new Error('late'));
    const outcomes = await Promise.allSettled(many);
    await service.flush();
    await drained();
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected', 'rejected', 'rejected']);
    expect(unhandled).toEqual([]);
  });

  it('an invalid input rejects with its TypeError, its ready refusing later unhandled nowhere', async () => {
    const service = new ReceiptService({ store: flakyStore('postgres', { fail: false }), issuer: 'https://deputy.example', key: await generateSigningKey('EdDSA') });
    let fail!: (e: unknown) => void;
    const ready = new Promise((_, reject) => (fail = reject));
    const bad = { ...input(), resource: '' };
    const appended = service.appendWith(bad, writes(ready));
    const once = service.appendOnce(bad, { namespace: 'RtRejOnce', key: randomUUID(), ttlSeconds: 60 }, Promise.reject(new Error('forged')));
    fail(new Error('late'));
    await expect(appended).rejects.toThrow(TypeError);
    await expect(once).rejects.toThrow(TypeError);
    await drained();
    expect(unhandled).toEqual([]);
  });
});
