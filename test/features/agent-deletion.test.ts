/**
 * Deleting an agent over the admin API, as an operator does: an agent (a real openid-client
 * client with DPoP) holds a gateway token and has delegated to another agent; once deleted,
 * introspection, the gateway and the token endpoint refuse everything it held or handed on,
 * while its receipts still export and verify offline. Configured agents are refused (and deleted
 * when removed from the file, at the next start); unknown ids and repeats are 404.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JSONWebKeySet } from 'jose';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyReceipts } from '../../src/audit/verify.js';
import { UPSTREAM_TOKEN_KIND } from '../../src/oauth/token-exchange.js';
import { agentConfig, authenticatedPost, claimsOf, exchange, exchangeError, testAgent, type TestAgent } from '../support/agents.js';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient, type ClientKeys } from '../support/clients.js';
import { createTestDatabase, initialisedDataDir, usingPostgres } from '../support/database.js';
import { json } from '../support/http.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';

const handoff = (id: string) => `urn:deputy:agent:${id}`;

let idp: MockIdp;
let up: MockUpstream;
let deputy: TestDeputy;
let issuer: string;
let admin: Awaited<ReturnType<typeof adminSetup>>;
let adminToken: string;
const keys: Record<string, ClientKeys> = {};

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMockUpstream();
  admin = await adminSetup();
  for (const id of ['config-agent', 'agent-b', 'doomed']) keys[id] = await clientKeys();
  const port = await freePort();
  issuer = `http://localhost:${port}`;
  deputy = await startTestDeputy({
    env: { ECHO_KEY: 'echo-upstream-key-0123456789' },
    config: {
      server: { port },
      admin: { clients: [admin.config] },
      trustedIssuers: [idp.issuerConfig('okta')],
      connections: [{ id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] }],
      agents: [
        agentConfig('config-agent', keys['config-agent']!, { scopes: ['deputy.read'], audiences: [`${issuer}/gw/echo`] }),
        agentConfig('agent-b', keys['agent-b']!, { scopes: ['deputy.read'], audiences: [`${issuer}/gw/echo`] }),
      ],
    },
  });
  adminToken = await clientCredentialsToken(await oauthClient(deputy.issuer, admin.clientId, admin.keys), 'deputy:admin');
});
afterAll(async () => {
  await deputy?.stop();
  await up?.close();
  await idp?.close();
});

const api = (path: string, method = 'GET', body?: unknown, headers: Record<string, string> = {}) =>
  fetch(`${deputy.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${adminToken}`, ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
const introspect = async (token: string) =>
  json(await authenticatedPost(`${deputy.url}/introspect`, deputy.issuer, { id: admin.clientId, keys: admin.keys }, { token }));
const gatewayCall = (agent: TestAgent, token: string) =>
  client.fetchProtectedResource(agent.config, token, new URL(`${issuer}/gw/echo/things`), 'GET', null, new Headers(), { DPoP: agent.handle }).catch((e: unknown) => e as { status: number });

/** A receipt's `event` claim (decoded, unverified: the test reads what it stored). */
const eventOf = (jws: string): unknown => claimsOf(jws).event;

async function receiptJwks(): Promise<JSONWebKeySet> {
  return json<JSONWebKeySet>(await fetch(`${deputy.url}/receipts/jwks`));
}

describe('DELETE /admin/agents/{id}', () => {
  it('revokes what the agent held and handed on, refuses it everywhere, and keeps its receipts exportable and verifiable', async () => {
    const created = await api('/admin/agents', 'POST', {
      id: 'doomed', name: 'Doomed', owner: 'ops@example.com', scopes: ['deputy.read'], audiences: [`${issuer}/gw/echo`, handoff('agent-b')], jwks: keys['doomed']!.jwks,
    });
    expect(created.status).toBe(201);
    const doomed = await testAgent(deputy.issuer, 'doomed', keys['doomed']!);
    const b = await testAgent(deputy.issuer, 'agent-b', keys['agent-b']!);
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    const own = await exchange(doomed, { subject_token: subject, resource: `${issuer}/gw/echo`, scope: 'deputy.read' });
    const toB = await exchange(doomed, { subject_token: subject, audience: handoff('agent-b'), scope: 'deputy.read' });
    const bToken = await exchange(b, { subject_token: toB.access_token, resource: `${issuer}/gw/echo` });
    expect(await gatewayCall(doomed, own.access_token)).toMatchObject({ status: 200 });
    const upstream = await deputy.store.query<{ upstream: string }>('SELECT upstream FROM token_records WHERE jti = $1', [claimsOf(own.access_token).jti]);
    expect(upstream[0]?.upstream).toBeTruthy();
    await deputy.receipts.flush();
    const before = await json(await api('/admin/agents/doomed/receipts'));
    expect(before.receipts.length).toBeGreaterThanOrEqual(3);

    const deleted = await api('/admin/agents/doomed', 'DELETE', undefined, { 'x-request-id': 'delete-doomed-1' });
    expect(deleted.status).toBe(204);
    expect(await deleted.text()).toBe('');

    expect((await api('/admin/agents/doomed')).status).toBe(404);
    for (const t of [own, toB, bToken]) expect(await introspect(t.access_token)).toEqual({ active: false });
    const upstreamCalls = up.requests.length;
    expect(await gatewayCall(doomed, own.access_token)).toMatchObject({ status: 401 });
    expect(await gatewayCall(b, bToken.access_token)).toMatchObject({ status: 401 });
    expect(up.requests.length).toBe(upstreamCalls);
    expect((await exchangeError(doomed, { subject_token: subject, resource: `${issuer}/gw/echo` })).error).toBe('invalid_client');
    // The user's upstream token its exchange captured is gone from the vault.
    expect(await deputy.store.query('SELECT 1 FROM vault_secrets WHERE handle = $1 AND kind = $2', [upstream[0]!.upstream, UPSTREAM_TOKEN_KIND])).toHaveLength(0);
    // And no token record names it any more, agent-b's token exchanged from the agent's included.
    const carriers = await deputy.store.query('SELECT jti FROM token_records WHERE upstream = $1', [upstream[0]!.upstream]);
    expect(carriers).toEqual([]);

    // The receipts stay, and one more closes the chain: the deletion, naming the admin request.
    // Listed, exported by the agent's id, verified offline against the receipt JWKS.
    const after = await json(await api('/admin/agents/doomed/receipts'));
    expect(after.receipts.slice(0, -1).map((r: { id: string }) => r.id)).toEqual(before.receipts.map((r: { id: string }) => r.id));
    expect(after.receipts.at(-1)).toMatchObject({
      seq: before.receipts.length + 1,
      claims: {
        agent: 'doomed', chain: ['doomed'], event: 'agent_deleted', action: 'delete', resource: `${issuer}/admin/agents/doomed`,
        decision: 'permit', reason: 'deleted through the admin API', request_id: 'delete-doomed-1',
      },
    });
    const exported = await api('/admin/agents/doomed/receipts/export');
    expect(exported.status).toBe(200);
    const report = await verifyReceipts(await exported.text(), await receiptJwks(), { agent: 'doomed' });
    expect(report).toMatchObject({ ok: true, problems: [], chains: [{ agent: 'doomed', first: 1, fromGenesis: true }] });
    expect(report.chains[0]!.count).toBe(before.receipts.length + 1);
  });

  it('a repeated DELETE, or an unknown id, is 404 and changes nothing (RFC 9110 §9.2.2)', async () => {
    const created = await api('/admin/agents', 'POST', { id: 'twice', name: 'Twice', owner: 'ops@example.com', jwks: keys['doomed']!.jwks });
    expect(created.status).toBe(201);
    expect((await api('/admin/agents/twice', 'DELETE')).status).toBe(204);
    for (const id of ['twice', 'never-was']) {
      const res = await api(`/admin/agents/${id}`, 'DELETE');
      expect(res.status).toBe(404);
      expect(await json(res)).toMatchObject({ error: 'not_found', error_description: `agent "${id}" does not exist` });
    }
    // One deletion, one receipt: the refused repeat and the unknown id record nothing.
    expect((await deputy.receipts.list('twice', { limit: 10 })).receipts.map((r) => r.seq)).toEqual([1]);
    expect((await deputy.receipts.list('never-was', { limit: 10 })).receipts).toEqual([]);
    // The id is free again: an agent registered under it is a new one.
    expect((await api('/admin/agents', 'POST', { id: 'twice', name: 'Again', owner: 'ops@example.com', jwks: keys['doomed']!.jwks })).status).toBe(201);
  });

  it('refuses a configured agent (409, naming how to remove it) and leaves it and its tokens as they were', async () => {
    const agent = await testAgent(deputy.issuer, 'config-agent', keys['config-agent']!);
    const token = await exchange(agent, { subject_token: await idp.oktaAccessToken({ scp: ['deputy.read'] }), resource: `${issuer}/gw/echo` });
    const res = await api('/admin/agents/config-agent', 'DELETE');
    expect(res.status).toBe(409);
    expect((await json(res)).error_description).toMatch(/defined in configuration: remove it from the configuration file/);
    expect(await json(await api('/admin/agents/config-agent'))).toMatchObject({ id: 'config-agent', status: 'active' });
    expect((await introspect(token.access_token)).active).toBe(true);
    expect((await deputy.receipts.list('config-agent', { limit: 100 })).receipts.map((r) => eventOf(r.jws))).not.toContain('agent_deleted');
  });

  it('needs an admin token like every admin route', async () => {
    expect((await fetch(`${deputy.url}/admin/agents/agent-b`, { method: 'DELETE' })).status).toBe(401);
    expect(await deputy.agents.get('agent-b')).toBeDefined();
  });
});

describe('a configured agent removed from the configuration', () => {
  it('is deleted at the next start like DELETE does: its tokens revoked, its receipts kept', async () => {
    const database = await createTestDatabase();
    const dataDir = usingPostgres ? undefined : initialisedDataDir(mkdtempSync(join(tmpdir(), 'deputy-agent-del-')));
    const keysDir = mkdtempSync(join(tmpdir(), 'deputy-agent-del-keys-'));
    const base = { trustedIssuers: [idp.issuerConfig('okta')], ...(dataDir ? { store: { dataDir } } : {}) };
    const kept = agentConfig('kept', keys['agent-b']!, { scopes: ['deputy.read'], audiences: ['https://api.example.com'] });
    const gone = agentConfig('gone', keys['doomed']!, { scopes: ['deputy.read'], audiences: ['https://api.example.com'] });
    try {
      const first = await startTestDeputy({ database, keysDir, config: { ...base, agents: [kept, gone] } });
      const token = await exchange(await testAgent(first.issuer, 'gone', keys['doomed']!), { subject_token: await idp.oktaAccessToken({ scp: ['deputy.read'] }), resource: 'https://api.example.com' });
      await first.close(100);

      const second = await startTestDeputy({ database, keysDir, config: { ...base, agents: [kept] } });
      try {
        expect(await second.agents.get('gone')).toBeUndefined();
        expect(await second.agents.get('kept')).toMatchObject({ status: 'active' });
        expect(await second.records.find(claimsOf(token.access_token).jti!)).toMatchObject({ revokedReason: 'agent deleted' });
        const gone = (await second.receipts.list('gone', { limit: 10 })).receipts;
        expect(gone.length).toBeGreaterThanOrEqual(2);
        expect(claimsOf(gone.at(-1)!.jws)).toMatchObject({ event: 'agent_deleted', reason: 'removed from the configuration', chain: ['gone'] });
        expect(claimsOf(gone.at(-1)!.jws)).not.toHaveProperty('request_id');
        expect(second.logs.join('')).toMatch(/agents removed from configuration were deleted/);
      } finally {
        await second.close(100);
      }
    } finally {
      await database.drop();
      rmSync(keysDir, { recursive: true, force: true });
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
