/**
 * Deputy as a policy backend of Microsoft's Agent Governance Toolkit: the real toolkit
 * (`@microsoft/agent-governance-sdk` `PolicyEngine`) with `DeputyPolicyBackend` registered,
 * against a real Deputy. The toolkit's local decision and Deputy's PDP over the whole delegation
 * chain must both allow; Deputy unreachable, slow or refusing the PEP is a deny; a requested
 * receipt names the agent.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { PolicyEngine } from '@microsoft/agent-governance-sdk';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeputyAgent } from 'deputy/agent';
import { AuthZenPep, DeputyPolicyBackend, type PepDecision } from 'deputy/agent/governance';
import { main as governanceExample } from '../../examples/agt-backend.js';
import { agentConfig, authenticatedPost, claimsOf } from '../support/agents.js';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient } from '../support/clients.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';

let idp: MockIdp;
let deputy: TestDeputy;
let issuer: string;
let adminToken: string;
let admin: Awaited<ReturnType<typeof adminSetup>>;
const jwks: Record<'agent-a' | 'agent-b' | 'pep', JWK> = {} as never;
/** The user id Deputy derives from the mock IdP's default user (a resource they own). */
let user: string;
const gw = (connection: string) => `${issuer}/gw/${connection}`;

beforeAll(async () => {
  idp = await startMockIdp();
  const port = await freePort();
  issuer = `http://localhost:${port}`;
  admin = await adminSetup();
  const k = { 'agent-a': await clientKeys(), 'agent-b': await clientKeys(), pep: await clientKeys() };
  for (const id of Object.keys(k) as Array<keyof typeof k>) jwks[id] = await exportJWK(k[id].privateKey);
  deputy = await startTestDeputy({
    env: { CRM_KEY: 'sk_crm_not_used_here' },
    config: {
      server: { port },
      admin: { clients: [admin.config, { client_id: 'agt-pep', scopes: ['authzen:evaluate'], jwks: k.pep.jwks }] },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [
        agentConfig('agent-a', k['agent-a'], { scopes: ['deputy.read', 'deputy.write'], audiences: [`${issuer}/gw/crm`, 'urn:deputy:agent:agent-b'] }),
        agentConfig('agent-b', k['agent-b'], { scopes: ['deputy.read', 'deputy.write'], audiences: [`${issuer}/gw/crm`] }),
      ],
      connections: [{ id: 'crm', kind: 'api_key', baseUrl: 'http://127.0.0.1:9/crm', allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'CRM_KEY' }, requiredScopes: ['deputy.read'] }],
    },
  });
  adminToken = await clientCredentialsToken(await oauthClient(issuer, admin.clientId, admin.keys), 'deputy:admin');
  const probe = await agentWithToken('agent-a');
  user = claimsOf(await probe.token()).sub!;
  await probe.dispose();
});

afterAll(async () => {
  await deputy?.stop();
  await idp?.close();
});

const userToken = () => idp.oktaAccessToken({ scp: ['deputy.read', 'deputy.write'] });
const pep = () => ({ clientId: 'agt-pep', privateKey: jwks.pep });

async function agentWithToken(id: 'agent-a' | 'agent-b', handoff?: Awaited<ReturnType<DeputyAgent['handoff']>>): Promise<DeputyAgent> {
  const agent = await DeputyAgent.create({ issuer, clientId: id, privateKey: jwks[id], allowInsecureRequests: true });
  await agent.exchange(handoff ? { handoff, resource: gw('crm') } : { subjectToken: await userToken(), resource: gw('crm'), scope: 'deputy.read deputy.write' });
  return agent;
}

/** The CRM connection as an AuthZEN resource, owned by `owner`. */
const crm = (owner: string) => ({ type: 'Resource', id: 'crm', properties: { owner, scope: 'deputy.read', audience: gw('crm') } });

/** The toolkit's engine with local rules allowing `crm.*`, and Deputy registered. */
function engineWith(backend: DeputyPolicyBackend): PolicyEngine {
  const engine = new PolicyEngine([{ action: 'crm.*', effect: 'allow' }]);
  engine.registerBackend(backend);
  return engine;
}

/** A TCP server that accepts connections and never answers (a PDP that hangs). */
async function blackHole(): Promise<{ url: string; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => void sockets.add(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('Agent Governance Toolkit + Deputy: both must allow', () => {
  it('the README example: local allow + Deputy allow → allow; Deputy deny → deny with the PDP reason', async () => {
    const base = { issuer, agentId: 'agent-a', agentKey: jwks['agent-a'], userToken: await userToken(), connection: 'crm', allowInsecureRequests: true, pepId: 'agt-pep', pepKey: jwks.pep };
    expect(await governanceExample({ ...base, action: 'crm.lookup', resource: crm(user) })).toEqual({ decision: 'allow', deniedBy: [], reasons: [undefined] });
    const denied = await governanceExample({ ...base, userToken: await userToken(), action: 'crm.lookup', resource: crm('mallory@example.com') });
    expect(denied.decision).toBe('deny');
    expect(denied.deniedBy).toEqual(['deputy']);
    expect(denied.reasons[0]).toBe('the user (link 0 of 1) may not "read" on "Resource" "crm": no policy permits it');
  });

  it('a sub-agent: the toolkit allows crm.erase, Deputy evaluates the whole chain and denies (sub-agents may not delete)', async () => {
    const a = await agentWithToken('agent-a');
    const b = await agentWithToken('agent-b', await a.handoff('agent-b', { scope: 'deputy.read deputy.write' }));
    const decisions: PepDecision[] = [];
    const backend = new DeputyPolicyBackend({ agent: b, pep: pep(), actions: { 'crm.lookup': 'read', 'crm.erase': 'delete' }, allowInsecureRequests: true, onDecision: (d) => decisions.push(d) });
    const engine = engineWith(backend);
    expect((await engine.evaluateWithBackends('crm.lookup', { resource: crm(user) })).effectiveDecision).toBe('allow');
    const erase = await engine.evaluateWithBackends('crm.erase', { resource: crm(user) });
    expect(erase.localDecision).toBe('allow');
    expect(erase.effectiveDecision).toBe('deny');
    expect(erase.deniedBy).toEqual(['deputy']);
    expect(erase.backendResults[0]!.reason).toBe('agent "agent-b" (link 2 of 2) may not "delete" on "Resource" "crm": forbidden by policy "sub-agent-no-delete"');
    expect(decisions.map((d) => d.decision)).toEqual([true, false]);
    await a.dispose();
  });

  it('a local deny never asks Deputy', async () => {
    const a = await agentWithToken('agent-a');
    const decisions: PepDecision[] = [];
    const engine = engineWith(new DeputyPolicyBackend({ agent: a, pep: pep(), allowInsecureRequests: true, onDecision: (d) => decisions.push(d) }));
    const r = await engine.evaluateWithBackends('payments.send', { resource: crm(user) });
    expect(r).toMatchObject({ effectiveDecision: 'deny', deniedBy: ['local'] });
    expect(decisions).toEqual([]);
    await a.dispose();
  });

  it('evaluatePolicy (evaluatePolicyWithBackends): the action comes from the context, the DID is passed on', async () => {
    const a = await agentWithToken('agent-a');
    const engine = engineWith(new DeputyPolicyBackend({ agent: a, pep: pep(), allowInsecureRequests: true }));
    engine.loadPolicy({ name: 'open', rules: [], default_action: 'allow' });
    const allowed = await engine.evaluatePolicyWithBackends('did:agentmesh:agent-a', { action: 'read', resource: crm(user) });
    expect(allowed.effectiveDecision).toBe('allow');
    const denied = await engine.evaluatePolicyWithBackends('did:agentmesh:agent-a', { action: 'read', resource: crm('mallory@example.com') });
    expect(denied.effectiveDecision).toBe('deny');
    const noAction = await engine.evaluatePolicyWithBackends('did:agentmesh:agent-a', { resource: crm(user) });
    expect(noAction.effectiveDecision).toBe('deny');
    expect(noAction.backendResults[0]!.reason).toMatch(/no action/);
    await a.dispose();
  });

  it('a context member named __proto__ is sent to the PDP as a member (it was assigned as the prototype and dropped)', async () => {
    const a = await agentWithToken('agent-a');
    const sent: string[] = [];
    const backend = new DeputyPolicyBackend({ agent: a, pep: pep(), actions: { 'crm.lookup': 'read' }, allowInsecureRequests: true, onDecision: (_d, request) => sent.push(JSON.stringify(request.context)) });
    const context = JSON.parse(`{"resource": ${JSON.stringify(crm(user))}, "purpose": "audit", "__proto__": {"level": 9}}`) as Record<string, unknown>;
    await engineWith(backend).evaluateWithBackends('crm.lookup', context);
    expect(sent).toHaveLength(1);
    expect(JSON.parse(sent[0]!)).toMatchObject({ purpose: 'audit' });
    expect(Object.getOwnPropertyDescriptor(JSON.parse(sent[0]!), '__proto__')?.value).toEqual({ level: 9 });
    await a.dispose();
  });

  it('the receipt Deputy writes names the agent (and the chain)', async () => {
    const a = await agentWithToken('agent-a');
    const b = await agentWithToken('agent-b', await a.handoff('agent-b'));
    const decisions: PepDecision[] = [];
    const backend = new DeputyPolicyBackend({ agent: b, pep: pep(), receipts: true, actions: { 'crm.lookup': 'read' }, allowInsecureRequests: true, onDecision: (d) => decisions.push(d) });
    const engine = engineWith(backend);
    expect((await engine.evaluateWithBackends('crm.lookup', { resource: crm(user), purpose: 'support ticket 7' })).effectiveDecision).toBe('allow');
    expect((await engine.evaluateWithBackends('crm.lookup', { resource: crm(user), purpose: 'support ticket 7' })).effectiveDecision).toBe('allow');
    // Receipts bypass the cache: each decision is evidence.
    expect(decisions.map((d) => d.cached)).toEqual([false, false]);
    const receipt = decisions[0]!.receipt!;
    expect(receipt.agent).toBe('agent-b');
    const res = await fetch(`${deputy.url}/admin/receipts/${receipt.id}`, { headers: { authorization: `Bearer ${adminToken}` } });
    expect(res.status).toBe(200);
    const { claims } = (await res.json()) as { claims: Record<string, unknown> };
    expect(claims).toMatchObject({ agent: 'agent-b', chain: ['agent-a', 'agent-b'], event: 'access_evaluation', action: 'read', resource: 'Resource:crm', decision: 'permit' });
    await a.dispose();
  });
});

describe('AuthZenPep: the PEP token', () => {
  it('concurrent evaluations share one PEP token request; a refused PEP token is replaced once', async () => {
    const a = await agentWithToken('agent-a');
    const calls = { token: 0, evaluation: 0 };
    const spoilFirst = { pending: true };
    const countingFetch: typeof fetch = async (input, init) => {
      const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
      if (url.pathname === '/token') calls.token++;
      if (url.pathname === '/access/v1/evaluation') {
        calls.evaluation++;
        if (spoilFirst.pending) {
          // The PDP sees a PEP token it does not accept (as after a key rotation): 401.
          spoilFirst.pending = false;
          return fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), authorization: 'Bearer not-a-token' } });
        }
      }
      return fetch(input, init);
    };
    const pepClient = new AuthZenPep({ issuer, pep: pep(), fetch: countingFetch, cacheTtlMs: 0, allowInsecureRequests: true });
    const token = await a.token();
    const ask = (i: number) => pepClient.evaluate({ subject: { type: 'Agent', id: 'agent-a', properties: { token } }, action: { name: 'read' }, resource: { ...crm(user), id: `crm-${i}` } });
    const first = await ask(0);
    expect(first).toMatchObject({ decision: true });
    expect(calls).toEqual({ token: 2, evaluation: 2 });
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => ask(i + 1)));
    expect(many.every((d) => d.decision)).toBe(true);
    expect(calls).toEqual({ token: 2, evaluation: 22 });
    const fresh = new AuthZenPep({ issuer, pep: pep(), fetch: countingFetch, allowInsecureRequests: true });
    await Promise.all(Array.from({ length: 10 }, (_, i) => fresh.evaluate({ subject: { type: 'Agent', id: 'agent-a', properties: { token } }, action: { name: 'read' }, resource: { ...crm(user), id: `x-${i}` } })));
    expect(calls.token).toBe(3);
    await a.dispose();
  });
});

describe('Agent Governance Toolkit + Deputy: fail closed', () => {
  it('Deputy unreachable → deny, with the error', async () => {
    const a = await agentWithToken('agent-a');
    const down = `http://127.0.0.1:${await freePort()}`;
    const engine = engineWith(new DeputyPolicyBackend({ agent: a, issuer: down, pep: pep(), allowInsecureRequests: true }));
    const r = await engine.evaluateWithBackends('crm.lookup', { resource: crm(user) });
    expect(r).toMatchObject({ localDecision: 'allow', effectiveDecision: 'deny', deniedBy: ['deputy'] });
    expect(r.backendResults[0]!.error).toBeTruthy();
    await a.dispose();
  });

  it('Deputy not answering within the timeout → deny', async () => {
    const hole = await blackHole();
    const token = await (await agentWithToken('agent-a')).token();
    const engine = engineWith(new DeputyPolicyBackend({ agent: () => token, issuer: hole.url, pep: { token: 'pep-token' }, timeoutMs: 300, allowInsecureRequests: true }));
    const r = await engine.evaluateWithBackends('crm.lookup', { resource: crm(user) });
    expect(r.effectiveDecision).toBe('deny');
    expect(r.backendResults[0]!.error).toMatch(/within 300 ms/);
    await hole.close();
  });

  it('a PEP Deputy does not accept, a missing resource, an agent without a token → deny', async () => {
    const a = await agentWithToken('agent-a');
    const wrongKey = await exportJWK((await generateKeyPair('ES256', { extractable: true })).privateKey);
    const badPep = await engineWith(new DeputyPolicyBackend({ agent: a, pep: { clientId: 'agt-pep', privateKey: wrongKey }, allowInsecureRequests: true })).evaluateWithBackends('crm.lookup', { resource: crm(user) });
    expect(badPep.effectiveDecision).toBe('deny');
    expect(badPep.backendResults[0]!.error).toMatch(/invalid_client/);
    const notPep = await engineWith(new DeputyPolicyBackend({ agent: a, pep: { token: await a.token() }, allowInsecureRequests: true })).evaluateWithBackends('crm.lookup', { resource: crm(user) });
    expect(notPep.effectiveDecision).toBe('deny');
    expect(notPep.backendResults[0]!.error).toMatch(/401/);
    const noResource = await engineWith(new DeputyPolicyBackend({ agent: a, pep: pep(), allowInsecureRequests: true })).evaluateWithBackends('crm.lookup', { purpose: 'x' });
    expect(noResource.effectiveDecision).toBe('deny');
    expect(noResource.backendResults[0]!.reason).toMatch(/no resource/);
    const idle = await DeputyAgent.create({ issuer, clientId: 'agent-a', privateKey: jwks['agent-a'], allowInsecureRequests: true });
    const noToken = await engineWith(new DeputyPolicyBackend({ agent: idle, pep: pep(), allowInsecureRequests: true })).evaluateWithBackends('crm.lookup', { resource: crm(user) });
    expect(noToken.effectiveDecision).toBe('deny');
    expect(noToken.backendResults[0]!.reason).toMatch(/no Deputy token/);
    await a.dispose();
  });

  it('a revoked token → deny (invalid_chain); decisions are cached per complete request for cacheTtlMs', async () => {
    const a = await agentWithToken('agent-a');
    const cached = new AuthZenPep({ issuer, pep: pep(), cacheTtlMs: 60_000, allowInsecureRequests: true });
    const uncached = new AuthZenPep({ issuer, pep: pep(), cacheTtlMs: 0, allowInsecureRequests: true });
    const token = await a.token();
    const request = { subject: { type: 'Agent', id: 'agent-a', properties: { token } }, action: { name: 'read' }, resource: crm(user) };
    expect(await cached.evaluate(request)).toMatchObject({ decision: true, cached: false });
    // The same request with members in another order is the same key (RFC 8785).
    expect(await cached.evaluate({ resource: crm(user), action: { name: 'read' }, subject: request.subject })).toMatchObject({ decision: true, cached: true });
    expect((await authenticatedPost(`${deputy.url}/revoke`, issuer, { id: admin.clientId, keys: admin.keys }, { token })).status).toBe(200);
    const after = await uncached.evaluate(request);
    expect(after).toMatchObject({ decision: false, cached: false });
    expect(after.context?.id).toBe('invalid_chain');
    // The cached permit stays until its TTL: the bound a deployment chooses (default 2 s, Deputy's own revocation bound).
    expect(await cached.evaluate(request)).toMatchObject({ decision: true, cached: true });
    await a.dispose();
  });
});
