/**
 * The LLM gateway and budgets end to end: a mock Okta, Deputy, mock OpenAI- and
 * Anthropic-compatible providers, and the official `openai` and `@anthropic-ai/sdk` clients as
 * agents (only `baseURL` and a DPoP-adding `fetch` changed). Every refusal is checked to reach
 * no provider and to hold nothing; every charge is checked exactly.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PriceTable, type BudgetDefinition } from '../../src/budgets/index.js';
import { agentConfig, claimsOf, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient } from '../support/clients.js';
import { dpopFetch } from '../support/dpop-fetch.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { startMockLlm, WORD, type MockLlm } from '../support/llm-upstream.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { dpopProof } from '../support/agents.js';
import { freePort } from '../support/net.js';
import { parsePrometheus, sampleValue } from '../support/prometheus.js';
import { MAX_JSON_DEPTH } from '../../src/util/i-json.js';

const OPENAI_KEY = `sk-proj-${randomBytes(16).toString('hex')}`;
const ANTHROPIC_KEY = `sk-ant-${randomBytes(16).toString('hex')}`;
/** 1 micro-unit per input token, 2 per output token, 10 per request. */
const PRICE = { input: 1_000_000, output: 2_000_000, request: 10 };

let idp: MockIdp;
let llm: MockLlm;
let deputy: TestDeputy;
let agent: TestAgent;
let adminToken: string;
let policies: string;

const LLM_POLICIES = `
@id("no-expensive-calls")
@reason("Requests over 0.50 USD are not allowed.")
forbid (principal, action == Action::"complete", resource)
when { context.llm has estimated_cost && context.llm.estimated_cost > 500000 };

@id("no-model-x")
@reason("Model x is not for agents.")
forbid (principal is Agent, action == Action::"complete", resource)
when { context.llm.model == "gpt-x" && context.llm.tools.contains("shell") };
`;

beforeAll(async () => {
  idp = await startMockIdp();
  llm = await startMockLlm();
  const a = await adminSetup();
  const keys = await clientKeys();
  const port = await freePort();
  // The default policies plus two LLM rules (README "LLM gateway"), in a folder of the test's own.
  policies = mkdtempSync(join(tmpdir(), 'deputy-llm-policies-'));
  cpSync('config/policies/schema.cedarschema', join(policies, 'schema.cedarschema'));
  cpSync('config/policies/default.cedar', join(policies, 'default.cedar'));
  writeFileSync(join(policies, 'llm.cedar'), LLM_POLICIES);
  deputy = await startTestDeputy({
    env: { OPENAI_KEY, ANTHROPIC_KEY },
    config: {
      server: { port },
      pdp: { policies, watch: false },
      admin: { clients: [a.config] },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [agentConfig('agent-a', keys, { scopes: ['deputy.read', 'llm'], audiences: ['openai', 'capped', 'claude', 'gone'].map((c) => `http://localhost:${port}/llm/${c}`).concat(`http://localhost:${port}/llm/slow`, `http://localhost:${port}/gw/plain`) })],
      connections: [
        { id: 'openai', kind: 'llm', provider: 'openai', baseUrl: llm.base, allowInsecureHttp: true, secret: { env: 'OPENAI_KEY' }, requiredScopes: ['llm'], models: ['gpt-test', 'gpt-unpriced'], maxInputTokens: 500 },
        { id: 'capped', kind: 'llm', provider: 'openai', baseUrl: llm.base, allowInsecureHttp: true, secret: { env: 'OPENAI_KEY' }, requiredScopes: ['llm'], maxOutputTokens: 6 },
        {
          id: 'plain', kind: 'api_key', baseUrl: llm.base, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'OPENAI_KEY' }, requiredScopes: ['llm'], costPerCall: 1,
          routes: [{ methods: ['GET'], path: '/v1/models', action: 'models.list', cost: 250 }, { methods: ['GET'], path: '/v1/models/*', action: 'models.read' }],
        },
        { id: 'slow', kind: 'llm', provider: 'openai', baseUrl: llm.base, allowInsecureHttp: true, secret: { env: 'OPENAI_KEY' }, requiredScopes: ['llm'], maxCallSeconds: 1 },
        { id: 'claude', kind: 'llm', provider: 'anthropic', baseUrl: llm.base, allowInsecureHttp: true, secret: { env: 'ANTHROPIC_KEY' }, requiredScopes: ['llm'] },
        { id: 'gone', kind: 'llm', provider: 'openai', baseUrl: `http://127.0.0.1:${await freePort()}`, allowInsecureHttp: true, secret: { env: 'OPENAI_KEY' }, requiredScopes: ['llm'] },
      ],
      budgets: { prices: { 'gpt-test': PRICE, 'claude-test': PRICE } },
    },
  });
  agent = await testAgent(deputy.issuer, 'agent-a', keys);
  adminToken = await clientCredentialsToken(await oauthClient(deputy.issuer, a.clientId, a.keys), 'deputy:admin');
}, 60_000);
afterAll(async () => {
  if (process.env.DUMP_LOGS) console.log(deputy?.logs.filter((l) => l.includes('"level":50') || l.includes("error")).slice(0, 5).join("\n"));
  await deputy?.stop();
  await llm?.close();
  await idp?.close();
  if (policies) rmSync(policies, { recursive: true, force: true });
});
beforeEach(() => llm.reset());

const audience = (connection: string) => `${deputy.issuer}/llm/${connection}`;

/** A fresh user (so budgets never see another test's calls) and the agent's token for them. */
async function session(connection: string): Promise<{ token: string; user: string }> {
  const subject = await idp.oktaAccessToken({ uid: `00u${randomUUID().slice(0, 12)}`, scp: ['deputy.read', 'llm'] });
  const token = (await exchange(agent, { subject_token: subject, resource: audience(connection), scope: 'llm' })).access_token;
  return { token, user: String(claimsOf(token).sub) };
}

function openai(connection: string, token: string): OpenAI {
  return new OpenAI({ apiKey: 'unused', baseURL: `${audience(connection)}/v1`, fetch: dpopFetch(agent.dpop, () => token), maxRetries: 0 });
}

function anthropic(token: string): Anthropic {
  return new Anthropic({ apiKey: 'unused', baseURL: audience('claude'), fetch: dpopFetch(agent.dpop, () => token), maxRetries: 0 });
}

async function budget(def: Omit<BudgetDefinition, 'id'>): Promise<string> {
  const id = `b-${randomUUID().slice(0, 8)}`;
  await deputy.budgets.definitions.create({ ...def, id });
  return id;
}

/** The budget's current window, read through the admin API. */
async function spend(id: string): Promise<{ spent: number; reserved: number; remaining: number }> {
  const res = await fetch(`${deputy.url}/admin/budgets/${id}`, { headers: { authorization: `Bearer ${adminToken}` } });
  expect(res.status).toBe(200);
  return ((await res.json()) as { current: { spent: number; reserved: number; remaining: number } }).current;
}

/** `deputy_budget_spend_total` of a budget and unit at `/metrics` (each test's budgets are new: no earlier spend). */
async function spendMetric(id: string, unit: string): Promise<number> {
  const res = await fetch(`${deputy.url}/metrics`, { headers: { authorization: `Bearer ${adminToken}` } });
  expect(res.status).toBe(200);
  return sampleValue(parsePrometheus(await res.text()), 'deputy_budget_spend_total', { budget: id, unit });
}

/** Settling happens once the response has ended: wait for the counters to show no reservation. */
async function settled(id: string): Promise<{ spent: number; reserved: number }> {
  for (let i = 0; i < 200; i++) {
    const s = await spend(id);
    if (s.reserved === 0) return s;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`budget ${id} still holds a reservation`);
}

const hello = [{ role: 'user' as const, content: 'Say hello' }];

describe('LLM gateway: the official SDKs through Deputy', () => {
  it('OpenAI chat completion: key injected, agent credentials stripped, cap sent upstream, usage charged exactly', async () => {
    const { token, user } = await session('openai');
    const tokens = await budget({ user, unit: 'output_tokens', window: 'day', limit: 1000 });
    const cost = await budget({ user, unit: 'cost', window: 'month', limit: 1_000_000 });
    const res = await openai('openai', token).chat.completions.create({ model: 'gpt-test', messages: hello, max_tokens: 50 });
    expect(res.choices[0]!.message.content).toBe(WORD.repeat(8));
    const seen = llm.requests.at(-1)!;
    expect(seen.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
    expect(seen.headers.dpop).toBeUndefined();
    expect(seen.body).toMatchObject({ model: 'gpt-test', max_tokens: 50 });
    expect(await settled(tokens)).toMatchObject({ spent: 8 });
    expect(await settled(cost)).toMatchObject({ spent: 12 * 1 + 8 * 2 + 10 });
    // Each settled charge is counted once at /metrics.
    expect(await spendMetric(tokens, 'output_tokens')).toBe(8);
    expect(await spendMetric(cost, 'cost')).toBe(38);
    // The call's receipts: the decision, then the settlement with the charge on each budget hit.
    await deputy.receipts.flush();
    const rows = await deputy.store.query<{ jws: string }>('SELECT jws FROM receipts WHERE agent_id = $1 ORDER BY seq DESC LIMIT 2', ['agent-a']);
    const [settlement, decision] = rows.map((r) => claimsOf(r.jws));
    expect(decision).toMatchObject({ event: 'gateway_call', action: 'complete', decision: 'permit' });
    expect(settlement).toMatchObject({ event: 'budget_settlement', action: 'complete', request_id: decision!.request_id });
    expect(new Set((settlement!.charges as unknown[]))).toEqual(new Set([{ budget: tokens, unit: 'output_tokens', amount: 8 }, { budget: cost, unit: 'cost', amount: 38 }]));
    expect(JSON.stringify(deputy.logs)).not.toContain(OPENAI_KEY);
  });

  it('a budget created after "no budget applies" was remembered for the call binds the next 12 concurrent calls', async () => {
    const { token, user } = await session('openai');
    const client = openai('openai', token);
    for (let i = 0; i < 2; i++) await client.chat.completions.create({ model: 'gpt-test', messages: hello, max_tokens: 8 }); // remembered: free
    const id = await budget({ user, unit: 'requests', window: 'day', limit: 3 });
    const before = llm.requests.length;
    const outcomes = await Promise.all(Array.from({ length: 12 }, () =>
      client.chat.completions.create({ model: 'gpt-test', messages: hello, max_tokens: 8 }).then(() => 200, (err: unknown) => (err as { status?: number }).status)));
    expect(outcomes.filter((o) => o === 200)).toHaveLength(3);
    expect(outcomes.filter((o) => o !== 200).every((o) => o === 402)).toBe(true);
    expect(llm.requests.length - before).toBe(3);
    expect(await settled(id)).toMatchObject({ spent: 3, reserved: 0 });
  });

  it('OpenAI stream with usage: the SDK assembles it, Deputy asked for usage and charged the provider\'s count', async () => {
    const { token, user } = await session('openai');
    const id = await budget({ user, unit: 'output_tokens', window: 'day', limit: 1000 });
    const stream = await openai('openai', token).chat.completions.create({ model: 'gpt-test', messages: hello, max_tokens: 50, stream: true });
    let text = '';
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(text).toBe(WORD.repeat(8));
    expect(finish).toBe('stop');
    expect(llm.requests.at(-1)!.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    expect(await settled(id)).toMatchObject({ spent: 8 });
  });

  it('a streamed call whose provider reports no usage is charged by Deputy\'s count, never zero', async () => {
    llm.behavior.usageInStream = false;
    const { token, user } = await session('openai');
    const id = await budget({ user, unit: 'output_tokens', window: 'day', limit: 1000 });
    const stream = await openai('openai', token).chat.completions.create({ model: 'gpt-test', messages: hello, max_tokens: 50, stream: true });
    for await (const _ of stream) void _;
    expect(await settled(id)).toMatchObject({ spent: 8 });
  });

  it('a stream that would cross the budget is cut at the budget, ends as a length stop the SDK understands, and is charged exactly', async () => {
    llm.behavior.ignoreMaxTokens = true;
    llm.behavior.words = 40;
    const { token, user } = await session('openai');
    const id = await budget({ user, unit: 'output_tokens', window: 'day', limit: 25 });
    // 20 of 25 spent: the next call asks for 50, the budget has 5 left and is capped to them.
    await deputy.budgets.ledger.settle(await deputy.budgets.ledger.reserve({ agents: ['agent-a'], user, connection: 'openai' }, { output_tokens: 20 }), { output_tokens: 20 });
    const stream = await openai('openai', token).chat.completions.create({ model: 'gpt-test', messages: hello, max_tokens: 50, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let finish: string | null | undefined;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    expect(text).toBe(WORD.repeat(5));
    expect(finish).toBe('length');
    expect(usage?.completion_tokens).toBe(5);
    expect(llm.requests.at(-1)!.body).toMatchObject({ max_tokens: 5 });
    expect(await settled(id)).toMatchObject({ spent: 25, reserved: 0 });
    // Nothing left: the next call is refused before the provider.
    const before = llm.requests.length;
    const err = await openai('openai', token).chat.completions.create({ model: 'gpt-test', messages: hello, max_tokens: 5 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(402);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('budget_exceeded');
    expect((err as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({ budget: id, unit: 'output_tokens', limit: 25, spent: 25 });
    expect((err as InstanceType<typeof OpenAI.APIError>).headers?.get('retry-after')).toMatch(/^\d+$/);
    expect((err as Error).message).toMatch(/^402 budget "b-[0-9a-f]+" cannot cover this call/);
    expect(llm.requests.length).toBe(before);
  });

  it('a cost budget caps the stream at what the money left pays for', async () => {
    llm.behavior.ignoreMaxTokens = true;
    llm.behavior.words = 40;
    const { token, user } = await session('openai');
    const prompt = [{ role: 'user' as const, content: 'x' }];
    // The prompt is estimated at 1 + 4 + 3 = 8 tokens: 8 + 10 per request leaves 12 micro-units for 6 output tokens.
    const id = await budget({ user, unit: 'cost', window: 'total', limit: 30 });
    const stream = await openai('openai', token).chat.completions.create({ model: 'gpt-test', messages: prompt, max_tokens: 50, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe(WORD.repeat(6));
    const s = await settled(id);
    expect(s.spent).toBeLessThanOrEqual(30);
    expect(s.spent).toBe(8 + 6 * 2 + 10);
  });

  it('a price change applies to calls reserved after it', async () => {
    const { token, user } = await session('openai');
    const id = await budget({ user, unit: 'cost', window: 'day', limit: 1_000_000 });
    const client = openai('openai', token);
    await client.chat.completions.create({ model: 'gpt-test', messages: hello, max_tokens: 50 });
    expect(await settled(id)).toMatchObject({ spent: 12 + 8 * 2 + 10 });
    const before = deputy.budgets.prices;
    deputy.budgets.prices = new PriceTable({ 'gpt-test': { input: 10_000_000, output: 20_000_000, request: 0 } });
    try {
      await client.chat.completions.create({ model: 'gpt-test', messages: hello, max_tokens: 50 });
      expect(await settled(id)).toMatchObject({ spent: 38 + 12 * 10 + 8 * 20 });
    } finally {
      deputy.budgets.prices = before;
    }
  });

  it('Anthropic messages, whole and streamed; a stream cut at the budget ends with stop_reason max_tokens', async () => {
    const { token, user } = await session('claude');
    const id = await budget({ user, unit: 'output_tokens', window: 'day', limit: 12 });
    const whole = await anthropic(token).messages.create({ model: 'claude-test', max_tokens: 100, messages: hello });
    expect(whole.content[0]).toMatchObject({ type: 'text', text: WORD.repeat(8) });
    expect(llm.requests.at(-1)!.headers['x-api-key']).toBe(ANTHROPIC_KEY);
    expect(await settled(id)).toMatchObject({ spent: 8 });

    llm.behavior.ignoreMaxTokens = true;
    llm.behavior.usageInStream = false;
    const stream = anthropic(token).messages.stream({ model: 'claude-test', max_tokens: 100, messages: hello });
    const final = await stream.finalMessage();
    expect(final.stop_reason).toBe('max_tokens');
    expect(final.content[0]).toMatchObject({ type: 'text', text: WORD.repeat(4) });
    expect(final.usage.output_tokens).toBe(4);
    expect(await settled(id)).toMatchObject({ spent: 12, reserved: 0 });
    // Spent: the SDK surfaces the 402 as an APIError carrying the whole problem body.
    const err = (await anthropic(token).messages.create({ model: 'claude-test', max_tokens: 100, messages: hello }).catch((e: unknown) => e)) as InstanceType<typeof Anthropic.APIError>;
    expect(err).toBeInstanceOf(Anthropic.APIError);
    expect(err.status).toBe(402);
    expect(err.error).toMatchObject({ type: 'https://deputy.dev/problems/budget-exceeded', budget: id, spent: 12, error: { type: 'budget_exceeded' } });
    expect(err.message).toMatch(/cannot cover this call/);
  });

  it('embeddings and models pass through; embeddings are charged their input', async () => {
    const { token, user } = await session('openai');
    const id = await budget({ user, unit: 'input_tokens', window: 'day', limit: 1000 });
    const client = openai('openai', token);
    const emb = await client.embeddings.create({ model: 'gpt-test', input: 'hello' });
    expect(emb.data[0]!.embedding.map((x) => Math.round(x * 10) / 10)).toEqual([0.1, 0.2]);
    expect(await settled(id)).toMatchObject({ spent: 12 });
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['gpt-test']);
  });

  it('a connection cap applies when the request sets none', async () => {
    const subject = await idp.oktaAccessToken({ uid: `00u${randomUUID().slice(0, 12)}`, scp: ['deputy.read', 'llm'] });
    const token = (await exchange(agent, { subject_token: subject, resource: audience('capped'), scope: 'llm' })).access_token;
    const res = await openai('capped', token).chat.completions.create({ model: 'gpt-test', messages: hello });
    expect(res.choices[0]!.message.content).toBe(WORD.repeat(6));
    expect(llm.requests.at(-1)!.body).toMatchObject({ max_tokens: 6 });
  });
});

describe('LLM gateway: policy and limits', () => {
  it('the PDP sees model, max_tokens, tools and estimated cost: an expensive request is denied (403) and reserves nothing', async () => {
    const { token, user } = await session('openai');
    const id = await budget({ user, unit: 'requests', window: 'day', limit: 10 });
    const before = llm.requests.length;
    // 300 000 output tokens at 2 micro-units each: 0.60 USD, over the policy's 0.50.
    const err = (await openai('openai', token).chat.completions.create({ model: 'gpt-test', messages: hello, max_tokens: 300_000 }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(err.status).toBe(403);
    expect(err.message).toMatch(/forbidden by policy "no-expensive-calls"/);
    expect(llm.requests.length).toBe(before);
    expect(await spend(id)).toMatchObject({ spent: 0, reserved: 0 });
    const ok = await openai('openai', token).chat.completions.create({ model: 'gpt-test', messages: hello, max_tokens: 200_000 });
    expect(ok.choices[0]!.message.content).toBe(WORD.repeat(8));
  });

  it('a stream that outlives the wall-clock cap is ended cleanly and charged what it delivered', async () => {
    llm.behavior.hangAfterFirst = true;
    const { token, user } = await session('slow');
    const id = await budget({ user, unit: 'output_tokens', window: 'day', limit: 100 });
    const stream = await openai('slow', token).chat.completions.create({ model: 'gpt-test', messages: hello, max_tokens: 50, stream: true });
    let text = '';
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(text).toBe(WORD);
    expect(finish).toBe('length');
    expect(await settled(id)).toMatchObject({ spent: 1, reserved: 0 });
  });

  it('an agent that goes away mid-stream is charged what was delivered, and the provider call is abandoned', async () => {
    llm.behavior.hangAfterFirst = true;
    const { token, user } = await session('openai');
    const id = await budget({ user, unit: 'output_tokens', window: 'day', limit: 100 });
    const stream = await openai('openai', token).chat.completions.create({ model: 'gpt-test', messages: hello, max_tokens: 50, stream: true });
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) break; // leaving the loop aborts the request
    }
    expect(await settled(id)).toMatchObject({ spent: 1, reserved: 0 });
  });

  it('OpenAI Responses API, whole: charged its usage', async () => {
    const { token, user } = await session('openai');
    const id = await budget({ user, unit: 'output_tokens', window: 'day', limit: 100 });
    const res = await openai('openai', token).responses.create({ model: 'gpt-test', input: 'Say hello', max_output_tokens: 3 });
    expect(res.output_text).toBe(WORD.repeat(3));
    expect(await settled(id)).toMatchObject({ spent: 3 });
  });

  it('OpenAI Responses API, streamed: the SDK assembles the events and is charged the stream\'s usage; cut at the budget it ends response.incomplete (max_output_tokens) with the text delivered, charged exactly', async () => {
    const { token, user } = await session('openai');
    const tokens = await budget({ user, unit: 'output_tokens', window: 'day', limit: 13 });
    const cost = await budget({ user, unit: 'cost', window: 'day', limit: 1_000_000 });
    const client = openai('openai', token);
    const whole = client.responses.stream({ model: 'gpt-test', input: 'Say hello', max_output_tokens: 50 });
    let deltas = '';
    for await (const ev of whole) if (ev.type === 'response.output_text.delta') deltas += ev.delta;
    const done = await whole.finalResponse();
    expect(deltas).toBe(WORD.repeat(8));
    expect(done).toMatchObject({ status: 'completed', output_text: WORD.repeat(8), usage: { input_tokens: 12, output_tokens: 8 } });
    expect(llm.requests.at(-1)!.body).toMatchObject({ stream: true, max_output_tokens: 13 });
    expect(await settled(tokens)).toMatchObject({ spent: 8 });
    // The provider's usage (12 prompt tokens), not Deputy's estimate of the prompt: 12 × 1 + 8 × 2 + 10.
    expect(await settled(cost)).toMatchObject({ spent: 38 });

    // 5 tokens left; the provider overruns the cap it was sent.
    llm.behavior.ignoreMaxTokens = true;
    llm.behavior.words = 40;
    const cut = client.responses.stream({ model: 'gpt-test', input: 'Say hello', max_output_tokens: 50 });
    const types: string[] = [];
    for await (const ev of cut) types.push(ev.type);
    const final = await cut.finalResponse();
    expect(llm.requests.at(-1)!.body).toMatchObject({ max_output_tokens: 5 });
    expect(final).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' }, output_text: WORD.repeat(5), usage: { output_tokens: 5 } });
    expect(final.output[0]).toMatchObject({ type: 'message', status: 'incomplete', content: [{ type: 'output_text', text: WORD.repeat(5) }] });
    expect(types.slice(-5)).toEqual(['response.output_text.delta', 'response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.incomplete']);
    expect(types.filter((t) => t === 'response.output_text.delta')).toHaveLength(5);
    expect(await settled(tokens)).toMatchObject({ spent: 13, reserved: 0 });
  });

  it('OpenAI Responses API, streamed without usage from the provider: charged Deputy\'s count, never zero', async () => {
    llm.behavior.usageInStream = false;
    const { token, user } = await session('openai');
    const id = await budget({ user, unit: 'output_tokens', window: 'day', limit: 100 });
    const stream = openai('openai', token).responses.stream({ model: 'gpt-test', input: 'Say hello', max_output_tokens: 50 });
    const final = await stream.finalResponse();
    expect(final.output_text).toBe(WORD.repeat(8));
    expect(final.usage).toBeNull();
    expect(await settled(id)).toMatchObject({ spent: 8, reserved: 0 });
  });
});

describe('budgets: refusals and failures hold nothing', () => {
  it('402 problem+json with the budget, its spend, resets_at and Retry-After; distinct from 429', async () => {
    const { token, user } = await session('openai');
    const id = await budget({ user, unit: 'requests', window: 'day', limit: 1 });
    await openai('openai', token).chat.completions.create({ model: 'gpt-test', messages: hello, max_tokens: 5 });
    // The call settles after its answer is on the wire: wait for it, so the refusal reports a settled spend.
    expect(await settled(id)).toMatchObject({ spent: 1, reserved: 0 });
    const url = `${audience('openai')}/v1/chat/completions`;
    const before = llm.requests.length;
    const res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `DPoP ${token}`, dpop: await dpopProof(agent.dpop, url, { htm: 'POST', accessToken: token }), 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-test', messages: hello, max_tokens: 5 }),
    });
    expect(res.status).toBe(402);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const retryAfter = Number(res.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(86_400);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ type: 'https://deputy.dev/problems/budget-exceeded', title: 'Budget exceeded', status: 402, budget: id, unit: 'requests', limit: 1, spent: 1, reserved: 0, error: { type: 'budget_exceeded', code: 'budget_exceeded' } });
    expect(new Date(String(body.resets_at)).getTime()).toBeGreaterThan(Date.now());
    expect(llm.requests.length).toBe(before);
    expect(await spend(id)).toMatchObject({ spent: 1, reserved: 0 });
  });

  it('a request whose model is not I-JSON (a lone surrogate) is a 400 invalid_request: nothing forwarded, reserved or charged', async () => {
    const { token, user } = await session('openai');
    const id = await budget({ user, unit: 'requests', window: 'day', limit: 10 });
    const url = `${audience('openai')}/v1/chat/completions`;
    const before = llm.requests.length;
    for (const model of ['gpt-test\ud800', '\udfff']) {
      const res = await fetch(url, {
        method: 'POST',
        headers: { authorization: `DPoP ${token}`, dpop: await dpopProof(agent.dpop, url, { htm: 'POST', accessToken: token }), 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: hello, max_tokens: 5 }),
      });
      expect(res.status).toBe(400);
      expect(JSON.stringify(await res.json())).toContain('invalid_request');
    }
    expect(llm.requests.length).toBe(before);
    expect(await spend(id)).toMatchObject({ spent: 0, reserved: 0 });
  });

  it('a request nested deeper than MAX_JSON_DEPTH is a 400 invalid_request naming the nesting, not a stack overflow: nothing forwarded, reserved or charged', async () => {
    const { token, user } = await session('openai');
    const id = await budget({ user, unit: 'requests', window: 'day', limit: 10 });
    const url = `${audience('openai')}/v1/chat/completions`;
    const before = llm.requests.length;
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    for (const member of ['metadata', 'messages']) {
      const res = await fetch(url, {
        method: 'POST',
        headers: { authorization: `DPoP ${token}`, dpop: await dpopProof(agent.dpop, url, { htm: 'POST', accessToken: token }), 'content-type': 'application/json' },
        body: `{"model":"gpt-test","max_tokens":5,"messages":${member === 'messages' ? deep : JSON.stringify(hello)}${member === 'metadata' ? `,"metadata":${deep}` : ''}}`,
      });
      expect(res.status, member).toBe(400);
      const body = JSON.stringify(await res.json());
      expect(body).toContain('invalid_request');
      expect(body).toContain(`nested deeper than ${MAX_JSON_DEPTH} levels`);
    }
    expect(llm.requests.length).toBe(before);
    expect(await spend(id)).toMatchObject({ spent: 0, reserved: 0 });
  });

  it('a provider error releases the reservation, streamed or not, and so does an unreachable provider', async () => {
    llm.behavior.failWith = 500;
    const { token, user } = await session('openai');
    const id = await budget({ user, unit: 'output_tokens', window: 'day', limit: 100 });
    for (const stream of [false, true]) {
      const err = await openai('openai', token).chat.completions.create({ model: 'gpt-test', messages: hello, max_tokens: 50, stream }).catch((e: unknown) => e);
      expect((err as InstanceType<typeof OpenAI.APIError>).status, `stream: ${stream}`).toBe(500);
      expect(await settled(id)).toMatchObject({ spent: 0, reserved: 0 });
    }
    const gone = await session('gone');
    const unreachable = await budget({ user: gone.user, unit: 'requests', window: 'day', limit: 1 });
    const err = await openai('gone', gone.token).chat.completions.create({ model: 'gpt-test', messages: hello, max_tokens: 5 }).catch((e: unknown) => e);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(502);
    expect(await settled(unreachable)).toMatchObject({ spent: 0, reserved: 0 });
  });

  it('bad input gets a clear 400 and reserves nothing: unknown model, no max_tokens without a cap, oversized prompt, unpriced model under a cost budget', async () => {
    const { token, user } = await session('openai');
    const requests = await budget({ user, unit: 'requests', window: 'day', limit: 100 });
    await budget({ user, unit: 'cost', window: 'day', limit: 1_000_000 });
    const client = openai('openai', token);
    const before = llm.requests.length;
    const cases: Array<[OpenAI.ChatCompletionCreateParamsNonStreaming, RegExp]> = [
      [{ model: 'gpt-unknown', messages: hello, max_tokens: 5 }, /not offered/],
      [{ model: 'gpt-test', messages: hello }, /max_tokens is required/],
      [{ model: 'gpt-test', messages: [{ role: 'user', content: 'word '.repeat(600) }], max_tokens: 5 }, /accepts at most 500/],
      [{ model: 'gpt-unpriced', messages: hello, max_tokens: 5 }, /has no price/],
      [{ model: 'gpt-test', messages: hello, max_tokens: -1 }, /positive integer/],
    ];
    for (const [params, message] of cases) {
      const err = (await client.chat.completions.create(params).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
      expect(err.status, String(message)).toBe(400);
      expect(JSON.stringify(err.error), String(message)).toMatch(message);
    }
    // The same class at the Anthropic endpoint: max_tokens is required there too (no connection cap).
    const claude = await session('claude');
    const claudeRequests = await budget({ user: claude.user, unit: 'requests', window: 'day', limit: 100 });
    const noCap = (await anthropic(claude.token).messages.create({ model: 'claude-test', messages: hello } as unknown as Anthropic.MessageCreateParamsNonStreaming).catch((e: unknown) => e)) as InstanceType<typeof Anthropic.APIError>;
    expect(noCap.status).toBe(400);
    expect(noCap.message).toMatch(/max_tokens is required/);
    expect(llm.requests.length).toBe(before);
    expect(await spend(requests)).toMatchObject({ spent: 0, reserved: 0 });
    expect(await spend(claudeRequests)).toMatchObject({ spent: 0, reserved: 0 });
  });

  it('50 concurrent calls against a budget admitting 10: at most 10 reach the provider, spend within the limit; the same with streams', async () => {
    for (const stream of [false, true]) {
      const { token, user } = await session('openai');
      const id = await budget({ user, unit: 'requests', window: 'day', limit: 10 });
      const client = openai('openai', token);
      const before = llm.requests.length;
      const outcomes = await Promise.all(
        Array.from({ length: 50 }, async () => {
          try {
            if (stream) {
              const s = await client.chat.completions.create({ model: 'gpt-test', messages: hello, max_tokens: 3, stream: true });
              for await (const _ of s) void _;
            } else await client.chat.completions.create({ model: 'gpt-test', messages: hello, max_tokens: 3 });
            return 'ok';
          } catch (err) {
            return (err as { status?: number }).status;
          }
        }),
      );
      expect(outcomes.filter((o) => o === 'ok').length).toBeLessThanOrEqual(10);
      expect(outcomes.filter((o) => o !== 'ok').every((o) => o === 402)).toBe(true);
      expect(llm.requests.length - before).toBeLessThanOrEqual(10);
      const s = await settled(id);
      expect(s.spent).toBeLessThanOrEqual(10);
      expect(s.spent).toBe(outcomes.filter((o) => o === 'ok').length);
    }
  });

  it('an llm connection is not reachable through the HTTP gateway (no way around the budget step)', async () => {
    const res = await fetch(`${deputy.url}/gw/openai/v1/models`);
    expect([401, 404]).toContain(res.status);
  });
});

describe('budgets at the HTTP gateway', () => {
  it('a route\'s cost per call is reserved and charged; the call that would pass the budget is 402 and never forwarded', async () => {
    const subject = await idp.oktaAccessToken({ uid: `00u${randomUUID().slice(0, 12)}`, scp: ['deputy.read', 'llm'] });
    const token = (await exchange(agent, { subject_token: subject, resource: `${deputy.issuer}/gw/plain`, scope: 'llm' })).access_token;
    const user = String(claimsOf(token).sub);
    const cost = await budget({ user, connection: 'plain', unit: 'cost', window: 'day', limit: 501 });
    const calls = await budget({ user, unit: 'requests', window: 'total', limit: 100 });
    const call = async (path: string) => {
      const url = `${deputy.issuer}/gw/plain${path}`;
      return fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: await dpopProof(agent.dpop, url, { htm: 'GET', accessToken: token }) } });
    };
    expect((await call('/v1/models')).status).toBe(200);
    expect((await call('/v1/models')).status).toBe(200);
    expect(await settled(cost)).toMatchObject({ spent: 500 });
    const before = llm.requests.length;
    const refused = await call('/v1/models');
    expect(refused.status).toBe(402);
    expect(refused.headers.get('content-type')).toMatch(/problem\+json/);
    expect(await refused.json()).toMatchObject({ budget: cost, unit: 'cost', spent: 500, requested: 250, error: 'budget_exceeded' });
    expect(llm.requests.length).toBe(before);
    // The connection's costPerCall applies to a route without its own cost.
    expect((await call('/v1/models/gpt-test')).status).toBe(404);
    expect(await settled(cost)).toMatchObject({ spent: 501 });
    expect(await settled(calls)).toMatchObject({ spent: 3 });
    expect(await spendMetric(cost, 'cost')).toBe(501);
    expect(await spendMetric(calls, 'requests')).toBe(3);
  });
});

describe('budget admin API', () => {
  it('creates, reads with spend and reservations, changes and deletes a budget, in the admin dialect', async () => {
    const headers = { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' };
    const base = `${deputy.url}/admin/budgets`;
    const created = await fetch(base, { method: 'POST', headers, body: JSON.stringify({ id: 'team-daily', agent: 'agent-a', connection: 'openai', unit: 'cost', window: 'day', limit: 5_000_000 }) });
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({ id: 'team-daily', agent: 'agent-a', user: null, unit: 'cost', currency: 'USD', window: 'day', limit: 5_000_000, source: 'api', current: { spent: 0, reserved: 0, remaining: 5_000_000 } });
    const dup = await fetch(base, { method: 'POST', headers, body: JSON.stringify({ id: 'team-daily', unit: 'requests', window: 'total', limit: 1 }) });
    expect(dup.status).toBe(409);
    const bad = await fetch(base, { method: 'POST', headers, body: JSON.stringify({ id: 'x', unit: 'dollars', window: 'day', limit: 1 }) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error_description: string }).error_description).toMatch(/unit/);

    const held = await deputy.budgets.ledger.reserve({ agents: ['agent-a'], user: 'someone', connection: 'openai' }, { cost: 1000 }, { requestId: 'req-1' });
    const read = (await (await fetch(`${base}/team-daily`, { headers })).json()) as Record<string, unknown>;
    expect(read).toMatchObject({ current: { spent: 0, reserved: 1000, remaining: 4_999_000 }, reservations: [{ id: held.id, request_id: 'req-1', agent: 'agent-a', user: 'someone', amount: 1000 }] });
    await deputy.budgets.ledger.settle(held, { cost: 400 });

    const changed = await fetch(`${base}/team-daily`, { method: 'PATCH', headers, body: JSON.stringify({ limit: 100, connection: null }) });
    expect(await changed.json()).toMatchObject({ limit: 100, connection: null, current: { spent: 400, reserved: 0, remaining: 0 } });
    const page = (await (await fetch(`${base}?limit=1`, { headers })).json()) as { budgets: unknown[]; next_cursor: string | null };
    expect(page.budgets).toHaveLength(1);
    expect((await fetch(`${base}/team-daily`, { method: 'DELETE', headers })).status).toBe(204);
    expect((await fetch(`${base}/team-daily`, { headers })).status).toBe(404);
  });
});
