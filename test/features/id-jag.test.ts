/**
 * ID-JAG (draft-ietf-oauth-identity-assertion-authz-grant; Okta Cross App Access, MCP
 * enterprise-managed authorization) end to end: a mock Okta signs Identity Assertion JWT
 * Authorization Grants with its published keys, agents present them at `/token` through
 * openid-client as an RFC 7523 jwt-bearer grant with DPoP, and the issued token is used at the
 * gateway and judged by the PDP as a one-link chain. Every refusal names its check.
 */
import { randomUUID } from 'node:crypto';
import { calculateJwkThumbprint } from 'jose';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, authenticatedPost, claimsOf, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { REPO, startPdpHarness, type PdpHarness } from '../support/authzen.js';
import { clientKeys } from '../support/clients.js';
import { json, type Json } from '../support/http.js';
import { OKTA_USER_ID, startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';
import type { StatementPart } from '../../src/store/index.js';

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const DOCS = 'https://docs.example.com';
const ALICE_EMAIL = 'alice@example.com';

let idp: MockIdp;
let up: MockUpstream;
let h: PdpHarness;
let issuer: string;
const agents: Record<string, TestAgent> = {};
const gw = (connection: string) => `${issuer}/gw/${connection}`;

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMockUpstream();
  const port = await freePort();
  issuer = `http://localhost:${port}`;
  const keys = { 'agent-a': await clientKeys(), 'agent-b': await clientKeys() };
  h = await startPdpHarness({
    policies: `${REPO}test/fixtures/policies/chain`,
    config: {
      server: { port },
      // The generic OIDC issuer is trusted for subject tokens, not for ID-JAGs.
      trustedIssuers: [idp.issuerConfig('okta'), idp.issuerConfig('oidc')],
      oauth: { idJag: { issuers: ['okta'], maxAgeSeconds: 300 } },
      gateway: { authorizer: 'scopes' },
      agents: [
        agentConfig('agent-a', keys['agent-a'], { scopes: ['docs.read', 'docs.write'], audiences: [DOCS, gw('echo')] }),
        agentConfig('agent-b', keys['agent-b'], { scopes: ['docs.read'], audiences: [DOCS] }),
      ],
      connections: [
        { id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['docs.read'] },
      ],
    },
    env: { ECHO_KEY: 'sk_test_echo' },
  });
  expect(h.deputy.issuer).toBe(issuer);
  for (const id of Object.keys(keys) as Array<keyof typeof keys>) agents[id] = await testAgent(issuer, id, keys[id]);
});
afterAll(async () => {
  await h?.stop();
  await up?.close();
  await idp?.close();
});

/** An ID-JAG as Okta issues one for `clientId` (claims overridable; `undefined` removes one). */
async function idJag(clientId: string, claims: Record<string, unknown> = {}, header: Record<string, unknown> = { typ: 'oauth-id-jag+jwt' }): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const all: Record<string, unknown> = {
    iss: idp.oktaIssuer, sub: OKTA_USER_ID, aud: issuer, client_id: clientId, jti: randomUUID(),
    iat: now, exp: now + 300, resource: DOCS, scope: 'docs.read docs.write', email: ALICE_EMAIL,
    ...claims,
  };
  for (const [k, v] of Object.entries(all)) if (v === undefined) delete all[k];
  return idp.sign(all, { header });
}

/** The jwt-bearer grant as a client makes it: openid-client, private_key_jwt, DPoP. */
function grant(agent: TestAgent, assertion: string, params: Record<string, string> = {}): Promise<client.TokenEndpointResponse> {
  return client.genericGrantRequest(agent.config, JWT_BEARER, new URLSearchParams({ assertion, ...params }), { DPoP: agent.handle });
}

async function grantError(agent: TestAgent, assertion: string, params: Record<string, string> = {}): Promise<{ error: string; description: string }> {
  try {
    await grant(agent, assertion, params);
  } catch (err) {
    if (err instanceof client.ResponseBodyError) return { error: err.error, description: err.error_description ?? '' };
    throw err;
  }
  throw new Error('the grant unexpectedly succeeded');
}

describe('ID-JAG: accepted', () => {
  it('is advertised: grant_types_supported lists jwt-bearer (the grant is on)', async () => {
    const metadata = await json(await fetch(`${issuer}/.well-known/oauth-authorization-server`));
    expect(metadata.grant_types_supported).toContain(JWT_BEARER);
  });

  it('issues a DPoP-bound token: sub the Okta user (as a subject token names them), act the client, recorded and receipted', async () => {
    const res = await grant(agents['agent-a']!, await idJag('agent-a'), { scope: 'docs.read' });
    expect(res.token_type.toLowerCase()).toBe('dpop');
    const claims = claimsOf(res.access_token);
    expect(claims).toMatchObject({ sub: `okta:${new URL(idp.base).host}:${OKTA_USER_ID}`, aud: DOCS, scope: 'docs.read', client_id: 'agent-a', act: { sub: 'agent-a' } });
    expect(claims.cnf).toEqual({ jkt: await calculateJwkThumbprint(agents['agent-a']!.dpop.publicJwk) });
    const introspected = await json(await authenticatedPost(`${h.deputy.url}/introspect`, issuer, h.admin, { token: res.access_token }));
    expect(introspected).toMatchObject({ active: true, sub: claims.sub, client_id: 'agent-a' });
    // The same user as a token exchange of that user's Okta access token names.
    const exchanged = await exchange(agents['agent-a']!, { subject_token: await idp.oktaAccessToken({ uid: OKTA_USER_ID, scp: ['docs.read'] }), resource: DOCS, scope: 'docs.read' });
    expect(claimsOf(exchanged.access_token).sub).toBe(claims.sub);
  });

  it('is a one-link chain at the PDP: permitted when user and agent are, a deny names the agent as link 1 of 1', async () => {
    const token = (await grant(agents['agent-a']!, await idJag('agent-a'))).access_token;
    const subject = { type: 'User', id: claimsOf(token).sub, properties: { token } };
    expect((await h.post('/access/v1/evaluation', { subject, action: { name: 'read' }, resource: { type: 'Document', id: 'doc-1', properties: {} } })).body).toEqual({ decision: true });
    const { body } = await h.post('/access/v1/evaluation', { subject, action: { name: 'read' }, resource: { type: 'Document', id: 'doc-4', properties: {} } });
    expect(body.decision).toBe(false);
    expect((body.context as Json).link).toMatchObject({ position: 1, depth: 1, type: 'Agent', id: 'agent-a' });
  });

  it('is usable at the gateway for the resource the ID-JAG names, and revocable', async () => {
    const agent = agents['agent-a']!;
    const token = (await grant(agent, await idJag('agent-a', { resource: [DOCS, gw('echo')] }), { resource: gw('echo'), scope: 'docs.read' })).access_token;
    expect(claimsOf(token).aud).toBe(gw('echo'));
    const before = up.requests.length;
    const ok = await client.fetchProtectedResource(agent.config, token, new URL(`${gw('echo')}/things`), 'GET', null, new Headers(), { DPoP: agent.handle });
    expect(ok.status).toBe(200);
    expect(up.requests.length).toBe(before + 1);
    expect((await authenticatedPost(`${h.deputy.url}/revoke`, issuer, h.admin, { token })).status).toBe(200);
    // openid-client throws on a 401 with a challenge: the revoked token is refused.
    const revoked = await client.fetchProtectedResource(agent.config, token, new URL(`${gw('echo')}/things`), 'GET', null, new Headers(), { DPoP: agent.handle }).catch((e: unknown) => e);
    expect(revoked).toBeInstanceOf(client.WWWAuthenticateChallengeError);
    expect((revoked as client.WWWAuthenticateChallengeError).status).toBe(401);
    expect(up.requests.length).toBe(before + 1);
  });
});

describe('ID-JAG: refused, naming the check', () => {
  const a = () => agents['agent-a']!;

  it('an over-long sub or a token-shaped identity attribute → invalid_grant naming the claim (src/federation/claims.ts), never quoting it; no token recorded or receipted, the ID-JAG not spent', async () => {
    const count = async (table: string) => (await h.deputy.store.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${table}`))[0]!.n;
    const before = [await count('token_records'), await count('receipts')];
    const jws = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4eHh4eHgifQ.c2lnbmF0dXJlc2ln';
    const cases: Array<[Record<string, unknown>, string, number]> = [
      [{ sub: 'u'.repeat(256) }, 'sub', 255],
      [{ sub: `alice ${jws}` }, 'sub', 255],
      [{ email: jws }, 'email', 1024],
      [{ email: `${'e'.repeat(1025)}@example.com` }, 'email', 1024],
    ];
    for (const [claims, name, max] of cases) {
      const jti = randomUUID();
      const refused = await grantError(a(), await idJag('agent-a', { ...claims, jti }));
      expect(refused.error, name).toBe('invalid_grant');
      expect(refused.description).toMatch(new RegExp(`^assertion: the ID-JAG's "${name}" claim is malformed: it must be a non-empty string of at most ${max} characters, not shaped like a token`));
      expect(refused.description).not.toContain(jws);
      // Refused before its jti was spent: the same jti in a well-formed ID-JAG still yields a token.
      if (name === 'sub' && max === 255 && (claims.sub as string).startsWith('u')) {
        expect([await count('token_records'), await count('receipts')]).toEqual(before);
        expect((await grant(a(), await idJag('agent-a', { jti }), { scope: 'docs.read' })).access_token).toBeTruthy();
        before[0] = await count('token_records');
        before[1] = await count('receipts');
      }
    }
    expect([await count('token_records'), await count('receipts')]).toEqual(before);
  });

  it('identity claims at their limit pass; one with a lone surrogate is refused naming the claim (the PDP denied such a sub after the ID-JAG was spent; a name with one passed), the jti not spent', async () => {
    for (const claims of [{ sub: 'u'.repeat(255) }, { email: `${'e'.repeat(1012)}@example.com` }, { name: `Ali ${'😀'.repeat(200)}` }]) {
      expect((await grant(a(), await idJag('agent-a', claims), { scope: 'docs.read' })).access_token, Object.keys(claims)[0]).toBeTruthy();
    }
    for (const [claims, name, max] of [[{ sub: 'alice\ud800' }, 'sub', 255], [{ email: 'a\udc00@example.com' }, 'email', 1024], [{ name: 'Alice \ud800' }, 'name', 1024]] as const) {
      const jti = randomUUID();
      const refused = await grantError(a(), await idJag('agent-a', { ...claims, jti }));
      expect(refused, name).toMatchObject({ error: 'invalid_grant', description: `assertion: the ID-JAG's "${name}" claim is malformed: it must be a non-empty string of at most ${max} characters, not shaped like a token, no lone surrogate` });
      expect((await grant(a(), await idJag('agent-a', { jti }), { scope: 'docs.read' })).access_token).toBeTruthy();
    }
  });

  it('another audience → invalid_grant (aud)', async () => {
    expect(await grantError(a(), await idJag('agent-a', { aud: 'https://other-as.example.com' }))).toMatchObject({ error: 'invalid_grant', description: expect.stringMatching(/audience/) });
  });

  it('issued to another client → invalid_grant (client_id)', async () => {
    expect(await grantError(a(), await idJag('agent-b'))).toMatchObject({ error: 'invalid_grant', description: expect.stringMatching(/another client \(client_id\)/) });
  });

  it('replayed → invalid_grant (jti), also when the first use succeeded', async () => {
    const assertion = await idJag('agent-a');
    await grant(a(), assertion);
    expect(await grantError(a(), assertion)).toMatchObject({ error: 'invalid_grant', description: expect.stringMatching(/already been used/) });
  });

  it('presented twice at once → exactly one token, the other invalid_grant (the jti is spent once across requests)', async () => {
    const assertion = await idJag('agent-a');
    const results = await Promise.allSettled([grant(a(), assertion), grant(a(), assertion)]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const refused = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')!.reason as client.ResponseBodyError;
    expect(refused.error).toBe('invalid_grant');
  });

  it('refused after its checks (a scope beyond the ID-JAG\'s) → not spent: the same ID-JAG then yields exactly one token', async () => {
    const assertion = await idJag('agent-a', { scope: 'docs.read' });
    expect(await grantError(a(), assertion, { scope: 'docs.write' })).toMatchObject({ error: 'invalid_scope' });
    expect((await grant(a(), assertion)).scope).toBe('docs.read');
    expect(await grantError(a(), assertion)).toMatchObject({ error: 'invalid_grant', description: expect.stringMatching(/already been used/) });
  });

  it('a store failure in the issuing transaction, after its jti was written there → 500 server_error, nothing recorded, the ID-JAG not spent', async () => {
    const receipts = h.deputy.receipts;
    const original = receipts.appendWith.bind(receipts);
    const issuedBefore = await h.deputy.store.query<{ n: number }>("SELECT count(*)::int AS n FROM token_records WHERE agent_id = 'agent-a'");
    // Once: the group statement fails (a part the server refuses), so the append is decided in its
    // own transaction, which spends the jtis and writes the record, then fails before its commit.
    const failing: StatementPart = { sql: (first) => `INSERT INTO no_such_table (x) VALUES ($${first})`, params: [1] };
    receipts.appendWith = (input, writes) => {
      receipts.appendWith = original;
      return original(input, {
        ...writes,
        parts: [...writes.parts, failing],
        inTransaction: async (tx) => {
          await writes.inTransaction(tx);
          throw new Error('store failure after the spend');
        },
      });
    };
    try {
      const assertion = await idJag('agent-a');
      // openid-client refuses a 5xx as unexpected, with the response as its cause.
      const failed = await grant(a(), assertion).then(() => undefined, (err: unknown) => (err as { cause?: unknown }).cause);
      expect(failed).toBeInstanceOf(Response);
      expect((failed as Response).status).toBe(500);
      expect(await (failed as Response).json()).toMatchObject({ error: 'server_error' });
      const issuedAfter = await h.deputy.store.query<{ n: number }>("SELECT count(*)::int AS n FROM token_records WHERE agent_id = 'agent-a'");
      expect(issuedAfter[0]!.n).toBe(issuedBefore[0]!.n);
      // Not burnt: it yields its one token now, and only one.
      expect((await grant(a(), assertion)).token_type.toLowerCase()).toBe('dpop');
      expect(await grantError(a(), assertion)).toMatchObject({ error: 'invalid_grant', description: expect.stringMatching(/already been used/) });
    } finally {
      receipts.appendWith = original;
    }
  });

  it('expired, too old, or living too long → invalid_grant', async () => {
    const now = Math.floor(Date.now() / 1000);
    expect(await grantError(a(), await idJag('agent-a', { iat: now - 400, exp: now - 100 }))).toMatchObject({ error: 'invalid_grant', description: expect.stringMatching(/expired|iat/) });
    expect(await grantError(a(), await idJag('agent-a', { iat: now - 600, exp: now + 60 }))).toMatchObject({ error: 'invalid_grant' });
    expect(await grantError(a(), await idJag('agent-a', { exp: now + 3600 }))).toMatchObject({ error: 'invalid_grant', description: expect.stringMatching(/longer than 300 seconds/) });
    expect(await grantError(a(), await idJag('agent-a', { exp: undefined }))).toMatchObject({ error: 'invalid_grant', description: expect.stringMatching(/"exp"/) });
  });

  it('wrong typ (an ID token, a plain JWT) → invalid_grant (typ)', async () => {
    for (const typ of ['JWT', 'at+jwt']) {
      expect(await grantError(a(), await idJag('agent-a', {}, { typ }))).toMatchObject({ error: 'invalid_grant', description: expect.stringMatching(/typ/) });
    }
  });

  it('an untrusted issuer, or a trusted one not allowed to send ID-JAGs → invalid_grant, no key fetched', async () => {
    const fetched = idp.requests.jwks;
    expect(await grantError(a(), await idJag('agent-a', { iss: 'https://evil.example.com' }))).toMatchObject({ error: 'invalid_grant', description: expect.stringMatching(/not trusted to send ID-JAGs/) });
    expect(await grantError(a(), await idJag('agent-a', { iss: idp.oidcIssuer }))).toMatchObject({ error: 'invalid_grant', description: expect.stringMatching(/oauth\.idJag\.issuers: okta/) });
    expect(idp.requests.jwks).toBe(fetched);
  });

  it('alg none, or HS256 keyed with the issuer\'s public key → invalid_grant (alg), no key fetched', async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: idp.oktaIssuer, sub: OKTA_USER_ID, aud: issuer, client_id: 'agent-a', jti: randomUUID(), iat: now, exp: now + 60 };
    const fetched = idp.requests.jwks;
    const unsecured = await idp.sign(claims, { alg: 'none', header: { typ: 'oauth-id-jag+jwt' } });
    const published = new TextEncoder().encode(JSON.stringify(idp.activeKey.publicJwk));
    const confused = await idp.sign(claims, { alg: 'HS256', key: published, header: { typ: 'oauth-id-jag+jwt' } });
    for (const assertion of [unsecured, confused]) {
      expect(await grantError(a(), assertion)).toMatchObject({ error: 'invalid_grant', description: expect.stringMatching(/signing algorithm \(header alg\)/) });
    }
    expect(idp.requests.jwks).toBe(fetched);
  });

  it('signed with a key the issuer does not publish → invalid_grant', async () => {
    const now = Math.floor(Date.now() / 1000);
    const forged = await idp.sign({ iss: idp.oktaIssuer, sub: OKTA_USER_ID, aud: issuer, client_id: 'agent-a', jti: randomUUID(), iat: now, exp: now + 60 }, { key: await idp.createKey(), header: { typ: 'oauth-id-jag+jwt' } });
    expect(await grantError(a(), forged)).toMatchObject({ error: 'invalid_grant' });
  });

  it('a resource or scope beyond the client\'s, or beyond the ID-JAG\'s → invalid_target / invalid_scope', async () => {
    // agent-b may hold docs.read for DOCS only.
    expect(await grantError(agents['agent-b']!, await idJag('agent-b', { resource: gw('echo') }))).toMatchObject({ error: 'invalid_target' });
    expect(await grantError(agents['agent-b']!, await idJag('agent-b'), { scope: 'docs.write' })).toMatchObject({ error: 'invalid_scope' });
    expect(await grantError(a(), await idJag('agent-a', { scope: 'docs.read' }), { scope: 'docs.write' })).toMatchObject({ error: 'invalid_scope', description: expect.stringMatching(/docs\.write/) });
    expect(await grantError(a(), await idJag('agent-a'), { resource: gw('echo') })).toMatchObject({ error: 'invalid_target', description: expect.stringMatching(/does not grant the resource/) });
    expect(await grantError(a(), await idJag('agent-a', { resource: `${issuer}/admin` }))).toMatchObject({ error: 'invalid_target' });
  });

  it('no DPoP proof, no assertion, a malformed assertion → the protocol\'s error', async () => {
    const noProof = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: JWT_BEARER, assertion: await idJag('agent-a'), ...(await assertionAuth('agent-a')) }),
    });
    expect(noProof.status).toBe(400);
    expect((await json(noProof)).error).toBe('invalid_dpop_proof');
    expect(await grantError(a(), '')).toMatchObject({ error: 'invalid_request' });
    expect(await grantError(a(), `${await idJag('agent-a')}${'A'.repeat(17 * 1024)}`)).toMatchObject({ error: 'invalid_request', description: expect.stringMatching(/too large/) });
    expect(await grantError(a(), 'not.a.jwt')).toMatchObject({ error: 'invalid_grant' });
  });

  it('an assertion whose iss cannot be read (not a JWT, no iss, a non-string iss) → invalid_grant, no key fetched', async () => {
    const b64 = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const claims = { sub: OKTA_USER_ID, aud: issuer, client_id: 'agent-a', jti: randomUUID(), iat: now, exp: now + 60 };
    const shaped = (payload: unknown) => `${b64({ alg: 'RS256', typ: 'oauth-id-jag+jwt' })}.${b64(payload)}.c2ln`;
    const fetched = idp.requests.jwks;
    for (const assertion of ['not-a-jwt', shaped('not json'), shaped(claims), shaped({ ...claims, iss: 42 }), shaped({ ...claims, iss: [idp.oktaIssuer] }), shaped({ ...claims, iss: null })]) {
      expect(await grantError(a(), assertion)).toMatchObject({ error: 'invalid_grant', description: expect.stringMatching(/not a JWT with an "iss" claim/) });
    }
    expect(idp.requests.jwks).toBe(fetched);
  });
});

/** private_key_jwt client authentication parameters, for raw requests. */
async function assertionAuth(id: 'agent-a'): Promise<Record<string, string>> {
  const { clientAssertion } = await import('../support/agents.js');
  return {
    client_id: id,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: await clientAssertion({ id, keys: agents[id]!.keys }, issuer),
  };
}
