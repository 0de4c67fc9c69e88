/**
 * `receiptClaims` (src/audit/receipt.ts) was rebuilt without throwaway objects (issue 16, eighth
 * round). A receipt's payload bytes are what its signature and the next receipt's `prev` hash
 * cover, and auditors re-verify receipts written by every version offline: the claims must
 * serialize exactly as before — same members, same key order, absent members left out, `null`
 * kept. The reference below is the function as it was before that round, verbatim in behaviour.
 */
import { describe, expect, it } from 'vitest';
import { receiptClaims, type ReceiptClaims, type ReceiptInput } from '../../src/audit/receipt.js';

const AT = { iss: 'https://deputy.example.com', jti: 'r-1', iat: 1_800_000_000, seq: 7, prev: 'sha-256:prev' };

/** The claims as built before issue 16's eighth round (spread and filtered entries). */
function before(input: ReceiptInput, at: typeof AT): ReceiptClaims {
  const optional = {
    user: input.user,
    reason: input.reason,
    scope: input.scope,
    request_id: input.requestId,
    request_digest: input.requestDigest,
    token_id: input.tokenId,
    mcp: input.mcp === undefined ? undefined : { ...input.mcp },
  };
  return {
    iss: at.iss, jti: at.jti, iat: at.iat, seq: at.seq, prev: at.prev, agent: input.agent, chain: [...input.chain], event: input.event,
    action: input.action, resource: input.resource, decision: input.decision, policies: [...new Set(input.policies ?? [])],
    ...(input.charges ? { charges: input.charges.map((c) => ({ budget: c.budget, unit: c.unit, amount: c.amount })) } : {}),
    ...(Object.fromEntries(Object.entries(optional).filter(([, v]) => v !== undefined)) as Partial<ReceiptClaims>),
  };
}

/** Each optional member with a value, written in an order other than the payload's. */
const OPTIONAL: Partial<ReceiptInput> = {
  mcp: { server: 'files', method: 'tools/call', tool: 'read' } as ReceiptInput['mcp'],
  tokenId: 'tok-1',
  charges: [{ budget: 'b', unit: 'requests', amount: 1 }] as ReceiptInput['charges'],
  requestDigest: 'sha-256:abc',
  requestId: 'req-1',
  scope: 'read write',
  reason: 'denied by policy',
  user: 'okta:alice',
  policies: ['p2', 'p1', 'p2'],
};

/** Every subset of the optional members (2⁹ inputs), each present member also tried as `null`. */
function inputs(): ReceiptInput[] {
  const keys = Object.keys(OPTIONAL) as Array<keyof ReceiptInput>;
  const out: ReceiptInput[] = [];
  for (let mask = 0; mask < 1 << keys.length; mask += 1) {
    for (const asNull of [false, true]) {
      const input: Record<string, unknown> = { agent: 'agent-a', chain: ['agent-a'], event: 'gateway_call', action: 'GET', resource: 'https://api.example.com/x', decision: 'permit' };
      keys.forEach((key, i) => {
        if (mask & (1 << i)) input[key] = asNull && key !== 'policies' && key !== 'charges' && key !== 'mcp' ? null : OPTIONAL[key];
      });
      out.push(input as unknown as ReceiptInput);
    }
  }
  return out;
}

describe('receipt claims', () => {
  it('serialize byte for byte as before the eighth round, for every combination of optional members', () => {
    for (const input of inputs()) expect(JSON.stringify(receiptClaims(input, AT))).toBe(JSON.stringify(before(input, AT)));
  });

  it('keep the payload key order receipts already written have', () => {
    const full = receiptClaims({ agent: 'agent-a', chain: ['agent-a'], event: 'gateway_call', action: 'GET', resource: 'r', decision: 'permit', ...OPTIONAL } as ReceiptInput, AT);
    expect(Object.keys(full)).toEqual([
      'iss', 'jti', 'iat', 'seq', 'prev', 'agent', 'chain', 'event', 'action', 'resource', 'decision', 'policies',
      'charges', 'user', 'reason', 'scope', 'request_id', 'request_digest', 'token_id', 'mcp',
    ]);
  });
});
