import { describe, expect, it } from 'vitest';
import { assertReceiptInput, receiptText } from '../../src/audit/receipt.js';

const jwt = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz';

describe('receiptText: caller-derived text made fit for a receipt', () => {
  it('keeps ordinary text as it is', () => {
    expect(receiptText('https://deputy.example.com/gw/github/repos/acme/x')).toBe('https://deputy.example.com/gw/github/repos/acme/x');
  });

  it('replaces token-shaped runs, so the receipt check accepts the result', () => {
    const text = receiptText(`https://deputy.example.com/gw/api/share/${jwt}/view`);
    expect(text).toBe('https://deputy.example.com/gw/api/share/[token]/view');
    expect(() => assertReceiptInput({ agent: 'a', user: 'u', chain: ['a'], event: 'gateway_call', action: 'GET', resource: text, decision: 'permit' } as never)).not.toThrow();
  });

  it('shortens long text to the limit and names the whole by its digest', () => {
    const long = `/gw/api/${'x'.repeat(5000)}`;
    const a = receiptText(long, 2048);
    const b = receiptText(`${long}y`, 2048);
    expect(a.length).toBeLessThanOrEqual(2048);
    expect(a).toMatch(/…#sha256:[A-Za-z0-9_-]{43}$/);
    expect(a).not.toBe(b);
  });
});

describe('assertReceiptInput: lists (issue 16, twelfth round)', () => {
  const base = { agent: 'a', user: 'u', event: 'gateway_call', action: 'GET', resource: 'r', decision: 'permit' } as const;

  it('refuses a chain or policy list with a hole, naming the element (forEach skipped holes, which reached the claims as null)', () => {
    // eslint-disable-next-line no-sparse-arrays
    expect(() => assertReceiptInput({ ...base, chain: ['a', , 'b'] } as never)).toThrow('receipt chain[1] must be a string of 1 to 256 characters');
    // eslint-disable-next-line no-sparse-arrays
    expect(() => assertReceiptInput({ ...base, chain: ['a'], policies: [, 'p'] } as never)).toThrow('receipt policies[0] must be a string of 1 to 256 characters');
  });
});
