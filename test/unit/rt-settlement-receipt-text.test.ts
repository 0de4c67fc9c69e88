/**
 * Red team (issue 16, twelfth round: receipt inputs from every producer). The decision receipt of
 * a call names its resource through `receiptText` (token-shaped runs as `[token]`, long text cut
 * with its digest), but the `budget_settlement` receipt after a charged call named the raw
 * `action.resource`: a gateway path, an MCP tool name or an LLM model that looks like a JWS, or a
 * path past 2048 characters — the agent's own choice — had its settlement receipt refused
 * (assertReceiptInput), so a charged call had no settlement receipt, the append counted as a
 * receipt-store failure (`deputy_receipt_append_failures_total`: an alert an agent must not raise)
 * and the LLM gateway logged "budget reservation could not be settled" and skipped its usage hook.
 * The settlement receipt now names the resource as the decision receipt does.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { receiptText } from '../../src/audit/receipt.js';
import { ReceiptService, type AppendedReceipt } from '../../src/audit/receipts.js';
import { settlementReceipt } from '../../src/budgets/budgeter.js';
import type { ActionContext, Described } from '../../src/enforcement/index.js';
import { generateSigningKey } from '../../src/keys/keystore.js';
import type { Store } from '../../src/store/index.js';

/** A store whose every append statement answers "written". */
function instantStore(): Store {
  const store = { kind: 'pglite', query: async (sql: string) => (sql.includes('moved') ? [{ moved: 1 }] : []), exec: async () => {}, transaction: async (body: (tx: unknown) => unknown) => body(store) };
  return store as unknown as Store;
}

const JWS = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlc2lnbmF0dXJl';

function ctx(resource: string): ActionContext & Described {
  return {
    admission: { principal: { agentId: 'agent-a', userId: 'alice', chain: ['agent-a'], tokenJti: 'tok-1', scopes: new Set(['read']) }, requestId: randomUUID() },
    action: { event: 'gateway_call', name: 'GET', resource, digest: { method: 'GET', path: resource } },
  } as unknown as ActionContext & Described;
}

describe('the budget_settlement receipt names its resource as the decision receipt does', () => {
  for (const [label, resource] of [
    ['a token-shaped path', `https://deputy.example/gw/api/items/${JWS}`],
    ['a path past 2048 characters', `https://deputy.example/gw/api/${'x'.repeat(3000)}`],
    ['an MCP tool named like a token', `https://deputy.example/mcp/tools/tools/${JWS}`],
  ] as const) {
    it(`is written for ${label}`, async () => {
      const service = new ReceiptService({ store: instantStore(), issuer: 'https://deputy.example', key: await generateSigningKey('EdDSA') });
      let written: AppendedReceipt | undefined;
      const appender = { append: async (input: Parameters<ReceiptService['append']>[0]) => (written = await service.append(input)) };
      await settlementReceipt(appender, ctx(resource), [{ budgetId: 'b', unit: 'requests', charged: 1, uncharged: 0 }]);
      expect(written?.claims).toMatchObject({ event: 'budget_settlement', resource: receiptText(resource) });
      expect(JSON.stringify(written!.claims)).not.toContain(JWS);
    });
  }
});
