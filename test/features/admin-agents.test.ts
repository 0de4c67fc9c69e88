import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as client from 'openid-client';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient, type ClientKeys } from '../support/clients.js';
import { usingPostgres } from '../support/database.js';
import { json } from '../support/http.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { MAX_JSON_DEPTH } from '../../src/util/i-json.js';

let deputy: TestDeputy;
let adminToken: string;
let adminIdentity: Awaited<ReturnType<typeof adminSetup>>;
let pepToken: string;
let agentKeys: ClientKeys;

const api = (path: string, init: RequestInit & { token?: string } = {}) =>
  fetch(`${deputy.url}${path}`, {
    ...init,
    headers: {
      ...(init.body ? { 'content-type': 'application/json' } : {}),
      ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
      ...(init.headers as Record<string, string>),
    },
  });

beforeAll(async () => {
  const admin = (adminIdentity = await adminSetup());
  const pep = await clientKeys();
  agentKeys = await clientKeys();
  deputy = await startTestDeputy({
    config: {
      admin: { clients: [admin.config, { client_id: 'test-pep', scopes: ['authzen:evaluate'], jwks: pep.jwks }] },
      agents: [{ id: 'config-agent', name: 'From config', owner: 'ops@example.com', jwks: agentKeys.jwks }],
    },
  });
  adminToken = await clientCredentialsToken(await oauthClient(deputy.issuer, admin.clientId, admin.keys), 'deputy:admin');
  pepToken = await clientCredentialsToken(await oauthClient(deputy.issuer, 'test-pep', pep), 'authzen:evaluate');
});
afterAll(() => deputy?.stop());

const newAgent = (id: string) => ({
  id,
  name: `Agent ${id}`,
  owner: 'alice@example.com',
  scopes: ['calendar.read', 'mail.send'],
  audiences: ['https://api.example.com'],
  max_delegation_depth: 2,
  jwks: agentKeys.jwks,
});

describe('admin API: agents', () => {
  it('creates, reads, lists, updates, disables and enables an agent', async () => {
    const created = await api('/admin/agents', { method: 'POST', token: adminToken, body: JSON.stringify(newAgent('travel')) });
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe('/admin/agents/travel');
    expect(await json(created)).toMatchObject({ id: 'travel', owner: 'alice@example.com', status: 'active', max_delegation_depth: 2, source: 'api' });

    const read = await api('/admin/agents/travel', { token: adminToken });
    expect((await json(read)).scopes).toEqual(['calendar.read', 'mail.send']);

    const patched = await api('/admin/agents/travel', { method: 'PATCH', token: adminToken, body: JSON.stringify({ scopes: ['calendar.read'], max_delegation_depth: 3 }) });
    expect(patched.status).toBe(200);
    expect(await json(patched)).toMatchObject({ scopes: ['calendar.read'], max_delegation_depth: 3 });

    const disabled = await api('/admin/agents/travel/disable', { method: 'POST', token: adminToken });
    expect((await json(disabled)).status).toBe('disabled');
    const enabled = await api('/admin/agents/travel/enable', { method: 'POST', token: adminToken });
    expect((await json(enabled)).status).toBe('active');

    const list = await api('/admin/agents', { token: adminToken });
    const ids = (await json(list)).agents.map((a: { id: string }) => a.id);
    expect(ids).toEqual(expect.arrayContaining(['config-agent', 'travel']));
  });

  it('reserves cimd- ids for client metadata document clients; such an agent is disabled like any, its limits are not the API\'s', async () => {
    const refused = await api('/admin/agents', { method: 'POST', token: adminToken, body: JSON.stringify(newAgent('cimd-0123456789abcdef0123456789abcdef')) });
    expect(refused.status).toBe(400);
    expect(JSON.stringify(await json(refused))).toContain('reserved');

    const url = 'https://mcp.example.com/client.json';
    const agent = await deputy.agents.upsertDocumentClient({ url, name: 'MCP host', scopes: ['calendar.read'], audiences: ['https://api.example.com'], maxDelegationDepth: 1 });
    const read = await json(await api(`/admin/agents/${agent.id}`, { token: adminToken }));
    expect(read).toMatchObject({ id: agent.id, name: 'MCP host', owner: 'mcp.example.com', source: 'client_id_metadata', client_id_url: url, status: 'active' });
    expect((await api(`/admin/agents/${agent.id}`, { method: 'PATCH', token: adminToken, body: JSON.stringify({ scopes: ['mail.send'] }) })).status).toBe(409);
    const disabled = await api(`/admin/agents/${agent.id}/disable`, { method: 'POST', token: adminToken });
    expect((await json(disabled)).status).toBe('disabled');
  });

  it('pages the list with an opaque cursor', async () => {
    for (const id of ['page-a', 'page-b', 'page-c']) {
      expect((await api('/admin/agents', { method: 'POST', token: adminToken, body: JSON.stringify(newAgent(id)) })).status).toBe(201);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res = await api(`/admin/agents?limit=2${cursor ? `&cursor=${cursor}` : ''}`, { token: adminToken });
      const body = (await json(res)) as { agents: Array<{ id: string }>; next_cursor: string | null };
      expect(body.agents.length).toBeLessThanOrEqual(2);
      seen.push(...body.agents.map((a) => a.id));
      cursor = body.next_cursor;
    } while (cursor);
    expect(seen).toEqual([...seen].sort());
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(expect.arrayContaining(['page-a', 'page-b', 'page-c', 'config-agent']));
  });

  it('refuses bad input with the failing field named, and changes nothing', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ ...newAgent('bad-1'), max_delegation_depth: 0 }, /max_delegation_depth: /],
      [{ ...newAgent('bad-2'), jwks: undefined }, /exactly one of "jwks" or "jwks_uri"/],
      [{ ...newAgent('bad 3') }, /id: must be/],
      [{ ...newAgent('bad-4'), jwks: { keys: [{ ...agentKeys.publicJwk, d: 'secret' }] } }, /public keys only/],
      [{ ...newAgent('bad-5'), unexpected: true }, /"unexpected" is not a field/],
      [{ ...newAgent('bad-6'), max_delegation_depth: undefined, maxDelegationDepth: 2 }, /maxDelegationDepth is not a field; use max_delegation_depth/],
    ];
    for (const [body, message] of cases) {
      const res = await api('/admin/agents', { method: 'POST', token: adminToken, body: JSON.stringify(body) });
      expect(res.status).toBe(400);
      const err = await json(res);
      expect(err.error).toBe('invalid_request');
      expect(err.error_description).toMatch(message);
    }
    const notJson = await api('/admin/agents', { method: 'POST', token: adminToken, body: '{"id":', headers: { 'content-type': 'application/json' } });
    expect(notJson.status).toBe(400);
    const wrongType = await api('/admin/agents', { method: 'POST', token: adminToken, body: 'id=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(wrongType.status).toBe(415);
    for (const id of ['bad-1', 'bad-2', 'bad-4', 'bad-5', 'bad-6']) {
      expect((await api(`/admin/agents/${id}`, { token: adminToken })).status).toBe(404);
    }
  });

  it("refuses a scope that is not one RFC 6749 scope-token of at most 256 characters and an audience that is not an absolute URI without fragment, on create and change alike, naming the agent and the field; nothing stored", async () => {
    const scopes = ['s'.repeat(257), 'x'.repeat(16 * 1024), 'read write', 'read\u0007', 'say"hi"'];
    const audiences = ['api', 'https://api.example.com/#frag', 'https://api.example.com/a b', 'https://api.example.com/\u0000', `https://api.example.com/${'a'.repeat(2048)}`];
    const created = await api('/admin/agents', { method: 'POST', token: adminToken, body: JSON.stringify(newAgent('bounded')) });
    expect(created.status).toBe(201);
    for (const [field, values] of [['scopes', scopes], ['audiences', audiences]] as const) {
      for (const value of values) {
        const create = await api('/admin/agents', { method: 'POST', token: adminToken, body: JSON.stringify({ ...newAgent('wide'), [field]: [value] }) });
        expect(create.status, `${field}: ${value.slice(0, 40)}`).toBe(400);
        expect((await json(create)).error_description).toMatch(new RegExp(`^invalid agent "wide": ${field}\\.0: `));
        const change = await api('/admin/agents/bounded', { method: 'PATCH', token: adminToken, body: JSON.stringify({ [field]: [field === 'scopes' ? 'ok.one' : 'https://ok.example', value] }) });
        expect(change.status).toBe(400);
        expect((await json(change)).error_description).toMatch(new RegExp(`^invalid change to agent "bounded": ${field}\\.1: `));
      }
    }
    expect((await api('/admin/agents/wide', { token: adminToken })).status).toBe(404);
    expect(await json(await api('/admin/agents/bounded', { token: adminToken }))).toMatchObject({ scopes: newAgent('bounded').scopes, audiences: newAgent('bounded').audiences });
    // The widest accepted forms pass both entrances.
    const wide = await api('/admin/agents/bounded', { method: 'PATCH', token: adminToken, body: JSON.stringify({ scopes: ['s'.repeat(256)], audiences: ['urn:deputy:agent:agent-b', 'https://api.example.com:8443/v1?q=%20'] }) });
    expect(wide.status).toBe(200);
  });

  it('refuses a body that is not I-JSON or nests deeper than MAX_JSON_DEPTH, naming where, before anything is stored (a lone surrogate in a JWK member name was a 500; in a name, stored as U+FFFD)', async () => {
    const bodies: Array<[string, RegExp]> = [
      [JSON.stringify(newAgent('sur-key')).replace('"kty":', '"\\ud800":1,"kty":'), /^the request body\.jwks\.keys\[0\]\["\\ud800"\]: the member name holds a lone surrogate/],
      [JSON.stringify({ ...newAgent('sur-name'), name: 'x\ud800' }), /^the request body\.name holds a lone surrogate/],
      [JSON.stringify(newAgent('deep')).replace('"kty":', `"deep":${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)},"kty":`), new RegExp(`^the request body\\.jwks\\.keys\\[0\\]\\.deep(\\[0\\])+ is nested deeper than ${MAX_JSON_DEPTH} levels`)],
    ];
    for (const [body, message] of bodies) {
      const res = await api('/admin/agents', { method: 'POST', token: adminToken, body });
      expect(res.status, body.slice(0, 60)).toBe(400);
      expect((await json(res)).error_description).toMatch(message);
    }
    for (const id of ['sur-key', 'sur-name', 'deep']) expect((await api(`/admin/agents/${id}`, { token: adminToken })).status).toBe(404);
    // At the limit it passes (a JWK may carry members Deputy does not read).
    const d = MAX_JSON_DEPTH - 4;
    const ok = await api('/admin/agents', { method: 'POST', token: adminToken, body: JSON.stringify(newAgent('deep-ok')).replace('"kty":', `"deep":${'['.repeat(d)}${']'.repeat(d)},"kty":`) });
    expect(ok.status).toBe(201);
  });

  it('refuses a duplicate id (409) and an unknown agent (404)', async () => {
    await api('/admin/agents', { method: 'POST', token: adminToken, body: JSON.stringify(newAgent('dup')) });
    const again = await api('/admin/agents', { method: 'POST', token: adminToken, body: JSON.stringify({ ...newAgent('dup'), owner: 'mallory@example.com' }) });
    expect(again.status).toBe(409);
    expect((await json(await api('/admin/agents/dup', { token: adminToken }))).owner).toBe('alice@example.com');
    expect((await api('/admin/agents/nobody', { token: adminToken })).status).toBe(404);
    expect((await api('/admin/agents/nobody', { method: 'PATCH', token: adminToken, body: '{"name":"x"}' })).status).toBe(404);
  });

  it('keeps configuration-defined agents read-only except for status', async () => {
    const res = await api('/admin/agents/config-agent', { method: 'PATCH', token: adminToken, body: JSON.stringify({ scopes: ['x'] }) });
    expect(res.status).toBe(409);
    expect((await json(res)).error_description).toMatch(/defined in configuration/);
  });
});

describe('admin API: authentication', () => {
  it('refuses a request without a token, with a WWW-Authenticate challenge and no error code (RFC 6750 §3.1)', async () => {
    const res = await api('/admin/agents');
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm="deputy"/);
    expect(res.headers.get('www-authenticate')).not.toMatch(/error=/);
    expect((await json(res)).error).toBe('invalid_token');
  });

  it('refuses a token for another resource (a PEP token)', async () => {
    const res = await api('/admin/agents', { token: pepToken });
    expect(res.status).toBe(401);
    expect((await json(res)).error_description).toMatch(/"aud" claim/);
  });

  it('refuses a tampered, a malformed and a foreign-signed token', async () => {
    const [h, p, s] = adminToken.split('.');
    const payload = JSON.parse(Buffer.from(p!, 'base64url').toString());
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...payload, client_id: 'someone-else' })).toString('base64url')}.${s}`;
    for (const token of [tampered, 'not-a-jwt', `${h}.${p}.`]) {
      const res = await api('/admin/agents', { token });
      expect(res.status).toBe(401);
      const body = await res.text();
      expect(body).not.toContain(token.slice(0, 20));
    }
  });

  it('refuses a token from a client that lacks the deputy:admin scope at the token endpoint', async () => {
    const pep = await clientKeys();
    const other = await startTestDeputy({ config: { admin: { clients: [{ client_id: 'pep-only', scopes: ['authzen:evaluate'], jwks: pep.jwks }] } } });
    try {
      const cfg = await oauthClient(other.issuer, 'pep-only', pep);
      await expect(client.clientCredentialsGrant(cfg, { scope: 'deputy:admin' })).rejects.toMatchObject({ error: expect.stringMatching(/invalid_scope|invalid_target/) });
    } finally {
      await other.stop();
    }
  });

  it('serves a DPoP-bound admin token only with a proof, and challenges a Bearer use with the DPoP scheme', async () => {
    const cfg = await oauthClient(deputy.issuer, adminIdentity.clientId, adminIdentity.keys);
    const dpop = client.getDPoPHandle(cfg, await client.randomDPoPKeyPair('ES256'));
    const bound = await client.clientCredentialsGrant(cfg, { scope: 'deputy:admin' }, { DPoP: dpop });
    expect(bound.token_type).toBe('dpop');
    const asBearer = await api('/admin/agents', { token: bound.access_token });
    expect(asBearer.status).toBe(401);
    expect(asBearer.headers.get('www-authenticate')).toMatch(/^DPoP .*error="invalid_token"/);
    const withProof = await client.fetchProtectedResource(cfg, bound.access_token, new URL(`${deputy.issuer}/admin/agents`), 'GET', undefined, undefined, { DPoP: dpop });
    expect(withProof.status).toBe(200);
  });

  it('never writes tokens to the log', () => {
    const all = deputy.logs.join('\n');
    expect(all).not.toContain(adminToken);
    expect(all).not.toContain(adminToken.split('.')[2]);
    expect(all).not.toContain(pepToken.split('.')[2]);
  });
});

describe('agents authenticate with private_key_jwt', () => {
  async function introspectAs(clientId: string, keys: ClientKeys): Promise<number> {
    const cfg = await oauthClient(deputy.issuer, clientId, keys);
    try {
      await client.tokenIntrospection(cfg, 'some-token');
      return 200;
    } catch (err) {
      return (err as { status?: number }).status ?? 0;
    }
  }

  it('an active agent authenticates; a disabled one cannot; re-enabled it can again', async () => {
    const keys = await clientKeys();
    await api('/admin/agents', { method: 'POST', token: adminToken, body: JSON.stringify({ ...newAgent('auth-agent'), jwks: keys.jwks }) });
    expect(await introspectAs('auth-agent', keys)).toBe(200);
    await api('/admin/agents/auth-agent/disable', { method: 'POST', token: adminToken });
    expect(await introspectAs('auth-agent', keys)).toBe(401);
    await api('/admin/agents/auth-agent/enable', { method: 'POST', token: adminToken });
    expect(await introspectAs('auth-agent', keys)).toBe(200);
  });

  it('an agent signing with a key that is not registered is refused', async () => {
    expect(await introspectAs('config-agent', await clientKeys())).toBe(401);
    expect(await introspectAs('config-agent', agentKeys)).toBe(200);
  });

  // PostgreSQL only: the suite's PGlite database is in memory, so a restart starts a new one.
  it.skipIf(!usingPostgres)('a disabled configuration agent stays disabled across a restart', async () => {
    const db = deputy.database;
    await api('/admin/agents/config-agent/disable', { method: 'POST', token: adminToken });
    const again = await startTestDeputy({
      database: db,
      keysDir: deputy.keysDir,
      config: { agents: [{ id: 'config-agent', name: 'From config', owner: 'ops@example.com', jwks: agentKeys.jwks }] },
    });
    try {
      expect((await again.agents.get('config-agent'))?.status).toBe('disabled');
    } finally {
      await again.close(100);
    }
  });
});
