/**
 * Client ID Metadata Documents at Deputy's authorization endpoint: documents served over https
 * by a local server (a throwaway CA-less self-signed certificate, trusted through `caFile`;
 * loopback allowed by `allowPrivateAddresses`, as only tests may). A good document is accepted
 * and named on the consent page; refusals for a host not allow-listed, an oversized, redirecting,
 * non-JSON or mismatching document, shared-secret authentication, a redirect URI not in the
 * document, a public client without DPoP, and — with the SSRF protection on — a private address.
 *
 * And the whole flow for such a client (an openid-client public client with DPoP): its derived
 * registry agent (`cimd-…`) is `act.sub`, the token is recorded, receipted, usable at the gateway,
 * refreshed with rotation and revoked in cascade; a disabled client is refused at `/auth`, `/token`
 * and the gateway, and stays disabled when its document is seen again.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, decodeJwt } from 'jose';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OKTA_USER_ID, startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { Browser } from '../support/oauth-provider.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';
import { dpopKeys } from '../support/agents.js';
import { documentAgentId } from '../../src/agents/document-client.js';

const REDIRECT = 'http://127.0.0.1:9/callback';
let dir: string;
let docs: Server;
let docsBase: string;
let idp: MockIdp;
let deputy: TestDeputy;
let guarded: TestDeputy;
let up: MockUpstream;
let issuer: string;
const fetches: Record<string, number> = {};

function documentOf(path: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    client_id: `${docsBase}${path}`, client_name: 'MCP Test Client', redirect_uris: [REDIRECT],
    grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none', ...extra,
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cimd-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  docs = createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (req, res) => {
    fetches[req.url ?? ''] = (fetches[req.url ?? ''] ?? 0) + 1;
    const json = (body: unknown, type = 'application/json') => res.writeHead(200, { 'content-type': type, 'cache-control': 'max-age=60' }).end(JSON.stringify(body));
    switch (req.url) {
      case '/good.json': return json(documentOf('/good.json'));
      case '/flow.json': return json(documentOf('/flow.json', { client_name: 'Flow Client' }));
      case '/disabled.json': return json(documentOf('/disabled.json'));
      case '/deleted.json': return json(documentOf('/deleted.json'));
      case '/blocked.json': return json(documentOf('/blocked.json'));
      case '/big.json': return json(documentOf('/big.json', { padding: 'x'.repeat(10_000) }));
      case '/redirect.json': return void res.writeHead(302, { location: '/good.json' }).end();
      case '/html.json': return json(documentOf('/html.json'), 'text/html');
      case '/mismatch.json': return json(documentOf('/good.json'));
      case '/secret.json': return json(documentOf('/secret.json', { token_endpoint_auth_method: 'client_secret_basic' }));
      case '/implicit.json': return json(documentOf('/implicit.json', { response_types: ['token'] }));
      default: return void res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => docs.listen(0, '127.0.0.1', resolve));
  docsBase = `https://localhost:${(docs.address() as AddressInfo).port}`;
  // The default policies plus one that singles out a metadata-document client by its Agent attributes.
  mkdirSync(join(dir, 'policies'));
  for (const f of ['default.cedar', 'schema.cedarschema']) copyFileSync(join('config/policies', f), join(dir, 'policies', f));
  writeFileSync(
    join(dir, 'policies', 'documents.cedar'),
    `@id("blocked-document-client")\n@reason("This client is blocked.")\nforbid (principal is Agent, action == Action::"delegate", resource)\n` +
      `when { principal.source == "client_id_metadata" && principal has client_id_url && principal.client_id_url like "*/blocked.json" };\n`,
  );
  idp = await startMockIdp();
  up = await startMockUpstream();
  const port = await freePort();
  issuer = `http://localhost:${port}`;
  const documents = { enabled: true, allowedHosts: [new URL(docsBase).host], scopes: ['deputy.read'], audiences: [`${issuer}/gw/echo`] };
  deputy = await startTestDeputy({
    env: { ECHO_KEY: 'echo-upstream-key-0123456789' },
    config: {
      server: { port },
      pdp: { policies: join(dir, 'policies'), watch: false },
      connections: [{ id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] }],
      trustedIssuers: [idp.issuerConfig('okta', { signIn: { clientId: 'deputy-signin' } })],
      oauth: { authorizationCode: { enabled: true, clientIdMetadataDocuments: { ...documents, allowPrivateAddresses: true, caFile: join(dir, 'cert.pem') } } },
    },
  });
  idp.oktaSignIn.registerClient({ clientId: 'deputy-signin', redirectUri: `${issuer}/signin/callback`, jwksUri: `${deputy.url}/jwks` });
  // The same policy with the SSRF protection on (the default): loopback is refused.
  guarded = await startTestDeputy({ config: { oauth: { authorizationCode: { enabled: true, clientIdMetadataDocuments: { ...documents, caFile: join(dir, 'cert.pem') } } } } });
});
afterAll(async () => {
  await guarded?.stop();
  await deputy?.stop();
  await idp?.close();
  await up?.close();
  docs?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function authorizeUrl(base: string, clientId: string, params: Record<string, string> = {}): Promise<{ url: string; verifier: string }> {
  const verifier = client.randomPKCECodeVerifier();
  const q = new URLSearchParams({
    client_id: clientId, response_type: 'code', redirect_uri: REDIRECT, scope: 'deputy.read', resource: `${issuer}/gw/echo`, state: 'st',
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', ...params,
  });
  return { url: `${base}/auth?${q}`, verifier };
}

describe('client ID metadata documents', () => {
  it('advertises client_id_metadata_document_supported and public clients', async () => {
    const meta = (await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    expect(meta.client_id_metadata_document_supported).toBe(true);
    expect(meta.token_endpoint_auth_methods_supported).toEqual(expect.arrayContaining(['none', 'private_key_jwt']));
  });

  it('accepts a good document: the consent page names the client; the code is issued; a token without DPoP is refused', async () => {
    const browser = new Browser();
    browser.setCookie('127.0.0.1', 'okta_user', OKTA_USER_ID);
    const { url, verifier } = await authorizeUrl(issuer, `${docsBase}/good.json`);
    const consent = await browser.visit(url, { stopAt: (next) => next.href.startsWith(REDIRECT) });
    expect(consent.status).toBe(200);
    expect(consent.body).toContain('MCP Test Client');
    expect(consent.body).toContain(`${docsBase}/good.json`);
    const csrf = /name="csrf" value="([^"]+)"/.exec(consent.body)![1]!;
    const decided = await browser.submit(consent.url, { csrf, decision: 'approve' }, { origin: issuer });
    const back = new URL((await browser.visit(decided.location!, { stopAt: (next) => next.href.startsWith(REDIRECT) })).location!);
    expect(back.searchParams.get('code')).toBeTruthy();
    expect(back.searchParams.get('iss')).toBe(issuer);
    // A public client must bind its token with DPoP.
    const res = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code: back.searchParams.get('code')!, redirect_uri: REDIRECT, code_verifier: verifier, client_id: `${docsBase}/good.json` }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'invalid_dpop_proof' });
  });

  it('caches a document by its HTTP caching headers (max-age=60): a second request fetches nothing', async () => {
    await fetch((await authorizeUrl(issuer, `${docsBase}/good.json`)).url, { redirect: 'manual' });
    const before = fetches['/good.json'] ?? 0;
    expect(before).toBeGreaterThanOrEqual(1);
    const res = await fetch((await authorizeUrl(issuer, `${docsBase}/good.json`)).url, { redirect: 'manual' });
    expect(res.status).toBe(303);
    expect(fetches['/good.json']).toBe(before);
  });

  it('refuses a redirect URI that is not in the document, without redirecting', async () => {
    const res = await fetch((await authorizeUrl(issuer, `${docsBase}/good.json`, { redirect_uri: 'https://evil.example/cb' })).url, { redirect: 'manual' });
    expect(res.status).toBe(400);
    expect(res.headers.get('location')).toBeNull();
  });

  it.each([
    ['a host that is not allow-listed', 'https://evil.example/client.json'],
    ['an oversized document', '/big.json'],
    ['a redirecting document', '/redirect.json'],
    ['a document that is not JSON', '/html.json'],
    ['a document naming another client_id', '/mismatch.json'],
    ['a document with shared-secret authentication', '/secret.json'],
    ['a document for another flow than the code flow', '/implicit.json'],
    ['a missing document', '/missing.json'],
  ])('refuses %s (invalid_client, no redirect)', async (_what, target) => {
    const clientId = target.startsWith('https://') ? target : `${docsBase}${target}`;
    const res = await fetch((await authorizeUrl(issuer, clientId)).url, { redirect: 'manual' });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(res.headers.get('location')).toBeNull();
    expect(await res.json()).toMatchObject({ error: expect.stringMatching(/^invalid_client/) });
  });

  it('with the SSRF protection on, refuses a document on a private (loopback) address', async () => {
    const res = await fetch((await authorizeUrl(guarded.url, `${docsBase}/good.json`)).url, { redirect: 'manual' });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(await res.json()).toMatchObject({ error: 'invalid_client' });
    // Refused for its address (the CA is trusted, so not for TLS), before any connection.
    expect(guarded.logs.join('')).toMatch(/special-use/);
  });
});

/** A public metadata-document client (openid-client, `none` authentication) with its DPoP key. */
async function documentClient(clientId: string) {
  const config = await client.discovery(new URL(issuer), clientId, {}, client.None(), { execute: [client.allowInsecureRequests] });
  const keys = await dpopKeys();
  const handle = client.getDPoPHandle(config, { privateKey: keys.privateKey, publicKey: keys.publicKey });
  return { config, handle, jkt: await calculateJwkThumbprint(keys.publicJwk) };
}

/** Sign-in, consent (approve), back to the client: the redirect URL with the code. */
async function authorizeDocumentClient(clientId: string, jkt: string): Promise<{ back: URL; verifier: string }> {
  const browser = new Browser();
  browser.setCookie('127.0.0.1', 'okta_user', OKTA_USER_ID);
  const { url, verifier } = await authorizeUrl(issuer, clientId, { dpop_jkt: jkt });
  const consent = await browser.visit(url, { stopAt: (next) => next.href.startsWith(REDIRECT) });
  expect(consent.status).toBe(200);
  const csrf = /name="csrf" value="([^"]+)"/.exec(consent.body)![1]!;
  const decided = await browser.submit(consent.url, { csrf, decision: 'approve' }, { origin: issuer });
  const back = new URL((await browser.visit(decided.location!, { stopAt: (next) => next.href.startsWith(REDIRECT) })).location!);
  return { back, verifier };
}

describe('a metadata-document client end to end: a registry agent of its own', () => {
  it('gets a DPoP-bound token acting as its derived agent: recorded, receipted, usable at the gateway, refreshed with rotation, revoked in cascade', async () => {
    const clientId = `${docsBase}/flow.json`;
    const agentId = documentAgentId(clientId);
    expect(agentId).toMatch(/^cimd-[0-9a-f]{32}$/);
    const c = await documentClient(clientId);
    const { back, verifier } = await authorizeDocumentClient(clientId, c.jkt);
    // Consent created the agent: the operator's limits, the document's name, flagged with its URL.
    expect(await deputy.agents.get(agentId)).toMatchObject({
      id: agentId, name: 'Flow Client', source: 'client_id_metadata', clientIdUrl: clientId, status: 'active',
      scopes: ['deputy.read'], audiences: [`${issuer}/gw/echo`], maxDelegationDepth: 1,
    });

    const tokens = await client.authorizationCodeGrant(c.config, back, { pkceCodeVerifier: verifier, expectedState: 'st' }, undefined, { DPoP: c.handle });
    expect(tokens.token_type).toBe('dpop');
    const claims = decodeJwt(tokens.access_token);
    expect(claims).toMatchObject({ sub: `okta:${new URL(idp.base).host}:${OKTA_USER_ID}`, act: { sub: agentId }, client_id: clientId, aud: `${issuer}/gw/echo`, scope: 'deputy.read', cnf: { jkt: c.jkt } });
    const [record] = await deputy.store.query<{ agent_id: string; chain: string[]; cnf_jkt: string }>('SELECT agent_id, chain, cnf_jkt FROM token_records WHERE jti = $1', [claims.jti]);
    expect(record).toEqual({ agent_id: agentId, chain: [agentId], cnf_jkt: c.jkt });
    const receipts = (await deputy.store.query<{ jws: string }>('SELECT jws FROM receipts WHERE agent_id = $1', [agentId])).map((r) => decodeJwt(r.jws));
    expect(receipts).toContainEqual(expect.objectContaining({ event: 'authorization_code', action: 'delegate', decision: 'permit', token_id: claims.jti, chain: [agentId] }));

    // The gateway: the PDP sees a one-link chain, the derived agent acting for the user.
    const res = await client.fetchProtectedResource(c.config, tokens.access_token, new URL(`${issuer}/gw/echo/things`), 'GET', null, new Headers(), { DPoP: c.handle });
    expect(res.status).toBe(200);
    expect(up.requests.at(-1)!.headers['x-api-key']).toBe('echo-upstream-key-0123456789');

    const refreshed = await client.refreshTokenGrant(c.config, tokens.refresh_token!, undefined, { DPoP: c.handle });
    expect(decodeJwt(refreshed.access_token)).toMatchObject({ act: { sub: agentId }, cnf: { jkt: c.jkt } });
    expect(refreshed.refresh_token).not.toBe(tokens.refresh_token);
    await expect(client.refreshTokenGrant(c.config, tokens.refresh_token!, undefined, { DPoP: c.handle })).rejects.toMatchObject({ error: 'invalid_grant' });

    const current = refreshed.access_token;
    expect(await deputy.records.revokeCascade(decodeJwt(current).jti!, 'test')).toContain(decodeJwt(current).jti);
    deputy.revocations.forget();
    const revoked = await client.fetchProtectedResource(c.config, current, new URL(`${issuer}/gw/echo/things`), 'GET', null, new Headers(), { DPoP: c.handle }).catch((e: unknown) => e);
    expect(revoked).toMatchObject({ status: 401 });
  });

  it('a disabled metadata-document client is refused at /token (refresh), at the gateway and at /auth, and stays disabled when its document is seen again', async () => {
    const clientId = `${docsBase}/disabled.json`;
    const agentId = documentAgentId(clientId);
    const c = await documentClient(clientId);
    const { back, verifier } = await authorizeDocumentClient(clientId, c.jkt);
    const tokens = await client.authorizationCodeGrant(c.config, back, { pkceCodeVerifier: verifier, expectedState: 'st' }, undefined, { DPoP: c.handle });

    // The operator disables it like any agent (the admin API's PATCH runs this).
    await deputy.agents.update(agentId, { status: 'disabled' });
    deputy.revocations.forget();
    await expect(client.refreshTokenGrant(c.config, tokens.refresh_token!, undefined, { DPoP: c.handle })).rejects.toMatchObject({ error: 'invalid_client' });
    const atGateway = await client.fetchProtectedResource(c.config, tokens.access_token, new URL(`${issuer}/gw/echo/things`), 'GET', null, new Headers(), { DPoP: c.handle }).catch((e: unknown) => e);
    expect(atGateway).toMatchObject({ status: 401 });
    const res = await fetch((await authorizeUrl(issuer, clientId)).url, { redirect: 'manual' });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.headers.get('location')).toBeNull();
    expect(await res.json()).toMatchObject({ error: 'invalid_client' });

    // Seen again (a new name in the document): the name follows, the status does not.
    const again = await deputy.agents.upsertDocumentClient({ url: clientId, name: 'Renamed', scopes: ['deputy.read'], audiences: [`${issuer}/gw/echo`], maxDelegationDepth: 1 });
    expect(again).toMatchObject({ name: 'Renamed', status: 'disabled' });
  });

  it('a deleted metadata-document client: its tokens and refresh token are dead, its receipts stay, and the same URL registers anew at the next consent', async () => {
    const clientId = `${docsBase}/deleted.json`;
    const agentId = documentAgentId(clientId);
    const c = await documentClient(clientId);
    const first = await authorizeDocumentClient(clientId, c.jkt);
    const tokens = await client.authorizationCodeGrant(c.config, first.back, { pkceCodeVerifier: first.verifier, expectedState: 'st' }, undefined, { DPoP: c.handle });
    const receiptsBefore = await deputy.receipts.list(agentId, { limit: 50 });
    expect(receiptsBefore.receipts.length).toBeGreaterThanOrEqual(1);

    // What DELETE /admin/agents/{id} runs (test/features/agent-deletion.test.ts drives the route).
    await deputy.agents.delete(agentId);
    expect(await deputy.agents.get(agentId)).toBeUndefined();
    const atGateway = await client.fetchProtectedResource(c.config, tokens.access_token, new URL(`${issuer}/gw/echo/things`), 'GET', null, new Headers(), { DPoP: c.handle }).catch((e: unknown) => e);
    expect(atGateway).toMatchObject({ status: 401 });
    // The refresh token went with its grant: refreshing would otherwise recreate the agent without the user's consent.
    await expect(client.refreshTokenGrant(c.config, tokens.refresh_token!, undefined, { DPoP: c.handle })).rejects.toMatchObject({ error: 'invalid_grant' });
    expect(await deputy.agents.get(agentId)).toBeUndefined();

    // The same document URL, consented again: a new agent under the same derived id, a working token, one chain of receipts.
    const again = await authorizeDocumentClient(clientId, c.jkt);
    const renewed = await client.authorizationCodeGrant(c.config, again.back, { pkceCodeVerifier: again.verifier, expectedState: 'st' }, undefined, { DPoP: c.handle });
    expect(await deputy.agents.get(agentId)).toMatchObject({ id: agentId, source: 'client_id_metadata', clientIdUrl: clientId, status: 'active' });
    expect(decodeJwt(renewed.access_token)).toMatchObject({ act: { sub: agentId }, client_id: clientId });
    const res = await client.fetchProtectedResource(c.config, renewed.access_token, new URL(`${issuer}/gw/echo/things`), 'GET', null, new Headers(), { DPoP: c.handle });
    expect(res.status).toBe(200);
    const receiptsAfter = await deputy.receipts.list(agentId, { limit: 50 });
    expect(receiptsAfter.receipts.slice(0, receiptsBefore.receipts.length).map((r) => r.id)).toEqual(receiptsBefore.receipts.map((r) => r.id));
    expect(receiptsAfter.receipts.map((r) => r.seq)).toEqual(receiptsAfter.receipts.map((_, i) => i + 1));
  });

  it('a cimd- agent id cannot authenticate as a client (it has no keys; only its URL is a client)', async () => {
    const agentId = documentAgentId(`${docsBase}/flow.json`);
    const res = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: agentId }),
    });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: 'invalid_client' });
  });

  it('the PDP sees its agent with source and client_id_url: a Cedar policy on them refuses the token, with a deny receipt', async () => {
    const clientId = `${docsBase}/blocked.json`;
    const agentId = documentAgentId(clientId);
    const c = await documentClient(clientId);
    const { back, verifier } = await authorizeDocumentClient(clientId, c.jkt);
    await expect(client.authorizationCodeGrant(c.config, back, { pkceCodeVerifier: verifier, expectedState: 'st' }, undefined, { DPoP: c.handle })).rejects.toMatchObject({ error: 'unauthorized_client' });
    const receipts = (await deputy.store.query<{ jws: string }>('SELECT jws FROM receipts WHERE agent_id = $1', [agentId])).map((r) => decodeJwt(r.jws));
    expect(receipts).toContainEqual(expect.objectContaining({ action: 'delegate', decision: 'deny', chain: [agentId], policies: expect.arrayContaining(['blocked-document-client']) }));
    expect(await deputy.store.query('SELECT 1 FROM token_records WHERE agent_id = $1', [agentId])).toHaveLength(0);
  });
});
