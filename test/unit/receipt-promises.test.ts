/**
 * What a receipt append costs the call around it in promises (issue 16, twelfth round): each
 * promise is an allocation and, under Node 22's `AsyncLocalStorage` (oidc-provider enters one), a
 * promise-hook call. Counted, never timed: the signer adds nothing to jose's own signature, and a
 * lone append (the gateway's call at concurrency 1) adds a bounded number over that signature.
 */
import { AsyncLocalStorage, createHook } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { CompactSign, importJWK, type CryptoKey } from 'jose';
import { describe, expect, it } from 'vitest';
import { receiptClaims, ReceiptSigner, RECEIPT_TYP, type ReceiptInput, type ReceiptSigningKey } from '../../src/audit/receipt.js';
import { ReceiptService } from '../../src/audit/receipts.js';
import { generateSigningKey } from '../../src/keys/keystore.js';
import type { Store } from '../../src/store/index.js';

/** Promises created while `fn` runs and what it starts settles; the least of `runs` (the runner's own RPC may fall into one). */
async function fewestPromises(fn: () => Promise<unknown>, runs = 7): Promise<number> {
  let least = Infinity;
  for (let i = 0; i < runs; i++) {
    let n = 0;
    const hook = createHook({ init: (_id, type) => void (type === 'PROMISE' && (n += 1)) }).enable();
    try {
      await fn();
      await new Promise((r) => setImmediate(r));
    } finally {
      hook.disable();
    }
    least = Math.min(least, n);
  }
  return least;
}

/** A store whose every statement succeeds at once (the append's statement answers "written"). */
function instantStore(): Store {
  const store = {
    kind: 'pglite',
    query: async (sql: string) => (sql.includes('moved') ? [{ moved: 1 }] : [{ id: 'k' }]),
    exec: async () => {},
    transaction: async (body: (tx: unknown) => unknown) => body(store),
  };
  return store as unknown as Store;
}

const input = (): ReceiptInput => ({
  agent: 'agent-a', user: 'okta:00u1', chain: ['agent-a'], event: 'gateway_call', action: 'GET', resource: 'https://deputy.example/gw/echo/items',
  decision: 'permit', policies: ['p1'], scope: 'echo.read', requestId: randomUUID(), requestDigest: 'sha-256:AAAA', tokenId: 'tok-1',
});

describe('receipt appends: promises per append (issue 16, twelfth round)', () => {
  new AsyncLocalStorage<{ server: true }>().enterWith({ server: true });

  it('ReceiptSigner.sign creates no promise beyond jose CompactSign.sign with the same key', async () => {
    const key: ReceiptSigningKey = { jwk: (await generateSigningKey('ES256')).jwk as ReceiptSigningKey['jwk'] };
    const signer = new ReceiptSigner(key);
    const cryptoKey = (await importJWK(key.jwk, 'ES256')) as CryptoKey;
    const claims = receiptClaims(input(), { iss: 'https://deputy.example', jti: randomUUID(), iat: 1_764_500_000, seq: 1, prev: 'x' });
    await signer.sign(claims); // the key imported
    const jose = () => new CompactSign(new TextEncoder().encode(JSON.stringify(claims))).setProtectedHeader({ alg: 'ES256', kid: key.jwk.kid, typ: RECEIPT_TYP }).sign(cryptoKey);
    await jose();
    expect(await fewestPromises(() => signer.sign(claims))).toBeLessThanOrEqual(await fewestPromises(jose));
  });

  it('a lone once-keyed append adds at most 20 promises to its signature (50 − 21 = 29 before this round)', async () => {
    const key: ReceiptSigningKey = { jwk: (await generateSigningKey('ES256')).jwk as ReceiptSigningKey['jwk'] };
    const service = new ReceiptService({ store: instantStore(), issuer: 'https://deputy.example', key });
    const signer = new ReceiptSigner(key);
    const claims = receiptClaims(input(), { iss: 'https://deputy.example', jti: randomUUID(), iat: 1_764_500_000, seq: 1, prev: 'x' });
    const append = () => service.appendOnce(input(), { namespace: 'DPoPProof', key: randomUUID(), ttlSeconds: 300 }, Promise.resolve());
    for (let i = 0; i < 3; i++) {
      await append(); // the head remembered, the paths compiled
      await signer.sign(claims);
    }
    const appended = await fewestPromises(append);
    const signed = await fewestPromises(() => signer.sign(claims));
    expect(appended - signed).toBeLessThanOrEqual(20);
  });
});

describe('receipt appends: a `ready` that rejects while the receipt is signed (issue 16, twelfth round)', () => {
  it('a lone append refuses with its error, writes nothing, and leaves no unhandled rejection even when the caller attached no handler', async () => {
    const key: ReceiptSigningKey = { jwk: (await generateSigningKey('ES256')).jwk as ReceiptSigningKey['jwk'] };
    const statements: string[] = [];
    const store = instantStore();
    const counted = { ...store, query: (sql: string, ...rest: unknown[]) => (statements.push(sql), (store.query as (...a: unknown[]) => Promise<unknown>)(sql, ...rest)) } as unknown as Store;
    const service = new ReceiptService({ store: counted, issuer: 'https://deputy.example', key });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      // Rejects on the next turn of the event loop: before the receipt's signature (a thread-pool job) is back.
      const ready = new Promise<void>((_resolve, reject) => setImmediate(() => reject(new Error('forged proof'))));
      // The append's own outcome is taken at once (as the receipt step does); only `ready` goes unhandled by the caller.
      const outcome = service.appendOnce(input(), { namespace: 'DPoPProof', key: randomUUID(), ttlSeconds: 300 }, ready).then(() => 'written', (err: unknown) => err);
      await new Promise((r) => setTimeout(r, 20)); // past the rejection and the signature
      expect(await outcome).toEqual(new Error('forged proof'));
      await new Promise((r) => setTimeout(r, 20));
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
    expect(statements.filter((sql) => !sql.startsWith('SELECT'))).toEqual([]); // the head read only: nothing written
  });
});
