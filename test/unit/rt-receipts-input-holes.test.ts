/**
 * Red team (issue 16, twelfth round: assertReceiptInput's rewrite refuses a list with a hole). The
 * rewrite refused holes in `chain` and `policies`, but `charges` was still walked with `forEach`,
 * which skips holes: a charges list with a hole passed the check and its hole reached the signed
 * receipt as `null` (`receiptClaims` maps it, JSON writes it as null) — a receipt whose charge an
 * auditor cannot read. Every list of the input is now walked by index, a hole refused by name.
 */
import { describe, expect, it } from 'vitest';
import { assertReceiptInput, EMPTY_TEXT, receiptText, type ReceiptInput } from '../../src/audit/receipt.js';
import { ReceiptService } from '../../src/audit/receipts.js';
import { generateSigningKey } from '../../src/keys/keystore.js';
import type { Store } from '../../src/store/index.js';

const base: ReceiptInput = { agent: 'a', user: 'u', chain: ['a'], event: 'gateway_call', action: 'GET', resource: 'r', decision: 'permit' };
const charge = { budget: 'b', unit: 'requests', amount: 1 };

describe('assertReceiptInput: charges', () => {
  it('refuses a charges list with a hole, naming the element', () => {
    // eslint-disable-next-line no-sparse-arrays
    expect(() => assertReceiptInput({ ...base, charges: [, charge] } as never)).toThrow('receipt charges[0] must be an object');
    // eslint-disable-next-line no-sparse-arrays
    expect(() => assertReceiptInput({ ...base, charges: [charge, , charge] } as never)).toThrow('receipt charges[1] must be an object');
    expect(() => assertReceiptInput({ ...base, charges: [charge, null] } as never)).toThrow('receipt charges[1] must be an object');
    expect(() => assertReceiptInput({ ...base, charges: [charge, charge] })).not.toThrow();
  });

  it('a receipt service refuses the append before anything is signed or written', async () => {
    let queries = 0;
    const store = { kind: 'pglite', query: async () => { queries++; return []; } } as unknown as Store;
    const service = new ReceiptService({ store, issuer: 'https://deputy.example.com', key: await generateSigningKey('EdDSA') });
    // eslint-disable-next-line no-sparse-arrays
    await expect(service.append({ ...base, charges: [, charge] } as never)).rejects.toThrow(TypeError);
    expect(queries).toBe(0);
  });
});

describe('receiptText: caller-derived empty text', () => {
  it('fits a receipt field (1 character at least) as the empty marker', () => {
    expect(receiptText('')).toBe(EMPTY_TEXT);
    expect(() => assertReceiptInput({ ...base, resource: receiptText(''), mcp: { server: 's', method: 'tools/call', tool: receiptText('') } })).not.toThrow();
  });
});
