/**
 * DPoP and URL correctness as deployed: the issuer is `https://deputy.example.com`, TLS ends at a
 * proxy, and Deputy is reached over plain HTTP (here 127.0.0.1), with or without the proxy's
 * `X-Forwarded-*` headers, with `trustProxy` off and on. Clients are openid-client with server
 * nonces on, and raw requests that break one thing at a time.
 *
 * - Every advertised URL, every expected `htu` and every accepted client-assertion `aud` derives
 *   from the issuer (RFC 8414 §2, RFC 9449 §4.3, RFC 7523 §3).
 * - `htu` is compared after RFC 3986 §6.2.2-§6.2.3 normalization, at `/token` and the gateway.
 * - One nonce for the whole origin (RFC 9449 §8-§9).
 * - A proof's `jti` is spent as soon as the proof verifies, whatever happens next (§11.1), at
 *   `/token`, the gateway, the PDP and the admin API.
 */
import { request as httpRequest } from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';
import { decodeJwt, SignJWT } from 'jose';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DpopNonces } from '../../src/oauth/dpop.js';
import { ACCESS_TOKEN_TYPE, agentConfig, dpopKeys, dpopProof, TOKEN_EXCHANGE, type DpopKeys, type ProofOptions } from '../support/agents.js';
import { clientKeys, type ClientKeys } from '../support/clients.js';
import type { Json } from '../support/http.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';

const ISSUER = 'https://deputy.example.com';
const API_KEY = `sk_live_${randomBytes(16).toString('hex')}`;
const gw = (connection: string) => `${ISSUER}/gw/${connection}`;

/** What a TLS-terminating proxy (or a client pretending to be one) may add. */
const VARIANTS: ReadonlyArray<readonly [string, Record<string, string>]> = [
  ['no proxy headers', {}],
  ['the proxy\'s headers', { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'deputy.example.com' }],
  ['internal host and scheme', { host: 'deputy.internal:3000', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'deputy.internal:3000' }],
  ['a forged host', { 'x-forwarded-proto': 'http', 'x-forwarded-host': 'evil.example.com' }],
];

let idp: MockIdp;
let up: MockUpstream;
const keys: Record<string, ClientKeys> = {};

interface Setup {
  name: string;
  trustProxy: boolean;
  requireNonce: boolean;
  clientAssertionAudience: 'issuer' | 'issuer-or-token-endpoint';
}

/** Instance A: nonces required, assertions for the issuer only. Instance B: trusts the proxy, legacy audiences. */
const SETUPS: readonly Setup[] = [
  { name: 'trustProxy off, nonces required', trustProxy: false, requireNonce: true, clientAssertionAudience: 'issuer' },
  { name: 'trustProxy on, legacy token-endpoint audience', trustProxy: true, requireNonce: false, clientAssertionAudience: 'issuer-or-token-endpoint' },
];
const deputies: TestDeputy[] = [];

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMockUpstream();
  for (const id of ['agent-a', 'pep']) keys[id] = await clientKeys();
  for (const s of SETUPS) {
    deputies.push(
      await startTestDeputy({
        env: { ECHO_KEY: API_KEY },
        config: {
          server: { issuer: ISSUER, trustProxy: s.trustProxy },
          dpop: { requireNonce: s.requireNonce },
          oauth: { clientAssertionAudience: s.clientAssertionAudience },
          admin: { clients: [{ client_id: 'pep', scopes: ['authzen:evaluate', 'deputy:admin'], jwks: keys.pep!.jwks }] },
          trustedIssuers: [idp.issuerConfig('okta')],
          agents: [
            agentConfig('agent-a', keys['agent-a']!, {
              scopes: ['deputy.read', 'deputy.write'],
              audiences: [gw('echo'), gw('routes'), gw('ghost'), 'https://api.example.com'],
            }),
          ],
          connections: [
            { id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] },
            {
              id: 'routes', kind: 'api_key', baseUrl: `${up.base}/r`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'],
              routes: [{ methods: ['DELETE'], path: '/items/*', action: 'items.delete', scopes: ['deputy.write'] }],
            },
          ],
        },
      }),
    );
  }
});
afterAll(async () => {
  for (const d of deputies) await d.stop();
  await up?.close();
  await idp?.close();
});

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Json;
}

/** One request to the instance over plain HTTP, every header (Host included) as given. */
function send(deputy: TestDeputy, method: string, pathAndQuery: string, headers: Record<string, string>, body?: string): Promise<Reply> {
  const { port } = new URL(deputy.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path: pathAndQuery, headers: { host: 'deputy.example.com', ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        let parsed: Json = {};
        try {
          parsed = text ? (JSON.parse(text) as Json) : {};
        } catch {
          parsed = { text };
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A proof with a nonce of the instance's origin (valid whether or not nonces are required). */
function proof(deputy: TestDeputy, keys: DpopKeys, htu: string, options: ProofOptions = {}): Promise<string> {
  return dpopProof(keys, htu, { nonce: new DpopNonces(deputy.keys.dpopNonceSecret).next(), ...options });
}

/** A private_key_jwt client assertion with the audience under the test's control. */
function assertion(clientId: string, aud: string | string[] = ISSUER): Promise<string> {
  return new SignJWT({ jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256' })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(aud)
    .setIssuedAt()
    .setExpirationTime('60s')
    .sign(keys[clientId]!.privateKey);
}

async function tokenForm(clientId: string, params: Record<string, string>, aud?: string | string[]): Promise<string> {
  return new URLSearchParams({
    client_id: clientId,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: await assertion(clientId, aud),
    ...params,
  }).toString();
}

/** A raw token exchange for agent-a. */
async function rawExchange(deputy: TestDeputy, dpop: string | undefined, options: { headers?: Record<string, string>; aud?: string | string[]; params?: Record<string, string> } = {}): Promise<Reply> {
  const body = await tokenForm('agent-a', {
    grant_type: TOKEN_EXCHANGE,
    subject_token: await idp.oktaAccessToken({ scp: ['deputy.read', 'deputy.write'] }),
    subject_token_type: ACCESS_TOKEN_TYPE,
    resource: gw('echo'),
    scope: 'deputy.read',
    ...options.params,
  }, options.aud);
  return send(deputy, 'POST', '/token', { 'content-type': 'application/x-www-form-urlencoded', ...(dpop ? { dpop } : {}), ...options.headers }, body);
}

/** A raw client_credentials request of the PEP (its PDP token). */
async function rawPepToken(deputy: TestDeputy, dpop: string | undefined, params: Record<string, string> = {}): Promise<Reply> {
  const body = await tokenForm('pep', { grant_type: 'client_credentials', scope: 'authzen:evaluate', ...params });
  return send(deputy, 'POST', '/token', { 'content-type': 'application/x-www-form-urlencoded', ...(dpop ? { dpop } : {}) }, body);
}

/** A DPoP-bound agent token for the gateway connection, through a raw exchange. */
async function agentToken(deputy: TestDeputy, dpop: DpopKeys, connection = 'echo', scope = 'deputy.read'): Promise<string> {
  const res = await rawExchange(deputy, await proof(deputy, dpop, `${ISSUER}/token`), { params: { resource: gw(connection), scope } });
  expect(res.body.token_type, JSON.stringify(res.body)).toBe('DPoP');
  return res.body.access_token as string;
}

/** A DPoP-bound PDP token for the PEP. */
async function pepToken(deputy: TestDeputy, dpop: DpopKeys): Promise<string> {
  const res = await rawPepToken(deputy, await proof(deputy, dpop, `${ISSUER}/token`));
  expect(res.body.token_type, JSON.stringify(res.body)).toBe('DPoP');
  return res.body.access_token as string;
}

function gatewayGet(deputy: TestDeputy, path: string, token: string, dpop: string, headers: Record<string, string> = {}): Promise<Reply> {
  return send(deputy, 'GET', path, { authorization: `DPoP ${token}`, dpop, ...headers });
}

const EVALUATION = JSON.stringify({ subject: { type: 'user', id: 'alice' }, action: { name: 'read' }, resource: { type: 'document', id: 'd1' } });

function evaluate(deputy: TestDeputy, token: string, dpop: string, body = EVALUATION, headers: Record<string, string> = {}): Promise<Reply> {
  return send(deputy, 'POST', '/access/v1/evaluation', { authorization: `DPoP ${token}`, dpop, 'content-type': 'application/json', ...headers }, body);
}

/** Every absolute URL anywhere in a JSON document. */
function urlsIn(value: unknown): string[] {
  if (typeof value === 'string') return /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? [value] : [];
  if (Array.isArray(value)) return value.flatMap(urlsIn);
  if (value && typeof value === 'object') return Object.values(value).flatMap(urlsIn);
  return [];
}

describe.each(SETUPS.map((s, i) => [s.name, i] as const))('https issuer served over http (%s)', (_name, index) => {
  const deputy = () => deputies[index]!;
  const setup = SETUPS[index]!;

  it.each(VARIANTS)('discovery advertises only URLs under the issuer (%s)', async (_v, headers) => {
    for (const path of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server', '/.well-known/authzen-configuration']) {
      const res = await send(deputy(), 'GET', path, headers);
      expect(res.status, path).toBe(200);
      const urls = urlsIn(res.body);
      expect(urls.length, path).toBeGreaterThan(0);
      for (const url of urls) expect(url === ISSUER || url.startsWith(`${ISSUER}/`), `${path}: ${url}`).toBe(true);
    }
    const metadata = (await send(deputy(), 'GET', '/.well-known/openid-configuration', headers)).body;
    expect(metadata).toMatchObject({ issuer: ISSUER, token_endpoint: `${ISSUER}/token`, jwks_uri: `${ISSUER}/jwks` });
  });

  it.each(VARIANTS)('/token takes htu https://…/token and refuses the transport\'s http://… (%s)', async (_v, headers) => {
    const dpop = await dpopKeys();
    const ok = await rawExchange(deputy(), await proof(deputy(), dpop, `${ISSUER}/token`), { headers });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(ok.body.token_type).toBe('DPoP');
    for (const htu of ['http://deputy.example.com/token', `${deputy().url}/token`, 'https://deputy.internal:3000/token']) {
      const refused = await rawExchange(deputy(), await proof(deputy(), dpop, htu), { headers });
      expect(refused.status, htu).toBe(400);
      expect(refused.body).toMatchObject({ error: 'invalid_dpop_proof', error_description: expect.stringMatching(/htu/) });
    }
    // The PEP's client_credentials grant (a DPoP-bound PDP token) follows the same rule.
    expect((await rawPepToken(deputy(), await proof(deputy(), dpop, `${ISSUER}/token`))).body.token_type).toBe('DPoP');
    expect((await rawPepToken(deputy(), await proof(deputy(), dpop, 'http://deputy.example.com/token'))).body.error).toBe('invalid_dpop_proof');
  });

  it.each(VARIANTS)('the gateway and the PDP take https://… and refuse http://… (%s)', async (_v, headers) => {
    const dpop = await dpopKeys();
    const token = await agentToken(deputy(), dpop);
    const path = '/gw/echo/things/1';
    const ok = await gatewayGet(deputy(), path, token, await proof(deputy(), dpop, `${ISSUER}${path}`, { htm: 'GET', accessToken: token }), headers);
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    const refused = await gatewayGet(deputy(), path, token, await proof(deputy(), dpop, `http://deputy.example.com${path}`, { htm: 'GET', accessToken: token }), headers);
    expect(refused.status).toBe(401);
    expect(refused.body).toMatchObject({ error: 'invalid_dpop_proof', error_description: expect.stringMatching(/htu/) });

    const pep = await pepToken(deputy(), dpop);
    const decided = await evaluate(deputy(), pep, await proof(deputy(), dpop, `${ISSUER}/access/v1/evaluation`, { accessToken: pep }), EVALUATION, headers);
    expect(decided.status, JSON.stringify(decided.body)).toBe(200);
    expect(decided.body).toHaveProperty('decision');
    const wrong = await evaluate(deputy(), pep, await proof(deputy(), dpop, 'http://deputy.example.com/access/v1/evaluation', { accessToken: pep }), EVALUATION, headers);
    expect(wrong.status).toBe(401);
    expect(wrong.body.error).toBe('invalid_dpop_proof');
  });

  it('client assertions: aud = the issuer; the token endpoint only under the legacy switch; never a list or another URL', async () => {
    const dpop = await dpopKeys();
    const tryAud = async (aud: string | string[]) => rawExchange(deputy(), await proof(deputy(), dpop, `${ISSUER}/token`), { aud });
    expect((await tryAud(ISSUER)).status).toBe(200);
    const legacy = await tryAud(`${ISSUER}/token`);
    if (setup.clientAssertionAudience === 'issuer-or-token-endpoint') {
      expect(legacy.status).toBe(200);
    } else {
      expect(legacy.status).toBe(401);
      expect(legacy.body).toMatchObject({ error: 'invalid_client', error_description: expect.stringMatching(/aud/) });
    }
    const refused: Array<string | string[]> = [[ISSUER], [ISSUER, `${ISSUER}/token`], 'https://other.example.com', 'http://deputy.example.com', `${deputy().url}`, `${ISSUER}/`];
    for (const aud of refused) {
      const res = await tryAud(aud);
      expect(res.status, JSON.stringify(aud)).toBe(401);
      expect(res.body).toMatchObject({ error: 'invalid_client', error_description: expect.stringMatching(/aud/) });
    }
  });
});

describe('htu: exact after RFC 3986 normalization, at /token and at the gateway', () => {
  const deputy = () => deputies[1]!;
  const SAME_TOKEN = [
    'HTTPS://DEPUTY.EXAMPLE.COM/token',
    'https://deputy.example.com:443/token',
    'https://deputy.example.com/%74oken',
    'https://deputy.example.com/x/../token',
    'https://deputy.example.com/token?q=1#f',
  ];
  const OTHER_TOKEN = [
    'https://deputy.example.com/token/',
    'https://deputy.example.com/Token',
    'https://deputy.example.com:8443/token',
    'https://deputy.example.com//token',
    'http://deputy.example.com/token',
    'https://deputy.example.com/tok%2Fen',
  ];

  it.each(SAME_TOKEN)('/token accepts %s', async (htu) => {
    const dpop = await dpopKeys();
    const res = await rawExchange(deputy(), await proof(deputy(), dpop, htu));
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    // oidc-provider's client_credentials grant agrees.
    const pep = await rawPepToken(deputy(), await proof(deputy(), dpop, htu));
    expect(pep.body.token_type, JSON.stringify(pep.body)).toBe('DPoP');
  });

  it.each(OTHER_TOKEN)('/token refuses %s', async (htu) => {
    const res = await rawExchange(deputy(), await proof(deputy(), await dpopKeys(), htu));
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ error: 'invalid_dpop_proof', error_description: expect.stringMatching(/htu/) });
  });

  const PATH = '/gw/echo/items/a';
  const SAME_GW = [
    `HTTPS://DEPUTY.EXAMPLE.COM${PATH}`,
    `https://deputy.example.com:443${PATH}`,
    'https://deputy.example.com/gw/echo/items/%61',
    'https://deputy.example.com/gw/echo/x/../items/a',
    `${ISSUER}${PATH}?q=1#f`,
  ];
  const OTHER_GW = [
    `${ISSUER}${PATH}/`,
    `${ISSUER}/gw/echo/items/A`,
    `http://deputy.example.com${PATH}`,
    `${ISSUER}/gw/echo/items%2Fa`,
    `${ISSUER}/gw/echo/items/b`,
  ];

  it('the gateway accepts the equivalent spellings and refuses the others', async () => {
    const dpop = await dpopKeys();
    const token = await agentToken(deputy(), dpop);
    for (const htu of SAME_GW) {
      const res = await gatewayGet(deputy(), PATH, token, await proof(deputy(), dpop, htu, { htm: 'GET', accessToken: token }));
      expect(res.status, `${htu}: ${JSON.stringify(res.body)}`).toBe(200);
    }
    for (const htu of OTHER_GW) {
      const res = await gatewayGet(deputy(), PATH, token, await proof(deputy(), dpop, htu, { htm: 'GET', accessToken: token }));
      expect(res.status, htu).toBe(401);
      expect(res.body).toMatchObject({ error: 'invalid_dpop_proof', error_description: expect.stringMatching(/htu/) });
    }
    // The request URL is normalized too: a request for an equivalent spelling of the path matches.
    const spelled = '/gw/echo/items/%61';
    expect((await gatewayGet(deputy(), spelled, token, await proof(deputy(), dpop, `${ISSUER}${PATH}`, { htm: 'GET', accessToken: token }))).status).toBe(200);
  });
});

describe('a proof is spent as soon as it verifies (RFC 9449 §11.1)', () => {
  const deputy = () => deputies[1]!;
  const replayed = (res: Reply) => {
    expect(res.body).toMatchObject({ error: 'invalid_dpop_proof', error_description: expect.stringMatching(/already been used/) });
  };

  it.each([
    ['a scope the agent may not have', { params: { scope: 'deputy.admin' } }],
    ['an unknown resource', { params: { resource: 'https://nope.example.com' } }],
    ['a bad subject token', { params: { subject_token: 'not-a-token' } }],
    ['a refused client assertion', { aud: 'https://other.example.com' }],
  ] as const)('/token: after a failure caused by %s', async (_what, failure) => {
    const dpop = await dpopKeys();
    const p = await proof(deputy(), dpop, `${ISSUER}/token`);
    const failed = await rawExchange(deputy(), p, failure as { params?: Record<string, string>; aud?: string });
    expect(failed.status).toBeGreaterThanOrEqual(400);
    expect(failed.body.error).not.toMatch(/dpop/);
    const replay = await rawExchange(deputy(), p);
    expect(replay.status).toBe(400);
    replayed(replay);
  });

  it('/token: after a failed client_credentials request (unknown resource)', async () => {
    const p = await proof(deputy(), await dpopKeys(), `${ISSUER}/token`);
    const failed = await rawPepToken(deputy(), p, { resource: 'https://nope.example.com' });
    expect(failed.body.error).toBe('invalid_target');
    replayed(await rawPepToken(deputy(), p));
  });

  it('/token: a client_credentials grant binds the proof Deputy verified and spends it once (issue 16)', async () => {
    const dpop = await dpopKeys();
    const p = await proof(deputy(), dpop, `${ISSUER}/token`);
    const spent = async () => Object.fromEntries(
      (await deputy().store.query<{ model: string; n: number }>("SELECT model, count(*)::int AS n FROM oidc_models WHERE model IN ('DPoPProof', 'ReplayDetection') GROUP BY model")).map((r) => [r.model, r.n]),
    );
    const before = await spent();
    const ok = await rawPepToken(deputy(), p);
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(decodeJwt(ok.body.access_token as string).cnf).toEqual({ jkt: dpop.jkt });
    const after = await spent();
    // One record for the proof (Deputy's verifier), one for the client assertion: oidc-provider no
    // longer spends the proof a second time under its own key.
    expect((after.DPoPProof ?? 0) - (before.DPoPProof ?? 0)).toBe(1);
    expect((after.ReplayDetection ?? 0) - (before.ReplayDetection ?? 0)).toBe(1);
    replayed(await rawPepToken(deputy(), p));
  });

  it('the gateway: after an unknown connection and a route the token may not use', async () => {
    const dpop = await dpopKeys();
    const ghost = await agentToken(deputy(), dpop, 'ghost');
    const ghostProof = await proof(deputy(), dpop, `${gw('ghost')}/x`, { htm: 'GET', accessToken: ghost });
    expect((await gatewayGet(deputy(), '/gw/ghost/x', ghost, ghostProof)).status).toBe(404);
    const again = await gatewayGet(deputy(), '/gw/ghost/x', ghost, ghostProof);
    expect(again.status).toBe(401);
    replayed(again);

    const token = await agentToken(deputy(), dpop, 'routes');
    const del = await proof(deputy(), dpop, `${gw('routes')}/items/1`, { htm: 'DELETE', accessToken: token });
    const denied = await send(deputy(), 'DELETE', '/gw/routes/items/1', { authorization: `DPoP ${token}`, dpop: del });
    expect(denied.status).toBe(403);
    const replay = await send(deputy(), 'DELETE', '/gw/routes/items/1', { authorization: `DPoP ${token}`, dpop: del });
    expect(replay.status).toBe(401);
    replayed(replay);
  });

  it('the PDP: after a deny and after a malformed request', async () => {
    const dpop = await dpopKeys();
    const pep = await pepToken(deputy(), dpop);
    const url = `${ISSUER}/access/v1/evaluation`;
    const p1 = await proof(deputy(), dpop, url, { accessToken: pep });
    const deny = await evaluate(deputy(), pep, p1);
    expect(deny.status).toBe(200);
    expect(deny.body.decision).toBe(false);
    replayed(await evaluate(deputy(), pep, p1));

    const p2 = await proof(deputy(), dpop, url, { accessToken: pep });
    expect((await evaluate(deputy(), pep, p2, '{not json')).status).toBe(400);
    const replay = await evaluate(deputy(), pep, p2);
    expect(replay.status).toBe(401);
    replayed(replay);
  });

  it('the admin API: after a request for an agent that does not exist', async () => {
    const dpop = await dpopKeys();
    const issued = await rawPepToken(deputy(), await proof(deputy(), dpop, `${ISSUER}/token`), { scope: 'deputy:admin' });
    expect(issued.body.token_type, JSON.stringify(issued.body)).toBe('DPoP');
    const admin = issued.body.access_token as string;
    const p = await proof(deputy(), dpop, `${ISSUER}/admin/agents/nobody`, { htm: 'GET', accessToken: admin });
    const missing = await send(deputy(), 'GET', '/admin/agents/nobody', { authorization: `DPoP ${admin}`, dpop: p });
    expect(missing.status).toBe(404);
    const replay = await send(deputy(), 'GET', '/admin/agents/nobody', { authorization: `DPoP ${admin}`, dpop: p });
    expect(replay.status).toBe(401);
    replayed(replay);
  });
});

describe('one DPoP nonce for the whole origin (RFC 9449 §8-§9)', () => {
  const deputy = () => deputies[0]!; // requireNonce: true

  it('openid-client alternating exchanges and gateway calls meets one nonce challenge in all', async () => {
    const challenges: string[] = [];
    const viaProxy: client.CustomFetch = async (url, options) => {
      const target = new URL(url);
      expect(target.origin).toBe(ISSUER);
      const headers = new Headers(options.headers as ConstructorParameters<typeof Headers>[0]);
      headers.set('x-forwarded-proto', 'https');
      const res = await fetch(`${deputy().url}${target.pathname}${target.search}`, { ...options, headers } as RequestInit);
      const challenged = res.headers.get('www-authenticate')?.includes('use_dpop_nonce') || (res.status === 400 && (await res.clone().text()).includes('use_dpop_nonce'));
      if (challenged) challenges.push(`${options.method} ${target.pathname}`);
      return res;
    };
    const config = await client.discovery(new URL(ISSUER), 'agent-a', {}, client.PrivateKeyJwt(keys['agent-a']!.privateKey), { [client.customFetch]: viaProxy });
    const dpop = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'));
    for (let i = 0; i < 3; i++) {
      const tokens = await client.genericGrantRequest(config, TOKEN_EXCHANGE, {
        subject_token: await idp.oktaAccessToken({ scp: ['deputy.read'] }),
        subject_token_type: ACCESS_TOKEN_TYPE,
        resource: gw('echo'),
        scope: 'deputy.read',
      }, { DPoP: dpop });
      const res = await client.fetchProtectedResource(config, tokens.access_token, new URL(`${gw('echo')}/items/${i}`), 'GET', null, new Headers(), { DPoP: dpop });
      expect(res.status).toBe(200);
    }
    expect(challenges).toEqual(['POST /token']);
  });

  it('a nonce handed out at the gateway is good at /token and the PDP, and the other way round', async () => {
    const dpop = await dpopKeys();
    const token = await agentToken(deputy(), dpop);
    // A proof with a forged nonce at the gateway is challenged with the origin's nonce.
    const path = '/gw/echo/n';
    const challenged = await gatewayGet(deputy(), path, token, await dpopProof(dpop, `${ISSUER}${path}`, { htm: 'GET', accessToken: token, nonce: 'forged-nonce-value' }));
    expect(challenged.status).toBe(401);
    expect(challenged.headers['www-authenticate']).toMatch(/error="use_dpop_nonce"/);
    const fromGateway = challenged.headers['dpop-nonce'] as string;
    expect(fromGateway).toBeTruthy();
    const exchanged = await rawExchange(deputy(), await dpopProof(dpop, `${ISSUER}/token`, { nonce: fromGateway }));
    expect(exchanged.body.token_type, JSON.stringify(exchanged.body)).toBe('DPoP');
    const pep = await rawPepToken(deputy(), await dpopProof(dpop, `${ISSUER}/token`, { nonce: fromGateway }));
    expect(pep.body.token_type, JSON.stringify(pep.body)).toBe('DPoP');
    const decided = await evaluate(deputy(), pep.body.access_token, await dpopProof(dpop, `${ISSUER}/access/v1/evaluation`, { accessToken: pep.body.access_token, nonce: fromGateway }));
    expect(decided.status).toBe(200);

    // And /token's challenge nonce works at the gateway.
    const tokenChallenge = await rawExchange(deputy(), await dpopProof(dpop, `${ISSUER}/token`));
    expect(tokenChallenge.body.error).toBe('use_dpop_nonce');
    const fromToken = tokenChallenge.headers['dpop-nonce'] as string;
    const ok = await gatewayGet(deputy(), path, token, await dpopProof(dpop, `${ISSUER}${path}`, { htm: 'GET', accessToken: token, nonce: fromToken }));
    expect(ok.status).toBe(200);
  });
});
