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
