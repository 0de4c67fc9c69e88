/**
 * The PDP's cached path re-checks a remembered decision's basis from the caches alone
 * (src/pdp/decision-basis.ts `basisHolds`): these tests pin that doing so keeps every staleness
 * bound the README states. A change made through another instance (written straight into the
 * store here) is refused once the cache that bounds it is due to re-read (2 s: revocations,
 * registry agents) — never later; a change through this instance is refused at once; and an agent
 * re-read that finds nothing changed keeps the cached answer (the registry keeps its object).
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { agentConfig, authenticatedPost, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { REPO, countEvaluations, startPdpHarness, type PdpHarness } from '../support/authzen.js';
import { clientKeys, type ClientKeys } from '../support/clients.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { basisHolds, decisionBasis, parseEvaluation } from '../../src/pdp/index.js';

const DOCS = 'https://docs.example.com';
/** Past the revocation cache's and the agent cache's 2-second bound (README). */
const PAST_THE_BOUND_MS = 2_100;

let idp: MockIdp;
let h: PdpHarness;
let policies: string;
const agents: Record<string, TestAgent> = {};
let user: string;
let evaluatedSoFar: () => number;

beforeAll(async () => {
  idp = await startMockIdp();
  policies = mkdtempSync(join(tmpdir(), 'deputy-cached-staleness-'));
  cpSync(`${REPO}test/fixtures/policies/chain`, policies, { recursive: true });
  const keys: Record<string, ClientKeys> = {};
  keys['agent-a'] = await clientKeys();
  h = await startPdpHarness({
    policies,
    config: {
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [agentConfig('agent-a', keys['agent-a']!, { scopes: ['docs.read'], audiences: [DOCS], maxDelegationDepth: 3 })],
    },
  });
  for (const id of Object.keys(keys)) agents[id] = await testAgent(h.deputy.issuer, id, keys[id]!);
  user = await idp.oktaAccessToken({ uid: '00ualice00000000001', email: 'alice@example.com', scp: ['openid', 'docs.read'] });
  expect((await h.post('/access/v1/evaluation', request(await tokenOf('agent-a'), 'doc-0'))).status).toBe(200);
  evaluatedSoFar = countEvaluations(h);
});
afterAll(async () => {
  await h?.stop();
  await idp?.close();
  if (policies) rmSync(policies, { recursive: true, force: true });
});
afterEach(() => {
  vi.useRealTimers();
});

async function tokenOf(agent: string): Promise<string> {
  return (await exchange(agents[agent]!, { subject_token: user, resource: DOCS, scope: 'docs.read' })).access_token;
}

const claimsOf = (token: string): { sub: string; jti: string; exp: number } => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString());
const request = (token: string, doc: string) => ({ subject: { type: 'User', id: claimsOf(token).sub, properties: { token } }, action: { name: 'read' }, resource: { type: 'Document', id: doc, properties: {} } });

/** Answered, then answered again from the cached path (tried up to three times: a cache re-read between the two rightly sends the second to the routes). */
async function remembered(body: object): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    const first = await h.post('/access/v1/evaluation', body);
    expect(first.body).toMatchObject({ decision: true });
    const before = evaluatedSoFar();
    const second = await h.post('/access/v1/evaluation', body);
    if (evaluatedSoFar() === before || attempt === 3) {
      expect(evaluatedSoFar(), 'the repeated request was answered from the cached path').toBe(before);
      expect(second.body).toEqual(first.body);
      return JSON.stringify(second.body);
    }
  }
}

/** How far Date has been moved on so far: time only moves forward across the tests (a cache stamped while Date was ahead must not look fresh to a later test). */
let skewMs = 0;

/** Time moves on by `ms` for Date (what every cache's bound is measured with), nothing else. */
function later(ms: number): void {
  skewMs += ms;
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(performance.timeOrigin + performance.now() + skewMs);
}

describe('a remembered decision and the changes it depends on', () => {
  it('a token revoked through another instance: refused once the revocation cache is due, by the routes', async () => {
    const token = await tokenOf('agent-a');
    const body = request(token, 'doc-1');
    await remembered(body);
    await h.deputy.store.query('UPDATE token_records SET revoked_at = now() WHERE jti = $1', [claimsOf(token).jti]);
    later(PAST_THE_BOUND_MS);
    const before = evaluatedSoFar();
    const after = await h.post('/access/v1/evaluation', body);
    expect(after.body).toMatchObject({ decision: false, context: { id: 'invalid_chain' } });
    expect(evaluatedSoFar()).toBe(before + 1);
  });

  it('a token revoked through this instance: refused at once', async () => {
    const token = await tokenOf('agent-a');
    const body = request(token, 'doc-1');
    await remembered(body);
    expect((await authenticatedPost(`${h.deputy.url}/revoke`, h.deputy.issuer, h.admin, { token })).status).toBe(200);
    expect((await h.post('/access/v1/evaluation', body)).body).toMatchObject({ decision: false, context: { id: 'invalid_chain' } });
  });

  it('the caches re-read and find nothing changed: still answered from the cached path, the same bytes', async () => {
    const token = await tokenOf('agent-a');
    const body = request(token, 'doc-1');
    const answer = await remembered(body);
    const agent = await h.deputy.agents.get('agent-a');
    later(PAST_THE_BOUND_MS);
    // The PEP token's "not revoked" answer is due too (revocable PEP tokens, 2 s): one request
    // that touches neither the subject token nor agent-a lets the routes refresh it.
    expect((await h.post('/access/v1/evaluation', { subject: { type: 'User', id: 'bob@example.com', properties: {} }, action: { name: 'read' }, resource: { type: 'Document', id: 'doc-9', properties: {} } })).status).toBe(200);
    const before = evaluatedSoFar();
    const again = await h.post('/access/v1/evaluation', body);
    expect(JSON.stringify(again.body)).toBe(answer);
    expect(evaluatedSoFar()).toBe(before);
    expect(await h.deputy.agents.get('agent-a'), 'an unchanged row keeps its object').toBe(agent);
  });

  it('the subject token expires: its remembered basis no longer holds', async () => {
    const token = await tokenOf('agent-a');
    const body = request(token, 'doc-1');
    await remembered(body);
    const input = parseEvaluation(body);
    const basis = (await decisionBasis(h.deputy.pdp.pdp, [input]))!;
    expect(basisHolds(h.deputy.pdp.pdp, [input], basis, Date.now())).toBe(true);
    expect(basisHolds(h.deputy.pdp.pdp, [input], basis, claimsOf(token).exp * 1000 - 1)).toBe(false); // the caches' 2 s have passed long before
    expect(basisHolds(h.deputy.pdp.pdp, [input], basis, claimsOf(token).exp * 1000)).toBe(false);
  });

  // Last: agent-a stays disabled.
  it('an agent disabled through another instance: refused once the agent cache is due', async () => {
    const token = await tokenOf('agent-a');
    const body = request(token, 'doc-1');
    await remembered(body);
    await h.deputy.store.query("UPDATE agents SET status = 'disabled', updated_at = now() WHERE id = 'agent-a'");
    later(PAST_THE_BOUND_MS);
    expect((await h.post('/access/v1/evaluation', body)).body).toMatchObject({ decision: false, context: { id: 'invalid_chain' } });
  });
});
