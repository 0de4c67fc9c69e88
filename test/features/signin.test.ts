/**
 * Enterprise sign-in (Deputy as the OIDC relying party of a trusted IdP), driven through a
 * cookie-jar browser against the mock Okta's authorization code flow: `private_key_jwt` with
 * Deputy's own key, the session cookie, the user identified as a subject token would be,
 * sign-out with CSRF protection, and the refusals.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { clientKeys } from '../support/clients.js';
import { ENTRA_CLIENT_APP_ID, ENTRA_TENANT, ENTRA_USER_OID, OKTA_USER_ID, startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { Browser } from '../support/oauth-provider.js';
import { freePort } from '../support/net.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { decodeJwt } from 'jose';

let idp: MockIdp;
let deputy: TestDeputy;
let issuer: string;
let agent: TestAgent;

function signedInAtIdp(uid = OKTA_USER_ID): Browser {
  const browser = new Browser();
  browser.setCookie('127.0.0.1', 'okta_user', uid);
  return browser;
}

beforeAll(async () => {
  idp = await startMockIdp();
  const port = await freePort();
  issuer = `http://localhost:${port}`;
  const keys = await clientKeys();
  deputy = await startTestDeputy({
    config: {
      server: { port },
      // private_key_jwt (the default): Deputy signs its client assertions with its own key, published at /jwks.
      trustedIssuers: [idp.issuerConfig('okta', { signIn: { clientId: 'deputy-signin' } })],
      agents: [agentConfig('agent-a', keys, { scopes: ['deputy.read'], audiences: ['https://api.example.com'] })],
    },
  });
  idp.oktaSignIn.registerClient({ clientId: 'deputy-signin', redirectUri: `${issuer}/signin/callback`, jwksUri: `${deputy.url}/jwks` });
  idp.oktaSignIn.setUser(OKTA_USER_ID, { email: 'alice@example.com', name: 'Alice Example', groups: ['engineering'] });
  agent = await testAgent(deputy.issuer, 'agent-a', keys);
});
afterAll(async () => {
  await deputy?.stop();
  await idp?.close();
});

describe('sign-in at a trusted IdP', () => {
  it('signs the user in (code + PKCE S256 + state + nonce, private_key_jwt) as the same user id a subject token names', async () => {
    const browser = signedInAtIdp();
    const toIdp = await browser.visit(`${issuer}/signin?return_to=/signin/session`, { stopAt: (next) => next.pathname.endsWith('/v1/authorize') });
    const authorize = new URL(toIdp.location!);
    expect(authorize.origin).toBe(idp.base);
    expect(Object.fromEntries(authorize.searchParams)).toMatchObject({
      client_id: 'deputy-signin', response_type: 'code', redirect_uri: `${issuer}/signin/callback`, code_challenge_method: 'S256',
      state: expect.any(String), nonce: expect.any(String), code_challenge: expect.any(String), scope: expect.stringContaining('openid'),
    });
    const done = await browser.visit(authorize.href);
    expect(done.status).toBe(200);
    expect(done.url).toBe(`${issuer}/signin/session`);
    // The token exchange's identity of the same Okta user: one user id for both paths.
    const token = (await exchange(agent, { subject_token: await idp.oktaAccessToken(), resource: 'https://api.example.com' })).access_token;
    const userId = decodeJwt(token).sub!;
    expect(userId).toBe(`okta:${new URL(idp.base).host}:${OKTA_USER_ID}`);
    expect(done.body).toContain(`<code>${userId}</code>`);
    expect(done.body).toContain('alice@example.com');
    expect(idp.oktaSignIn.redeemed['deputy-signin']).toBeGreaterThanOrEqual(1);
    // The session cookie: opaque (JWE), HttpOnly, SameSite=Lax, the whole site.
    const session = browser.cookies('localhost').get('deputy_session')!;
    expect(session.split('.')).toHaveLength(5);
    expect(session).not.toContain('alice');
  });

  it('sets the cookies HttpOnly and SameSite=Lax, the transaction cookie only under /signin', async () => {
    const res = await fetch(`${issuer}/signin`, { redirect: 'manual' });
    expect(res.status).toBe(302);
    const [tx] = res.headers.getSetCookie();
    expect(tx).toMatch(/^deputy_signin=[^;]+; Path=\/signin; Max-Age=600; HttpOnly; SameSite=Lax$/);
    expect(res.headers.get('cache-control')).toBe('no-store');
  });

  it('never redirects off-site after sign-in (open redirect)', async () => {
    for (const target of ['//evil.example/x', 'https://evil.example/', '/\\evil.example', 'javascript:alert(1)']) {
      const browser = signedInAtIdp();
      const done = await browser.visit(`${issuer}/signin?return_to=${encodeURIComponent(target)}`);
      expect(done.url).toBe(`${issuer}/signin/session`);
    }
  });

  it('refuses a callback this browser did not start, a wrong state, a replayed code; nothing signs in', async () => {
    const browser = signedInAtIdp();
    const toIdp = await browser.visit(`${issuer}/signin`, { stopAt: (next) => next.pathname.endsWith('/v1/authorize') });
    const back = await browser.visit(toIdp.location!, { stopAt: (next) => next.pathname === '/signin/callback' });
    const callback = new URL(back.location!);
    expect(callback.searchParams.get('iss')).toBe(idp.oktaIssuer);

    // Another browser (login CSRF): no transaction cookie.
    const stranger = await new Browser().visit(callback.href);
    expect(stranger.status).toBe(400);
    expect(JSON.parse(stranger.body)).toMatchObject({ error: 'invalid_request', error_description: expect.stringMatching(/not started in this browser/) });

    // This browser, but a tampered state.
    const tampered = new URL(callback);
    tampered.searchParams.set('state', 'x'.repeat(43));
    const wrong = await browser.visit(tampered.href);
    expect(wrong.status).toBe(400);
    expect(JSON.parse(wrong.body)).toMatchObject({ error: 'invalid_request' });
    expect(browser.cookies('localhost').has('deputy_session')).toBe(false);
    // The transaction was spent by the failed attempt: the genuine response is refused too.
    expect((await browser.visit(callback.href)).status).toBe(400);
  });

  it('a user who cancels at the IdP is not signed in (access_denied)', async () => {
    idp.oktaSignIn.denyNext();
    const browser = signedInAtIdp();
    const res = await browser.visit(`${issuer}/signin`);
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'access_denied', error_description: expect.stringMatching(/access_denied/) });
    expect(browser.cookies('localhost').has('deputy_session')).toBe(false);
  });

  it('an ID token with an over-long sub or a token-shaped identity attribute is refused (access_denied naming the claim, never quoting it): no session', async () => {
    const jws = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4eHh4eHgifQ.c2lnbmF0dXJlc2ln';
    const long = 'u'.repeat(256);
    idp.oktaSignIn.setUser(long, { email: 'long@example.com' });
    idp.oktaSignIn.setUser('00u-shaped', { email: jws, name: 'Shaped' });
    for (const [uid, claim, max] of [[long, 'sub', 255], ['00u-shaped', 'email', 1024]] as const) {
      const browser = signedInAtIdp(uid);
      const res = await browser.visit(`${issuer}/signin?return_to=/signin/session`);
      expect(res.status, claim).toBe(403);
      const body = JSON.parse(res.body) as { error: string; error_description: string };
      expect(body.error).toBe('access_denied');
      expect(body.error_description).toMatch(new RegExp(`the sign-in ID token's "${claim}" claim is malformed: it must be a non-empty string of at most ${max} characters, not shaped like a token`));
      expect(res.body).not.toContain(jws);
      expect(res.body).not.toContain(long);
      expect(browser.cookies('localhost').has('deputy_session')).toBe(false);
      expect((await browser.visit(`${issuer}/signin/session`)).body).toContain('Not signed in');
    }
  });

  it('a forged or tampered session cookie is no session', async () => {
    const browser = signedInAtIdp();
    await browser.visit(`${issuer}/signin`);
    const session = browser.cookies('localhost').get('deputy_session')!;
    const parts = session.split('.');
    parts[3] = parts[3]!.slice(0, -2) + (parts[3]!.endsWith('AA') ? 'AB' : 'AA');
    const forged = new Browser();
    forged.setCookie('localhost', 'deputy_session', parts.join('.'));
    expect((await forged.visit(`${issuer}/signin/session`)).body).toContain('Not signed in');
  });

  it('sign-out needs the session\'s CSRF token and Deputy\'s origin', async () => {
    const browser = signedInAtIdp();
    const page = await browser.visit(`${issuer}/signin?return_to=/signin/session`);
    const csrf = /name="csrf" value="([^"]+)"/.exec(page.body)![1]!;
    expect((await browser.submit(`${issuer}/signout`, {})).status).toBe(403);
    expect((await browser.submit(`${issuer}/signout`, { csrf: 'wrong' })).status).toBe(403);
    expect((await browser.submit(`${issuer}/signout`, { csrf }, { origin: 'https://evil.example' })).status).toBe(403);
    expect(browser.cookies('localhost').has('deputy_session')).toBe(true);
    const out = await browser.submit(`${issuer}/signout`, { csrf }, { origin: new URL(issuer).origin });
    expect(out.status).toBe(200);
    expect(browser.cookies('localhost').has('deputy_session')).toBe(false);
    expect((await browser.visit(`${issuer}/signin/session`)).body).toContain('Not signed in');
  });

  it('refuses an unknown issuer, and a form that is not a form', async () => {
    const res = await fetch(`${issuer}/signin?issuer=nope`, { redirect: 'manual' });
    expect(res.status).toBe(404);
    const json = await fetch(`${issuer}/signout`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(json.status).toBe(415);
  });
});

describe('sign-in at an Entra ID tenant', () => {
  let entraDeputy: TestDeputy;
  let entraIssuer: string;

  beforeAll(async () => {
    const port = await freePort();
    entraIssuer = `http://localhost:${port}`;
    entraDeputy = await startTestDeputy({
      env: { ENTRA_SIGNIN_SECRET: 'entra-signin-secret-0123456789' },
      config: {
        server: { port },
        trustedIssuers: [
          idp.issuerConfig('entra', {
            issuer: `${idp.base}/${ENTRA_TENANT}/v2.0`, tenants: undefined, acceptV1: false,
            signIn: { clientId: ENTRA_CLIENT_APP_ID, clientAuth: 'client_secret_post', secret: { env: 'ENTRA_SIGNIN_SECRET' } },
          }),
          idp.issuerConfig('okta', { signIn: { clientId: 'deputy-signin' } }),
        ],
      },
    });
    idp.entraSignIn.registerClient({ clientId: ENTRA_CLIENT_APP_ID, redirectUri: `${entraIssuer}/signin/callback`, secret: 'entra-signin-secret-0123456789' });
  });
  afterAll(async () => {
    await entraDeputy?.stop();
  });

  it('offers a choice of IdPs, and identifies an Entra user by tenant and object id (client_secret_post from the vault)', async () => {
    const chooser = await fetch(`${entraIssuer}/signin?return_to=/signin/session`);
    const body = await chooser.text();
    expect(body).toContain('/signin?issuer=entra&amp;return_to=%2Fsignin%2Fsession');
    expect(body).toContain('/signin?issuer=okta');
    const browser = new Browser();
    browser.setCookie('127.0.0.1', 'entra_user', ENTRA_USER_OID);
    const done = await browser.visit(`${entraIssuer}/signin?issuer=entra&return_to=/signin/session`);
    expect(done.status).toBe(200);
    expect(done.body).toContain(`<code>entra:${ENTRA_TENANT}:${ENTRA_USER_OID}</code>`);
    // The secret is in the vault, encrypted; never in a log.
    expect(entraDeputy.logs.join('')).not.toContain('entra-signin-secret-0123456789');
    expect(await entraDeputy.store.query("SELECT kind FROM vault_secrets WHERE handle = 'signin_secret_entra'")).toEqual([{ kind: 'signin_client_secret' }]);
  });
});

describe('sign-in configuration', () => {
  it('refuses to start when a sign-in client secret is missing, naming the option', async () => {
    await expect(startTestDeputy({
      config: { trustedIssuers: [idp.issuerConfig('okta', { signIn: { clientId: 'x', clientAuth: 'client_secret_basic', secret: { env: 'NOT_SET_SIGNIN_SECRET' } } })] },
    })).rejects.toMatchObject({ name: 'ConfigError', message: expect.stringMatching(/trustedIssuers\.okta\.signIn\.secret: .*NOT_SET_SIGNIN_SECRET/) });
  });
});
