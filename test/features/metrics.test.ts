/**
 * Prometheus metrics at `/metrics` on the main listener, behind an admin token: a scrape after
 * an exchange, a refused exchange, an AuthZEN evaluation and a gateway call, parsed by an
 * independent Prometheus text-format parser, with the counters moved under the right labels.
 */
import { randomBytes } from 'node:crypto';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordBudgetSpend } from '../../src/observability/metrics.js';
import { agentConfig, dpopProof, exchange, exchangeError, testAgent, type TestAgent } from '../support/agents.js';
import { clientCredentialsToken, clientKeys, oauthClient } from '../support/clients.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { histogramCount, parsePrometheus, sampleValue, type Family } from '../support/prometheus.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { freePort } from '../support/net.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';

const API_KEY = `sk_live_${randomBytes(16).toString('hex')}`;

let idp: MockIdp;
let up: MockUpstream;
let deputy: TestDeputy;
let agent: TestAgent;
let adminToken: string;
let pepToken: string;
const gw = () => `${deputy.issuer}/gw/echo`;

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMockUpstream();
  const adminKeys = await clientKeys();
  const pepKeys = await clientKeys();
  const agentKeys = await clientKeys();
  const port = await freePort();
  deputy = await startTestDeputy({
    env: { ECHO_KEY: API_KEY },
    config: {
      admin: {
        clients: [
          { client_id: 'test-admin', scopes: ['deputy:admin'], jwks: adminKeys.jwks },
          { client_id: 'test-pep', scopes: ['authzen:evaluate'], jwks: pepKeys.jwks },
        ],
      },
      trustedIssuers: [idp.issuerConfig('okta')],
      server: { port },
      agents: [agentConfig('agent-m', agentKeys, { scopes: ['deputy.read'], audiences: [`http://localhost:${port}/gw/echo`, `http://localhost:${port}/gw/down`] })],
      connections: [{ id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] },
        { id: 'down', kind: 'api_key', baseUrl: `http://127.0.0.1:${await freePort()}`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] },
      ],
    },
  });
  agent = await testAgent(deputy.issuer, 'agent-m', agentKeys);
  adminToken = await clientCredentialsToken(await oauthClient(deputy.issuer, 'test-admin', adminKeys), 'deputy:admin');
  pepToken = await clientCredentialsToken(await oauthClient(deputy.issuer, 'test-pep', pepKeys), 'authzen:evaluate');
});
afterAll(async () => {
  await deputy?.stop();
  await up?.close();
  await idp?.close();
});

async function scrape(): Promise<Map<string, Family>> {
  const res = await fetch(`${deputy.url}/metrics`, { headers: { authorization: `Bearer ${adminToken}` } });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  expect(res.headers.get('cache-control')).toBe('no-store');
  return parsePrometheus(await res.text());
}

describe('/metrics on the main listener', () => {
  it('refuses a scrape without a token (401) and with a token lacking deputy:admin', async () => {
    const anonymous = await fetch(`${deputy.url}/metrics`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Bearer/);
    const pep = await fetch(`${deputy.url}/metrics`, { headers: { authorization: `Bearer ${pepToken}` } });
    expect(pep.status).toBe(401);
    // The PEP's token is valid, for another surface: the refusal names what /metrics needs.
    expect(pep.headers.get('www-authenticate')).toContain('scope="deputy:admin"');
    const text = await pep.text();
    expect(text).not.toContain('deputy_http_requests_total');
    expect(JSON.parse(text)).toEqual({
      error: 'invalid_token',
      error_description: `access token "aud" claim check failed: this resource needs a token for ${deputy.issuer}/admin with the deputy:admin scope; this one is for ${deputy.issuer}/access`,
    });
  });

  it('counts exchanges, PDP decisions, gateway calls and receipts under bounded labels', async () => {
    const before = await scrape();
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    const token = (await exchange(agent, { subject_token: subject, resource: gw(), scope: 'deputy.read' })).access_token;
    const refused = await exchangeError(agent, { subject_token: subject, resource: gw(), scope: 'deputy.admin' });
    expect(refused.error).toBe('invalid_scope');

    const evaluation = await fetch(`${deputy.url}/access/v1/evaluation`, {
      method: 'POST',
      headers: { authorization: `Bearer ${pepToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ subject: { type: 'User', id: 'alice' }, action: { name: 'read' }, resource: { type: 'Resource', id: 'doc-1' } }),
    });
    expect(evaluation.status).toBe(200);
    const verdict = ((await evaluation.json()) as { decision: boolean }).decision ? 'permit' : 'deny';

    const call = await client.fetchProtectedResource(agent.config, token, new URL(`${gw()}/items/42?secret=x`), 'GET', null, new Headers(), { DPoP: agent.handle });
    expect(call.status).toBe(200);
    await call.arrayBuffer();
    expect((await fetch(`${deputy.url}/no/such/${randomBytes(4).toString('hex')}`)).status).toBe(404);
    recordBudgetSpend('team-llm', 'tokens', 1234);

    const after = await scrape();
    const moved = (name: string, labels: Record<string, string>) => sampleValue(after, name, labels) - sampleValue(before, name, labels);
    const observed = (name: string, labels: Record<string, string>) => histogramCount(after, name, labels) - histogramCount(before, name, labels);

    expect(moved('deputy_token_exchanges_total', { outcome: 'issued', error: 'none' })).toBe(1);
    expect(moved('deputy_token_exchanges_total', { outcome: 'refused', error: 'invalid_scope' })).toBe(1);
    expect(observed('deputy_token_exchange_duration_seconds', { outcome: 'issued' })).toBe(1);
    expect(moved('deputy_pdp_decisions_total', { source: 'delegation', decision: 'permit' })).toBe(1);
    // The AuthZEN evaluation and the gateway's PDP question.
    expect(moved('deputy_pdp_decisions_total', { source: 'evaluation', decision: verdict })).toBeGreaterThanOrEqual(1);
    expect(moved('deputy_pdp_decision_cache_hits_total', {}) + moved('deputy_pdp_decision_cache_misses_total', {})).toBeGreaterThanOrEqual(2);
    expect(sampleValue(after, 'deputy_pdp_policy_generation')).toBe(deputy.pdp.policies.current.generation);

    expect(observed('deputy_gateway_upstream_duration_seconds', { connection: 'echo', status: '2xx' })).toBe(1);
    // The exchange's permit receipt and the gateway call's.
    expect(observed('deputy_receipt_append_duration_seconds', { outcome: 'appended' })).toBeGreaterThanOrEqual(2);

    expect(moved('deputy_http_requests_total', { route: '/token', method: 'POST', status: '200' })).toBeGreaterThanOrEqual(1);
    expect(moved('deputy_http_requests_total', { route: '/gw/:connection/*', method: 'GET', status: '200' })).toBe(1);
    expect(moved('deputy_http_requests_total', { route: '/access/v1/evaluation', method: 'POST', status: '200' })).toBe(1);
    expect(moved('deputy_http_requests_total', { route: 'other', method: 'GET', status: '404' })).toBe(1);
    expect(observed('deputy_http_request_duration_seconds', { route: '/gw/:connection/*', method: 'GET' })).toBe(1);
    expect(moved('deputy_budget_spend_total', { budget: 'team-llm', unit: 'tokens' })).toBe(1234);

    // Bounded cardinality: route patterns only, never a raw path, query or identifier.
    const routes = new Set(after.get('deputy_http_requests_total')!.metrics.map((m) => m.labels?.route));
    for (const route of routes) expect(route).not.toMatch(/\/gw\/echo|\/no\/such|items\/42|secret=|agent-m/);
    // Default process metrics on the same registry.
    expect(after.has('process_cpu_user_seconds_total')).toBe(true);
    expect(after.has('nodejs_eventloop_lag_seconds')).toBe(true);
  });

  it('counts an upstream that does not answer per connection (502)', async () => {
    const before = await scrape();
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    const token = (await exchange(agent, { subject_token: subject, resource: `${deputy.issuer}/gw/down`, scope: 'deputy.read' })).access_token;
    const call = await client.fetchProtectedResource(agent.config, token, new URL(`${deputy.issuer}/gw/down/x`), 'GET', null, new Headers(), { DPoP: agent.handle });
    expect(call.status).toBe(502);
    const after = await scrape();
    expect(sampleValue(after, 'deputy_gateway_upstream_errors_total', { connection: 'down' }) - sampleValue(before, 'deputy_gateway_upstream_errors_total', { connection: 'down' })).toBe(1);
    // Deltas: the registry is the process's, and a worker may have served other test files before.
    expect(histogramCount(after, 'deputy_gateway_upstream_duration_seconds', { connection: 'down', status: 'error' }) - histogramCount(before, 'deputy_gateway_upstream_duration_seconds', { connection: 'down', status: 'error' })).toBe(1);
    expect(sampleValue(after, 'deputy_http_requests_total', { route: '/gw/:connection/*', status: '502' }) - sampleValue(before, 'deputy_http_requests_total', { route: '/gw/:connection/*', status: '502' })).toBe(1);
  });

  it('counts policy reloads by outcome and trigger, and names the serving set by digest', async () => {
    const before = await scrape();
    const res = await fetch(`${deputy.url}/admin/policies/reload`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } });
    expect(res.status).toBe(200);
    const after = await scrape();
    expect(sampleValue(after, 'deputy_pdp_policy_reloads_total', { outcome: 'unchanged', trigger: 'admin' }) - sampleValue(before, 'deputy_pdp_policy_reloads_total', { outcome: 'unchanged', trigger: 'admin' })).toBe(1);
    const info = after.get('deputy_pdp_policy_info')!.metrics;
    expect(info).toEqual([{ value: '1', labels: { digest: deputy.pdp.policies.current.digest.slice(0, 16) } }]);
    const reloads = (f: Map<string, Family>) => sampleValue(f, 'deputy_http_requests_total', { route: '/admin/policies/reload', method: 'POST', status: '200' });
    expect(reloads(after) - reloads(before)).toBe(1);
  });

  it('counts a replayed DPoP proof, and reports the signing key\'s age', async () => {
    const before = await scrape();
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    const token = (await exchange(agent, { subject_token: subject, resource: gw(), scope: 'deputy.read' })).access_token;
    const url = `${gw()}/items/7`;
    const proof = await dpopProof(agent.dpop, url, { htm: 'GET', accessToken: token });
    const send = () => fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: proof } });
    expect((await send()).status).toBe(200);
    const replayed = await send();
    expect(replayed.status).toBe(401);
    expect(replayed.headers.get('www-authenticate')).toMatch(/invalid_dpop_proof/);
    const after = await scrape();
    expect(sampleValue(after, 'deputy_dpop_replays_total') - sampleValue(before, 'deputy_dpop_replays_total')).toBe(1);
    const age = sampleValue(after, 'deputy_signing_key_age_seconds');
    expect(age).toBeGreaterThanOrEqual(0);
    expect(age).toBeLessThan(3600); // generated for this test's server
  });

  it('reports the PostgreSQL pool, and no pool gauges on PGlite', async () => {
    const families = await scrape();
    if (deputy.store.kind === 'postgres') {
      expect(sampleValue(families, 'deputy_store_pool_total')).toBeGreaterThanOrEqual(1);
      expect(families.get('deputy_store_pool_waiting')?.metrics).toHaveLength(1);
    } else {
      expect(families.get('deputy_store_pool_total')?.metrics ?? []).toHaveLength(0);
    }
  });

  it('never exposes a token, secret or user in a scrape', async () => {
    const res = await fetch(`${deputy.url}/metrics`, { headers: { authorization: `Bearer ${adminToken}` } });
    const text = await res.text();
    for (const needle of [API_KEY, adminToken, pepToken, 'alice', 'agent-m']) expect(text).not.toContain(needle);
  });
});
