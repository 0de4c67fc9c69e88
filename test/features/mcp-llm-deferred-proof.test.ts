/**
 * The MCP and LLM gateways' deferred DPoP proof signature (issue 16, eighth round): with receipts
 * on, `/mcp/{server}` verifies the proof's signature while the body is read and a `tools/call`'s
 * replay is looked up, and `/llm/{connection}` while the call is resolved, decided and its
 * receipt signed (as `/gw`). Driven through the official MCP SDK client and the official `openai`
 * package, each with a fetch that swaps the agent's proof for a forged one where a test says so
 * (an attacker holding the token but not its key): every refusal path stays as it was — the
 * forged proof's 401 first (before a replay's, a revoked token's, a budget's, an oversized
 * body's), no receipt, no spent `jti`, no budget hold, nothing forwarded.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import OpenAI from 'openai';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, authenticatedPost, dpopKeys, dpopProof, exchange, testAgent, type DpopKeys, type TestAgent } from '../support/agents.js';
import { adminSetup, clientKeys } from '../support/clients.js';
import { startMcpUpstream, type McpUpstream } from '../support/mcp.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { startMockLlm, type MockLlm } from '../support/llm-upstream.js';
import { freePort } from '../support/net.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';

const MCP_KEY = `mcp_key_${randomBytes(16).toString('hex')}`;
const OPENAI_KEY = `sk-proj-${randomBytes(16).toString('hex')}`;

let idp: MockIdp;
let up: McpUpstream;
let llm: MockLlm;
let deputy: TestDeputy;
let agent: TestAgent;
let stranger: DpopKeys;
let admin: { id: string; keys: Awaited<ReturnType<typeof clientKeys>> };
const mcpUrl = (server: string) => `${deputy.issuer}/mcp/${server}`;
const llmUrl = (connection: string) => `${deputy.issuer}/llm/${connection}`;

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMcpUpstream();
  llm = await startMockLlm();
  stranger = await dpopKeys();
  const a = await adminSetup();
  admin = { id: a.clientId, keys: a.keys };
  const keys = await clientKeys();
  const port = await freePort();
  const base = `http://localhost:${port}`;
  deputy = await startTestDeputy({
    env: { MCP_KEY, OPENAI_KEY },
    config: {
      server: { port },
      admin: { clients: [a.config] },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [agentConfig('agent-a', keys, { scopes: ['deputy.read'], audiences: [`${base}/mcp/open`, `${base}/mcp/metered`, `${base}/llm/openai`, `${base}/llm/metered-llm`] })],
      connections: [
        { id: 'mcpkey', kind: 'api_key', baseUrl: up.url, allowInsecureHttp: true, header: 'Authorization', scheme: 'Bearer', secret: { env: 'MCP_KEY' } },
        { id: 'openai', kind: 'llm', provider: 'openai', baseUrl: llm.base, allowInsecureHttp: true, secret: { env: 'OPENAI_KEY' }, requiredScopes: ['deputy.read'] },
        { id: 'metered-llm', kind: 'llm', provider: 'openai', baseUrl: llm.base, allowInsecureHttp: true, secret: { env: 'OPENAI_KEY' }, requiredScopes: ['deputy.read'] },
      ],
      mcpServers: [
        { id: 'open', url: up.url, allowInsecureHttp: true, connection: 'mcpkey', requiredScopes: ['deputy.read'], pinning: 'off', limits: { maxMessageBytes: 4096 } },
        { id: 'metered', url: up.url, allowInsecureHttp: true, connection: 'mcpkey', requiredScopes: ['deputy.read'], pinning: 'off' },
      ],
      budgets: {
        prices: { 'gpt-test': { input: 1_000_000, output: 2_000_000, request: 10 } },
        // One tools/call a day on the metered MCP server (the LLM test adds its own budget).
        limits: [
          { id: 'one-tool-call', connection: 'metered', unit: 'requests' as const, window: 'day' as const, limit: 1 },
        ],
      },
    },
  });
  agent = await testAgent(deputy.issuer, 'agent-a', keys);
}, 90_000);
afterAll(async () => {
  await deputy?.stop();
  await up?.close();
  await llm?.close();
  await idp?.close();
});

async function tokenFor(resource: string): Promise<string> {
  const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
  return (await exchange(agent, { subject_token: subject, resource, scope: 'deputy.read' })).access_token;
}

/** Proofs for `htu` that an attacker holding `token` (not the agent's key) can make, each with `jti`. */
async function forgeries(token: string, htu: string, jti: string): Promise<Array<[string, string]>> {
  const wrongKey = await dpopProof({ ...stranger, publicJwk: agent.dpop.publicJwk }, htu, { htm: 'POST', accessToken: token, jti });
  // A real proof of the agent's with one claim changed (a captured proof re-aimed): its signature breaks.
  const real = await dpopProof(agent.dpop, `${htu}-elsewhere`, { htm: 'POST', accessToken: token, jti });
  const [h, p, s] = real.split('.');
  const claims = { ...(JSON.parse(Buffer.from(p!, 'base64url').toString('utf8')) as Record<string, unknown>), htu };
  return [
    ['signed by another key, naming the bound key', wrongKey],
    ['a real proof with its claims edited', `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`],
  ];
}

/** What the agent's fetch saw of its last refused request. */
interface Seen {
  status: number;
  challenge: string;
}

/**
 * A fetch for an official SDK acting as the agent: the token and a fresh proof per request, or
 * (while `swap` is set) the proof `swap` returns for requests it picks, and the last response seen.
 */
function agentFetch(token: () => string) {
  const state: { swap?: ((body: string) => Promise<string | undefined>) | undefined; last?: Seen } = {};
  const doFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    const url = new URL(request.url);
    const body = request.body ? await request.text() : undefined;
    const headers = new Headers(request.headers);
    headers.delete('x-api-key');
    headers.set('authorization', `DPoP ${token()}`);
    const swapped = body !== undefined && state.swap ? await state.swap(body) : undefined;
    // The proof names the public URL (the issuer's origin), not the listening address fetched.
    headers.set('dpop', swapped ?? (await dpopProof(agent.dpop, `${deputy.issuer}${url.pathname}`, { htm: request.method, accessToken: token() })));
    const res = await fetch(new URL(`${url.pathname}${url.search}`, deputy.url), { method: request.method, headers, ...(body !== undefined ? { body } : {}), ...(init?.signal ? { signal: init.signal } : {}) });
    state.last = { status: res.status, challenge: res.headers.get('www-authenticate') ?? '' };
    return res;
  };
  return { state, fetch: doFetch };
}

function expectForgedRefusal(seen: Seen | undefined, description: RegExp = /signature is invalid/): void {
  expect(seen?.status).toBe(401);
  expect(seen?.challenge).toMatch(/^DPoP .*error="invalid_dpop_proof"/);
  expect(seen?.challenge).toMatch(description);
}

async function receiptCount(): Promise<number> {
  await deputy.receipts.flush();
  return (await deputy.receipts.list('agent-a', { limit: 100_000 })).receipts.length;
}

/** Counts the store's transactions while `run` runs (a budget hold is one; a refused forged proof makes none). */
async function transactionsDuring(run: () => Promise<void>): Promise<number> {
  const store = deputy.store;
  const transaction = store.transaction.bind(store);
  let n = 0;
  store.transaction = (async (...args: Parameters<typeof transaction>) => {
    n += 1;
    return transaction(...args);
  }) as typeof store.transaction;
  try {
    await run();
  } finally {
    store.transaction = transaction;
  }
  return n;
}

/** An MCP SDK client in a session on `server`, its fetch {@link agentFetch}'s. */
async function mcpSession(server: string): Promise<{ client: Client; token: string; agentFetch: ReturnType<typeof agentFetch> }> {
  const token = await tokenFor(mcpUrl(server));
  const f = agentFetch(() => token);
  const client = new Client({ name: 'agent-a', version: '1.0.0' }, { capabilities: {} });
  await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl(server)), { fetch: f.fetch }));
  return { client, token, agentFetch: f };
}

/** A `swap` that replaces the proof of the next `tools/call` requests with `proofs()`'s, in turn. */
function onToolCalls(proofs: string[]): (body: string) => Promise<string | undefined> {
  let i = 0;
  return async (body) => (body.includes('"tools/call"') && i < proofs.length ? proofs[i++] : undefined);
}

describe('MCP tools/call with a forged proof (SDK client)', () => {
  it('is refused with the 401 of before: nothing forwarded, no receipt, nothing spent (the agent\'s own proof with that jti goes through once, even sent alongside the forgeries)', async () => {
    const { client, token, agentFetch: f } = await mcpSession('open');
    const htu = mcpUrl('open');
    const jti = `forged-${randomUUID()}`;
    const [hits, receipts] = [up.hits.get('echo') ?? 0, await receiptCount()];
    for (const [, proof] of await forgeries(token, htu, jti)) {
      f.state.swap = onToolCalls([proof]);
      await expect(client.callTool({ name: 'echo', arguments: { text: 'forged' } })).rejects.toThrow(/Error POSTing/);
      expectForgedRefusal(f.state.last);
    }
    expect(up.hits.get('echo') ?? 0).toBe(hits);
    expect(await receiptCount()).toBe(receipts);
    // The forgeries spent and remembered nothing: the agent's own proof with that jti, sent
    // between two more forgeries carrying it, is forwarded — once.
    const own = await dpopProof(agent.dpop, htu, { htm: 'POST', accessToken: token, jti });
    const forged = (await forgeries(token, htu, jti)).map(([, p]) => p);
    f.state.swap = onToolCalls([forged[0]!, own, forged[1]!]);
    const results = await Promise.allSettled(['a', 'b', 'c'].map((text) => client.callTool({ name: 'echo', arguments: { text } })));
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected', 'rejected']);
    expect(up.hits.get('echo')).toBe(hits + 1);
    // Replayed, it is refused as a replay; a forgery carrying the spent jti is refused as forged.
    f.state.swap = onToolCalls([own]);
    await expect(client.callTool({ name: 'echo', arguments: { text: 'again' } })).rejects.toThrow(/Error POSTing/);
    expectForgedRefusal(f.state.last, /already been used/);
    f.state.swap = onToolCalls([forged[1]!]);
    await expect(client.callTool({ name: 'echo', arguments: { text: 'forged again' } })).rejects.toThrow(/Error POSTing/);
    expectForgedRefusal(f.state.last);
    expect(up.hits.get('echo')).toBe(hits + 1);
    f.state.swap = undefined;
    await client.close();
  });

  it('a malformed message with a forged proof (sent raw: the SDK cannot): 401 (not 400), and the jti stays unspent', async () => {
    const { client, token } = await mcpSession('open');
    const htu = mcpUrl('open');
    const jti = `malformed-${randomUUID()}`;
    const [[, forged]] = await forgeries(token, htu, jti);
    const session = { 'mcp-session-id': (client.transport as StreamableHTTPClientTransport).sessionId!, 'mcp-protocol-version': '2025-06-18' };
    const post = (proof: string) => fetch(htu.replace(deputy.issuer, deputy.url), {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...session, authorization: `DPoP ${token}`, dpop: proof },
      body: '{"jsonrpc": "2.0", ',
    });
    const refused = await post(forged!);
    expectForgedRefusal({ status: refused.status, challenge: refused.headers.get('www-authenticate') ?? '' });
    // Unspent: the agent's own proof with that jti gets the parse error (and spends it), then a replay is refused.
    const own = await dpopProof(agent.dpop, htu, { htm: 'POST', accessToken: token, jti });
    expect((await post(own)).status).toBe(400);
    const again = await post(own);
    expectForgedRefusal({ status: again.status, challenge: again.headers.get('www-authenticate') ?? '' }, /already been used/);
    await client.close();
  });

  it('a revoked token: a forged proof gets the forged proof\'s 401, the agent\'s own proof the revoked token\'s; nothing forwarded', async () => {
    const { client, token, agentFetch: f } = await mcpSession('open');
    const hits = up.hits.get('echo') ?? 0;
    expect((await authenticatedPost(`${deputy.url}/revoke`, deputy.issuer, admin, { token })).status).toBe(200);
    const [[, forged]] = await forgeries(token, mcpUrl('open'), `revoked-${randomUUID()}`);
    f.state.swap = onToolCalls([forged!]);
    await expect(client.callTool({ name: 'echo', arguments: { text: 'x' } })).rejects.toThrow(/Error POSTing/);
    expectForgedRefusal(f.state.last);
    f.state.swap = undefined;
    await expect(client.callTool({ name: 'echo', arguments: { text: 'x' } })).rejects.toThrow(/Error POSTing/);
    expect(f.state.last?.challenge).toMatch(/error="invalid_token"/);
    expect(up.hits.get('echo') ?? 0).toBe(hits);
    await client.close().catch(() => {});
  });

  it('a spent budget: a forged proof gets its 401 (no budget hold, not the 402), the agent\'s own call the in-band 402', async () => {
    const { client, token, agentFetch: f } = await mcpSession('metered');
    expect((await client.callTool({ name: 'echo', arguments: { text: 'one' } })).content).toBeDefined();
    const [[, forged]] = await forgeries(token, mcpUrl('metered'), `budget-${randomUUID()}`);
    f.state.swap = onToolCalls([forged!]);
    const held = await transactionsDuring(async () => {
      await expect(client.callTool({ name: 'echo', arguments: { text: 'two' } })).rejects.toThrow(/Error POSTing/);
    });
    expectForgedRefusal(f.state.last);
    expect(held).toBe(0);
    f.state.swap = undefined;
    const err = await client.callTool({ name: 'echo', arguments: { text: 'two' } }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).data).toMatchObject({ status: 402, budget: 'one-tool-call' });
    await client.close();
  });
});

describe('LLM streamed call with a forged proof (openai SDK)', () => {
  const body = { model: 'gpt-test', messages: [{ role: 'user' as const, content: 'Say hello' }], max_tokens: 8, stream: true as const };

  function openai(connection: string, token: string) {
    const f = agentFetch(() => token);
    return { f, sdk: new OpenAI({ apiKey: 'unused', baseURL: `${llmUrl(connection)}/v1`, fetch: f.fetch as typeof fetch, maxRetries: 0 }) };
  }

  async function streamed(sdk: OpenAI): Promise<string> {
    let text = '';
    for await (const chunk of await sdk.chat.completions.create(body)) text += chunk.choices[0]?.delta.content ?? '';
    return text;
  }

  it('is refused with the 401 of before: nothing forwarded, no receipt, no budget hold, nothing spent; then replayed, refused as a replay', async () => {
    const token = await tokenFor(llmUrl('openai'));
    const { f, sdk } = openai('openai', token);
    const htu = `${llmUrl('openai')}/v1/chat/completions`;
    const jti = `llm-${randomUUID()}`;
    const [seen, receipts] = [llm.requests.length, await receiptCount()];
    for (const [, proof] of await forgeries(token, htu, jti)) {
      f.state.swap = async () => proof;
      const held = await transactionsDuring(async () => {
        await expect(streamed(sdk)).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
      });
      expectForgedRefusal(f.state.last);
      expect(held).toBe(0);
    }
    expect(llm.requests.length).toBe(seen);
    expect(await receiptCount()).toBe(receipts);
    const own = await dpopProof(agent.dpop, htu, { htm: 'POST', accessToken: token, jti });
    f.state.swap = async () => own;
    expect(await streamed(sdk)).toContain('hello');
    await expect(streamed(sdk)).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    expectForgedRefusal(f.state.last, /already been used/);
    const [[, forged]] = await forgeries(token, htu, jti);
    f.state.swap = async () => forged!;
    await expect(streamed(sdk)).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    expectForgedRefusal(f.state.last);
    expect(llm.requests.length).toBe(seen + 1);
  });

  it('a spent budget: a forged proof gets its 401 (not the 402), the agent\'s own call the 402', async () => {
    const id = `llm-one-${randomUUID().slice(0, 8)}`;
    await deputy.budgets.definitions.create({ id, connection: 'metered-llm', unit: 'requests', window: 'day', limit: 1 });
    const token = await tokenFor(llmUrl('metered-llm'));
    const { f, sdk } = openai('metered-llm', token);
    expect(await streamed(sdk)).toContain('hello');
    const [[, forged]] = await forgeries(token, `${llmUrl('metered-llm')}/v1/chat/completions`, `llm-budget-${randomUUID()}`);
    f.state.swap = async () => forged!;
    // No hold tried: the ledger's transaction waits for the proof's signature, which fails.
    const held = await transactionsDuring(async () => {
      await expect(streamed(sdk)).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    });
    expectForgedRefusal(f.state.last);
    expect(held).toBe(0);
    f.state.swap = undefined;
    const err = await streamed(sdk).then(() => undefined, (e: unknown) => e);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(402);
  });

  it('a revoked token: a forged proof gets the forged proof\'s 401, the agent\'s own proof the revoked token\'s; nothing forwarded', async () => {
    const token = await tokenFor(llmUrl('openai'));
    const { f, sdk } = openai('openai', token);
    expect(await streamed(sdk)).toContain('hello');
    const seen = llm.requests.length;
    expect((await authenticatedPost(`${deputy.url}/revoke`, deputy.issuer, admin, { token })).status).toBe(200);
    const [[, forged]] = await forgeries(token, `${llmUrl('openai')}/v1/chat/completions`, `llm-revoked-${randomUUID()}`);
    f.state.swap = async () => forged!;
    await expect(streamed(sdk)).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    expectForgedRefusal(f.state.last);
    f.state.swap = undefined;
    await expect(streamed(sdk)).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    expect(f.state.last?.challenge).toMatch(/error="invalid_token"/);
    expect(llm.requests.length).toBe(seen);
  });
});
