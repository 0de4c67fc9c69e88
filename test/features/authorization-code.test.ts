/**
 * The authorization code flow (RFC 6749 §4.1 + PKCE S256) at Deputy's authorization endpoint,
 * driven by an openid-client agent (private_key_jwt, DPoP with `dpop_jkt`) and a cookie-jar
 * browser through the mock Okta's sign-in and Deputy's consent page; the token is used at the
 * gateway, refreshed with rotation; and the refusals.
 */
import { calculateJwkThumbprint, decodeJwt } from 'jose';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { clientKeys } from '../support/clients.js';
import { OKTA_USER_ID, startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { Browser } from '../support/oauth-provider.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
let idp: MockIdp;
let up: MockUpstream;
let deputy: TestDeputy;
let issuer: string;
let agent: TestAgent;
let jkt: string;
const gw = (c: string) => `${issuer}/gw/${c}`;

function signedInAtIdp(uid = OKTA_USER_ID): Browser {
  const browser = new Browser();
  browser.setCookie('127.0.0.1', 'okta_user', uid);
  return browser;
}

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMockUpstream();
  const port = await freePort();
  issuer = `http://localhost:${port}`;
  const keys = await clientKeys();
  deputy = await startTestDeputy({
    env: { ECHO_KEY: 'echo-upstream-key-0123456789' },
    config: {
      server: { port },
      trustedIssuers: [idp.issuerConfig('okta', { signIn: { clientId: 'deputy-signin' } })],
      agents: [
        agentConfig('code-agent', keys, { scopes: ['deputy.read'], audiences: [`${issuer}/gw/echo`] }),
        agentConfig('trusted-agent', keys, { scopes: ['deputy.read'], audiences: [`${issuer}/gw/echo`] }),
      ],
      connections: [{ id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] }],
      oauth: { authorizationCode: { enabled: true, clients: [{ clientId: 'code-agent', redirectUris: [REDIRECT] }, { clientId: 'trusted-agent', redirectUris: [REDIRECT], preApproved: true }] } },
    },
  });
  idp.oktaSignIn.registerClient({ clientId: 'deputy-signin', redirectUri: `${issuer}/signin/callback`, jwksUri: `${deputy.url}/jwks` });
  agent = await testAgent(deputy.issuer, 'code-agent', keys);
  jkt = await calculateJwkThumbprint(agent.dpop.publicJwk);
});
afterAll(async () => {
  await deputy?.stop();
  await up?.close();
  await idp?.close();
});

interface Authorization {
  url: URL;
  verifier: string;
  state: string;
}

async function authorizationRequest(params: Record<string, string | undefined> = {}): Promise<Authorization> {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const all: Record<string, string> = {
    redirect_uri: REDIRECT, scope: 'deputy.read', resource: gw('echo'), state, dpop_jkt: jkt,
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  };
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined) delete all[k];
    else all[k] = v;
  }
  return { url: client.buildAuthorizationUrl(agent.config, all), verifier, state };
}

const toClient = (next: URL) => next.href.startsWith(REDIRECT);

/** Through sign-in to the consent page, then the decision; resolves with the redirect back to the client. */
async function authorize(browser: Browser, request: Authorization, decision: 'approve' | 'deny' = 'approve'): Promise<URL> {
  const consent = await browser.visit(request.url.href, { stopAt: toClient });
  expect(consent.status).toBe(200);
  expect(consent.url).toMatch(new RegExp(`^${issuer}/interaction/`));
  const csrf = /name="csrf" value="([^"]+)"/.exec(consent.body)![1]!;
  const decided = await browser.submit(consent.url, { csrf, decision }, { origin: issuer });
  expect(decided.status).toBe(303);
  const back = await browser.visit(decided.location!, { stopAt: toClient });
  return new URL(back.location!);
}

describe('authorization code + PKCE for agents', () => {
  it('advertises the code flow in its RFC 8414 metadata', async () => {
    const meta = (await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    expect(meta).toMatchObject({
      authorization_endpoint: `${issuer}/auth`,
      response_types_supported: ['code'],
      code_challenge_methods_supported: ['S256'],
      authorization_response_iss_parameter_supported: true,
    });
    expect(meta.grant_types_supported).toEqual(expect.arrayContaining(['authorization_code', 'refresh_token']));
  });

  it('signs the user in, shows consent, and issues a DPoP-bound token shaped like an exchanged one; usable at the gateway; refresh rotates', async () => {
    const request = await authorizationRequest();
    const browser = signedInAtIdp();
    const consent = await browser.visit(request.url.href, { stopAt: toClient });
    // The consent page names the client, the scope and the resource.
    expect(consent.body).toContain('code-agent');
    expect(consent.body).toContain('deputy.read');
    expect(consent.body).toContain(gw('echo'));
    expect(consent.body).toContain('127.0.0.1:9');

    const back = await authorize(browser, request);
    expect(back.searchParams.get('iss')).toBe(issuer); // RFC 9207
    expect(back.searchParams.get('state')).toBe(request.state);
    const tokens = await client.authorizationCodeGrant(agent.config, back, { pkceCodeVerifier: request.verifier, expectedState: request.state }, undefined, { DPoP: agent.handle });
    expect(tokens.token_type).toBe('dpop');
    const claims = decodeJwt(tokens.access_token);
    expect(claims).toMatchObject({
      sub: `okta:${new URL(idp.base).host}:${OKTA_USER_ID}`,
      act: { sub: 'code-agent' },
      client_id: 'code-agent',
      aud: gw('echo'),
      scope: 'deputy.read',
      cnf: { jkt },
    });
    const [record] = await deputy.store.query<{ agent_id: string; chain: string[]; cnf_jkt: string }>('SELECT agent_id, chain, cnf_jkt FROM token_records WHERE jti = $1', [claims.jti]);
    expect(record).toEqual({ agent_id: 'code-agent', chain: ['code-agent'], cnf_jkt: jkt });
    const receipts = (await deputy.store.query<{ jws: string }>("SELECT jws FROM receipts WHERE agent_id = 'code-agent'")).map((r) => decodeJwt(r.jws));
    expect(receipts).toContainEqual(expect.objectContaining({ event: 'authorization_code', action: 'delegate', decision: 'permit', token_id: claims.jti, chain: ['code-agent'] }));

    const res = await client.fetchProtectedResource(agent.config, tokens.access_token, new URL(`${gw('echo')}/things`), 'GET', null, new Headers(), { DPoP: agent.handle });
    expect(res.status).toBe(200);
    expect(up.requests.at(-1)!.headers['x-api-key']).toBe('echo-upstream-key-0123456789');

    // Refresh: a new recorded token; the old refresh token is spent (rotation), its reuse refused.
    const refreshed = await client.refreshTokenGrant(agent.config, tokens.refresh_token!, undefined, { DPoP: agent.handle });
    expect(decodeJwt(refreshed.access_token)).toMatchObject({ act: { sub: 'code-agent' }, cnf: { jkt } });
    expect(refreshed.refresh_token).not.toBe(tokens.refresh_token);
    expect(await deputy.store.query('SELECT 1 FROM token_records WHERE jti = $1', [decodeJwt(refreshed.access_token).jti])).toHaveLength(1);
    await expect(client.refreshTokenGrant(agent.config, tokens.refresh_token!, undefined, { DPoP: agent.handle })).rejects.toMatchObject({ error: 'invalid_grant' });

    // Revocable like an exchanged token: the record's cascade, and the gateway refuses it.
    const current = refreshed.access_token;
    expect(await deputy.records.revokeCascade(decodeJwt(current).jti!, 'test')).toContain(decodeJwt(current).jti);
    deputy.revocations.forget();
    const before = up.requests.length;
    const revoked = await client.fetchProtectedResource(agent.config, current, new URL(`${gw('echo')}/things`), 'GET', null, new Headers(), { DPoP: agent.handle }).catch((e: unknown) => e);
    expect(revoked).toMatchObject({ status: 401 });
    expect(up.requests.length).toBe(before);
  });

  it('a code-flow agent keeps its token exchange grant', async () => {
    const tokens = await exchange(agent, { subject_token: await idp.oktaAccessToken({ scp: ['deputy.read'] }), resource: gw('echo'), scope: 'deputy.read' });
    expect(decodeJwt(tokens.access_token)).toMatchObject({ act: { sub: 'code-agent' }, aud: gw('echo') });
  });

  it('grants no OpenID Connect scope: openid is ignored, no ID token is issued', async () => {
    const request = await authorizationRequest({ scope: 'openid deputy.read' });
    const back = await authorize(signedInAtIdp(), request);
    const tokens = await client.authorizationCodeGrant(agent.config, back, { pkceCodeVerifier: request.verifier, expectedState: request.state }, undefined, { DPoP: agent.handle });
    expect(tokens.id_token).toBeUndefined();
    expect(decodeJwt(tokens.access_token).scope).toBe('deputy.read');
  });

  it('refuses a code redeemed with another DPoP key than dpop_jkt named', async () => {
    const request = await authorizationRequest();
    const back = await authorize(signedInAtIdp(), request);
    const other = client.getDPoPHandle(agent.config, await client.randomDPoPKeyPair('ES256'));
    await expect(client.authorizationCodeGrant(agent.config, back, { pkceCodeVerifier: request.verifier, expectedState: request.state }, undefined, { DPoP: other })).rejects.toMatchObject({ error: 'invalid_grant' });
  });

  it('consent denied: the client gets access_denied and no code', async () => {
    const back = await authorize(signedInAtIdp(), await authorizationRequest(), 'deny');
    expect(back.searchParams.get('error')).toBe('access_denied');
    expect(back.searchParams.get('code')).toBeNull();
    expect(back.searchParams.get('iss')).toBe(issuer);
  });

  it('refuses no PKCE, plain PKCE, no resource and a resource the client may not have, at the client\'s redirect URI', async () => {
    const cases: Array<[Record<string, string | undefined>, string]> = [
      [{ code_challenge: undefined, code_challenge_method: undefined }, 'invalid_request'],
      [{ code_challenge_method: 'plain' }, 'invalid_request'],
      [{ resource: undefined }, 'invalid_target'],
      [{ resource: gw('other') }, 'invalid_target'],
      [{ resource: `${issuer}/admin` }, 'invalid_target'],
    ];
    for (const [params, error] of cases) {
      const res = await signedInAtIdp().visit((await authorizationRequest(params)).url.href, { stopAt: toClient });
      const back = new URL(res.location!);
      expect({ params, error: back.searchParams.get('error') }).toEqual({ params, error });
      expect(back.searchParams.get('code')).toBeNull();
    }
  });

  it('refuses a redirect URI the client did not register, without redirecting', async () => {
    const res = await signedInAtIdp().visit((await authorizationRequest({ redirect_uri: 'https://evil.example/cb' })).url.href, { stopAt: () => true });
    expect(res.status).toBe(400);
    expect(res.location).toBeUndefined();
  });

  it('an operator-pre-approved client gets its code without a consent page (the user still signs in)', async () => {
    const trusted = await testAgent(deputy.issuer, 'trusted-agent', agent.keys);
    const verifier = client.randomPKCECodeVerifier();
    const url = client.buildAuthorizationUrl(trusted.config, {
      redirect_uri: REDIRECT, scope: 'deputy.read', resource: gw('echo'), state: 'st',
      code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    const browser = signedInAtIdp();
    const res = await browser.visit(url.href, { stopAt: toClient });
    const back = new URL(res.location!);
    expect(back.searchParams.get('code')).toBeTruthy();
    expect(browser.cookies('localhost').has('deputy_session')).toBe(true);
    const tokens = await client.authorizationCodeGrant(trusted.config, back, { pkceCodeVerifier: verifier, expectedState: 'st' }, undefined, { DPoP: trusted.handle });
    expect(decodeJwt(tokens.access_token)).toMatchObject({ act: { sub: 'trusted-agent' } });
  });

  it('refuses a consent posted without the CSRF token', async () => {
    const browser = signedInAtIdp();
    const consent = await browser.visit((await authorizationRequest()).url.href, { stopAt: toClient });
    expect((await browser.submit(consent.url, { decision: 'approve' }, { origin: issuer })).status).toBe(403);
  });
});
