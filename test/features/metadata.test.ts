/**
 * Metadata and errors that tell the truth (issue 11, part 4).
 *
 * - Discovery (RFC 8414 §2): every advertised member is exercised against the running server —
 *   each endpoint answers, each client-authentication method × signing algorithm works at each
 *   endpoint it is listed for, each grant type and scope can be obtained, each DPoP algorithm is
 *   accepted — and nothing else is advertised (no OpenID Provider members).
 * - Client authentication at `/token`, `/introspect`, `/revoke` (RFC 6749 §5.2, RFC 7662 §2.3,
 *   RFC 7009 §2.1): missing, wrong, or another client's credentials → 401 `invalid_client`;
 *   revoking a token the client may not revoke → an error, and nothing changes.
 * - Deputy's resources (`/access/v1/*`, `/admin/*`): RFC 6750 §3.1 challenges.
 */
import { randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCESS_TOKEN_TYPE, agentConfig, claimsOf, exchange, testAgent, TOKEN_EXCHANGE, type TestAgent } from '../support/agents.js';
import { clientKeys, type ClientKeys, type PublicJwk } from '../support/clients.js';
import { json, type Json } from '../support/http.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';

const API = 'https://api.example.com';
const ADMIN_SCOPE = 'deputy:admin';
const PDP_SCOPE = 'authzen:evaluate';
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** Every member Deputy may advertise; anything else in the document fails the test. */
const EXPECTED_MEMBERS = [
  'issuer',
  'token_endpoint',
  'jwks_uri',
  'scopes_supported',
  'response_types_supported',
  'grant_types_supported',
  'token_endpoint_auth_methods_supported',
  'token_endpoint_auth_signing_alg_values_supported',
  'introspection_endpoint',
  'introspection_endpoint_auth_methods_supported',
  'introspection_endpoint_auth_signing_alg_values_supported',
  'revocation_endpoint',
  'revocation_endpoint_auth_methods_supported',
  'revocation_endpoint_auth_signing_alg_values_supported',
  'dpop_signing_alg_values_supported',
  'receipts_jwks_uri',
].sort();

/** A private key usable with one JWS algorithm, and the public JWK to register. */
interface AlgKey {
  alg: string;
  privateKey: CryptoKey;
  publicJwk: PublicJwk;
}

/** The key family each JWS algorithm needs (RFC 7518 §3.1, RFC 8037, fully-specified Ed25519). */
const FAMILY: Record<string, 'EC256' | 'EC384' | 'EC521' | 'RSA' | 'OKP'> = {
  ES256: 'EC256', ES384: 'EC384', ES512: 'EC521',
  PS256: 'RSA', PS384: 'RSA', PS512: 'RSA', RS256: 'RSA',
  Ed25519: 'OKP', EdDSA: 'OKP',
};
const GENERATE_AS: Record<(typeof FAMILY)[string], string> = { EC256: 'ES256', EC384: 'ES384', EC521: 'ES512', RSA: 'PS256', OKP: 'Ed25519' };
const families = new Map<string, { privateJwk: JWK; publicJwk: JWK }>();

/** A key for `alg`; one key per family, imported for each algorithm (WebCrypto keys are single-algorithm). */
async function algKey(alg: string): Promise<AlgKey> {
  const family = FAMILY[alg];
  if (!family) throw new Error(`the test has no key type for advertised algorithm ${alg}`);
  let pair = families.get(family);
  if (!pair) {
    const { privateKey, publicKey } = await generateKeyPair(GENERATE_AS[family]!, { extractable: true, ...(family === 'RSA' ? { modulusLength: 2048 } : {}) });
    pair = { privateJwk: await exportJWK(privateKey), publicJwk: await exportJWK(publicKey) };
    families.set(family, pair);
  }
  const privateKey = (await importJWK(pair.privateJwk, alg)) as CryptoKey;
  return { alg, privateKey, publicJwk: { ...pair.publicJwk, kty: pair.publicJwk.kty!, use: 'sig' } };
}

/** RFC 7523 §2.2 client assertion, with every part under the test's control. */
async function assertion(clientId: string, key: { privateKey: CryptoKey; alg?: string }, aud: string, sub = clientId): Promise<string> {
  return new SignJWT({ jti: randomUUID() })
    .setProtectedHeader({ alg: key.alg ?? 'ES256' })
    .setIssuer(sub)
    .setSubject(sub)
    .setAudience(aud)
    .setIssuedAt()
    .setExpirationTime('60s')
    .sign(key.privateKey);
}

/** RFC 9449 §4.2 proof signed with `key` and its algorithm. */
async function dpopProofWith(key: AlgKey, htu: string): Promise<string> {
  return new SignJWT({ htm: 'POST', htu, jti: randomUUID() })
    .setProtectedHeader({ alg: key.alg, typ: 'dpop+jwt', jwk: { kty: key.publicJwk.kty, crv: key.publicJwk.crv, x: key.publicJwk.x, y: key.publicJwk.y, n: key.publicJwk.n, e: key.publicJwk.e } })
    .setIssuedAt()
    .sign(key.privateKey);
}

const form = (url: string, body: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(body) });

let idp: MockIdp;
let deputy: TestDeputy;
let metadata: Json;
let adminKeys: ClientKeys;
let pepKeys: ClientKeys;
let agentKeys: ClientKeys;
let otherKeys: ClientKeys;
let agent: TestAgent;
/** Clients `alg-<ALG>` registered with a key for that algorithm. */
const algClients = new Map<string, AlgKey>();
const ALL_ALGS = Object.keys(FAMILY);

beforeAll(async () => {
  idp = await startMockIdp();
  [adminKeys, pepKeys, agentKeys, otherKeys] = await Promise.all([clientKeys(), clientKeys(), clientKeys(), clientKeys()]);
  for (const alg of ALL_ALGS) algClients.set(alg, await algKey(alg));
  deputy = await startTestDeputy({
    config: {
      trustedIssuers: [idp.issuerConfig('okta')],
      admin: {
        clients: [
          { client_id: 'm-admin', scopes: [ADMIN_SCOPE], jwks: adminKeys.jwks },
          { client_id: 'm-pep', scopes: [PDP_SCOPE], jwks: pepKeys.jwks },
          ...[...algClients].map(([alg, k]) => ({ client_id: `alg-${alg}`, scopes: [ADMIN_SCOPE] as Array<'deputy:admin'>, jwks: { keys: [k.publicJwk] } })),
        ],
      },
      agents: [
        agentConfig('m-agent', agentKeys, { scopes: ['deputy.read'], audiences: [API] }),
        agentConfig('m-other', otherKeys, { scopes: ['deputy.read'], audiences: [API] }),
      ],
    },
  });
  metadata = await json(await fetch(`${deputy.issuer}/.well-known/oauth-authorization-server`));
  agent = await testAgent(deputy.issuer, 'm-agent', agentKeys);
});
afterAll(async () => {
  await deputy?.stop();
  await idp?.close();
});

/** A client_credentials token for a configured client (private_key_jwt, ES256). */
async function ccToken(clientId: string, keys: ClientKeys, scope: string): Promise<string> {
  const res = await form(`${deputy.url}/token`, {
    grant_type: 'client_credentials', scope, client_id: clientId, client_assertion_type: JWT_BEARER,
    client_assertion: await assertion(clientId, keys, deputy.issuer),
  });
  expect(res.status).toBe(200);
  return (await json(res)).access_token as string;
}

/** An agent token from a token exchange (a recorded, revocable token). */
async function agentToken(): Promise<string> {
  const tokens = await exchange(agent, { subject_token: await idp.oktaAccessToken(), subject_token_type: ACCESS_TOKEN_TYPE, resource: API, scope: 'deputy.read' });
  return tokens.access_token;
}

async function introspectAsAdmin(token: string): Promise<Json> {
  const res = await form(metadata.introspection_endpoint as string, { token, client_id: 'm-admin', client_assertion_type: JWT_BEARER, client_assertion: await assertion('m-admin', adminKeys, deputy.issuer) });
  expect(res.status).toBe(200);
  return json(res);
}

describe('discovery: one RFC 8414 document, every member true', () => {
  it('is the same document at /.well-known/oauth-authorization-server and /.well-known/openid-configuration', async () => {
    const openid = await json(await fetch(`${deputy.issuer}/.well-known/openid-configuration`));
    expect(openid).toEqual(metadata);
    expect(metadata.issuer).toBe(deputy.issuer);
  });

  it('advertises exactly the members Deputy implements: no OpenID Provider members', () => {
    expect(Object.keys(metadata).sort()).toEqual(EXPECTED_MEMBERS);
    for (const oidcOnly of ['claims_supported', 'subject_types_supported', 'id_token_signing_alg_values_supported', 'authorization_endpoint', 'userinfo_endpoint', 'code_challenge_methods_supported']) {
      expect(metadata, oidcOnly).not.toHaveProperty(oidcOnly);
    }
    expect(metadata.scopes_supported).not.toContain('openid');
    // RFC 8414 §2: REQUIRED; there is no authorization endpoint, so no response_type is supported.
    expect(metadata.response_types_supported).toEqual([]);
  });

  it('unmodified openid-client finds Deputy through either well-known URI', async () => {
    for (const algorithm of ['oidc', 'oauth2'] as const) {
      const cfg = await client.discovery(new URL(deputy.issuer), 'm-admin', {}, client.PrivateKeyJwt(adminKeys.privateKey), { algorithm, execute: [client.allowInsecureRequests] });
      expect(cfg.serverMetadata().token_endpoint, algorithm).toBe(metadata.token_endpoint);
      expect((await client.clientCredentialsGrant(cfg, { scope: ADMIN_SCOPE })).access_token, algorithm).toBeTruthy();
    }
  });

  it('every URL member is under the issuer and answers', async () => {
    const urls = Object.entries(metadata).filter(([k]) => k.endsWith('_endpoint') || k.endsWith('_uri'));
    expect(urls.map(([k]) => k).sort()).toEqual(['introspection_endpoint', 'jwks_uri', 'receipts_jwks_uri', 'revocation_endpoint', 'token_endpoint']);
    for (const [member, url] of urls) {
      expect(String(url).startsWith(`${deputy.issuer}/`), member).toBe(true);
      if (member.endsWith('_uri')) {
        const res = await fetch(url as string);
        expect(res.status, member).toBe(200);
        expect((await json(res)).keys.length, member).toBeGreaterThan(0);
      } else {
        // Each endpoint exists and authenticates clients first: an empty POST is 401 invalid_client.
        const res = await form(url as string, {});
        expect(res.status, member).toBe(401);
        expect((await json(res)).error, member).toBe('invalid_client');
      }
    }
  });

  it('every client-authentication method and signing algorithm works at each endpoint it is listed for', async () => {
    const token = await ccToken('m-admin', adminKeys, ADMIN_SCOPE);
    const endpoints = { token: { grant_type: 'client_credentials', scope: ADMIN_SCOPE }, introspection: { token }, revocation: { token: 'not-a-deputy-token' } } as const;
    for (const [endpoint, params] of Object.entries(endpoints)) {
      const methods = metadata[`${endpoint}_endpoint_auth_methods_supported`] as string[];
      const algs = metadata[`${endpoint}_endpoint_auth_signing_alg_values_supported`] as string[];
      expect(methods, endpoint).toEqual(['private_key_jwt']);
      expect(algs.length, endpoint).toBeGreaterThan(0);
      for (const alg of algs) {
        const key = algClients.get(alg);
        expect(key, `${endpoint}: no test client for advertised ${alg}`).toBeDefined();
        const res = await form(metadata[`${endpoint}_endpoint`] as string, {
          ...params, client_id: `alg-${alg}`, client_assertion_type: JWT_BEARER, client_assertion: await assertion(`alg-${alg}`, key!, deputy.issuer),
        });
        expect(res.status, `${endpoint} ${alg}`).toBe(200);
        if (endpoint === 'token') expect((await json(res)).access_token, alg).toEqual(expect.any(String));
        if (endpoint === 'introspection') expect((await json(res)).active, alg).toBe(true);
      }
    }
  });

  it('an algorithm that is not listed is refused', async () => {
    expect(metadata.token_endpoint_auth_signing_alg_values_supported).not.toContain('HS256');
    const hs = await new SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: 'HS256' }).setIssuer('m-admin').setSubject('m-admin').setAudience(deputy.issuer).setIssuedAt().setExpirationTime('60s').sign(new Uint8Array(32));
    const res = await form(metadata.token_endpoint as string, { grant_type: 'client_credentials', scope: ADMIN_SCOPE, client_id: 'm-admin', client_assertion_type: JWT_BEARER, client_assertion: hs });
    expect(res.status).toBe(401);
    expect((await json(res)).error).toBe('invalid_client');
  });

  it('every grant type listed issues a token', async () => {
    const grants = metadata.grant_types_supported as string[];
    expect([...grants].sort()).toEqual(['client_credentials', TOKEN_EXCHANGE].sort());
    expect(claimsOf(await ccToken('m-admin', adminKeys, ADMIN_SCOPE)).scope).toBe(ADMIN_SCOPE);
    expect(claimsOf(await agentToken())).toMatchObject({ client_id: 'm-agent', aud: API });
  });

  it('every scope listed can be obtained', async () => {
    const holders: Record<string, [string, ClientKeys]> = { [ADMIN_SCOPE]: ['m-admin', adminKeys], [PDP_SCOPE]: ['m-pep', pepKeys] };
    for (const scope of metadata.scopes_supported as string[]) {
      const holder = holders[scope];
      expect(holder, `no test client for advertised scope ${scope}`).toBeDefined();
      expect(claimsOf(await ccToken(holder![0], holder![1], scope)).scope).toBe(scope);
    }
  });

  it('every DPoP algorithm listed is accepted at the token endpoint, and an unlisted one is not', async () => {
    for (const alg of metadata.dpop_signing_alg_values_supported as string[]) {
      const key = await algKey(alg);
      const res = await form(metadata.token_endpoint as string, {
        grant_type: 'client_credentials', scope: ADMIN_SCOPE, client_id: 'm-admin', client_assertion_type: JWT_BEARER, client_assertion: await assertion('m-admin', adminKeys, deputy.issuer),
      }, { dpop: await dpopProofWith(key, metadata.token_endpoint as string) });
      expect(res.status, alg).toBe(200);
      const body = await json(res);
      expect(body.token_type, alg).toBe('DPoP');
      expect((claimsOf(body.access_token as string).cnf as { jkt: string }).jkt, alg).toBe(await calculateJwkThumbprint(key.publicJwk));
    }
    expect(metadata.dpop_signing_alg_values_supported).not.toContain('PS512');
    const refused = await form(metadata.token_endpoint as string, {
      grant_type: 'client_credentials', scope: ADMIN_SCOPE, client_id: 'm-admin', client_assertion_type: JWT_BEARER, client_assertion: await assertion('m-admin', adminKeys, deputy.issuer),
    }, { dpop: await dpopProofWith(await algKey('PS512'), metadata.token_endpoint as string) });
    expect(refused.status).toBe(400);
    expect((await json(refused)).error).toBe('invalid_dpop_proof');
  });
});

describe('client authentication at /token, /introspect, /revoke: 401 invalid_client', () => {
  const endpoints = ['token', 'introspect', 'revoke'] as const;
  const params = (endpoint: (typeof endpoints)[number], token: string): Record<string, string> =>
    endpoint === 'token' ? { grant_type: 'client_credentials', scope: ADMIN_SCOPE } : { token };

  const BASIC = /^Basic realm="[^"]+", error="invalid_client"/;
  const ca = (clientId: string, client_assertion: string) => ({ client_id: clientId, client_assertion_type: JWT_BEARER, client_assertion });
  /** A client assertion for m-admin with one claim changed. */
  const bent = async (claims: Record<string, unknown>, omit?: string) => {
    const payload: Record<string, unknown> = { iss: 'm-admin', sub: 'm-admin', aud: deputy.issuer, jti: randomUUID(), iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 60, ...claims };
    if (omit) delete payload[omit];
    return new SignJWT(payload).setProtectedHeader({ alg: 'ES256' }).sign(adminKeys.privateKey);
  };
  const replayed = { assertion: '' };

  /** Each way of not authenticating as the client named: the description's check, and the challenge expected. */
  const cases: Array<[string, (token: string) => Promise<{ body: Record<string, string>; headers?: Record<string, string> }>, RegExp, RegExp | null]> = [
    ['no credentials at all', async () => ({ body: {} }), /client authentication is required/, null],
    ['a client_id without an assertion', async () => ({ body: { client_id: 'm-admin' } }), /private_key_jwt/, null],
    ['an assertion signed with a key the client did not register', async () => ({ body: ca('m-admin', await assertion('m-admin', await clientKeys(), deputy.issuer)) }), /did not verify/, null],
    ['an expired assertion', async () => ({ body: ca('m-admin', await bent({ exp: Math.floor(Date.now() / 1000) - 600, iat: Math.floor(Date.now() / 1000) - 700 })) }), /did not verify/, null],
    ['an assertion that is not a JWT', async () => ({ body: ca('m-admin', 'not-a-jwt') }), /not a JWT/, null],
    ['an assertion for another audience', async () => ({ body: ca('m-admin', await bent({ aud: 'https://elsewhere.example.com' })) }), /"aud"/, null],
    ['an assertion without exp', async () => ({ body: ca('m-admin', await bent({}, 'exp')) }), /"exp"/, null],
    ['an assertion without jti', async () => ({ body: ca('m-admin', await bent({}, 'jti')) }), /"jti"/, null],
    ['an assertion signed with an algorithm not accepted', async () => ({ body: ca('m-admin', await new SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: 'HS256' }).setIssuer('m-admin').setSubject('m-admin').setAudience(deputy.issuer).setIssuedAt().setExpirationTime('60s').sign(new Uint8Array(32))) }), /algorithm/, null],
    ['a replayed assertion', async () => ({ body: ca('m-admin', replayed.assertion) }), /already used/, null],
    ['an unknown client', async () => ({ body: ca('nobody', await assertion('nobody', adminKeys, deputy.issuer)) }), /unknown or disabled client/, null],
    ['another client\'s assertion under this client_id', async () => ({ body: ca('m-admin', await assertion('m-pep', pepKeys, deputy.issuer)) }), /client_id does not match/, null],
    ['HTTP Basic, a method Deputy does not support', async () => ({ body: {}, headers: { authorization: `Basic ${Buffer.from('m-admin:secret').toString('base64')}` } }), /private_key_jwt/, BASIC],
    ['a malformed HTTP Basic header', async () => ({ body: {}, headers: { authorization: `Basic ${Buffer.from('no-colon').toString('base64')}` } }), /Authorization header/, BASIC],
    ['client_secret_post, a method Deputy does not support', async () => ({ body: { client_id: 'm-admin', client_secret: 'secret' } }), /private_key_jwt/, null],
    ['another client\'s access token as credentials', async (token) => ({ body: {}, headers: { authorization: `Bearer ${token}` } }), /Authorization header/, null],
  ];

  beforeAll(async () => {
    // Used once (successfully), so every later use is a replay.
    replayed.assertion = await assertion('m-admin', adminKeys, deputy.issuer);
    expect((await form(`${deputy.url}/token`, { grant_type: 'client_credentials', scope: ADMIN_SCOPE, ...ca('m-admin', replayed.assertion) })).status).toBe(200);
  });

  it.each(cases)('%s', async (_name, make, check, challenge) => {
    const revocable = await agentToken();
    const pepToken = await ccToken('m-pep', pepKeys, PDP_SCOPE);
    for (const endpoint of endpoints) {
      const { body, headers } = await make(pepToken);
      const res = await form(`${deputy.url}/${endpoint}`, { ...params(endpoint, revocable), ...body }, headers);
      expect(res.status, endpoint).toBe(401);
      expect(res.headers.get('cache-control'), endpoint).toMatch(/no-store/);
      const err = await json(res);
      expect(err.error, endpoint).toBe('invalid_client');
      expect(err.error_description, endpoint).toMatch(check);
      if (challenge) expect(res.headers.get('www-authenticate'), endpoint).toMatch(challenge);
      else expect(res.headers.get('www-authenticate'), endpoint).toBeNull();
    }
    // Nothing changed: the token the refused /revoke named is still live.
    expect((await introspectAsAdmin(revocable)).active).toBe(true);
  });
});

describe('revocation (RFC 7009 §2.1): a refusal is an error and changes nothing', () => {
  const revoke = async (clientId: string, keys: ClientKeys, token: string) =>
    form(metadata.revocation_endpoint as string, { token, client_id: clientId, client_assertion_type: JWT_BEARER, client_assertion: await assertion(clientId, keys, deputy.issuer) });

  it('another agent revoking an agent\'s token: 400 unauthorized_client, the token stays active', async () => {
    const token = await agentToken();
    const res = await revoke('m-other', otherKeys, token);
    expect(res.status).toBe(400);
    expect(await json(res)).toEqual({ error: 'unauthorized_client', error_description: expect.stringMatching(/not issued to the client/) });
    expect((await introspectAsAdmin(token)).active).toBe(true);
  });

  it('an agent revoking an admin client\'s token: 400 unauthorized_client', async () => {
    const adminToken = await ccToken('m-admin', adminKeys, ADMIN_SCOPE);
    const res = await revoke('m-agent', agentKeys, adminToken);
    expect(res.status).toBe(400);
    expect((await json(res)).error).toBe('unauthorized_client');
  });

  it('a PEP (authzen:evaluate only) may introspect any agent token but revoke none: 400 unauthorized_client; an admin may', async () => {
    const token = await agentToken();
    const res = await revoke('m-pep', pepKeys, token);
    expect(res.status).toBe(400);
    expect((await json(res)).error).toBe('unauthorized_client');
    expect((await introspectAsAdmin(token)).active).toBe(true);
    expect((await revoke('m-admin', adminKeys, token)).status).toBe(200);
    expect((await introspectAsAdmin(token)).active).toBe(false);
  });

  it('an operator client\'s client_credentials token is revocable too: a 200 that holds (refused at /admin at once, inactive)', async () => {
    const adminToken = await ccToken('m-admin', adminKeys, ADMIN_SCOPE);
    expect((await fetch(`${deputy.url}/admin/agents`, { headers: { authorization: `Bearer ${adminToken}` } })).status).toBe(200);
    expect((await revoke('m-admin', adminKeys, adminToken)).status).toBe(200);
    const refused = await fetch(`${deputy.url}/admin/agents`, { headers: { authorization: `Bearer ${adminToken}` } });
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);
    expect(await introspectAsAdmin(adminToken)).toEqual({ active: false });
  });

  it('an invalid token is a 200 (RFC 7009 §2.2); the token\'s own agent revokes it', async () => {
    expect((await revoke('m-other', otherKeys, 'not-a-token')).status).toBe(200);
    const token = await agentToken();
    expect((await revoke('m-agent', agentKeys, token)).status).toBe(200);
    expect(await introspectAsAdmin(token)).toEqual({ active: false });
  });
});

describe('Deputy\'s resources: RFC 6750 §3.1 challenges', () => {
  const surfaces: Array<[string, string, string]> = [
    ['POST', '/access/v1/evaluation', PDP_SCOPE],
    ['POST', '/access/v1/evaluations', PDP_SCOPE],
    ['POST', '/access/v1/search/subject', PDP_SCOPE],
    ['GET', '/admin/agents', ADMIN_SCOPE],
    ['GET', '/admin/policies', ADMIN_SCOPE],
    ['POST', '/admin/agents', ADMIN_SCOPE],
  ];
  const call = (method: string, path: string, authorization?: string) =>
    fetch(`${deputy.url}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...(authorization === undefined ? {} : { authorization }) },
      ...(method === 'POST' ? { body: '{}' } : {}),
    });

  it.each(surfaces)('%s %s without credentials, or with an unsupported scheme: Bearer challenge, no error code', async (method, path, scope) => {
    for (const authorization of [undefined, 'Basic bTpz']) {
      const res = await call(method, path, authorization);
      expect(res.status).toBe(401);
      const challenge = res.headers.get('www-authenticate')!;
      expect(challenge).toMatch(new RegExp(`^Bearer realm="deputy", scope="${scope}"`));
      expect(challenge).not.toMatch(/error=/);
      expect((await json(res)).error).toBe('invalid_token');
    }
  });

  it.each(surfaces)('%s %s with wrong credentials: error="invalid_token" in the scheme used', async (method, path) => {
    const res = await call(method, path, 'Bearer not-a-jwt');
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm="deputy", error="invalid_token", error_description="[^"]+"/);
    const malformed = await call(method, path, 'Bearer two words');
    expect(malformed.status).toBe(400);
    expect(malformed.headers.get('www-authenticate')).toMatch(/^Bearer realm="deputy", error="invalid_request"/);
  });

  it.each(surfaces)('%s %s with another client\'s token: 401 invalid_token', async (method, path, scope) => {
    // A PEP token at the admin API, an admin token at the PDP, an agent's token at either.
    const other = scope === ADMIN_SCOPE ? await ccToken('m-pep', pepKeys, PDP_SCOPE) : await ccToken('m-admin', adminKeys, ADMIN_SCOPE);
    for (const token of [other, await agentToken()]) {
      const res = await call(method, path, `Bearer ${token}`);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^(Bearer|DPoP) realm="deputy", error="invalid_token"/);
      expect((await json(res)).error).toBe('invalid_token');
    }
  });
});

describe('discovery with the code flow, metadata documents and ID-JAG on: exactly what issue 13 §2–3 add', () => {
  /** What §2–3 add to the document, and nothing else (RFC 8414 §2, RFC 9207 §3, RFC 7636 §6.2, CIMD draft). */
  const ADDED = ['authorization_endpoint', 'code_challenge_methods_supported', 'authorization_response_iss_parameter_supported', 'client_id_metadata_document_supported'];
  let flows: TestDeputy;
  let meta: Json;

  beforeAll(async () => {
    flows = await startTestDeputy({
      config: {
        trustedIssuers: [idp.issuerConfig('okta', { signIn: { clientId: 'deputy-signin' } })],
        oauth: {
          authorizationCode: { enabled: true, clientIdMetadataDocuments: { enabled: true, allowedHosts: ['mcp-client.example.com'] } },
          idJag: { issuers: ['okta'] },
        },
      },
    });
    meta = await json(await fetch(`${flows.issuer}/.well-known/oauth-authorization-server`));
  });
  afterAll(async () => {
    await flows?.stop();
  });

  it('lists the authorization endpoint, S256 only, RFC 9207 iss and metadata documents — and no OpenID Provider member', () => {
    expect(Object.keys(meta).sort()).toEqual([...EXPECTED_MEMBERS, ...ADDED].sort());
    expect(meta).toMatchObject({
      authorization_endpoint: `${flows.issuer}/auth`,
      response_types_supported: ['code'],
      code_challenge_methods_supported: ['S256'],
      authorization_response_iss_parameter_supported: true,
      client_id_metadata_document_supported: true,
    });
    expect([...(meta.grant_types_supported as string[])].sort()).toEqual(
      ['authorization_code', 'refresh_token', 'client_credentials', 'urn:ietf:params:oauth:grant-type:jwt-bearer', TOKEN_EXCHANGE].sort(),
    );
    // `none`: public metadata-document clients (DPoP required for them); nothing with a shared secret.
    expect([...(meta.token_endpoint_auth_methods_supported as string[])].sort()).toEqual(['none', 'private_key_jwt']);
    expect(meta.scopes_supported).not.toContain('openid');
  });

  it('the added endpoint answers: /auth refuses an unknown client (invalid_client), never a 404', async () => {
    const res = await fetch(`${flows.issuer}/auth?client_id=unknown&response_type=code`, { redirect: 'manual' });
    expect(res.status).toBe(400);
    expect((await json(res)).error).toBe('invalid_client');
  });
});
