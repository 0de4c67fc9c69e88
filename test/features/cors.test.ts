/**
 * CORS for browser-based MCP clients (issue 13; src/http/cors.ts), as a browser exercises it:
 * a preflight (`OPTIONS` + `Origin` + `Access-Control-Request-Method/-Headers`) on every
 * token-bearing surface — `/gw/*`, `/mcp/*`, `/llm/*`, `/access/v1/*` — is answered before any
 * authentication, and a cross-origin 401 there is readable: `Access-Control-Allow-Origin: *`,
 * `WWW-Authenticate` and `DPoP-Nonce` exposed (and `Mcp-Session-Id` where MCP runs), never
 * `Access-Control-Allow-Credentials`. The cookie and form surfaces (`/admin`, `/signin`,
 * `/signout`, `/interaction`, `/connect`) answer no CORS at all; an upstream's own CORS headers
 * never pass the gateway.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, dpopProof, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { clientKeys } from '../support/clients.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';

const ORIGIN = 'https://mcp-client.example';
let idp: MockIdp;
let up: MockUpstream;
let deputy: TestDeputy;
let issuer: string;
let agent: TestAgent;

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
      trustedIssuers: [idp.issuerConfig('okta', { signIn: { clientId: 'deputy-signin' } })],
      gateway: { authorizer: 'scopes' },
      oauth: { authorizationCode: { enabled: true } },
      agents: [agentConfig('agent-a', keys, { scopes: ['deputy.read'], audiences: [`${issuer}/gw/echo`] })],
      connections: [
        { id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] },
        { id: 'openai', kind: 'llm', provider: 'openai', baseUrl: up.base, allowInsecureHttp: true, secret: { env: 'LLM_KEY' }, requiredScopes: ['llm'] },
      ],
      mcpServers: [{ id: 'tools', url: `${up.base}/mcp`, allowInsecureHttp: true, requiredScopes: ['mcp:tools'] }],
    },
  });
  agent = await testAgent(issuer, 'agent-a', keys);
});
afterAll(async () => {
  await deputy?.stop();
  await up?.close();
  await idp?.close();
});

/** A surface, a request a browser client would make there, and the methods its preflight must allow. */
const SURFACES: Array<{ name: string; path: string; method: string; body?: string; methods: string[]; mcp: boolean; challenge: RegExp }> = [
  { name: 'the gateway', path: '/gw/echo/things', method: 'GET', methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'], mcp: true, challenge: /^Bearer .*resource_metadata="[^"]+\/gw\/echo"/ },
  {
    name: 'the MCP gateway', path: '/mcp/tools', method: 'POST', body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}', methods: ['GET', 'POST', 'DELETE'], mcp: true,
    challenge: /^Bearer .*resource_metadata="[^"]+\/mcp\/tools"/,
  },
  { name: 'the LLM gateway', path: '/llm/openai/v1/chat/completions', method: 'POST', body: '{"model":"m","messages":[]}', methods: ['POST'], mcp: false, challenge: /^Bearer .*resource_metadata="[^"]+\/llm\/openai"/ },
  { name: 'the PDP', path: '/access/v1/evaluation', method: 'POST', body: '{}', methods: ['POST'], mcp: false, challenge: /^Bearer .*resource_metadata="[^"]+\/access"/ },
];

const listed = (value: string | null) => (value ?? '').split(',').map((v) => v.trim().toLowerCase()).filter(Boolean);

describe('token-bearing surfaces are readable cross-origin, without credentials', () => {
  it.each(SURFACES)('$name: the preflight is answered before authentication, with its methods and the MCP/DPoP headers', async ({ path, method, methods }) => {
    const res = await fetch(`${deputy.url}${path}`, {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': method, 'access-control-request-headers': 'authorization, dpop, content-type, mcp-session-id, mcp-protocol-version, last-event-id' },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
    expect(listed(res.headers.get('access-control-allow-methods'))).toEqual(expect.arrayContaining(methods.map((m) => m.toLowerCase())));
    expect(listed(res.headers.get('access-control-allow-headers'))).toEqual(
      expect.arrayContaining(['authorization', 'dpop', 'content-type', 'mcp-session-id', 'mcp-protocol-version', 'last-event-id']),
    );
    expect(res.headers.get('www-authenticate')).toBeNull();
  });

  it.each(SURFACES)('$name: a cross-origin 401 exposes WWW-Authenticate (resource_metadata) and DPoP-Nonce', async ({ path, method, body, mcp, challenge }) => {
    const res = await fetch(`${deputy.url}${path}`, {
      method,
      headers: { origin: ORIGIN, ...(body ? { 'content-type': 'application/json', accept: 'application/json, text/event-stream' } : {}) },
      ...(body ? { body } : {}),
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(challenge);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
    const exposed = listed(res.headers.get('access-control-expose-headers'));
    expect(exposed).toEqual(expect.arrayContaining(['www-authenticate', 'dpop-nonce']));
    expect(exposed.includes('mcp-session-id')).toBe(mcp);
  });

  it('the documents a browser client reads to find Deputy: protected resource metadata (MCP servers too), the PDP metadata, the JWKS', async () => {
    for (const path of ['/.well-known/oauth-protected-resource/gw/echo', '/.well-known/oauth-protected-resource/mcp/tools', '/.well-known/authzen-configuration', '/jwks']) {
      const res = await fetch(`${deputy.url}${path}`, { headers: { origin: ORIGIN } });
      expect({ path, status: res.status, acao: res.headers.get('access-control-allow-origin'), acac: res.headers.get('access-control-allow-credentials') }).toEqual({ path, status: 200, acao: '*', acac: null });
    }
  });

  it('a successful gateway call is readable cross-origin; the upstream\'s own (credentialed) CORS headers never pass', async () => {
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    const token = (await exchange(agent, { subject_token: subject, resource: `${issuer}/gw/echo`, scope: 'deputy.read' })).access_token;
    const url = `${issuer}/gw/echo/headers`;
    const res = await fetch(url.replace(issuer, deputy.url), {
      headers: { origin: ORIGIN, authorization: `DPoP ${token}`, dpop: await dpopProof(agent.dpop, url, { htm: 'GET', accessToken: token }) },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-upstream')).toBe('kept');
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
  });
});

describe('cookie and form surfaces get no CORS', () => {
  it.each([
    ['/admin/agents', 'GET'],
    ['/signin', 'GET'],
    ['/signin/session', 'GET'],
    ['/signout', 'POST'],
    ['/interaction/abcdefghijkl', 'POST'],
    ['/connect/echo', 'GET'],
  ])('%s: neither the preflight nor the request carries an Access-Control header', async (path, method) => {
    const preflight = await fetch(`${deputy.url}${path}`, { method: 'OPTIONS', headers: { origin: ORIGIN, 'access-control-request-method': method, 'access-control-request-headers': 'authorization' } });
    const request = await fetch(`${deputy.url}${path}`, { method, headers: { origin: ORIGIN }, redirect: 'manual' });
    for (const res of [preflight, request]) {
      const cors = [...res.headers.keys()].filter((h) => h.startsWith('access-control-'));
      expect({ path, status: res.status, cors }).toEqual({ path, status: res.status, cors: [] });
    }
  });
});
