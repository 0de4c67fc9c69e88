/**
 * RFC 9728 protected resource metadata for what Deputy fronts — gateway connections and the
 * PDP — over real HTTP: the documents, 404 for anything unknown, `resource_metadata` on every
 * 401 of those resources (Bearer challenge first when no credentials were sent), and the MCP
 * TypeScript SDK's own discovery helpers finding Deputy from a gateway 401 (its RFC 8414 schema
 * needs the authorization endpoint, so the code flow is on here; the whole SDK flow is
 * test/features/mcp-client-auth.test.ts).
 */
import { discoverAuthorizationServerMetadata, discoverOAuthProtectedResourceMetadata, extractResourceMetadataUrl } from '@modelcontextprotocol/sdk/client/auth.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, dpopProof, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { clientKeys } from '../support/clients.js';
import { json } from '../support/http.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';

const DPOP_ALGS = ['ES256', 'ES384', 'ES512', 'PS256', 'Ed25519', 'EdDSA', 'RS256'];

let idp: MockIdp;
let up: MockUpstream;
let deputy: TestDeputy;
let issuer: string;
let agent: TestAgent;
const gw = (connection: string) => `${issuer}/gw/${connection}`;
const prm = (path: string) => `${issuer}/.well-known/oauth-protected-resource${path}`;

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMockUpstream();
  const port = await freePort();
  issuer = `http://localhost:${port}`;
  const keys = await clientKeys();
  deputy = await startTestDeputy({
    env: { ECHO_KEY: 'sk_test_echo', LLM_KEY: 'sk_test_llm' },
    config: {
      server: { port },
      trustedIssuers: [idp.issuerConfig('okta')],
      gateway: { authorizer: 'scopes' },
      // The authorization endpoint on (issue 13 §2): the MCP SDK's RFC 8414 schema requires it.
      oauth: { authorizationCode: { enabled: true } },
      agents: [agentConfig('agent-a', keys, { scopes: ['deputy.read', 'deputy.write'], audiences: [gw('echo'), gw('routes'), gw('models')] })],
      connections: [
        { id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] },
        {
          id: 'routes', name: 'Issue tracker', kind: 'api_key', baseUrl: `${up.base}/r`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' },
          requiredScopes: ['deputy.read'],
          routes: [
            { methods: ['GET'], path: '/items/**', action: 'items.list' },
            { methods: ['DELETE'], path: '/items/*', action: 'items.delete', scopes: ['deputy.write'] },
          ],
        },
        { id: 'models', name: 'Models', kind: 'llm', provider: 'openai', baseUrl: `${up.base}/v1`, allowInsecureHttp: true, secret: { env: 'LLM_KEY' }, requiredScopes: ['deputy.read'] },
      ],
    },
  });
  expect(deputy.issuer).toBe(issuer);
  agent = await testAgent(issuer, 'agent-a', keys);
});
afterAll(async () => {
  await deputy?.stop();
  await up?.close();
  await idp?.close();
});

describe('RFC 9728 documents', () => {
  it('a gateway connection: resource, Deputy as authorization server, header only, DPoP required, the scopes it requires', async () => {
    const res = await fetch(prm('/gw/routes'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await json(res)).toEqual({
      resource: gw('routes'),
      authorization_servers: [issuer],
      bearer_methods_supported: ['header'],
      scopes_supported: ['deputy.read', 'deputy.write'],
      resource_name: 'Issue tracker',
      dpop_signing_alg_values_supported: DPOP_ALGS,
      dpop_bound_access_tokens_required: true,
    });
    expect(await json(await fetch(prm('/gw/echo')))).toMatchObject({ resource: gw('echo'), scopes_supported: ['deputy.read'], resource_name: 'echo' });
  });

  it('an LLM connection: its /llm resource (it has none under /gw, and the /gw gateway does not serve it)', async () => {
    expect(await json(await fetch(prm('/llm/models')))).toEqual({
      resource: `${issuer}/llm/models`,
      authorization_servers: [issuer],
      bearer_methods_supported: ['header'],
      scopes_supported: ['deputy.read'],
      resource_name: 'Models',
      dpop_signing_alg_values_supported: DPOP_ALGS,
      dpop_bound_access_tokens_required: true,
    });
    for (const path of ['/gw/models', '/llm/echo', '/llm/nope', '/llm/models/v1']) expect((await fetch(prm(path))).status, path).toBe(404);
    // Even with a token for its /gw address, the HTTP gateway does not forward to an LLM connection
    // (its budgets and wire checks are the LLM gateway's).
    const token = (await exchange(agent, { subject_token: await idp.oktaAccessToken({ scp: ['deputy.read'] }), resource: gw('models'), scope: 'deputy.read' })).access_token;
    const url = `${gw('models')}/chat/completions`;
    const res = await fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: await dpopProof(agent.dpop, url, { htm: 'GET', accessToken: token }) } });
    expect(res.status).toBe(404);
    expect(((await json(res)) as { error_description: string }).error_description).toMatch(/is an LLM connection: call it at \/llm\/models/);
    expect(up.requests.filter((r) => r.path.includes('chat'))).toEqual([]);
  });

  it('is readable cross-origin (a browser-based MCP client), without credentials', async () => {
    const res = await fetch(prm('/gw/routes'), { headers: { origin: 'https://inspector.example' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
  });

  it('the PDP: its resource indicator and scope; PEP tokens may be Bearer, so DPoP is not required', async () => {
    expect(await json(await fetch(prm('/access')))).toEqual({
      resource: `${issuer}/access`,
      authorization_servers: [issuer],
      bearer_methods_supported: ['header'],
      scopes_supported: ['authzen:evaluate'],
      resource_name: 'Deputy AuthZEN PDP',
      dpop_signing_alg_values_supported: DPOP_ALGS,
      dpop_bound_access_tokens_required: false,
    });
  });

  it('404 for an unknown connection, a malformed id, a deeper path, Deputy\'s operator APIs, and no path', async () => {
    for (const path of ['/gw/nope', '/gw/NOT_AN_ID', '/gw/echo/things', '/admin', '/access/v1', '']) {
      const res = await fetch(prm(path));
      expect(res.status, path).toBe(404);
      expect((await json(res)).error, path).toBe('not_found');
    }
  });
});

/** The `resource_metadata` values of a `WWW-Authenticate` header. */
const metadataParams = (header: string | null) => [...(header ?? '').matchAll(/resource_metadata="([^"]+)"/g)].map((m) => m[1]);

describe('every 401 of a fronted resource carries resource_metadata', () => {
  it('the gateway without credentials: a Bearer challenge first, then DPoP, both naming the document', async () => {
    const res = await fetch(`${gw('echo')}/things`);
    expect(res.status).toBe(401);
    const header = res.headers.get('www-authenticate')!;
    expect(header).toBe(
      `Bearer realm="deputy", resource_metadata="${prm('/gw/echo')}", DPoP realm="deputy", resource_metadata="${prm('/gw/echo')}", algs="${DPOP_ALGS.join(' ')}"`,
    );
  });

  it('the LLM gateway without credentials names its own document', async () => {
    const res = await fetch(`${issuer}/llm/models/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(401);
    expect(metadataParams(res.headers.get('www-authenticate'))).toEqual([prm('/llm/models'), prm('/llm/models')]);
  });

  it('the gateway refusing presented credentials: the scheme used, the error, and the document', async () => {
    const token = (await exchange(agent, { subject_token: await idp.oktaAccessToken({ scp: ['deputy.read'] }), resource: gw('routes'), scope: 'deputy.read' })).access_token;
    const url = `${gw('echo')}/things`;
    const refusals: Array<Record<string, string>> = [
      { authorization: 'DPoP not-a-token' },
      { authorization: `Bearer ${token}` },
      { authorization: `DPoP ${token}` },
      { authorization: `DPoP ${token}`, dpop: await dpopProof(agent.dpop, url, { htm: 'GET', accessToken: token }) },
    ];
    for (const headers of refusals) {
      const res = await fetch(url, { headers });
      expect(res.status, headers.authorization).toBe(401);
      const header = res.headers.get('www-authenticate');
      expect(header, headers.authorization).toMatch(/^DPoP realm="deputy", error="(invalid_token|invalid_dpop_proof|invalid_request)"/);
      expect(metadataParams(header), headers.authorization).toEqual([prm('/gw/echo')]);
    }
  });

  it('the PDP, with and without credentials', async () => {
    const bare = await fetch(`${issuer}/access/v1/evaluation`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(bare.status).toBe(401);
    expect(bare.headers.get('www-authenticate')).toMatch(/^Bearer realm="deputy", scope="authzen:evaluate", resource_metadata="[^"]+", DPoP /);
    expect(metadataParams(bare.headers.get('www-authenticate'))).toEqual([prm('/access'), prm('/access')]);
    const wrong = await fetch(`${issuer}/access/v1/evaluation`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer not-a-jwt' }, body: '{}' });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toMatch(/^Bearer realm="deputy", error="invalid_token"/);
    expect(metadataParams(wrong.headers.get('www-authenticate'))).toEqual([prm('/access')]);
  });

  it('not on Deputy\'s operator APIs, nor on a connection that does not exist', async () => {
    const admin = await fetch(`${issuer}/admin/agents`);
    expect(admin.status).toBe(401);
    expect(admin.headers.get('www-authenticate')).not.toMatch(/resource_metadata/);
    const unknown = await fetch(`${gw('nope')}/x`);
    expect(unknown.status).toBe(401);
    expect(unknown.headers.get('www-authenticate')).not.toMatch(/resource_metadata/);
  });
});

describe('the MCP TypeScript SDK finds Deputy from a gateway 401', () => {
  it('extractResourceMetadataUrl → discoverOAuthProtectedResourceMetadata → Deputy as the authorization server', async () => {
    const res = await fetch(`${gw('echo')}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(401);
    const url = extractResourceMetadataUrl(res);
    expect(url?.href).toBe(prm('/gw/echo'));
    const metadata = await discoverOAuthProtectedResourceMetadata(gw('echo'), { resourceMetadataUrl: url });
    expect(metadata.resource).toBe(gw('echo'));
    expect(metadata.authorization_servers).toEqual([issuer]);
    // The SDK builds the same well-known address from the server URL alone (RFC 9728 §3.1).
    expect((await discoverOAuthProtectedResourceMetadata(gw('echo'))).resource).toBe(gw('echo'));
    // Its next step: RFC 8414 metadata of authorization_servers[0].
    const as = await discoverAuthorizationServerMetadata(metadata.authorization_servers![0]!);
    expect(as).toBeDefined();
    expect(as).toMatchObject({ issuer, token_endpoint: `${issuer}/token`, authorization_endpoint: `${issuer}/auth` });
    // No ID-JAG issuer is configured here: the jwt-bearer grant is neither registered nor advertised.
    expect(as!.grant_types_supported).not.toContain('urn:ietf:params:oauth:grant-type:jwt-bearer');
  });
});
