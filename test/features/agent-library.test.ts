/**
 * The agent library (`deputy/agent`) against a real Deputy over HTTP, with DPoP server nonces
 * required everywhere: the suite's flows (exchange, sub-delegation, gateway, AuthZEN,
 * revocation) driven through `DeputyAgent`, the README's examples executed as they are (the
 * official `openai`, `@anthropic-ai/sdk` and MCP SDK clients with `fetch: agent.fetch`, through
 * Deputy's HTTP gateway to mock upstreams), and the refusals each surface as a typed error.
 */
import { createHash, randomBytes } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { BudgetExceededError, DeputyAgent, DeputyAgentError, DeputyProtocolError, PolicyDeniedError, type DeputyAgentOptions } from 'deputy/agent';
import { AuthZenPep } from 'deputy/agent/governance';
import { main as anthropicExample } from '../../examples/agent-anthropic.js';
import { main as mcpExample } from '../../examples/agent-mcp.js';
import { main as openaiExample } from '../../examples/agent-openai.js';
import { main as quickstart } from '../../examples/agent-quickstart.js';
import type { ExampleEnv } from '../../examples/env.js';
import { agentConfig, authenticatedPost, claimsOf } from '../support/agents.js';
import { startLlmUpstream, startMcpUpstream, type RecordingUpstream } from '../support/agent-upstreams.js';
import { adminSetup, clientKeys, type ClientKeys } from '../support/clients.js';
import { leaks } from '../support/leaks.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';

const ECHO_KEY = `sk_echo_${randomBytes(12).toString('hex')}`;
const OPENAI_KEY = `sk_openai_${randomBytes(12).toString('hex')}`;
const ANTHROPIC_KEY = `sk_ant_${randomBytes(12).toString('hex')}`;
const MCP_KEY = `sk_mcp_${randomBytes(12).toString('hex')}`;
const CONNECTIONS = ['echo', 'openai', 'anthropic', 'mcp'] as const;

let idp: MockIdp;
let up: MockUpstream;
let llm: RecordingUpstream;
let mcpUp: RecordingUpstream;
let deputy: TestDeputy;
let issuer: string;
let admin: { id: string; keys: ClientKeys };
const keys: Record<'agent-a' | 'agent-b' | 'pep', { jwk: JWK; keys: ClientKeys }> = {} as never;
const gw = (connection: string) => `${issuer}/gw/${connection}`;

async function jwkKeys(): Promise<{ jwk: JWK; keys: ClientKeys }> {
  const k = await clientKeys();
  return { keys: k, jwk: await exportJWK(k.privateKey) };
}

beforeAll(async () => {
  [idp, up, llm, mcpUp] = await Promise.all([startMockIdp(), startMockUpstream(), startLlmUpstream(), startMcpUpstream()]);
  const port = await freePort();
  issuer = `http://localhost:${port}`;
  const a = await adminSetup();
  admin = { id: a.clientId, keys: a.keys };
  keys['agent-a'] = await jwkKeys();
  keys['agent-b'] = await jwkKeys();
  keys.pep = await jwkKeys();
  const audiences = CONNECTIONS.map((c) => `${issuer}/gw/${c}`);
  deputy = await startTestDeputy({
    env: { ECHO_KEY, OPENAI_KEY, ANTHROPIC_KEY, MCP_KEY },
    config: {
      server: { port },
      dpop: { requireNonce: true },
      admin: { clients: [a.config, { client_id: 'agent-pep', scopes: ['authzen:evaluate'], jwks: keys.pep.keys.jwks }] },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [
        agentConfig('agent-a', keys['agent-a'].keys, { scopes: ['deputy.read', 'deputy.write'], audiences: [...audiences, 'urn:deputy:agent:agent-b'] }),
        agentConfig('agent-b', keys['agent-b'].keys, { scopes: ['deputy.read', 'deputy.write'], audiences }),
      ],
      connections: [
        { id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] },
        { id: 'openai', kind: 'api_key', baseUrl: llm.base, allowInsecureHttp: true, header: 'Authorization', scheme: 'Bearer', secret: { env: 'OPENAI_KEY' }, requiredScopes: ['deputy.read'] },
        { id: 'anthropic', kind: 'api_key', baseUrl: llm.base, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ANTHROPIC_KEY' }, requiredScopes: ['deputy.read'] },
        { id: 'mcp', kind: 'api_key', baseUrl: mcpUp.base, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'MCP_KEY' }, requiredScopes: ['deputy.read'] },
      ],
    },
  });
  expect(deputy.issuer).toBe(issuer);
});

afterAll(async () => {
  await deputy?.stop();
  await Promise.all([up?.close(), llm?.close(), mcpUp?.close(), idp?.close()]);
});

afterEach(() => {
  vi.useRealTimers();
});

const userToken = (options: { expiresIn?: number } = {}) => idp.oktaAccessToken({ scp: ['deputy.read', 'deputy.write'], ...options });

function agent(id: 'agent-a' | 'agent-b', options: Partial<DeputyAgentOptions> = {}): Promise<DeputyAgent> {
  return DeputyAgent.create({ issuer, clientId: id, privateKey: keys[id].jwk, allowInsecureRequests: true, ...options });
}

async function exampleEnv(connection: string): Promise<ExampleEnv> {
  return { issuer, agentId: 'agent-a', agentKey: keys['agent-a'].jwk, userToken: await userToken(), connection, allowInsecureRequests: true };
}

/** Introspects `token` as the admin client. */
async function active(token: string): Promise<boolean> {
  const res = await authenticatedPost(`${deputy.url}/introspect`, issuer, admin, { token });
  return ((await res.json()) as { active: boolean }).active;
}

/** A `fetch` for the agent that records the status of each of Deputy's answers. */
function recordingFetch(statuses: Array<{ path: string; status: number }>): typeof fetch {
  return async (input, init) => {
    const res = await fetch(input, init);
    statuses.push({ path: new URL(typeof input === 'string' || input instanceof URL ? input : input.url).pathname, status: res.status });
    return res;
  };
}

describe('agent library: the README examples, run as they are', () => {
  it('exchange + gateway call in three lines: the upstream gets the key, the agent never does', async () => {
    const before = up.requests.length;
    const echo = (await quickstart(await exampleEnv('echo'))) as { path: string; headers: Record<string, string> };
    expect(echo.path).toBe('/api/customers/42');
    const seen = up.requests.slice(before);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers['x-api-key']).toBe(ECHO_KEY);
    expect(seen[0]!.headers.authorization).toBeUndefined();
    expect(seen[0]!.headers.dpop).toBeUndefined();
    expect(JSON.stringify(echo)).not.toContain(ECHO_KEY);
  });

  it('the official OpenAI SDK with fetch: agent.fetch', async () => {
    const before = llm.requests.length;
    expect(await openaiExample(await exampleEnv('openai'))).toBe('hello from the mock OpenAI');
    const [req] = llm.requests.slice(before);
    expect(req!.path).toBe('/v1/chat/completions');
    expect(req!.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
    expect(req!.headers.dpop).toBeUndefined();
  });

  it('the OpenAI SDK streaming (SSE) through agent.fetch and the gateway', async () => {
    const a = await agent('agent-a');
    await a.exchange({ subjectToken: await userToken(), resource: gw('openai') });
    const openai = new OpenAI({ baseURL: `${gw('openai')}/v1`, apiKey: 'held-by-deputy', fetch: a.fetch });
    const stream = await openai.chat.completions.create({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('hello from a stream');
    await a.dispose();
  });

  it('the official Anthropic SDK with fetch: agent.fetch', async () => {
    const before = llm.requests.length;
    expect(await anthropicExample(await exampleEnv('anthropic'))).toBe('hello from the mock Anthropic');
    const [req] = llm.requests.slice(before);
    expect(req!.path).toBe('/v1/messages');
    expect(req!.headers['x-api-key']).toBe(ANTHROPIC_KEY);
    expect(req!.headers.authorization).toBeUndefined();
  });

  it('the MCP SDK Streamable HTTP client with fetch: agent.fetch, through the HTTP gateway to an SDK MCP server', async () => {
    const before = mcpUp.requests.length;
    const out = (await mcpExample(await exampleEnv('mcp'))) as { tools: string[]; result: { content: Array<{ type: string; text: string }> } };
    expect(out.tools).toEqual(['lookup']);
    expect(out.result.content[0]!.text).toBe('customer 42: ACME Corp');
    const seen = mcpUp.requests.slice(before);
    expect(seen.length).toBeGreaterThanOrEqual(3); // initialize, initialized, tools/list, tools/call (+ the optional GET stream)
    for (const r of seen) {
      expect(r.headers['x-api-key']).toBe(MCP_KEY);
      expect(r.headers.dpop).toBeUndefined();
    }
  });

  it('nothing secret reached a log line', () => {
    const logs = deputy.logs.join('');
    for (const secret of [ECHO_KEY, OPENAI_KEY, ANTHROPIC_KEY, MCP_KEY]) expect(leaks(logs, secret)).toBe(false);
  });
});

describe('agent library: delegation', () => {
  it('exchanges for a DPoP-bound token whose cnf.jkt is the agent key and whose chain names the agent', async () => {
    const a = await agent('agent-a');
    const token = await a.exchange({ subjectToken: await userToken(), resource: gw('echo'), scope: ['deputy.read'] });
    expect(token.audience).toBe(gw('echo'));
    expect(token.scope).toEqual(['deputy.read']);
    const claims = claimsOf(await token.accessToken());
    expect(claims.cnf).toEqual({ jkt: a.dpopThumbprint });
    expect(claims.act).toEqual({ sub: 'agent-a' });
    expect(a.tokenFor(`${gw('echo')}/x/y?z=1`)).toBe(token);
    await a.dispose();
  });

  it('any subject token type: a short name or a URN; an ID token is validated as one', async () => {
    const a = await agent('agent-a');
    const jwt = await a.exchange({ subjectToken: await userToken(), subjectTokenType: 'jwt', resource: gw('echo') });
    expect(jwt.scope).toEqual(['deputy.read', 'deputy.write']);
    await a.exchange({ subjectToken: await userToken(), subjectTokenType: 'urn:ietf:params:oauth:token-type:access_token', resource: gw('echo') });
    // Deputy's trusted Okta issuer delegates no scope through ID tokens: the type reached it.
    const err = await a.exchange({ subjectToken: await idp.oktaIdToken(), subjectTokenType: 'id_token', resource: gw('echo') }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'DeputyProtocolError', error: 'invalid_scope' });
    expect((err as DeputyProtocolError).description).toMatch(/ID token/);
    await a.dispose();
  });

  it('sends an actor token when asked (RFC 8693 actor_token signed with the client key)', async () => {
    const a = await agent('agent-a');
    await a.exchange({ subjectToken: await userToken(), resource: gw('echo'), actorToken: true });
    expect((await a.request(`${gw('echo')}/ok`)).status).toBe(200);
    await a.dispose();
  });

  it('handoff → sub-agent exchange → gateway call; a sub-agent delete is denied by policy with the reason', async () => {
    const a = await agent('agent-a');
    const b = await agent('agent-b');
    await a.exchange({ subjectToken: await userToken(), resource: gw('echo'), scope: 'deputy.read deputy.write' });
    const handoff = await a.handoff('agent-b', { scope: 'deputy.read' });
    expect(handoff).toMatchObject({ issuer, from: 'agent-a', to: 'agent-b', subject_token_type: 'urn:ietf:params:oauth:token-type:access_token' });
    expect(claimsOf(handoff.subject_token).may_act).toMatchObject({ sub: 'agent-b' });
    // JSON travels between processes.
    const received = JSON.parse(JSON.stringify(handoff)) as typeof handoff;
    const tb = await b.exchange({ handoff: received, resource: gw('echo') });
    expect(claimsOf(await tb.accessToken()).act).toEqual({ sub: 'agent-b', act: { sub: 'agent-a' } });
    expect((await b.request(`${gw('echo')}/read`)).status).toBe(200);

    const denied = await b.request(`${gw('echo')}/items/1`, { method: 'DELETE' }).catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(PolicyDeniedError);
    expect((denied as PolicyDeniedError).status).toBe(403);
    expect((denied as PolicyDeniedError).error).toBe('access_denied');
    expect((denied as PolicyDeniedError).reason).toMatch(/delete/i);
    expect((denied as PolicyDeniedError).reason).toMatch(/sub-agent/i);
    // fetch itself answers as fetch does: the 403 response.
    expect((await b.fetch(`${gw('echo')}/items/1`, { method: 'DELETE' })).status).toBe(403);
    await b.dispose();
    await a.dispose();
  });

  it('the handoff goes only to the agent it names', async () => {
    const a = await agent('agent-a');
    await a.exchange({ subjectToken: await userToken(), resource: gw('echo') });
    const handoff = await a.handoff('agent-b');
    // agent-a itself presenting the handoff token: may_act names agent-b.
    const err = await a.exchange({ handoff, resource: gw('echo') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeputyProtocolError);
    expect((err as DeputyProtocolError).error).toBe('invalid_grant');
    await a.dispose();
  });

  it('an AuthZEN evaluation of the agent token covers the whole chain (AuthZenPep)', async () => {
    const a = await agent('agent-a');
    await a.exchange({ subjectToken: await userToken(), resource: gw('echo') });
    const token = await a.token();
    const pep = new AuthZenPep({ issuer, pep: { clientId: 'agent-pep', privateKey: keys.pep.jwk }, allowInsecureRequests: true });
    const resource = { type: 'Resource', id: 'echo', properties: { scope: 'deputy.read', audience: gw('echo'), owner: claimsOf(token).sub } };
    const read = await pep.evaluate({ subject: { type: 'Agent', id: 'agent-a', properties: { token } }, action: { name: 'read' }, resource });
    expect(read).toMatchObject({ decision: true, cached: false });
    const again = await pep.evaluate({ subject: { type: 'Agent', id: 'agent-a', properties: { token } }, action: { name: 'read' }, resource });
    expect(again).toMatchObject({ decision: true, cached: true });
    const other = await pep.evaluate({ subject: { type: 'Agent', id: 'agent-a', properties: { token } }, action: { name: 'read' }, resource: { ...resource, properties: { ...resource.properties, owner: 'mallory@example.com' } } });
    expect(other.decision).toBe(false);
    expect(other.reason).toMatch(/user|link/i);
    await a.dispose();
  });
});

describe('agent library: lifetime', () => {
  it('re-exchanges before expiry (skew), from a fresh subject token', async () => {
    const a = await agent('agent-a', { refreshSkewSeconds: 60 });
    let asked = 0;
    const token = await a.exchange({ subjectToken: () => (asked++, userToken()), resource: gw('echo') });
    const first = await token.accessToken();
    expect(await token.accessToken()).toBe(first);
    expect(asked).toBe(1);
    // 300 s tokens, 60 s skew: at +250 s the token is due; concurrent users share one exchange.
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 250_000);
    const [x, y] = await Promise.all([token.accessToken(), a.token(gw('echo'))]);
    expect(x).toBe(y);
    expect(x).not.toBe(first);
    expect(asked).toBe(2);
    expect(claimsOf(x).exp! * 1000).toBeGreaterThan(Date.now() + 200_000);
    expect((await a.request(`${gw('echo')}/after-refresh`)).status).toBe(200);
    vi.useRealTimers();
    await a.dispose();
  });

  it('dispose() revokes every token it obtained, and Deputy cascades to the sub-agent (a typed error mid-session)', async () => {
    const a = await agent('agent-a');
    const b = await agent('agent-b');
    const ta = await a.exchange({ subjectToken: await userToken(), resource: gw('echo') });
    const tb = await b.exchange({ handoff: await a.handoff('agent-b'), resource: gw('echo') });
    const [aToken, bToken] = [await ta.accessToken(), await tb.accessToken()];
    expect((await b.request(`${gw('echo')}/before`)).status).toBe(200);
    await a.dispose();
    expect(await active(aToken)).toBe(false);
    expect(await active(bToken)).toBe(false);
    const err = await b.request(`${gw('echo')}/after`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeputyProtocolError);
    expect(err).toMatchObject({ error: 'invalid_token', status: 401 });
    await expect(a.fetch(`${gw('echo')}/x`)).rejects.toBeInstanceOf(DeputyAgentError);
    await expect(a.exchange({ subjectToken: 'x' })).rejects.toMatchObject({ code: 'ERR_DEPUTY_DISPOSED' });
    await b.dispose();
  });

  it('a token revoked by an administrator mid-session: fetch answers 401, request throws invalid_token', async () => {
    const a = await agent('agent-a');
    await a.exchange({ subjectToken: await userToken(), resource: gw('echo') });
    expect((await a.request(`${gw('echo')}/ok`)).status).toBe(200);
    expect((await authenticatedPost(`${deputy.url}/revoke`, issuer, admin, { token: await a.token() })).status).toBe(200);
    const res = await a.fetch(`${gw('echo')}/after`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^DPoP .*error="invalid_token"/);
    await expect(a.request(`${gw('echo')}/after`)).rejects.toMatchObject({ name: 'DeputyProtocolError', error: 'invalid_token', status: 401 });
    await a.dispose();
  });
});

describe('agent library: refusals seen through an SDK', () => {
  it('the SDK raises its own error; onDeputyError gets Deputy\'s typed one, description included', async () => {
    const refusals: DeputyProtocolError[] = [];
    const a = await agent('agent-a', { onDeputyError: (e) => refusals.push(e) });
    await a.exchange({ subjectToken: await userToken(), resource: gw('openai') });
    expect((await authenticatedPost(`${deputy.url}/revoke`, issuer, admin, { token: await a.token() })).status).toBe(200);
    const openai = new OpenAI({ baseURL: `${gw('openai')}/v1`, apiKey: 'held-by-deputy', fetch: a.fetch, maxRetries: 0 });
    const err = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatchObject({ error: 'invalid_token', status: 401 });
    expect(refusals[0]!.description).toMatch(/revoked/);
    await a.dispose();
  });
});

describe('agent library: bad input', () => {
  it('a wrong client key: invalid_client', async () => {
    const other = await exportJWK((await generateKeyPair('ES256', { extractable: true })).privateKey);
    const a = await DeputyAgent.create({ issuer, clientId: 'agent-a', privateKey: other, allowInsecureRequests: true });
    const err = await a.exchange({ subjectToken: await userToken(), resource: gw('echo') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeputyProtocolError);
    expect(err).toMatchObject({ error: 'invalid_client', status: 401 });
  });

  it('an expired subject token: invalid_grant', async () => {
    const a = await agent('agent-a');
    const err = await a.exchange({ subjectToken: await userToken({ expiresIn: -120 }), resource: gw('echo') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeputyProtocolError);
    expect(err).toMatchObject({ error: 'invalid_grant', status: 400 });
  });

  it('a resource the agent may not hold: invalid_target; a URL with no token: ERR_DEPUTY_NO_TOKEN', async () => {
    const a = await agent('agent-a');
    await expect(a.exchange({ subjectToken: await userToken(), resource: 'https://elsewhere.example.com' })).rejects.toMatchObject({ error: 'invalid_target' });
    await a.exchange({ subjectToken: await userToken(), resource: gw('echo') });
    expect(() => a.tokenFor(`${gw('echoes')}/x`)).toThrow(expect.objectContaining({ code: 'ERR_DEPUTY_NO_TOKEN' }));
    await expect(a.request(`${gw('openai')}/v1/models`)).rejects.toMatchObject({ code: 'ERR_DEPUTY_NO_TOKEN' });
    await a.dispose();
  });

  it('a 401 use_dpop_nonce challenge on a streamed body: the buffered body is sent again, whole', async () => {
    const statuses: Array<{ path: string; status: number }> = [];
    const a = await agent('agent-a', { fetch: recordingFetch(statuses) });
    await a.exchange({ subjectToken: await userToken(), resource: gw('echo') });
    // Four nonce periods later the nonce the agent holds is stale (the token is not yet due).
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 240_000);
    const data = randomBytes(300_000);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < data.length; i += 65_536) controller.enqueue(data.subarray(i, i + 65_536));
        controller.close();
      },
    });
    statuses.length = 0;
    const res = await a.request(`${gw('echo')}/upload`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') });
    expect(statuses).toEqual([{ path: '/gw/echo/upload', status: 401 }, { path: '/gw/echo/upload', status: 200 }]);
    vi.useRealTimers();
    await a.dispose();
  });

  it('concurrent calls with a stale nonce: each answers its own challenge once and succeeds', async () => {
    const statuses: Array<{ path: string; status: number }> = [];
    const a = await agent('agent-a', { fetch: recordingFetch(statuses) });
    await a.exchange({ subjectToken: await userToken(), resource: gw('echo') });
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 240_000);
    statuses.length = 0;
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => a.request(`${gw('echo')}/upload`, { method: 'POST', body: `payload ${i}` }).then((r) => r.json() as Promise<{ bytes: number }>)),
    );
    expect(results.map((r) => r.bytes)).toEqual(Array.from({ length: 12 }, (_, i) => `payload ${i}`.length));
    const challenged = statuses.filter((s) => s.status === 401).length;
    expect(challenged).toBeGreaterThanOrEqual(1);
    expect(statuses.filter((s) => s.status === 200)).toHaveLength(12);
    expect(statuses).toHaveLength(12 + challenged);
    vi.useRealTimers();
    await a.dispose();
  });

  it('a body over maxBufferedBodyBytes is refused before anything is sent', async () => {
    const a = await agent('agent-a', { maxBufferedBodyBytes: 1024 });
    await a.exchange({ subjectToken: await userToken(), resource: gw('echo') });
    const before = up.requests.length;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new Uint8Array(2048));
        c.close();
      },
    });
    await expect(a.fetch(`${gw('echo')}/upload`, { method: 'POST', body })).rejects.toMatchObject({ code: 'ERR_DEPUTY_BODY_TOO_LARGE' });
    expect(up.requests.length).toBe(before);
    await a.dispose();
  });

  it('keys: a public key, a symmetric key, a KeyObject', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
    await expect(DeputyAgent.create({ issuer, clientId: 'agent-a', privateKey: await exportJWK(publicKey), allowInsecureRequests: true })).rejects.toMatchObject({ code: 'ERR_DEPUTY_INVALID_KEY' });
    await expect(DeputyAgent.create({ issuer, clientId: 'agent-a', privateKey: { kty: 'oct', k: 'AAAA' }, allowInsecureRequests: true })).rejects.toMatchObject({ code: 'ERR_DEPUTY_INVALID_KEY' });
    await expect(DeputyAgent.create({ issuer, clientId: 'agent-a', privateKey: publicKey, allowInsecureRequests: true })).rejects.toMatchObject({ code: 'ERR_DEPUTY_INVALID_KEY' });
    const { createPrivateKey } = await import('node:crypto');
    const keyObject = createPrivateKey({ key: keys['agent-a'].jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    const a = await DeputyAgent.create({ issuer, clientId: 'agent-a', privateKey: keyObject, allowInsecureRequests: true });
    await a.exchange({ subjectToken: await userToken(), resource: gw('echo') });
    expect((await a.request(`${gw('echo')}/ok`)).status).toBe(200);
    await a.dispose();
    void privateKey;
  });
});

describe('agent library: DPoP keys', () => {
  it('a supplied DPoP key (private JWK) is the one tokens are bound to; a generated Ed25519 key works too', async () => {
    const dpopJwk = await exportJWK((await generateKeyPair('ES256', { extractable: true })).privateKey);
    const a = await agent('agent-a', { dpopKey: dpopJwk });
    const { d: _d, ...pub } = dpopJwk;
    expect(a.dpopThumbprint).toBe(await calculateJwkThumbprint(pub));
    const t = await a.exchange({ subjectToken: await userToken(), resource: gw('echo') });
    expect(claimsOf(await t.accessToken()).cnf).toEqual({ jkt: a.dpopThumbprint });
    expect((await a.request(`${gw('echo')}/ok`)).status).toBe(200);
    await a.dispose();
    const ed = await agent('agent-a', { dpopAlgorithm: 'Ed25519' });
    await ed.exchange({ subjectToken: await userToken(), resource: gw('echo') });
    expect((await ed.request(`${gw('echo')}/ok`)).status).toBe(200);
    await ed.dispose();
  });
});

describe('agent library: errors an SDK surfaces', () => {
  it('BudgetExceededError is exported for 402 problems (see test/unit/agent-errors.test.ts)', () => {
    expect(new BudgetExceededError({ type: 'urn:x', title: 't' }, 5)).toBeInstanceOf(DeputyProtocolError);
  });
});
