/**
 * The credential-injecting gateway end to end over real HTTP: a mock Okta, Deputy, agents as
 * openid-client clients with DPoP, and a local upstream API + token endpoint that records what
 * reaches it. Every refusal is checked to happen before anything reaches the upstream.
 */
import { request as httpRequest } from 'node:http';
import { randomBytes } from 'node:crypto';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, authenticatedPost, claimsOf, dpopProof, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient, type ClientKeys } from '../support/clients.js';
import { json, type Json } from '../support/http.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { reflections, startMockUpstream, type MockUpstream } from '../support/upstream.js';
import { leaks } from '../support/leaks.js';
import { freePort } from '../support/net.js';

const API_KEY = `sk_live_${randomBytes(16).toString('hex')}`;
const QUERY_KEY = `qk_${randomBytes(16).toString('hex')}`;
const CC_SECRET = `cc_secret_${randomBytes(16).toString('hex')}`;
const OBO_SECRET = `obo_secret_${randomBytes(16).toString('hex')}`;
const ADMIN_KEY = `sk_admin_${randomBytes(16).toString('hex')}`;
const ROTATED_KEY = `sk_rotated_${randomBytes(16).toString('hex')}`;
const handoff = (id: string) => `urn:deputy:agent:${id}`;

let idp: MockIdp;
let up: MockUpstream;
let deputy: TestDeputy;
let port: number;
let issuer: string;
let admin: { id: string; keys: ClientKeys };
let adminToken: string;
const agents: Record<string, TestAgent> = {};
const gw = (connection: string) => `${issuer}/gw/${connection}`;


beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMockUpstream();
  up.addClient('deputy-cc', CC_SECRET);
  up.addClient('deputy-obo', OBO_SECRET);
  port = await freePort();
  issuer = `http://localhost:${port}`;
  const a = await adminSetup();
  admin = { id: a.clientId, keys: a.keys };
  const keys = { 'agent-a': await clientKeys(), 'agent-b': await clientKeys() };
  const connections = ['echo', 'qkey', 'cc', 'routes', 'obo', 'rfc8693', 'slow', 'down', 'created'];
  deputy = await startTestDeputy({
    env: { ECHO_KEY: API_KEY, QUERY_KEY, CC_SECRET, OBO_SECRET },
    config: {
      server: { port },
      admin: { clients: [a.config] },
      trustedIssuers: [idp.issuerConfig('okta'), idp.issuerConfig('entra')],
      gateway: { maxRequestBytes: 4 * 1024 * 1024, maxResponseBytes: 8 * 1024 * 1024 },
      agents: [
        agentConfig('agent-a', keys['agent-a'], {
          scopes: ['deputy.read', 'deputy.write', 'Deputy.Read'],
          audiences: [...connections.map((c) => `http://localhost:${port}/gw/${c}`), handoff('agent-b')],
        }),
        agentConfig('agent-b', keys['agent-b'], { scopes: ['deputy.read', 'deputy.write'], audiences: connections.map((c) => `http://localhost:${port}/gw/${c}`) }),
      ],
      connections: [
        { id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] },
        { id: 'qkey', kind: 'api_key', baseUrl: `${up.base}/q`, allowInsecureHttp: true, query: 'api_key', secret: { env: 'QUERY_KEY' }, requiredScopes: ['deputy.read'] },
        {
          id: 'cc', kind: 'oauth2_client_credentials', baseUrl: `${up.base}/cc`, allowInsecureHttp: true,
          tokenEndpoint: `${up.base}/oauth/token`, clientId: 'deputy-cc', secret: { env: 'CC_SECRET' }, scopes: ['api.read'], requiredScopes: ['deputy.read'],
        },
        {
          id: 'routes', kind: 'api_key', baseUrl: `${up.base}/r`, allowInsecureHttp: true, header: 'Authorization', scheme: 'Bearer',
          secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'],
          routes: [
            { methods: ['GET'], path: '/items/**', action: 'items.list' },
            { methods: ['DELETE'], path: '/items/*', action: 'items.delete', scopes: ['deputy.write'] },
          ],
        },
        {
          id: 'obo', kind: 'on_behalf_of', grant: 'entra_obo', baseUrl: `${up.base}/graph`, allowInsecureHttp: true,
          tokenEndpoint: `${up.base}/oauth/token`, clientId: 'deputy-obo', secret: { env: 'OBO_SECRET' }, scopes: ['https://graph.example.com/.default'], requiredScopes: ['Deputy.Read'],
        },
        {
          id: 'rfc8693', kind: 'on_behalf_of', grant: 'token_exchange', baseUrl: `${up.base}/x`, allowInsecureHttp: true,
          tokenEndpoint: `${up.base}/oauth/token`, clientId: 'deputy-obo', secret: { env: 'OBO_SECRET' }, audience: 'https://downstream.example.com', requiredScopes: ['deputy.read'],
        },
        { id: 'slow', kind: 'api_key', baseUrl: `${up.base}/s`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'], timeoutSeconds: 1 },
        { id: 'down', kind: 'api_key', baseUrl: `http://127.0.0.1:${await freePort()}`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] },
      ],
    },
  });
  expect(deputy.issuer).toBe(issuer);
  for (const id of Object.keys(keys) as Array<keyof typeof keys>) agents[id] = await testAgent(deputy.issuer, id, keys[id]);
  adminToken = await clientCredentialsToken(await oauthClient(deputy.issuer, admin.id, admin.keys), 'deputy:admin');
});
afterAll(async () => {
  await deputy?.stop();
  await up?.close();
  await idp?.close();
});

/** An agent token for a connection, exchanged from a fresh Okta user token. */
async function tokenFor(agent: TestAgent, connection: string, scope = 'deputy.read'): Promise<string> {
  const subject = await idp.oktaAccessToken({ scp: ['deputy.read', 'deputy.write'] });
  return (await exchange(agent, { subject_token: subject, resource: gw(connection), scope })).access_token;
}

/** A gateway call exactly as an agent makes it: openid-client, DPoP proof for this method and URL. */
function call(agent: TestAgent, token: string, connection: string, pathAndQuery: string, init: { method?: string; body?: string | Uint8Array; headers?: Record<string, string> } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  return client.fetchProtectedResource(agent.config, token, new URL(`${gw(connection)}${pathAndQuery}`), init.method ?? 'GET', init.body ?? null, headers, { DPoP: agent.handle });
}

/** A gateway call with every part under the test's control (for refusals). */
async function rawCall(url: string, init: { method?: string; authorization?: string; proof?: string | null; headers?: Record<string, string>; body?: string | Uint8Array } = {}): Promise<Response> {
  return fetch(url, {
    method: init.method ?? 'GET',
    headers: {
      ...(init.authorization ? { authorization: init.authorization } : {}),
      ...(init.proof ? { dpop: init.proof } : {}),
      ...init.headers,
    },
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
}

/** A request with the path sent exactly as written (no client-side normalisation). */
function rawHttp(path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method: 'GET', headers: { host: `localhost:${port}`, ...headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const upstreamCount = () => up.requests.length + up.grants.length;

describe('gateway: the upstream gets the credential, the agent never does', () => {
  it('injects an API key header, strips the agent\'s credentials and hop-by-hop headers, redacts an echo', async () => {
    const a = agents['agent-a']!;
    const token = await tokenFor(a, 'echo');
    const before = up.requests.length;
    const res = await call(a, token, 'echo', '/things/1?x=1&y=two', {
      headers: { 'x-custom': 'yes', cookie: 'c=1', 'x-api-key': 'agent-supplied', 'x-forwarded-for': '6.6.6.6' },
    });
    expect(res.status).toBe(200);
    const seen = up.requests[before]!;
    expect(up.requests).toHaveLength(before + 1);
    expect(seen).toMatchObject({ method: 'GET', path: '/api/things/1', query: { x: '1', y: 'two' } });
    expect(seen.headers['x-api-key']).toBe(API_KEY);
    expect(seen.headers['x-custom']).toBe('yes');
    expect(seen.headers['accept-encoding']).toBe('identity');
    expect(seen.headers['x-request-id']).toBe(res.headers.get('x-request-id'));
    for (const h of ['authorization', 'dpop', 'cookie', 'x-forwarded-for']) expect(seen.headers, h).not.toHaveProperty(h);

    const text = await res.text();
    expect(text).not.toContain(API_KEY);
    expect((JSON.parse(text) as Json).headers['x-api-key']).toBe('[redacted]');
    expect(res.headers.get('x-upstream')).toBe('kept');
  });

  it('redacts a reflected credential in other encodings (case, base64, hex, JSON and percent escapes), in headers and a chunked body', async () => {
    const a = agents['agent-a']!;
    // An API key header (the value is the bare secret) and an OAuth bearer header (`Bearer <token>`).
    for (const [connection, path] of [['echo', '/reflect'], ['routes', '/items/reflect']] as const) {
      const res = await call(a, await tokenFor(a, connection), connection, path);
      expect(res.status).toBe(200);
      const seen = up.requests.at(-1)!;
      const value = String(seen.headers.authorization ?? seen.headers['x-api-key']);
      const secret = value.replace(/^Bearer /, '');
      expect(secret.length).toBeGreaterThan(20);
      const text = await res.text();
      const fields = JSON.parse(text) as Record<string, string>;
      expect(Object.keys(fields).sort()).toEqual([...Object.keys(reflections(value)), 'json'].sort());
      for (const [name, field] of Object.entries(fields)) {
        expect(field, `${connection}: ${name}`).toContain('[redacted]');
        expect(leaks(field, secret), `${connection}: ${name}`).toBe(false);
      }
      expect(leaks(text, secret)).toBe(false);
      for (const name of ['x-reflect-upper', 'x-reflect-base64', 'x-reflect-hex', 'x-reflect-percent']) {
        const header = res.headers.get(name) ?? '';
        expect(header, `${connection}: ${name}`).toContain('[redacted]');
        expect(leaks(header, secret), `${connection}: ${name}`).toBe(false);
      }
    }
  });

  it('injects a query-parameter key (overriding the agent\'s), and rewrites and redacts a redirect', async () => {
    const a = agents['agent-a']!;
    const token = await tokenFor(a, 'qkey');
    const before = up.requests.length;
    const res = await call(a, token, 'qkey', '/search?q=deputy&api_key=mine');
    expect(up.requests[before]!.query).toEqual({ q: 'deputy', api_key: QUERY_KEY });
    expect(await res.text()).not.toContain(QUERY_KEY);

    const redirect = await call(a, await tokenFor(a, 'qkey'), 'qkey', '/redirect?z=1');
    expect(redirect.status).toBe(302);
    const location = redirect.headers.get('location')!;
    expect(location).not.toContain(QUERY_KEY);
    expect(location.startsWith(`${gw('qkey')}/echo/next?`)).toBe(true);
    expect(new URL(location).searchParams.get('api_key')).toBe('[redacted]');
  });

  it('does not forward fields the agent\'s Connection header names (hop-by-hop, RFC 9110 §7.6.1)', async () => {
    const a = agents['agent-a']!;
    const token = await tokenFor(a, 'echo');
    const before = up.requests.length;
    // fetch() refuses to send Connection: a raw request does.
    const res = await rawHttp('/gw/echo/hop', {
      authorization: `DPoP ${token}`,
      dpop: await dpopProof(a.dpop, `${gw('echo')}/hop`, { htm: 'GET', accessToken: token }),
      connection: 'keep-alive, x-drop',
      'x-drop': '1',
      te: 'trailers',
      'x-kept': '1',
    });
    expect(res.status).toBe(200);
    const seen = up.requests[before]!.headers;
    expect(seen['x-kept']).toBe('1');
    for (const h of ['x-drop', 'te', 'dpop', 'authorization']) expect(seen, h).not.toHaveProperty(h);
  });

  it('removes hop-by-hop, cookie and challenge headers from the response', async () => {
    const a = agents['agent-a']!;
    const res = await call(a, await tokenFor(a, 'echo'), 'echo', '/headers');
    expect(res.status).toBe(200);
    for (const h of ['set-cookie', 'www-authenticate', 'x-hop-secret', 'strict-transport-security']) expect(res.headers.has(h), h).toBe(false);
    // Deputy's own connection may be keep-alive; the upstream's Keep-Alive parameters are not passed on.
    expect(res.headers.get('keep-alive') ?? '').not.toContain('max=7');
    expect(res.headers.get('x-upstream')).toBe('kept');
    // A DPoP-Nonce is Deputy's (one per origin, RFC 9449 §8), never the upstream's.
    expect(res.headers.get('dpop-nonce')).not.toBe('upstream-nonce');
    expect(await res.text()).toBe('ok');
  });

  it('decodes a compressed upstream body so the credential can be redacted from it', async () => {
    const a = agents['agent-a']!;
    const res = await call(a, await tokenFor(a, 'echo'), 'echo', '/gzip');
    expect(res.headers.has('content-encoding')).toBe(false);
    const body = (await res.json()) as Json;
    expect(body.headers['x-api-key']).toBe('[redacted]');
  });

  it('streams bodies both ways past the server-wide body limit, within the gateway\'s own', async () => {
    const a = agents['agent-a']!;
    const upload = randomBytes(3 * 1024 * 1024);
    const res = await call(a, await tokenFor(a, 'echo', 'deputy.read'), 'echo', '/upload', { method: 'POST', body: upload, headers: { 'content-type': 'application/octet-stream' } });
    expect(res.status).toBe(200);
    const { createHash } = await import('node:crypto');
    expect(await res.json()).toEqual({ bytes: upload.length, sha256: createHash('sha256').update(upload).digest('hex') });

    const big = await call(a, await tokenFor(a, 'echo'), 'echo', `/big?bytes=${5 * 1024 * 1024}`);
    expect(big.status).toBe(200);
    expect((await big.arrayBuffer()).byteLength).toBe(5 * 1024 * 1024);
  });

  it('a small body with a declared length is answered whole with its redacted length; a larger one streams; one cut short is a 502', async () => {
    const a = agents['agent-a']!;
    const sized = await call(a, await tokenFor(a, 'echo'), 'echo', '/sized');
    const text = await sized.text();
    expect(text).not.toContain(API_KEY);
    expect((JSON.parse(text) as Json).headers['x-api-key']).toBe('[redacted]');
    // The redacted body is shorter than the upstream's: the length announced is the one sent.
    expect(sized.headers.get('content-length')).toBe(String(Buffer.byteLength(text)));
    expect(sized.headers.has('transfer-encoding')).toBe(false);
    const small = await call(a, await tokenFor(a, 'echo'), 'echo', '/big?bytes=1000');
    expect([small.headers.get('content-length'), (await small.arrayBuffer()).byteLength]).toEqual(['1000', 1000]);
    const larger = await call(a, await tokenFor(a, 'echo'), 'echo', `/big?bytes=${64 * 1024 + 1}`);
    expect(larger.headers.get('transfer-encoding')).toBe('chunked');
    expect((await larger.arrayBuffer()).byteLength).toBe(64 * 1024 + 1);
    const cut = await call(a, await tokenFor(a, 'echo'), 'echo', '/truncated');
    expect(cut.status).toBe(502);
    expect(await json(cut)).toMatchObject({ error: 'bad_gateway' });
  });

  it('refuses a declared body over the gateway limit (413) and an announced response over it (502)', async () => {
    const a = agents['agent-a']!;
    const before = up.requests.length;
    const tooBig = await call(a, await tokenFor(a, 'echo'), 'echo', '/upload', { method: 'POST', body: randomBytes(5 * 1024 * 1024) });
    expect(tooBig.status).toBe(413);
    expect(up.requests.length).toBe(before);
    const huge = await call(a, await tokenFor(a, 'echo'), 'echo', `/big?bytes=${9 * 1024 * 1024}`);
    expect(huge.status).toBe(502);
    expect(await json(huge)).toMatchObject({ error: 'bad_gateway', error_description: expect.stringMatching(/exceeds the gateway limit/) });
  });
});

describe('gateway: refusals happen before anything reaches the upstream', () => {
  const expectRefused = async (res: Response, status: number, error: string, description?: RegExp) => {
    expect(res.status).toBe(status);
    const body = await json(res);
    expect(body.error).toBe(error);
    if (description) expect(body.error_description).toMatch(description);
    if (status === 401) expect(res.headers.get('www-authenticate')).toMatch(new RegExp(`^DPoP .*error="${error}"`));
  };

  it('a missing token, a missing / invalid / replayed proof, another audience, the Bearer scheme', async () => {
    const a = agents['agent-a']!;
    const token = await tokenFor(a, 'echo');
    const url = `${gw('echo')}/things`;
    const before = upstreamCount();

    // No credentials: challenges without an error code (RFC 6750 §3.1, RFC 9449 §7.1), Bearer
    // first with RFC 9728 resource_metadata (what the MCP SDK reads), then DPoP.
    const bare = await rawCall(url);
    expect(bare.status).toBe(401);
    expect((await json(bare)).error_description).toMatch(/access token is required/);
    expect(bare.headers.get('www-authenticate')).toMatch(/^Bearer realm="deputy", resource_metadata="[^"]+", DPoP realm="deputy", resource_metadata="[^"]+", algs="[^"]+"$/);
    await expectRefused(await rawCall(url, { authorization: `DPoP ${token}` }), 401, 'invalid_dpop_proof', /missing/);
    await expectRefused(await rawCall(url, { authorization: `DPoP ${token}`, proof: await dpopProof(a.dpop, `${gw('echo')}/other`, { htm: 'GET', accessToken: token }) }), 401, 'invalid_dpop_proof', /htu/);
    await expectRefused(await rawCall(url, { authorization: `DPoP ${token}`, proof: await dpopProof(a.dpop, url, { htm: 'POST', accessToken: token }) }), 401, 'invalid_dpop_proof', /htm/);
    const stranger = await (await import('../support/agents.js')).dpopKeys();
    await expectRefused(await rawCall(url, { authorization: `DPoP ${token}`, proof: await dpopProof(stranger, url, { htm: 'GET', accessToken: token }) }), 401, 'invalid_dpop_proof', /cnf\.jkt/);
    await expectRefused(await rawCall(url, { authorization: `Bearer ${token}` }), 401, 'invalid_token', /DPoP/);
    const otherAudience = await tokenFor(a, 'qkey');
    await expectRefused(await rawCall(url, { authorization: `DPoP ${otherAudience}`, proof: await dpopProof(a.dpop, url, { htm: 'GET', accessToken: otherAudience }) }), 401, 'invalid_token', /aud/);
    expect(upstreamCount()).toBe(before);

    // The same valid proof twice: the first call goes through, the replay does not.
    const proof = await dpopProof(a.dpop, url, { htm: 'GET', accessToken: token });
    expect((await rawCall(url, { authorization: `DPoP ${token}`, proof })).status).toBe(200);
    expect(upstreamCount()).toBe(before + 1);
    await expectRefused(await rawCall(url, { authorization: `DPoP ${token}`, proof }), 401, 'invalid_dpop_proof', /already been used/);
    expect(upstreamCount()).toBe(before + 1);
  });

  it('a proof is spent on every path: reused after a denial or a revocation refusal, or sent twice at once, it is a replay that leaves no receipt', async () => {
    const a = agents['agent-a']!;
    const receiptCount = async () => {
      await deputy.receipts.flush();
      return (await deputy.receipts.list('agent-a', { limit: 100_000 })).receipts.length;
    };

    // A denial (403, with its deny receipt), then the same proof again: a replay, no second receipt.
    const routesToken = await tokenFor(a, 'routes', 'deputy.read');
    const deniedUrl = `${gw('routes')}/admin/users`;
    const deniedProof = await dpopProof(a.dpop, deniedUrl, { htm: 'GET', accessToken: routesToken });
    await expectRefused(await rawCall(deniedUrl, { authorization: `DPoP ${routesToken}`, proof: deniedProof }), 403, 'access_denied');
    const afterDenial = await receiptCount();
    await expectRefused(await rawCall(deniedUrl, { authorization: `DPoP ${routesToken}`, proof: deniedProof }), 401, 'invalid_dpop_proof', /already been used/);
    expect(await receiptCount()).toBe(afterDenial);

    // The same proof twice at once: exactly one call reaches the upstream and leaves a receipt.
    const token = await tokenFor(a, 'echo');
    const twiceUrl = `${gw('echo')}/twice`;
    const twice = await dpopProof(a.dpop, twiceUrl, { htm: 'GET', accessToken: token });
    const [upstreamBefore, receiptsBefore] = [up.requests.length, await receiptCount()];
    const both = await Promise.all([1, 2].map(() => rawCall(twiceUrl, { authorization: `DPoP ${token}`, proof: twice })));
    expect(both.map((r) => r.status).sort()).toEqual([200, 401]);
    await expectRefused(both.find((r) => r.status === 401)!, 401, 'invalid_dpop_proof', /already been used/);
    expect(up.requests.length).toBe(upstreamBefore + 1);
    expect(await receiptCount()).toBe(receiptsBefore + 1);

    // Revoked through this instance right after a call cached the token as live: refused at once,
    // and that refusal spends the proof as well.
    expect((await call(a, token, 'echo', '/live')).status).toBe(200);
    expect((await authenticatedPost(`${deputy.url}/revoke`, deputy.issuer, admin, { token })).status).toBe(200);
    const goneUrl = `${gw('echo')}/gone`;
    const goneProof = await dpopProof(a.dpop, goneUrl, { htm: 'GET', accessToken: token });
    await expectRefused(await rawCall(goneUrl, { authorization: `DPoP ${token}`, proof: goneProof }), 401, 'invalid_token', /revoked/);
    await expectRefused(await rawCall(goneUrl, { authorization: `DPoP ${token}`, proof: goneProof }), 401, 'invalid_dpop_proof', /already been used/);
    expect(up.requests.length).toBe(upstreamBefore + 2);
  });

  it('a proof that names the bound key but is signed by another: 401 on every path (permitted, denied, unknown route), no receipt, nothing forwarded or spent', async () => {
    // The signature verifies while the call is decided and its receipt signed (issue 16): the
    // decision must never surface, nor the receipt be written, for a proof that does not verify.
    const a = agents['agent-a']!;
    const stranger = await (await import('../support/agents.js')).dpopKeys();
    const forger = { ...stranger, publicJwk: a.dpop.publicJwk };
    const receiptCount = async () => {
      await deputy.receipts.flush();
      return (await deputy.receipts.list('agent-a', { limit: 100_000 })).receipts.length;
    };
    const [echo, routes] = [await tokenFor(a, 'echo'), await tokenFor(a, 'routes', 'deputy.read')];
    const [upstreamBefore, receiptsBefore] = [upstreamCount(), await receiptCount()];
    const cases: Array<[string, string]> = [[echo, `${gw('echo')}/forged`], [routes, `${gw('routes')}/admin/users`], [routes, `${gw('routes')}/items/7`]];
    for (const [token, url] of cases) {
      const forged = await dpopProof(forger, url, { htm: 'GET', accessToken: token, jti: `forged-${url}` });
      await expectRefused(await rawCall(url, { authorization: `DPoP ${token}`, proof: forged }), 401, 'invalid_dpop_proof', /signature is invalid/);
    }
    // Wrong claims too (htm): the signature's error still wins, as when it was checked first.
    const both = await dpopProof(forger, `${gw('echo')}/forged`, { htm: 'POST', accessToken: echo });
    await expectRefused(await rawCall(`${gw('echo')}/forged`, { authorization: `DPoP ${echo}`, proof: both }), 401, 'invalid_dpop_proof', /signature is invalid/);
    expect(upstreamCount()).toBe(upstreamBefore);
    expect(await receiptCount()).toBe(receiptsBefore);

    // The forged proofs spent nothing: the agent's own proof with the same jti goes through.
    const url = `${gw('echo')}/forged`;
    const own = await dpopProof(a.dpop, url, { htm: 'GET', accessToken: echo, jti: `forged-${url}` });
    expect((await rawCall(url, { authorization: `DPoP ${echo}`, proof: own })).status).toBe(200);
    expect(await receiptCount()).toBe(receiptsBefore + 1);
  });

  it('a revoked chain: revoking the delegating agent\'s token stops the sub-agent at the gateway', async () => {
    const [a, b] = [agents['agent-a']!, agents['agent-b']!];
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read', 'deputy.write'] });
    const toB = await exchange(a, { subject_token: subject, audience: handoff('agent-b'), scope: 'deputy.read' });
    const bToken = (await exchange(b, { subject_token: toB.access_token, resource: gw('echo'), scope: 'deputy.read' })).access_token;
    expect(claimsOf(bToken).act).toEqual({ sub: 'agent-b', act: { sub: 'agent-a' } });
    expect((await call(b, bToken, 'echo', '/ok')).status).toBe(200);

    const revoked = await authenticatedPost(`${deputy.url}/revoke`, deputy.issuer, admin, { token: toB.access_token });
    expect(revoked.status).toBe(200);
    const before = upstreamCount();
    const url = `${gw('echo')}/ok`;
    await expectRefused(await rawCall(url, { authorization: `DPoP ${bToken}`, proof: await dpopProof(b.dpop, url, { htm: 'GET', accessToken: bToken }) }), 401, 'invalid_token', /revoked/);
    expect(upstreamCount()).toBe(before);
  });

  it('a denied action: no route, a missing scope, and a PDP denial (sub-agents may not delete), each with the reason', async () => {
    const [a, b] = [agents['agent-a']!, agents['agent-b']!];
    const before = upstreamCount();
    const readOnly = await tokenFor(a, 'routes', 'deputy.read');
    await expectRefused(await call(a, readOnly, 'routes', '/admin/users'), 403, 'access_denied', /no route for GET \/admin\/users/);
    await expectRefused(await call(a, await tokenFor(a, 'routes', 'deputy.read'), 'routes', '/items/7', { method: 'DELETE' }), 403, 'access_denied', /items\.delete.*needs the scope "deputy\.write"/);
    expect(upstreamCount()).toBe(before);

    // agent-a (first in the chain) may delete with the scope; agent-b acting for it may not (Cedar forbid).
    expect((await call(a, await tokenFor(a, 'routes', 'deputy.read deputy.write'), 'routes', '/items/7', { method: 'DELETE' })).status).toBe(200);
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read', 'deputy.write'] });
    const toB = await exchange(a, { subject_token: subject, audience: handoff('agent-b'), scope: 'deputy.read deputy.write' });
    const bToken = (await exchange(b, { subject_token: toB.access_token, resource: gw('routes'), scope: 'deputy.read deputy.write' })).access_token;
    const mid = upstreamCount();
    await expectRefused(await call(b, bToken, 'routes', '/items/7', { method: 'DELETE' }), 403, 'access_denied', /sub-agent-no-delete|Sub-agents may not delete/);
    expect(upstreamCount()).toBe(mid);
    expect((await call(b, bToken, 'routes', '/items/7')).status).toBe(200);

    // Each decision left a signed receipt in agent-b's chain: the denied delete, then the permitted read.
    await deputy.receipts.flush();
    const { receipts } = await deputy.receipts.list('agent-b', { limit: 1000 });
    const gatewayReceipts = receipts.map((r) => claimsOf(r.jws)).filter((c) => c.event === 'gateway_call');
    expect(gatewayReceipts.slice(-2)).toMatchObject([
      { action: 'items.delete', decision: 'deny', resource: `${gw('routes')}/items/7`, chain: ['agent-a', 'agent-b'], reason: expect.stringMatching(/delete/i) },
      { action: 'items.list', decision: 'permit', resource: `${gw('routes')}/items/7`, chain: ['agent-a', 'agent-b'] },
    ]);
    for (const r of receipts) expect(JSON.stringify(claimsOf(r.jws))).not.toContain(API_KEY);
  });

  it('refuses dot segments (also encoded) rather than resolving them upstream', async () => {
    const a = agents['agent-a']!;
    const before = upstreamCount();
    // fetch() would resolve these client-side (WHATWG URL): send the raw request line.
    for (const path of ['/gw/echo/%2e%2e/%2E%2E/secret', '/gw/echo/a/..%2f..%2fsecret']) {
      const token = await tokenFor(a, 'echo');
      const proof = await dpopProof(a.dpop, `${issuer}${path}`, { htm: 'GET', accessToken: token });
      const res = await rawHttp(path, { authorization: `DPoP ${token}`, dpop: proof });
      expect(res.status, path).toBe(400);
      expect(JSON.parse(res.body), path).toMatchObject({ error: 'invalid_request', error_description: expect.stringMatching(/dot segments/) });
    }
    expect(upstreamCount()).toBe(before);
  });

  it('an unknown connection is a 404 (after authentication: its audience is unknown too)', async () => {
    const a = agents['agent-a']!;
    const token = await tokenFor(a, 'echo');
    const url = `${gw('nope')}/x`;
    await expectRefused(await rawCall(url, { authorization: `DPoP ${token}`, proof: await dpopProof(a.dpop, url, { htm: 'GET', accessToken: token }) }), 401, 'invalid_token', /aud/);
  });
});

describe('gateway: OAuth credentials', () => {
  it('client credentials: one token fetch for concurrent calls, reused until refused, then fetched again', async () => {
    const a = agents['agent-a']!;
    const grantsBefore = up.grants.filter((g) => g.grantType === 'client_credentials').length;
    const tokens = await Promise.all([1, 2, 3].map(() => tokenFor(a, 'cc')));
    const results = await Promise.all(tokens.map((t) => call(a, t, 'cc', '/me')));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200]);
    const cc = up.grants.filter((g) => g.grantType === 'client_credentials');
    expect(cc.length - grantsBefore).toBe(1);
    const issued = cc.at(-1)!;
    expect(issued.params.scope).toBe('api.read');
    const seen = up.requests.slice(-3).map((r) => r.headers.authorization);
    expect(seen).toEqual([`Bearer ${issued.token}`, `Bearer ${issued.token}`, `Bearer ${issued.token}`]);
    for (const r of results) expect(await r.text()).not.toContain(issued.token);

    // The upstream refuses the token: the agent gets 502 (not the upstream's 401) and the next call fetches a new token.
    const refused = await call(a, await tokenFor(a, 'cc'), 'cc', '/unauthorized');
    expect(refused.status).toBe(502);
    expect(refused.headers.has('www-authenticate')).toBe(false);
    await call(a, await tokenFor(a, 'cc'), 'cc', '/me');
    expect(up.grants.filter((g) => g.grantType === 'client_credentials').length - grantsBefore).toBe(2);
  });

  it('client credentials: a token endpoint that refuses is a 502 naming the error code', async () => {
    const a = agents['agent-a']!;
    // The upstream refuses the cached token (dropped), then the AS refuses a new one.
    expect((await call(a, await tokenFor(a, 'cc'), 'cc', '/unauthorized')).status).toBe(502);
    up.refuseTokens('invalid_scope');
    try {
      const before = up.requests.length;
      const res = await call(a, await tokenFor(a, 'cc'), 'cc', '/me');
      expect(res.status).toBe(502);
      expect(await json(res)).toMatchObject({ error: 'bad_gateway', error_description: expect.stringMatching(/client credentials grant failed: the authorization server answered "invalid_scope"/) });
      expect(up.requests.length).toBe(before);
    } finally {
      up.refuseTokens(undefined);
    }
  });

  it('on_behalf_of (Entra OBO): the user\'s own IdP token is exchanged with jwt-bearer; the upstream sees the result', async () => {
    const a = agents['agent-a']!;
    const subject = await idp.entraAccessToken({ scp: 'Deputy.Read' });
    const token = (await exchange(a, { subject_token: subject, resource: gw('obo'), scope: 'Deputy.Read' })).access_token;
    const before = up.grants.length;
    const res = await call(a, token, 'obo', '/me/messages');
    expect(res.status).toBe(200);
    const grant = up.grants[before]!;
    expect(grant).toMatchObject({ grantType: 'urn:ietf:params:oauth:grant-type:jwt-bearer', clientId: 'deputy-obo' });
    expect(grant.params).toMatchObject({ assertion: subject, requested_token_use: 'on_behalf_of', scope: 'https://graph.example.com/.default' });
    expect(up.requests.at(-1)!.headers.authorization).toBe(`Bearer ${grant.token}`);
    const body = await res.text();
    expect(body).not.toContain(grant.token);
    expect(body).not.toContain(subject);
    // Cached per upstream token: a second call makes no second exchange.
    await call(a, token, 'obo', '/me/messages');
    expect(up.grants.length).toBe(before + 1);
  });

  it('on_behalf_of (RFC 8693) at another AS; an IdP refusal is a 403 with its error code', async () => {
    const a = agents['agent-a']!;
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    const token = (await exchange(a, { subject_token: subject, resource: gw('rfc8693'), scope: 'deputy.read' })).access_token;
    const before = up.grants.length;
    expect((await call(a, token, 'rfc8693', '/data')).status).toBe(200);
    expect(up.grants[before]!.params).toMatchObject({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: subject,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      audience: 'https://downstream.example.com',
    });
    up.refuseTokens('invalid_grant');
    try {
      const other = (await exchange(a, { subject_token: await idp.oktaAccessToken({ scp: ['deputy.read'] }), resource: gw('rfc8693'), scope: 'deputy.read' })).access_token;
      const res = await call(a, other, 'rfc8693', '/data');
      expect(res.status).toBe(403);
      expect(await json(res)).toMatchObject({ error: 'access_denied', error_description: expect.stringMatching(/refused the on-behalf-of exchange \("invalid_grant"\)/) });
    } finally {
      up.refuseTokens(undefined);
    }
  });
});

describe('gateway: upstream failures', () => {
  it('an upstream that does not answer in time is a 504; one that cannot be reached a 502', async () => {
    const a = agents['agent-a']!;
    const slow = await call(a, await tokenFor(a, 'slow'), 'slow', '/hang');
    expect(slow.status).toBe(504);
    expect(await json(slow)).toMatchObject({ error: 'gateway_timeout' });
    const down = await call(a, await tokenFor(a, 'down'), 'down', '/x');
    expect(down.status).toBe(502);
    expect(await json(down)).toMatchObject({ error: 'bad_gateway', error_description: expect.stringMatching(/could not be reached/) });
  });
});

describe('connections admin API (write-only secrets)', () => {
  const adminCall = (method: string, path: string, body?: unknown) =>
    fetch(`${deputy.url}/admin/connections${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });

  it('creates, lists, reads, rotates and deletes; never returns a secret', async () => {
    const created = await adminCall('POST', '', {
      id: 'created', kind: 'api_key', base_url: `${up.base}/made`, allow_insecure_http: true, header: 'X-Api-Key', secret: ADMIN_KEY, required_scopes: ['deputy.read'],
    });
    expect(created.status).toBe(201);
    const view = await created.text();
    expect(view).not.toContain(ADMIN_KEY);
    expect(JSON.parse(view)).toMatchObject({
      id: 'created', kind: 'api_key', has_secret: true, secret_version: 1, source: 'api', audience: gw('created'),
      settings: { base_url: `${up.base}/made`, allow_insecure_http: true, required_scopes: ['deputy.read'] },
    });
    expect((await adminCall('POST', '', { id: 'created', kind: 'api_key', base_url: `${up.base}/made`, allow_insecure_http: true, header: 'X-Api-Key', secret: 'x' })).status).toBe(409);

    const a = agents['agent-a']!;
    const createdToken = await tokenFor(a, 'created');
    await call(a, createdToken, 'created', '/v');
    expect(up.requests.at(-1)!.headers['x-api-key']).toBe(ADMIN_KEY);
    await call(a, createdToken, 'created', '/v'); // served from the decrypted-secret cache
    expect(up.requests.at(-1)!.headers['x-api-key']).toBe(ADMIN_KEY);

    const rotated = await adminCall('POST', '/created/secret', { secret: ROTATED_KEY });
    expect(rotated.status).toBe(200);
    const rotatedText = await rotated.text();
    expect(rotatedText).not.toContain(ROTATED_KEY);
    expect(JSON.parse(rotatedText)).toMatchObject({ secret_version: 2 });
    // The rotation went through this instance: the cached secret is not used again, not even once.
    await call(a, createdToken, 'created', '/v');
    expect(up.requests.at(-1)!.headers['x-api-key']).toBe(ROTATED_KEY);

    const list = await (await adminCall('GET', '?limit=200')).text();
    for (const s of [API_KEY, QUERY_KEY, CC_SECRET, OBO_SECRET, ADMIN_KEY, ROTATED_KEY]) expect(list).not.toContain(s);
    const ids = (JSON.parse(list) as Json).connections.map((c: Json) => c.id);
    expect(ids).toEqual(expect.arrayContaining(['echo', 'cc', 'created']));
    expect(await (await adminCall('GET', '/echo')).json()).toMatchObject({ id: 'echo', source: 'config', has_secret: true, settings: { header: 'X-Api-Key' } });

    expect((await adminCall('DELETE', '/created')).status).toBe(204);
    expect((await adminCall('GET', '/created')).status).toBe(404);
    const gone = await call(a, await tokenFor(a, 'created'), 'created', '/v');
    expect(gone.status).toBe(404);
    const secrets = await deputy.store.query<{ n: number }>("SELECT count(*)::int AS n FROM vault_secrets WHERE kind = 'connection_secret'");
    expect(secrets[0]!.n).toBe((await deputy.store.query<{ n: number }>('SELECT count(*)::int AS n FROM connections WHERE secret_handle IS NOT NULL'))[0]!.n);
  });

  it('refuses to rotate or delete a connection defined in configuration, and invalid input, naming the field', async () => {
    expect(await json(await adminCall('POST', '/echo/secret', { secret: 'x' }))).toMatchObject({ error: 'conflict', error_description: expect.stringMatching(/defined in configuration/) });
    expect((await adminCall('DELETE', '/echo')).status).toBe(409);
    const bad = await json(await adminCall('POST', '', { id: 'Bad Id', kind: 'api_key', base_url: 'http://x', header: 'X' }));
    expect(bad).toMatchObject({ error: 'invalid_request', error_description: expect.stringMatching(/id:.*slug/) });
    // Messages written for the YAML name the admin API's spelling of the member.
    const insecure = await json(await adminCall('POST', '', { id: 'insecure', kind: 'api_key', base_url: 'http://plain.example.com', header: 'X-Key', secret: 's' }));
    expect(insecure.error_description).toMatch(/set allow_insecure_http/);
    expect(insecure.error_description).not.toMatch(/allowInsecureHttp/);
    const camel = await json(await adminCall('POST', '', { id: 'camel', kind: 'api_key', baseUrl: `${up.base}/c`, allow_insecure_http: true, header: 'X-Key', secret: 's' }));
    expect(camel).toMatchObject({ error: 'invalid_request', error_description: expect.stringMatching(/baseUrl is not a field; use base_url/) });
    expect((await adminCall('GET', '/camel')).status).toBe(404);
    expect((await fetch(`${deputy.url}/admin/connections`)).status).toBe(401);
  });
});

describe('no secret leaks', () => {
  it('no log line and no plaintext column of the store contains a credential or a derived token', async () => {
    const secrets = [API_KEY, QUERY_KEY, CC_SECRET, OBO_SECRET, ADMIN_KEY, ROTATED_KEY, ...up.grants.map((g) => g.token)];
    expect(up.grants.length).toBeGreaterThan(0);
    const logs = deputy.logs.join('');
    expect(logs).toContain('gateway call');
    for (const s of secrets) expect(logs).not.toContain(s);

    const tables = await deputy.store.query<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'");
    expect(tables.map((t) => t.table_name)).toEqual(expect.arrayContaining(['connections', 'vault_secrets', 'connection_grants', 'oidc_models', 'token_records']));
    for (const { table_name } of tables) {
      const rows = await deputy.store.query<{ row: string }>(`SELECT t::text AS row FROM "${table_name}" t`);
      const dump = rows.map((r) => r.row).join('\n');
      for (const s of secrets) {
        expect(dump, `${table_name} contains a secret`).not.toContain(s);
        expect(dump, `${table_name} contains a secret (bytea hex)`).not.toContain(Buffer.from(s).toString('hex'));
      }
    }
  });
});
