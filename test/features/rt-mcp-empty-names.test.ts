/**
 * Red team (issue 16, twelfth round: receipt inputs from every producer). An MCP agent may name a
 * tool or prompt with the empty string (the protocol's schema takes any string). The receipt of
 * that message carried `mcp.tool: ""`, which `assertReceiptInput` refuses (1 to 2048 characters):
 * the receipt was never written, the call answered as a store outage and counted in
 * `deputy_receipt_append_failures_total` — an alert that means receipts cannot be written, which
 * an agent must not be able to raise. The message is now receipted (its denial) like any other.
 */
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientCredentialsToken, oauthClient } from '../support/clients.js';
import { connectMcp, startMcpDeputy, type McpDeputy } from '../support/mcp-deputy.js';
import type { TestDeputy } from '../support/server.js';

let mcp: McpDeputy;
let deputy: TestDeputy;
let adminToken: string;

beforeAll(async () => {
  mcp = await startMcpDeputy();
  deputy = mcp.deputy;
  adminToken = await clientCredentialsToken(await oauthClient(deputy.issuer, mcp.admin.clientId, mcp.admin.keys), 'deputy:admin');
}, 60_000);
afterAll(async () => {
  await mcp?.stop();
});

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${deputy.url}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(name)).reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
}

async function receipts(): Promise<Array<Record<string, unknown>>> {
  await deputy.receipts.flush();
  const res = await fetch(`${deputy.url}/admin/agents/agent-a/receipts?limit=200`, { headers: { authorization: `Bearer ${adminToken}` } });
  return ((await res.json()) as { receipts: Array<{ claims: Record<string, unknown> }> }).receipts.map((r) => r.claims);
}

describe('MCP messages naming the empty string', () => {
  it('a tools/call and a prompts/get named "" are answered as the agent\'s, receipted, and raise no receipt-failure alert', async () => {
    const { client } = await connectMcp(mcp, 'open');
    const failures = await metric('deputy_receipt_append_failures_total');
    const before = (await receipts()).length;
    for (const call of [() => client.callTool({ name: '', arguments: {} }), () => client.getPrompt({ name: '' })]) {
      const outcome = await call().then((result) => JSON.stringify(result), (e: unknown) => (e instanceof McpError ? e.message : String(e)));
      // Not the gateway's "could not be recorded" (a store outage as the agent sees it), whatever the upstream answered.
      expect(outcome).not.toMatch(/could not be recorded|temporarily/i);
    }
    await client.close();
    expect(await metric('deputy_receipt_append_failures_total')).toBe(failures);
    const after = await receipts();
    expect(after.length).toBeGreaterThanOrEqual(before + 2);
  }, 60_000);
});
