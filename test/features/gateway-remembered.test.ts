/**
 * The gateway's remembered PDP decisions (src/pdp/remembered-decisions.ts) over real HTTP, as
 * agents call `/gw/{connection}`: a repeated call is decided from memory (no evaluation) with the
 * same outcome, receipt policies and denial reason; and every change a decision depends on — a
 * revocation (here and through another instance), an agent disabled or deleted, a policy reload,
 * the token's expiry, any other evaluation input (method, path, route action, connection, scope)
 * — is never answered from memory: the same call is refused, and the remembered path itself no
 * longer answers (it evaluates). Runs on PGlite, and on PostgreSQL with `DATABASE_URL`.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { EvaluationInput } from '../../src/pdp/index.js';
import { agentConfig, authenticatedPost, claimsOf, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient, type ClientKeys } from '../support/clients.js';
import { json } from '../support/http.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';

const API_KEY = `sk_live_${randomBytes(16).toString('hex')}`;
/** Past the revocation cache's and the agent cache's 2-second bound (README). */
const PAST_THE_BOUND_MS = 2_100;

let idp: MockIdp;
let up: MockUpstream;
let deputy: TestDeputy;
let issuer: string;
let policies: string;
let admin: { id: string; keys: ClientKeys };
let adminToken: string;
const agents: Record<string, TestAgent> = {};
const keys: Record<string, ClientKeys> = {};
const gw = (connection: string) => `${issuer}/gw/${connection}`;

/** Every evaluation the PDP made (the remembered path's misses reach it; its hits do not), and its input. */
const evaluated: EvaluationInput[] = [];

/** The gateway's action properties as Cedar context (declared here, not by the default schema), and the actions routes name. */
function schemaWithGatewayContext(): string {
  const schema = readFileSync('config/policies/schema.cedarschema', 'utf8');
  const declared = schema.replace(
    /action read, write, delete, invoke appliesTo \{([^}]*)context: \{ chain: Chain, mcp\?: Mcp \},/,
    'action read, write, delete, invoke appliesTo {$1context: { chain: Chain, mcp?: Mcp, action?: GwCall },',
  );
  expect(declared).not.toBe(schema);
  return `${declared}
type GwCall = { method: String, path: String, connection: String, tool?: String };
action "tool.open", "tool.secret" appliesTo { principal: [User, Agent], resource: [Resource], context: { chain: Chain, action?: GwCall } };
`;
}

const GATEWAY_POLICIES = `
@id("gw-agents-tools")
permit (principal, action in [Action::"tool.open", Action::"tool.secret"], resource is Resource);

@id("no-private-paths")
@reason("Private paths are closed.")
forbid (principal, action, resource) when { context has action && context.action.path like "/private*" };

@id("no-deletes-on-gwm")
@reason("Nothing is deleted on gwm.")
forbid (principal, action, resource) when { context has action && context.action.method == "DELETE" };

@id("no-secret-tool")
@reason("The secret tool is closed.")
forbid (principal, action == Action::"tool.secret", resource);

@id("closed-connection")
@reason("gwx is closed.")
forbid (principal, action, resource == Resource::"gwx");

@id("no-write-scope-resources")
@reason("Nothing that needs deputy.write.")
forbid (principal, action, resource) when { resource has scope && resource.scope == "deputy.write" };
`;

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMockUpstream();
  const port = await freePort();
  issuer = `http://localhost:${port}`;
  policies = mkdtempSync(join(tmpdir(), 'deputy-gw-remembered-'));
  copyFileSync('config/policies/default.cedar', join(policies, 'default.cedar'));
  writeFileSync(join(policies, 'schema.cedarschema'), schemaWithGatewayContext());
  writeFileSync(join(policies, 'gateway.cedar'), GATEWAY_POLICIES);
  const a = await adminSetup();
  admin = { id: a.clientId, keys: a.keys };
  for (const id of ['agent-a', 'agent-x', 'agent-d', 'agent-p', 'agent-s']) keys[id] = await clientKeys();
  const connections = ['gwm', 'gwx', 'gwr'];
  const audiences = connections.map((c) => `http://localhost:${port}/gw/${c}`);
  const apiKey = { kind: 'api_key' as const, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] };
  deputy = await startTestDeputy({
    env: { ECHO_KEY: API_KEY },
    config: {
      server: { port },
      admin: { clients: [a.config] },
      trustedIssuers: [idp.issuerConfig('okta')],
      pdp: { policies },
      agents: [
        agentConfig('agent-a', keys['agent-a']!, { scopes: ['deputy.read', 'deputy.write'], audiences }),
        agentConfig('agent-x', keys['agent-x']!, { scopes: ['deputy.read'], audiences }),
        // A two-link chain: agent-p hands off to agent-s, which calls the gateway.
        agentConfig('agent-p', keys['agent-p']!, { scopes: ['deputy.read'], audiences: [...audiences, 'urn:deputy:agent:agent-s'], maxDelegationDepth: 2 }),
        agentConfig('agent-s', keys['agent-s']!, { scopes: ['deputy.read'], audiences, maxDelegationDepth: 2 }),
      ],
      connections: [
        { id: 'gwm', baseUrl: `${up.base}/api`, ...apiKey },
        { id: 'gwx', baseUrl: `${up.base}/api`, ...apiKey },
        {
          id: 'gwr', baseUrl: `${up.base}/r`, ...apiKey,
          routes: [
            { methods: ['GET'], path: '/a/**', action: 'tool.open' },
            { methods: ['GET'], path: '/b/**', action: 'tool.secret' },
            // An action the policy set does not declare: decided as `read`, the route's scope the resource's.
            { methods: ['GET'], path: '/w/**', action: 'tool.undeclared', scopes: ['deputy.write'] },
          ],
        },
      ],
    },
  });
  expect(deputy.issuer).toBe(issuer);
  adminToken = await clientCredentialsToken(await oauthClient(deputy.issuer, admin.id, admin.keys), 'deputy:admin');
  // An agent registered through the admin API (one defined in configuration cannot be deleted).
  const created = await fetch(`${deputy.url}/admin/agents`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ id: 'agent-d', name: 'Deleted later', owner: 'ops@example.com', scopes: ['deputy.read'], audiences, max_delegation_depth: 1, jwks: keys['agent-d']!.jwks }),
  });
  expect(created.status).toBe(201);
  for (const id of Object.keys(keys)) agents[id] = await testAgent(deputy.issuer, id, keys[id]!);
  const pdp = deputy.pdp.pdp;
  const evaluate = pdp.evaluate.bind(pdp);
  pdp.evaluate = (...args) => {
    evaluated.push(args[0]);
    return evaluate(...args);
  };
});
afterAll(async () => {
  vi.useRealTimers();
  await deputy?.stop();
  await up?.close();
  await idp?.close();
  if (policies) rmSync(policies, { recursive: true, force: true });
});

async function tokenFor(agent: string, connection: string, scope = 'deputy.read'): Promise<string> {
  const subject = await idp.oktaAccessToken({ scp: ['deputy.read', 'deputy.write'] });
  return (await exchange(agents[agent]!, { subject_token: subject, resource: gw(connection), scope })).access_token;
}

/** A gateway call exactly as an agent makes it (openid-client, DPoP); a 401 challenge is returned as the response it is. */
async function call(agent: string, token: string, connection: string, path: string, method = 'GET'): Promise<Response> {
  try {
    return await client.fetchProtectedResource(agents[agent]!.config, token, new URL(`${gw(connection)}${path}`), method, null, new Headers(), { DPoP: agents[agent]!.handle });
  } catch (err) {
    if (err instanceof client.WWWAuthenticateChallengeError) return err.response;
    throw err;
  }
}

/** A fresh admin token (Date moves on in these tests: an earlier one may have expired). */
async function adminAuth(): Promise<{ authorization: string }> {
  return { authorization: `Bearer ${await clientCredentialsToken(await oauthClient(deputy.issuer, admin.id, admin.keys), 'deputy:admin')}` };
}

/** A call's status and, when refused, its error body. */
async function outcome(res: Response): Promise<{ status: number; error?: unknown; error_description?: unknown }> {
  if (res.status === 200) return (await res.arrayBuffer(), { status: 200 });
  const body = await json(res);
  return { status: res.status, error: body.error, error_description: body.error_description };
}

/**
 * Called, then called again and decided from memory (no evaluation), with the same outcome.
 * Tried up to three times: a cache re-read between the two rightly sends the second to the PDP.
 * Returns the evaluation the gateway asks for this call.
 */
async function remembered(agent: string, token: string, connection: string, path: string, method = 'GET', status = 200): Promise<EvaluationInput> {
  for (let attempt = 1; ; attempt++) {
    const first = await outcome(await call(agent, token, connection, path, method));
    expect(first.status).toBe(status);
    const before = evaluated.length;
    const input = evaluated.at(-1)!;
    const second = await outcome(await call(agent, token, connection, path, method));
    if (evaluated.length === before || attempt === 3) {
      expect(evaluated.length, 'the repeated call was decided from memory').toBe(before);
      expect(second).toEqual(first);
      return input;
    }
  }
}

/** Whether the remembered path answers `input` from memory now (a plain decision, not a promise), and what it decides. */
async function recall(input: EvaluationInput): Promise<{ fromMemory: boolean; decision: boolean }> {
  const answer = deputy.pdp.remembered.evaluate(input);
  const fromMemory = !(answer instanceof Promise);
  return { fromMemory, decision: (await answer).decision };
}

/** How far Date has been moved on: only forward across the tests (a cache stamped while Date was ahead must not look fresh later). */
let skewMs = 0;
function later(ms: number): void {
  skewMs += ms;
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(performance.timeOrigin + performance.now() + skewMs);
}

async function gatewayReceipts(agent: string): Promise<Array<Record<string, unknown>>> {
  await deputy.receipts.flush();
  const res = await fetch(`${deputy.url}/admin/agents/${agent}/receipts/export`, { headers: await adminAuth() });
  expect(res.status).toBe(200);
  const lines = (await res.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { receipt: string });
  return lines.map((l) => JSON.parse(Buffer.from(l.receipt.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>).filter((c) => c.event === 'gateway_call');
}

describe('the gateway decides a repeated call from memory', () => {
  /** What a gateway receipt says about the decision (ids, times, request digests and hashes differ per call). */
  const decided = (claims: Record<string, unknown> | undefined) => {
    const { decision, policies, reason, action, resource, scope, event, chain } = claims ?? {};
    return { decision, policies, reason, action, resource, scope, event, chain };
  };

  it('a permit: no evaluation, the same receipt as the evaluated call', async () => {
    const token = await tokenFor('agent-a', 'gwm');
    const input = await remembered('agent-a', token, 'gwm', '/open/1');
    expect(await recall(input)).toEqual({ fromMemory: true, decision: true });
    const [evaluatedCall, rememberedCall] = (await gatewayReceipts('agent-a')).slice(-2);
    expect(decided(rememberedCall)).toEqual(decided(evaluatedCall));
    expect(decided(rememberedCall)).toMatchObject({ decision: 'permit', event: 'gateway_call' });
  });

  it('a denial: the same 403 and reason, the same receipt', async () => {
    const token = await tokenFor('agent-a', 'gwm');
    const input = await remembered('agent-a', token, 'gwm', '/private/1', 'GET', 403);
    expect(await recall(input)).toEqual({ fromMemory: true, decision: false });
    const denied = await outcome(await call('agent-a', token, 'gwm', '/private/1'));
    expect(denied).toMatchObject({ status: 403, error: 'access_denied' });
    expect(String(denied.error_description)).toMatch(/no-private-paths/);
    const [evaluatedCall, rememberedCall] = (await gatewayReceipts('agent-a')).slice(-3);
    expect(decided(rememberedCall)).toEqual(decided(evaluatedCall));
    expect(decided(rememberedCall)).toMatchObject({ decision: 'deny', reason: expect.stringMatching(/no-private-paths/) });
  });
});

describe('a change of any evaluation input is never answered from memory', () => {
  it.each([
    ['method', 'gwm', '/open/2', 'GET', 'gwm', '/open/2', 'DELETE', /no-deletes-on-gwm/],
    ['path', 'gwm', '/open/3', 'GET', 'gwm', '/private/3', 'GET', /no-private-paths/],
    ['route action', 'gwr', '/a/1', 'GET', 'gwr', '/b/1', 'GET', /no-secret-tool/],
    ['scope (the route\'s)', 'gwr', '/a/2', 'GET', 'gwr', '/w/2', 'GET', /no-write-scope-resources/],
  ])('%s: allowed, then the changed call refused by policy, then the first allowed again', async (_name, c1, p1, m1, c2, p2, m2, reason) => {
    const token = await tokenFor('agent-a', c1, 'deputy.read deputy.write');
    await remembered('agent-a', token, c1, p1, m1);
    const before = evaluated.length;
    const changed = await outcome(await call('agent-a', token, c2, p2, m2));
    expect(changed).toMatchObject({ status: 403, error: 'access_denied' });
    expect(String(changed.error_description)).toMatch(reason);
    expect(evaluated.length).toBe(before + 1);
    expect((await call('agent-a', token, c1, p1, m1)).status).toBe(200);
  });

  it('connection: the same call on another connection is evaluated and refused', async () => {
    await remembered('agent-a', await tokenFor('agent-a', 'gwm'), 'gwm', '/open/4');
    const before = evaluated.length;
    expect(await outcome(await call('agent-a', await tokenFor('agent-a', 'gwx'), 'gwx', '/open/4'))).toMatchObject({ status: 403, error: 'access_denied' });
    expect(evaluated.length).toBe(before + 1);
  });
});

describe('a change the decision depends on is never answered from memory', () => {
  it('a policy reload: the same call refused at once', async () => {
    const token = await tokenFor('agent-a', 'gwm');
    const input = await remembered('agent-a', token, 'gwm', '/reloaded/1');
    writeFileSync(join(policies, 'reloaded.cedar'), '@id("no-reloaded")\n@reason("Reloaded away.")\nforbid (principal, action, resource) when { context has action && context.action.path like "/reloaded*" };\n');
    try {
      const reload = await fetch(`${deputy.url}/admin/policies/reload`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } });
      expect(reload.status).toBe(200);
      expect(await recall(input)).toEqual({ fromMemory: false, decision: false });
      const refused = await outcome(await call('agent-a', token, 'gwm', '/reloaded/1'));
      expect(refused).toMatchObject({ status: 403, error: 'access_denied' });
      expect(String(refused.error_description)).toMatch(/no-reloaded/);
    } finally {
      rmSync(join(policies, 'reloaded.cedar'));
      expect((await fetch(`${deputy.url}/admin/policies/reload`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } })).status).toBe(200);
    }
  });

  it('a token revoked through this instance: refused at once', async () => {
    const token = await tokenFor('agent-a', 'gwm');
    const input = await remembered('agent-a', token, 'gwm', '/open/5');
    expect((await authenticatedPost(`${deputy.url}/revoke`, deputy.issuer, admin, { token })).status).toBe(200);
    expect(await recall(input)).toEqual({ fromMemory: false, decision: false });
    expect(await outcome(await call('agent-a', token, 'gwm', '/open/5'))).toMatchObject({ status: 401, error: 'invalid_token' });
  });

  it('a token revoked through another instance (straight into the store): refused once the revocation cache is due', async () => {
    const token = await tokenFor('agent-a', 'gwm');
    const input = await remembered('agent-a', token, 'gwm', '/open/6');
    await deputy.store.query('UPDATE token_records SET revoked_at = now() WHERE jti = $1', [claimsOf(token).jti]);
    later(PAST_THE_BOUND_MS);
    expect(await recall(input)).toEqual({ fromMemory: false, decision: false });
    expect(await outcome(await call('agent-a', token, 'gwm', '/open/6'))).toMatchObject({ status: 401, error: 'invalid_token' });
  });

  it('an agent disabled through the admin API: refused at once', async () => {
    const token = await tokenFor('agent-x', 'gwm');
    const input = await remembered('agent-x', token, 'gwm', '/open/8');
    const disabled = await fetch(`${deputy.url}/admin/agents/agent-x/disable`, { method: 'POST', headers: await adminAuth() });
    expect(disabled.status).toBe(200);
    expect(await recall(input)).toEqual({ fromMemory: false, decision: false });
    expect((await outcome(await call('agent-x', token, 'gwm', '/open/8'))).status).toBe(401);
  });

  it('an agent deleted through the admin API: refused at once', async () => {
    const token = await tokenFor('agent-d', 'gwm');
    const input = await remembered('agent-d', token, 'gwm', '/open/9');
    const deleted = await fetch(`${deputy.url}/admin/agents/agent-d`, { method: 'DELETE', headers: await adminAuth() });
    expect(deleted.status).toBe(204);
    expect(await recall(input)).toEqual({ fromMemory: false, decision: false });
    expect((await outcome(await call('agent-d', token, 'gwm', '/open/9'))).status).toBe(401);
  });

  /** A sub-agent's gateway token (user → agent-p → agent-s) and the handoff token it was exchanged from. */
  async function chainTokens(): Promise<{ parent: string; token: string }> {
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    const parent = (await exchange(agents['agent-p']!, { subject_token: subject, audience: 'urn:deputy:agent:agent-s', scope: 'deputy.read' })).access_token;
    const token = (await exchange(agents['agent-s']!, { subject_token: parent, resource: gw('gwm'), scope: 'deputy.read' })).access_token;
    expect(claimsOf(token)).toMatchObject({ sub: expect.any(String), act: { sub: 'agent-s', act: { sub: 'agent-p' } } });
    return { parent, token };
  }

  it('a sub-agent\'s call: its parent link revoked through this instance is refused at once', async () => {
    const { parent, token } = await chainTokens();
    const input = await remembered('agent-s', token, 'gwm', '/open/chain-1');
    expect((await authenticatedPost(`${deputy.url}/revoke`, deputy.issuer, admin, { token: parent })).status).toBe(200);
    expect(await recall(input)).toEqual({ fromMemory: false, decision: false });
    expect((await outcome(await call('agent-s', token, 'gwm', '/open/chain-1'))).status).toBe(401);
  });

  it('a sub-agent\'s call: its parent link revoked through another instance (straight into the store) is refused once the revocation cache is due', async () => {
    const { parent, token } = await chainTokens();
    const input = await remembered('agent-s', token, 'gwm', '/open/chain-2');
    await deputy.store.query('UPDATE token_records SET revoked_at = now() WHERE jti = $1', [claimsOf(parent).jti]);
    later(PAST_THE_BOUND_MS);
    expect(await recall(input)).toEqual({ fromMemory: false, decision: false });
    expect((await outcome(await call('agent-s', token, 'gwm', '/open/chain-2'))).status).toBe(401);
  });

  it('a sub-agent\'s call: the parent agent (a link before it) disabled through the admin API is refused at once', async () => {
    const { token } = await chainTokens();
    const input = await remembered('agent-s', token, 'gwm', '/open/chain-3');
    const disabled = await fetch(`${deputy.url}/admin/agents/agent-p/disable`, { method: 'POST', headers: await adminAuth() });
    expect(disabled.status).toBe(200);
    expect(await recall(input)).toEqual({ fromMemory: false, decision: false });
    expect((await outcome(await call('agent-s', token, 'gwm', '/open/chain-3'))).status).toBe(401);
  });

  // Last: Date moves past the token lifetime.
  it('the token expires: refused, and its remembered decision no longer answers', async () => {
    const token = await tokenFor('agent-a', 'gwm');
    const input = await remembered('agent-a', token, 'gwm', '/open/7');
    later(claimsOf(token).exp! * 1000 - Date.now() + 1_000);
    expect(await recall(input)).toEqual({ fromMemory: false, decision: false });
    expect(await outcome(await call('agent-a', token, 'gwm', '/open/7'))).toMatchObject({ status: 401, error: 'invalid_token' });
  });
});
