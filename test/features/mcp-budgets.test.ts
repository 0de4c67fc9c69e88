/**
 * Per-tool budgets at the MCP gateway (issue 15): the official MCP SDK as the agent, an SDK
 * server upstream that counts the calls reaching it, Deputy between them. Each `tools/call`
 * reserves one request and the tool's cost (`toolCosts`, else `costPerCall`) before the upstream
 * call and settles after it; an exhausted budget is a JSON-RPC error carrying the 402 problem
 * object, and the session stays usable.
 */
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { BudgetDefinition } from '../../src/budgets/index.js';
import { MCP_DENIED, toolCost } from '../../src/mcp/index.js';
import { agentConfig, claimsOf, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient } from '../support/clients.js';
import { baseTools, mcpAgent, startMcpUpstream, type McpUpstream } from '../support/mcp.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { parsePrometheus, sampleValue } from '../support/prometheus.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const SCOPE = 'mcp:tools';
const PROBLEM = 'https://deputy.dev/problems/budget-exceeded';

let idp: MockIdp;
let up: McpUpstream;
let deputy: TestDeputy;
let adminToken: string;
const agents: Record<string, TestAgent> = {};
const mcpUrl = (server: string) => `${deputy.issuer}/mcp/${server}`;

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMcpUpstream();
  // A tool whose upstream answers a JSON-RPC error (test/support/mcp.ts).
  up.tools = [...baseTools(), { name: 'fail', description: 'Always fails.', inputSchema: { type: 'object', properties: {} } }];
  const port = await freePort();
  const issuer = `http://localhost:${port}`;
  const a = await adminSetup();
  const keys = { 'agent-a': await clientKeys(), 'agent-b': await clientKeys() };
  const audiences = [`${issuer}/mcp/metered`, `${issuer}/mcp/other`];
  deputy = await startTestDeputy({
    config: {
      server: { port },
      admin: { clients: [a.config] },
      pdp: { policies: `${REPO}test/fixtures/policies/mcp`, watch: false },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [agentConfig('agent-a', keys['agent-a'], { scopes: [SCOPE], audiences }), agentConfig('agent-b', keys['agent-b'], { scopes: [SCOPE], audiences })],
      mcpServers: [
        { id: 'metered', url: up.url, allowInsecureHttp: true, requiredScopes: [SCOPE], pinning: 'off', costPerCall: 10, toolCosts: { echo: 100 } },
        { id: 'other', url: up.url, allowInsecureHttp: true, requiredScopes: [SCOPE], pinning: 'off' },
      ],
    },
  });
  for (const id of Object.keys(keys) as Array<keyof typeof keys>) agents[id] = await testAgent(deputy.issuer, id, keys[id]);
  adminToken = await clientCredentialsToken(await oauthClient(deputy.issuer, a.clientId, a.keys), 'deputy:admin');
}, 60_000);
afterAll(async () => {
  await deputy?.stop();
  await up?.close();
  await idp?.close();
});

const open: Client[] = [];
beforeEach(async () => {
  await Promise.allSettled(open.splice(0).map((c) => c.close()));
});

/** An SDK client on `server` for a fresh user (so user budgets see only this test's calls). */
async function connect(agent = 'agent-a', server = 'metered', uid = `00u${randomUUID().slice(0, 12)}`): Promise<{ client: Client; user: string }> {
  const subject = await idp.oktaAccessToken({ uid, scp: [SCOPE] });
  const token = (await exchange(agents[agent]!, { subject_token: subject, resource: mcpUrl(server), scope: SCOPE })).access_token;
  const { client } = await mcpAgent(mcpUrl(server), agents[agent]!, token);
  open.push(client);
  return { client, user: String(claimsOf(token).sub) };
}

async function budget(def: Omit<BudgetDefinition, 'id'>): Promise<string> {
  const id = `b-${randomUUID().slice(0, 8)}`;
  await deputy.budgets.definitions.create({ ...def, id });
  return id;
}

/** The budget's current window once no call holds a reservation on it (settling follows the answer). */
async function settled(id: string): Promise<{ spent: number; reserved: number }> {
  const b = (await deputy.budgets.definitions.get(id))!;
  for (let i = 0; i < 200; i++) {
    const usage = await deputy.budgets.ledger.usage(b);
    if (usage.reserved === 0) return usage;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`budget ${id} still holds a reservation`);
}

async function refusal(p: Promise<unknown>): Promise<McpError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(McpError);
  return err as McpError;
}

const hits = (tool: string) => up.hits.get(tool) ?? 0;
const echo = (client: Client) => client.callTool({ name: 'echo', arguments: { text: 'hi' } });

describe('per-tool budgets at the MCP gateway', () => {
  it('a budget created after "no budget applies" was remembered for the call (the synchronous skip) binds the next 12 concurrent calls', async () => {
    const { client, user } = await connect();
    await echo(client);
    await echo(client); // remembered: no budget applies to this user's calls
    const id = await budget({ user, unit: 'requests', window: 'day', limit: 3 });
    const before = hits('echo');
    const outcomes = await Promise.all(Array.from({ length: 12 }, () => echo(client).then(() => 'ok', (err: unknown) => (err instanceof McpError && (err.data as { type?: string } | undefined)?.type === PROBLEM ? 'budget' : String(err)))));
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(3);
    expect(outcomes.filter((o) => o !== 'ok').every((o) => o === 'budget')).toBe(true);
    expect(hits('echo') - before).toBe(3);
    expect(await settled(id)).toMatchObject({ spent: 3, reserved: 0 });
  });

  it('charges each call its tool\'s cost; the call the budget cannot cover is a JSON-RPC error with the 402 problem, reaches nothing, and the session stays usable', async () => {
    const { client, user } = await connect();
    const cost = await budget({ user, unit: 'cost', window: 'day', limit: 250 });
    const requests = await budget({ user, unit: 'requests', window: 'total', limit: 100 });
    await echo(client);
    await echo(client);
    expect(await settled(cost)).toMatchObject({ spent: 200, reserved: 0 });
    const before = hits('echo');
    const err = await refusal(echo(client));
    expect(err.code).toBe(MCP_DENIED);
    expect(err.message).toMatch(/Deputy refused tools\/call "echo": budget "b-[0-9a-f]+" cannot cover this call: 100 cost requested, 50 left of 250/);
    const data = err.data as Record<string, unknown>;
    expect(data).toMatchObject({
      type: PROBLEM, title: 'Budget exceeded', status: 402, budget: cost, unit: 'cost', currency: 'USD', limit: 250, spent: 200, reserved: 0, requested: 100,
      error: 'budget_exceeded',
    });
    expect(new Date(String(data.resets_at)).getTime()).toBeGreaterThan(Date.now());
    // What the HTTP gateways send as Retry-After: whole seconds until the day's window resets.
    expect(Number.isInteger(data.retry_after)).toBe(true);
    expect(data.retry_after).toBeGreaterThan(0);
    expect(data.retry_after).toBeLessThanOrEqual(86_400);
    expect(hits('echo')).toBe(before);
    // A tool without its own cost costs costPerCall (10): it still fits, on the same session.
    const counted = await client.callTool({ name: 'count', arguments: { n: 1 } });
    expect(counted.content).toEqual([{ type: 'text', text: 'counted to 1' }]);
    expect(await settled(cost)).toMatchObject({ spent: 210, reserved: 0 });
    expect(await settled(requests)).toMatchObject({ spent: 3, reserved: 0 });
  });

  it('per agent, per user, per server and per user×agent budgets all apply', async () => {
    const cases: Array<[string, (user: string) => Omit<BudgetDefinition, 'id'>]> = [
      ['agent', () => ({ agent: 'agent-b', unit: 'requests', window: 'day', limit: 1 })],
      ['user', (user) => ({ user, unit: 'requests', window: 'day', limit: 1 })],
      ['server', () => ({ connection: 'other', unit: 'requests', window: 'day', limit: 1 })],
      ['user×agent', (user) => ({ user, agent: 'agent-b', unit: 'requests', window: 'day', limit: 1 })],
    ];
    for (const [kind, def] of cases) {
      const uid = `00u${randomUUID().slice(0, 12)}`;
      const { client, user } = await connect('agent-b', 'other', uid);
      const id = await budget(def(user));
      try {
        await echo(client);
        const err = await refusal(echo(client));
        expect((err.data as { budget?: string }).budget, kind).toBe(id);
        expect(await settled(id), kind).toMatchObject({ spent: 1, reserved: 0 });
        // Outside the budget's selector the call goes through: another agent, or (for the server budget) another server.
        const outside = kind === 'server' ? await connect('agent-b', 'metered') : await connect('agent-a', 'other', uid);
        if (kind === 'user') await refusal(echo(outside.client)); // the user's budget covers every agent and server
        else expect((await echo(outside.client)).isError, kind).toBeFalsy();
      } finally {
        await deputy.budgets.definitions.delete(id);
      }
    }
  });

  it('20 concurrent calls against a budget admitting 5: at most 5 reach the upstream, spend within the limit', async () => {
    const { client, user } = await connect();
    const id = await budget({ user, unit: 'requests', window: 'day', limit: 5 });
    const before = hits('echo');
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, () =>
        echo(client).then(
          () => 'ok',
          (err: unknown) => (err instanceof McpError && (err.data as { type?: string } | undefined)?.type === PROBLEM ? 'budget' : String(err)),
        ),
      ),
    );
    const admitted = outcomes.filter((o) => o === 'ok').length;
    expect(admitted).toBeLessThanOrEqual(5);
    expect(admitted).toBeGreaterThan(0);
    expect(outcomes.filter((o) => o !== 'ok').every((o) => o === 'budget')).toBe(true);
    expect(hits('echo') - before).toBeLessThanOrEqual(5);
    const s = await settled(id);
    expect(s.spent).toBeLessThanOrEqual(5);
    expect(s.spent).toBe(admitted);
  });

  it('an upstream JSON-RPC error releases the reservation; a tool result with isError (the tool ran) is charged', async () => {
    const { client, user } = await connect();
    const id = await budget({ user, unit: 'requests', window: 'day', limit: 10 });
    const failed = await refusal(client.callTool({ name: 'fail', arguments: {} }));
    expect(failed.message).toMatch(/the tool failed upstream/);
    expect(hits('fail')).toBeGreaterThan(0);
    expect(await settled(id)).toMatchObject({ spent: 0, reserved: 0 });
    // `ask` asks the agent through elicitation, which this server refuses: the tool answers isError.
    const asked = await client.callTool({ name: 'ask', arguments: {} });
    expect(asked.isError).toBe(true);
    expect(await settled(id)).toMatchObject({ spent: 1, reserved: 0 });
  });

  it('tool costs are set through the admin API too (admin dialect: cost_per_call, tool_costs); a negative cost is refused', async () => {
    const headers = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' };
    const post = (body: unknown) => fetch(`${deputy.url}/admin/mcp-servers`, { method: 'POST', headers, body: JSON.stringify(body) });
    const created = await post({ id: 'priced', url: up.url, allow_insecure_http: true, cost_per_call: 5, tool_costs: { echo: 7 } });
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({ settings: { cost_per_call: 5, tool_costs: { echo: 7 } } });
    const stored = (await deputy.mcp.servers.get('priced'))!.settings;
    expect(toolCost(stored, 'echo')).toBe(7);
    expect(toolCost(stored, 'count')).toBe(5);
    expect(toolCost(stored, 'constructor')).toBe(5);
    const bad = await post({ id: 'mispriced', url: up.url, allow_insecure_http: true, tool_costs: { echo: -1 } });
    expect(bad.status).toBe(400);
    expect(await deputy.mcp.servers.get('mispriced')).toBeUndefined();
    expect((await fetch(`${deputy.url}/admin/mcp-servers/priced`, { method: 'DELETE', headers })).status).toBe(204);
  });

  it('a charged call leaves a budget_settlement receipt after its decision, and its charge reaches deputy_budget_spend_total', async () => {
    const scrape = async () => {
      const res = await fetch(`${deputy.url}/metrics`, { headers: { authorization: `Bearer ${adminToken}` } });
      expect(res.status).toBe(200);
      return parsePrometheus(await res.text());
    };
    const { client, user } = await connect();
    const cost = await budget({ user, unit: 'cost', window: 'day', limit: 1000 });
    const requests = await budget({ user, unit: 'requests', window: 'day', limit: 1000 });
    const before = await scrape();
    await echo(client);
    await client.callTool({ name: 'count', arguments: { n: 1 } });
    expect(await settled(cost)).toMatchObject({ spent: 110 });
    expect(await settled(requests)).toMatchObject({ spent: 2 });
    const after = await scrape();
    const moved = (budgetId: string, unit: string) => sampleValue(after, 'deputy_budget_spend_total', { budget: budgetId, unit }) - sampleValue(before, 'deputy_budget_spend_total', { budget: budgetId, unit });
    expect(moved(cost, 'cost')).toBe(110);
    expect(moved(requests, 'requests')).toBe(2);

    await deputy.receipts.flush();
    const rows = await deputy.store.query<{ jws: string }>('SELECT jws FROM receipts WHERE agent_id = $1 ORDER BY seq DESC LIMIT 20', ['agent-a']);
    const claims = rows.map((r) => claimsOf(r.jws)).filter((c) => c.user === user);
    const settlements = claims.filter((c) => c.event === 'budget_settlement');
    expect(settlements).toHaveLength(2);
    const echoSettlement = settlements.find((c) => String(c.resource).endsWith('/tools/echo'))!;
    expect(echoSettlement).toMatchObject({ action: 'tools/call', decision: 'permit' });
    expect(new Set(echoSettlement.charges as unknown[])).toEqual(new Set([{ budget: cost, unit: 'cost', amount: 100 }, { budget: requests, unit: 'requests', amount: 1 }]));
    const decision = claims.find((c) => c.event === 'mcp_message' && c.action === 'tools/call' && c.request_id === echoSettlement.request_id);
    expect(decision).toMatchObject({ decision: 'permit', resource: echoSettlement.resource });
  });
});
