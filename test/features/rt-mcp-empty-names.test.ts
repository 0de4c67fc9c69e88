/**
 * Red team (issue 16, twelfth round: receipt inputs from every producer). An MCP agent may name a
 * tool or prompt with the empty string (the protocol's schema takes any string). The receipt of
 * that message carried `mcp.tool: ""`, which `assertReceiptInput` refuses (1 to 2048 characters):
 * the receipt was never written, the call answered as a store outage and counted in
 * `deputy_receipt_append_failures_total` — an alert that means receipts cannot be written, which
 * an agent must not be able to raise. The message is now receipted (its denial) like any other.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient } from '../support/clients.js';
import { mcpAgent, startMcpUpstream, type McpUpstream } from '../support/mcp.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const MCP_KEY = `mcp_key_${randomBytes(16).toString('hex')}`;
const SCOPE = 'mcp:tools';

let idp: MockIdp;
let up: McpUpstream;
let deputy: TestDeputy;
let issuer: string;
let adminToken: string;
let agent: TestAgent;

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMcpUpstream();
  const port = await freePort();
  issuer = `http://localhost:${port}`;
  const a = await adminSetup();
  const keys = await clientKeys();
  deputy = await startTestDeputy({
    env: { MCP_KEY },
    config: {
      server: { port },
      admin: { clients: [a.config] },
      pdp: { policies: `${REPO}test/fixtures/policies/mcp`, watch: false },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [agentConfig('agent-a', keys, { scopes: [SCOPE], audiences: [`${issuer}/mcp/open`] })],
      connections: [{ id: 'mcpkey', kind: 'api_key', baseUrl: up.url, allowInsecureHttp: true, header: 'Authorization', scheme: 'Bearer', secret: { env: 'MCP_KEY' } }],
      mcpServers: [{ id: 'open', url: up.url, allowInsecureHttp: true, connection: 'mcpkey', requiredScopes: [SCOPE], pinning: 'off' }],
    },
  });
  agent = await testAgent(deputy.issuer, 'agent-a', keys);
  adminToken = await clientCredentialsToken(await oauthClient(deputy.issuer, a.clientId, a.keys), 'deputy:admin');
}, 60_000);
afterAll(async () => {
  await deputy?.stop();
  await up?.close();
  await idp?.close();
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
    const subject = await idp.oktaAccessToken({ scp: [SCOPE] });
    const token = (await exchange(agent, { subject_token: subject, resource: `${issuer}/mcp/open`, scope: SCOPE })).access_token;
    const { client } = await mcpAgent(`${issuer}/mcp/open`, agent, token);
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
