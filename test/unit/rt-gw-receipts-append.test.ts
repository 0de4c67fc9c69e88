/**
 * Red team of the tenth round's receipt append without an `async` wrapper
 * (src/audit/receipts.ts `checkedAppend`): whatever the input or the transaction does — an input
 * that is not an object, one whose fields throw when read, a transaction whose `query` throws
 * synchronously — every append method hands back a rejected promise and never throws where it
 * is called (the gateway, MCP, LLM, exchange and PDP callers chain `.then` on it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReceiptService } from '../../src/audit/receipts.js';
import type { ReceiptInput } from '../../src/audit/receipt.js';
import { generateSigningKey } from '../../src/keys/keystore.js';
import { migrate, type Queryable, type Store } from '../../src/store/index.js';
import { createPGliteStore } from '../../src/store/pglite.js';
import { gatewayReceiptInput } from '../support/receipt-crossing.js';

let store: Store;
let service: ReceiptService;

beforeAll(async () => {
  store = await createPGliteStore({ dataDir: 'memory://' });
  await migrate(store);
  service = new ReceiptService({ store, issuer: 'https://deputy.example.com', key: await generateSigningKey('EdDSA') });
});
afterAll(() => store?.close());

/** Calls `append` and returns what it handed back, failing the test if it threw instead. */
function handedBack(append: () => Promise<unknown>): Promise<unknown> {
  let out: Promise<unknown> | undefined;
  expect(() => { out = append(); }).not.toThrow();
  expect(out).toBeInstanceOf(Promise);
  return out!;
}

describe('receipt appends never throw at the call site', () => {
  const hostile = new Proxy({}, { get: () => { throw new Error('getter threw'); } }) as ReceiptInput;
  const inputs: ReceiptInput[] = [null as unknown as ReceiptInput, undefined as unknown as ReceiptInput, 'text' as unknown as ReceiptInput, hostile];
  const throwingTx: Queryable = { query: () => { throw new Error('query threw synchronously'); } } as unknown as Queryable;

  it('bad input: every method rejects', async () => {
    for (const bad of inputs) {
      await expect(handedBack(() => service.append(bad))).rejects.toBeInstanceOf(Error);
      await expect(handedBack(() => service.append(bad, throwingTx))).rejects.toBeInstanceOf(Error);
      await expect(handedBack(() => service.appendOnce(bad, { namespace: 'DPoPProof', key: 'rt-bad', ttlSeconds: 60 }))).rejects.toBeInstanceOf(Error);
      await expect(handedBack(() => service.appendWith(bad, { once: [], parts: [], inTransaction: async () => {} }))).rejects.toBeInstanceOf(Error);
    }
  });

  it('a transaction whose query throws synchronously: append rejects with its error', async () => {
    await expect(handedBack(() => service.append(gatewayReceiptInput('rt-tx', 1), throwingTx))).rejects.toThrow('query threw synchronously');
  });
});
