/**
 * The authorization code flow (RFC 6749 §4.1 + PKCE S256) at Deputy's authorization endpoint,
 * driven by an openid-client agent (private_key_jwt, DPoP with `dpop_jkt`) and a cookie-jar
 * browser through the mock Okta's sign-in and Deputy's consent page; the token is used at the
 * gateway, refreshed with rotation; and the refusals.
 */
import { randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, decodeJwt } from 'jose';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, clientAssertion, dpopKeys, dpopProof, exchange, testAgent, type DpopKeys, type TestAgent } from '../support/agents.js';
import { adminSetup, clientKeys, oauthClient } from '../support/clients.js';
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
let admin: Awaited<ReturnType<typeof adminSetup>>;
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
  admin = await adminSetup();
  deputy = await startTestDeputy({
    env: { ECHO_KEY: 'echo-upstream-key-0123456789' },
    config: {
      server: { port },
      admin: { clients: [admin.config] },
      trustedIssuers: [idp.issuerConfig('okta', { signIn: { clientId: 'deputy-signin' } })],
      agents: [
        agentConfig('code-agent', keys, { scopes: ['deputy.read'], audiences: [`${issuer}/gw/echo`] }),
        agentConfig('trusted-agent', keys, { scopes: ['deputy.read'], audiences: [`${issuer}/gw/echo`] }),
        agentConfig('wide-agent', keys, { scopes: WIDE_SCOPES, audiences: [`${issuer}/gw/echo`] }),
      ],
      connections: [{ id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] }],
      oauth: { authorizationCode: { enabled: true, clients: [{ clientId: 'code-agent', redirectUris: [REDIRECT] }, { clientId: 'trusted-agent', redirectUris: [REDIRECT], preApproved: true }, { clientId: 'wide-agent', redirectUris: [REDIRECT], preApproved: true }] } },
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

/** 45 scopes of 50 characters: 2,294 characters together, more than a receipt field holds (2,048). */
const WIDE_SCOPES = Array.from({ length: 45 }, (_, i) => `wide.${String(i).padStart(2, '0')}.`.padEnd(50, 'x'));

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

  it('an agent granted many long scopes at once: the token carries them all, its receipt their reduction (a 500 before)', async () => {
    const wide = await testAgent(deputy.issuer, 'wide-agent', agent.keys);
    const verifier = client.randomPKCECodeVerifier();
    const url = client.buildAuthorizationUrl(wide.config, {
      redirect_uri: REDIRECT, scope: WIDE_SCOPES.join(' '), resource: gw('echo'), state: 'wide',
      code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    const res = await signedInAtIdp().visit(url.href, { stopAt: toClient });
    const back = new URL(res.location!);
    expect(back.searchParams.get('code')).toBeTruthy();
    const tokens = await client.authorizationCodeGrant(wide.config, back, { pkceCodeVerifier: verifier, expectedState: 'wide' }, undefined, { DPoP: wide.handle });
    expect(String(decodeJwt(tokens.access_token).scope).split(' ').sort()).toEqual([...WIDE_SCOPES].sort());
    const rows = await deputy.store.query<{ jws: string }>('SELECT jws FROM receipts WHERE agent_id = $1', ['wide-agent']);
    const scopes = rows.map((r) => String(decodeJwt(r.jws).scope ?? ''));
    expect(scopes).toHaveLength(1);
    expect(scopes[0]!.length).toBeLessThanOrEqual(2048);
    expect(scopes[0]).toMatch(/^wide\.\d\d\..*…#sha256:[A-Za-z0-9_-]{43}$/);
  });

  it('refuses a consent posted without the CSRF token', async () => {
    const browser = signedInAtIdp();
    const consent = await browser.visit((await authorizationRequest()).url.href, { stopAt: toClient });
    expect((await browser.submit(consent.url, { decision: 'approve' }, { origin: issuer })).status).toBe(403);
  });
});

/**
 * Every grant takes the proof Deputy's middleware verified (src/oauth/oidc-provider/token-dpop.ts):
 * one signature verification and one replay record per request (issue 16), and every refused
 * proof class is still refused on the code-flow grants, with the grant left untouched.
 */
describe('DPoP at /token: one verification per grant, every check kept', () => {
  /** DPoP proof signatures verified by the process (the WebCrypto verifies whose JWS header is `dpop+jwt`). */
  async function proofVerifies<T>(run: () => Promise<T>): Promise<{ result: T; verifies: number }> {
    const subtle = Object.getPrototypeOf(globalThis.crypto.subtle) as { verify: (...a: unknown[]) => Promise<boolean> };
    const original = subtle.verify;
    let verifies = 0;
    subtle.verify = function (this: unknown, ...args: unknown[]) {
      const data = Buffer.from(args[3] as Uint8Array).toString();
      const header = JSON.parse(Buffer.from(data.split('.')[0]!, 'base64url').toString() || '{}') as { typ?: string };
      if (header.typ === 'dpop+jwt') verifies += 1;
      return original.apply(this, args);
    };
    try {
      return { result: await run(), verifies };
    } finally {
      subtle.verify = original;
    }
  }

  /** Rows recorded under each replay namespace (Deputy's proofs, oidc-provider's assertions and proofs). */
  async function replayRows(): Promise<Record<string, number>> {
    const rows = await deputy.store.query<{ model: string; n: number }>("SELECT model, count(*)::int AS n FROM oidc_models WHERE model IN ('DPoPProof', 'ReplayDetection') GROUP BY model");
    return Object.fromEntries(rows.map((r) => [r.model, r.n]));
  }

  async function recorded<T>(run: () => Promise<T>): Promise<{ result: T; verifies: number; proofs: number; assertions: number }> {
    const before = await replayRows();
    const { result, verifies } = await proofVerifies(run);
    const after = await replayRows();
    return { result, verifies, proofs: (after.DPoPProof ?? 0) - (before.DPoPProof ?? 0), assertions: (after.ReplayDetection ?? 0) - (before.ReplayDetection ?? 0) };
  }

  it('authorization_code, refresh_token, client_credentials and token exchange each verify and record the proof once', async () => {
    const request = await authorizationRequest();
    const back = await authorize(signedInAtIdp(), request);
    const code = await recorded(() => client.authorizationCodeGrant(agent.config, back, { pkceCodeVerifier: request.verifier, expectedState: request.state }, undefined, { DPoP: agent.handle }));
    expect(decodeJwt(code.result.access_token).cnf).toEqual({ jkt });
    const refresh = await recorded(() => client.refreshTokenGrant(agent.config, code.result.refresh_token!, undefined, { DPoP: agent.handle }));
    expect(decodeJwt(refresh.result.access_token).cnf).toEqual({ jkt });
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    const tx = await recorded(() => exchange(agent, { subject_token: subject, resource: gw('echo'), scope: 'deputy.read' }));
    const adminConfig = await oauthClient(deputy.issuer, admin.clientId, admin.keys);
    const adminDpop = client.getDPoPHandle(adminConfig, await client.randomDPoPKeyPair('ES256'));
    const cc = await recorded(() => client.clientCredentialsGrant(adminConfig, { scope: 'deputy:admin' }, { DPoP: adminDpop }));
    expect(decodeJwt(cc.result.access_token).cnf).toBeDefined();
    // One proof verification and one proof record per grant; the only other record is the client assertion's.
    const counts = (r: { verifies: number; proofs: number; assertions: number }) => ({ verifies: r.verifies, proofs: r.proofs, assertions: r.assertions });
    expect({ code: counts(code), refresh: counts(refresh), exchange: counts(tx), client_credentials: counts(cc) }).toEqual({
      code: { verifies: 1, proofs: 1, assertions: 1 },
      refresh: { verifies: 1, proofs: 1, assertions: 1 },
      exchange: { verifies: 1, proofs: 1, assertions: 1 },
      client_credentials: { verifies: 1, proofs: 1, assertions: 1 },
    });
  });

  /** A raw code-flow `/token` request of the agent (private_key_jwt), with the `DPoP` header values given. */
  async function rawGrant(form: Record<string, string>, proofs: readonly string[]): Promise<{ status: number; body: Record<string, unknown>; nonce: string | null }> {
    const headers = new Headers({ 'content-type': 'application/x-www-form-urlencoded' });
    for (const p of proofs) headers.append('dpop', p);
    const body = new URLSearchParams({
      ...form,
      client_id: agent.id,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await clientAssertion(agent, deputy.issuer),
    });
    const res = await fetch(`${deputy.url}/token`, { method: 'POST', headers, body });
    return { status: res.status, body: (await res.json()) as Record<string, unknown>, nonce: res.headers.get('dpop-nonce') };
  }

  /** Each class of bad proof, built for the token endpoint with the agent's DPoP key, and the error it must get. */
  async function badProofs(keys: DpopKeys): Promise<Array<[string, string[], 'invalid_dpop_proof' | 'use_dpop_nonce']>> {
    const htu = `${deputy.issuer}/token`;
    const valid = await dpopProof(keys, htu);
    const [h, p, sig] = valid.split('.');
    const forged = `${h}.${p}.${sig!.startsWith('A') ? 'B' : 'A'}${sig!.slice(1)}`;
    const withPrivate = await dpopProof(keys, htu, { keys: { ...keys, publicJwk: { ...keys.publicJwk, d: 'AAAA' } } });
    return [
      ['a bad signature', [forged], 'invalid_dpop_proof'],
      ['another method (htm)', [await dpopProof(keys, htu, { htm: 'GET' })], 'invalid_dpop_proof'],
      ['another URL (htu)', [await dpopProof(keys, `${deputy.issuer}/gw/echo`)], 'invalid_dpop_proof'],
      ['another host (htu)', [await dpopProof(keys, htu.replace('localhost', '127.0.0.1'))], 'invalid_dpop_proof'],
      ['another typ', [await dpopProof(keys, htu, { typ: 'JWT' })], 'invalid_dpop_proof'],
      ['a private key in the header', [withPrivate], 'invalid_dpop_proof'],
      ['two proofs', [valid, await dpopProof(keys, htu)], 'invalid_dpop_proof'],
      ['an iat outside the window', [await dpopProof(keys, htu, { iat: Math.floor(Date.now() / 1000) - 600 })], 'use_dpop_nonce'],
      ['a nonce that is not the server\'s', [await dpopProof(keys, htu, { nonce: randomUUID() })], 'use_dpop_nonce'],
    ];
  }

  /** Sends each bad proof with `form`, then replays a proof spent on a refused request; every one refused with its error. */
  async function expectEveryBadProofRefused(form: Record<string, string>, refused: [form: Record<string, string>, error: string]): Promise<void> {
    for (const [what, proofs, error] of await badProofs(agent.dpop)) {
      const res = await rawGrant(form, proofs);
      expect({ what, status: res.status, error: res.body.error }).toEqual({ what, status: 400, error });
      if (error === 'use_dpop_nonce') expect(res.nonce).toBeTruthy();
    }
    // jti replay (RFC 9449 §11.1): a proof spent on a refused request is not accepted again.
    const spent = await dpopProof(agent.dpop, `${deputy.issuer}/token`);
    expect((await rawGrant(refused[0], [spent])).body.error).toBe(refused[1]);
    const replay = await rawGrant(form, [spent]);
    expect({ status: replay.status, error: replay.body.error, description: replay.body.error_description }).toEqual({ status: 400, error: 'invalid_dpop_proof', description: expect.stringMatching(/already been used/) });
  }

  it('authorization_code: each refused proof gets invalid_dpop_proof / use_dpop_nonce, and the code stays redeemable', async () => {
    const request = await authorizationRequest();
    const back = await authorize(signedInAtIdp(), request);
    const form = { grant_type: 'authorization_code', code: back.searchParams.get('code')!, redirect_uri: REDIRECT, code_verifier: request.verifier };
    await expectEveryBadProofRefused(form, [{ ...form, code_verifier: client.randomPKCECodeVerifier() }, 'invalid_grant']);
    const ok = await rawGrant(form, [await dpopProof(agent.dpop, `${deputy.issuer}/token`)]);
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(decodeJwt(ok.body.access_token as string).cnf).toEqual({ jkt });
  });

  it('authorization_code: the code\'s dpop_jkt (RFC 9449 §10) binds the redemption even with a valid proof of another key', async () => {
    const request = await authorizationRequest();
    const back = await authorize(signedInAtIdp(), request);
    const form = { grant_type: 'authorization_code', code: back.searchParams.get('code')!, redirect_uri: REDIRECT, code_verifier: request.verifier };
    const none = await rawGrant(form, []);
    expect({ status: none.status, error: none.body.error }).toEqual({ status: 400, error: 'invalid_grant' });
    const other = await rawGrant(form, [await dpopProof(await dpopKeys(), `${deputy.issuer}/token`)]);
    expect({ status: other.status, error: other.body.error }).toEqual({ status: 400, error: 'invalid_grant' });
    expect(other.body.access_token).toBeUndefined();
  });

  it('refresh_token: each refused proof gets invalid_dpop_proof / use_dpop_nonce, and the refresh token is neither rotated nor revoked', async () => {
    const request = await authorizationRequest();
    const back = await authorize(signedInAtIdp(), request);
    const tokens = await client.authorizationCodeGrant(agent.config, back, { pkceCodeVerifier: request.verifier, expectedState: request.state }, undefined, { DPoP: agent.handle });
    const form = { grant_type: 'refresh_token', refresh_token: tokens.refresh_token! };
    await expectEveryBadProofRefused(form, [{ ...form, scope: 'deputy.write' }, 'invalid_scope']);
    const ok = await rawGrant(form, [await dpopProof(agent.dpop, `${deputy.issuer}/token`)]);
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(decodeJwt(ok.body.access_token as string).cnf).toEqual({ jkt });
  });
});
