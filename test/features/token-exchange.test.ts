/**
 * Token exchange end to end: a mock Okta / Entra / OIDC IdP over HTTP, Deputy, and agents as
 * real openid-client clients with DPoP.
 */
import { randomUUID } from 'node:crypto';
import { createLocalJWKSet, jwtVerify, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ACCESS_TOKEN_TYPE,
  actorToken,
  agentConfig,
  authenticatedPost,
  claimsOf,
  dpopProof,
  exchange,
  exchangeError,
  ID_TOKEN_TYPE,
  JWT_TYPE,
  rawExchange,
  testAgent,
  type TestAgent,
} from '../support/agents.js';
import { adminSetup, clientKeys, type ClientKeys } from '../support/clients.js';
import { json } from '../support/http.js';
import { ENTRA_TENANT, OKTA_CLIENT_ID, OKTA_USER_ID, ENTRA_USER_OID, startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { EnvelopeVault } from '../../src/vault/envelope.js';
import { UPSTREAM_TOKEN_KIND } from '../../src/oauth/token-exchange.js';

const API = 'https://api.example.com';
const MAIL = 'https://mail.example.com';
const PAY = 'https://pay.example.com';
/** An RFC 8693 §2.1 logical-name audience (not a URI). */
const LOGICAL = 'calendar-api';
const handoff = (id: string) => `urn:deputy:agent:${id}`;
/** 45 audience-qualified scopes of 50 characters: 2,294 characters granted together, over a receipt's 2,048. */
const WIDE_SCOPES = Array.from({ length: 45 }, (_, i) => `https://graph.example.com/Mail.ReadWrite.Shared.${String(i).padStart(2, '0')}`);

let idp: MockIdp;
let deputy: TestDeputy;
let admin: { id: string; keys: ClientKeys };
const keys: Record<string, ClientKeys> = {};
const agents: Record<string, TestAgent> = {};

beforeAll(async () => {
  idp = await startMockIdp();
  const a = await adminSetup();
  admin = { id: a.clientId, keys: a.keys };
  for (const id of ['agent-a', 'agent-b', 'agent-c', 'agent-d', 'agent-e', 'agent-wide']) keys[id] = await clientKeys();
  deputy = await startTestDeputy({
    config: {
      admin: { clients: [a.config] },
      trustedIssuers: [idp.issuerConfig('okta', { idToken: { clientId: OKTA_CLIENT_ID, scopes: ['deputy.read', 'calendar.read'] } }), idp.issuerConfig('entra'), idp.issuerConfig('oidc')],
      agents: [
        agentConfig('agent-a', keys['agent-a']!, {
          scopes: ['deputy.read', 'deputy.write', 'Deputy.Read', 'Deputy.Write', 'calendar.read'],
          audiences: [API, MAIL, LOGICAL, handoff('agent-b'), handoff('agent-d')],
          maxDelegationDepth: 3,
        }),
        agentConfig('agent-b', keys['agent-b']!, { scopes: ['deputy.read', 'Deputy.Read'], audiences: [API, handoff('agent-c')], maxDelegationDepth: 3 }),
        agentConfig('agent-c', keys['agent-c']!, { scopes: ['deputy.read'], audiences: [PAY], maxDelegationDepth: 3 }),
        agentConfig('agent-d', keys['agent-d']!, { scopes: ['deputy.read'], audiences: [API], maxDelegationDepth: 1 }),
        agentConfig('agent-e', keys['agent-e']!, { scopes: ['deputy.read'], audiences: [API], maxDelegationDepth: 3 }),
        agentConfig('agent-wide', keys['agent-wide']!, { scopes: WIDE_SCOPES, audiences: [API], maxDelegationDepth: 1 }),
      ],
    },
  });
  for (const id of Object.keys(keys)) agents[id] = await testAgent(deputy.issuer, id, keys[id]!);
});
afterAll(async () => {
  await deputy?.stop();
  await idp?.close();
});

async function verifyDeputyToken(token: string) {
  const jwks = await json(await fetch(`${deputy.url}/jwks`));
  return jwtVerify(token, createLocalJWKSet(jwks as never), { issuer: deputy.issuer, typ: 'at+jwt' });
}

const introspect = (token: string, caller = admin) => authenticatedPost(`${deputy.url}/introspect`, deputy.issuer, caller, { token }).then((r) => json(r));
const revoke = (token: string, caller = admin) => authenticatedPost(`${deputy.url}/revoke`, deputy.issuer, caller, { token });

describe('token exchange: enterprise IdP token → DPoP-bound agent token', () => {
  it('exchanges an Okta access token (custom authorization server)', async () => {
    const subject = await idp.oktaAccessToken({ expiresIn: 3600 });
    const agent = agents['agent-a']!;
    const res = await exchange(agent, { subject_token: subject, resource: API, scope: 'deputy.read' });
    expect(res.token_type).toBe('dpop');
    expect(res.issued_token_type).toBe(ACCESS_TOKEN_TYPE);
    expect(res.scope).toBe('deputy.read');
    expect(res.expires_in).toBeGreaterThan(0);
    expect(res.expires_in).toBeLessThanOrEqual(300);

    const { payload, protectedHeader } = await verifyDeputyToken(res.access_token);
    expect(protectedHeader.typ).toBe('at+jwt');
    expect(payload).toMatchObject({
      iss: deputy.issuer,
      sub: `okta:${new URL(idp.base).host}:${OKTA_USER_ID}`,
      aud: API,
      client_id: 'agent-a',
      scope: 'deputy.read',
      act: { sub: 'agent-a' },
      cnf: { jkt: agent.dpop.jkt },
    });
    expect(payload.jti).toEqual(expect.any(String));
    expect(payload.exp! - payload.iat!).toBeLessThanOrEqual(300);
    expect(payload).not.toHaveProperty('act.act');
  });

  it('real IdP claim shapes pass the identifier and attribute bounds: Entra v1 unique_name, a non-ASCII name, a 254-character email, an Okta jti', async () => {
    const email = `${'a'.repeat(64)}@${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(53)}.example`;
    expect(email).toHaveLength(254);
    const name = 'José Müller-Łukasiewicz 山田太郎 👩‍💻';
    const subjects = [
      [await idp.entraAccessToken({ version: 1, username: email, unique_name: email, name, given_name: 'José', family_name: 'Müller' }), 'Deputy.Read'],
      [await idp.entraAccessToken({ version: 2, username: email, name }), 'Deputy.Read'],
      [await idp.oktaAccessToken({ jti: `AT.${'x'.repeat(43)}`, email, name }), 'deputy.read'],
      [await idp.oidcToken({ sub: 'y'.repeat(255), email, name }), 'deputy.read'],
    ] as const;
    for (const [subject, scope] of subjects) {
      const res = await exchange(agents['agent-a']!, { subject_token: subject, audience: API, scope });
      expect(res.access_token).toEqual(expect.any(String));
    }
  });

  it('an agent granted many long scopes at once: the exchange succeeds and the receipt holds their reduction (a 500 before: the receipt refused the scope)', async () => {
    const a = agents['agent-wide']!;
    const res = await exchange(a, { subject_token: await idp.oktaAccessToken({ scp: WIDE_SCOPES }), audience: API });
    expect(claimsOf(res.access_token).scope).toBe(WIDE_SCOPES.join(' '));
    const [row] = await deputy.store.query<{ jws: string }>('SELECT jws FROM receipts WHERE agent_id = $1 ORDER BY seq DESC LIMIT 1', [a.id]);
    const receipt = JSON.parse(Buffer.from(row!.jws.split('.')[1]!, 'base64url').toString()) as { scope: string; decision: string };
    expect(receipt.decision).toBe('permit');
    expect(receipt.scope.length).toBeLessThanOrEqual(2048);
    expect(receipt.scope.startsWith(WIDE_SCOPES.slice(0, 10).join(' '))).toBe(true);
  });

  it('exchanges Entra ID v2 and v1 access tokens (tenant + oid identity)', async () => {
    for (const version of [2, 1] as const) {
      const subject = await idp.entraAccessToken({ version });
      const res = await exchange(agents['agent-a']!, { subject_token: subject, audience: MAIL, scope: 'Deputy.Read' });
      const claims = claimsOf(res.access_token);
      expect(claims.sub).toBe(`entra:${ENTRA_TENANT}:${ENTRA_USER_OID}`);
      expect(claims.aud).toBe(MAIL);
      expect(claims.scope).toBe('Deputy.Read');
    }
  });

  it('issues for a logical-name audience the agent is registered with (RFC 8693 §2.1 `audience`), and refuses one it is not', async () => {
    const res = await exchange(agents['agent-a']!, { subject_token: await idp.oktaAccessToken(), audience: LOGICAL, scope: 'deputy.read' });
    expect(claimsOf(res.access_token).aud).toBe(LOGICAL);
    const err = await exchangeError(agents['agent-a']!, { subject_token: await idp.oktaAccessToken(), audience: 'billing-api', scope: 'deputy.read' });
    expect(err.error).toBe('invalid_target');
    expect(err.error_description).toMatch(/not allowed the audience/);
  });

  it('exchanges an OIDC ID token and a generic JWT; without `scope` the grant is the intersection', async () => {
    const id = await idp.oktaIdToken();
    const fromId = await exchange(agents['agent-b']!, { subject_token: id, subject_token_type: ID_TOKEN_TYPE, resource: API });
    // An ID token carries no delegated scopes: the issuer's idToken.scopes and the agent's scopes are the limit.
    expect(fromId.scope).toBe('deputy.read');

    const jwt = await idp.oidcToken({ scope: 'deputy.read other' });
    const fromJwt = await exchange(agents['agent-b']!, { subject_token: jwt, subject_token_type: JWT_TYPE, resource: API });
    expect(fromJwt.scope).toBe('deputy.read');
    expect(claimsOf(fromJwt.access_token).sub).toBe(`${idp.oidcIssuer}#${claimsOf(jwt).sub}`);
  });

  it('never issues a token that outlives the subject token', async () => {
    const subject = await idp.oktaAccessToken({ expiresIn: 40 });
    const res = await exchange(agents['agent-a']!, { subject_token: subject, resource: API, scope: 'deputy.read' });
    expect(claimsOf(res.access_token).exp).toBeLessThanOrEqual(claimsOf(subject).exp!);
    expect(res.expires_in).toBeLessThanOrEqual(40);
  });

  it('keeps the upstream token encrypted in the store, referenced by handle, and out of logs', async () => {
    const subject = await idp.oktaAccessToken();
    const res = await exchange(agents['agent-a']!, { subject_token: subject, resource: API, scope: 'deputy.read' });
    const record = await deputy.records.find(claimsOf(res.access_token).jti!);
    expect(record?.upstream).toMatch(/^upt_/);
    const rows = await deputy.store.query<{ ciphertext: Uint8Array; kek_id: string }>('SELECT ciphertext, kek_id FROM vault_secrets WHERE handle = $1', [record!.upstream]);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.kek_id).toBe(deputy.keys.vaultKeks().active.kid);
    expect(Buffer.from(rows[0]!.ciphertext).toString('utf8')).not.toContain(subject.split('.')[1]!.slice(0, 20));
    const vault = new EnvelopeVault(deputy.keys.vaultKeks());
    expect(await vault.get(deputy.store, record!.upstream!, UPSTREAM_TOKEN_KIND)).toBe(subject);
    const logs = deputy.logs.join('');
    expect(logs).not.toContain(subject.split('.')[2]);
    expect(logs).not.toContain(res.access_token.split('.')[2]);
  });
});

describe('token exchange: refusals', () => {
  const expectRefusal = async (agent: TestAgent, params: Parameters<typeof exchange>[1], error: string, description: RegExp) => {
    const err = await exchangeError(agent, params);
    expect(err.error).toBe(error);
    expect(err.error_description).toMatch(description);
    expect(err.error_description).not.toContain(params.subject_token.slice(-20));
  };

  it('refuses subject tokens Deputy cannot trust, naming the check', async () => {
    const a = agents['agent-a']!;
    const wrongKey = await idp.createKey();
    const good = await idp.oktaAccessToken();
    const [h, p, s] = good.split('.');
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...claimsOf(good), uid: '00uattacker' })).toString('base64url')}.${s}`;
    const cases: Array<[string, RegExp]> = [
      [await idp.oktaAccessToken({ aud: 'api://someone-else' }), /audience/i],
      [await idp.oktaAccessToken({ expiresIn: -120 }), /expired/i],
      [await idp.oktaAccessToken({ nbf: Math.floor(Date.now() / 1000) + 600 }), /not yet valid|nbf/i],
      [await idp.oktaAccessToken({ sign: { alg: 'none' } }), /alg/i],
      [await idp.oktaAccessToken({ sign: { key: wrongKey, kid: 'unknown-kid' } }), /key|kid/i],
      [await idp.oktaAccessToken({ sign: { key: wrongKey, kid: idp.activeKey.kid } }), /signature/i],
      [tampered, /signature/i],
      [await idp.entraAccessToken({ tid: 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee', iss: idp.entraIssuer('aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee') }), /tenant/i],
      [await idp.entraAccessToken({ sign: { header: { nonce: 'graph' } } }), /Microsoft Graph/],
      [await idp.sign({ iss: 'https://evil.example.com', sub: 'x', aud: 'api://deputy', exp: Math.floor(Date.now() / 1000) + 60 }), /issuer/i],
      ['not-a-jwt', /malformed|JWS|JWT/i],
      // The unverified iss routes the token (src/federation peekIssuer): none, or not a string, is refused.
      [await idp.sign({ sub: 'x', aud: 'api://deputy', exp: Math.floor(Date.now() / 1000) + 60 }), /"iss"/],
      [await idp.sign({ iss: 42, sub: 'x', aud: 'api://deputy', exp: Math.floor(Date.now() / 1000) + 60 }), /"iss"/],
      [await idp.sign({ iss: [idp.oktaIssuer], sub: 'x', aud: 'api://deputy', exp: Math.floor(Date.now() / 1000) + 60 }), /"iss"/],
    ];
    for (const [subject, description] of cases) await expectRefusal(a, { subject_token: subject, resource: API, scope: 'deputy.read' }, 'invalid_grant', description);
    expect(p).toBeDefined();
  });

  it('an IdP user id too long for a receipt or shaped like a token: invalid_grant naming the claim (a 500 before), nothing written', async () => {
    const a = agents['agent-a']!;
    const receipts = async () => (await deputy.store.query<{ n: string }>('SELECT count(*)::text AS n FROM receipts WHERE agent_id = $1', [a.id]))[0]!.n;
    const before = await receipts();
    const jws = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4eHh4eHgifQ.c2lnbmF0dXJlc2ln';
    const subjects = [
      await idp.oktaAccessToken({ uid: 'u'.repeat(3000) }),
      await idp.oktaAccessToken({ uid: jws }),
      await idp.entraAccessToken({ oid: `x-${'o'.repeat(300)}` }),
      await idp.oidcToken({ sub: `alice ${jws}` }),
    ];
    for (const subject of subjects) {
      const err = await exchangeError(a, { subject_token: subject, resource: API, scope: 'deputy.read' });
      expect(err.status).toBe(400);
      expect(err.error).toBe('invalid_grant');
      expect(err.error_description).toMatch(/"(uid|oid|sub)" claim is malformed: it must be a non-empty string of at most 255 characters, not shaped like a token/);
      expect(err.error_description).not.toContain(jws);
    }
    expect(await receipts()).toBe(before);
  });

  it('refuses HS256 signed with the IdP public key (algorithm confusion)', async () => {
    const pem = await idp.publicKeyPem();
    const { secretOf } = await import('../support/mock-idp.js');
    const forged = await idp.oktaAccessToken({ sign: { alg: 'HS256', key: secretOf(pem) } });
    await expectRefusal(agents['agent-a']!, { subject_token: forged, resource: API, scope: 'deputy.read' }, 'invalid_grant', /alg/i);
  });

  it('follows IdP key rotation without restart; a removed key is refused', async () => {
    const before = await idp.oktaAccessToken();
    await idp.rotate({ keepOld: false });
    const after = await idp.oktaAccessToken();
    await expect(exchange(agents['agent-a']!, { subject_token: after, resource: API, scope: 'deputy.read' })).resolves.toHaveProperty('access_token');
    await expectRefusal(agents['agent-a']!, { subject_token: before, resource: API, scope: 'deputy.read' }, 'invalid_grant', /key|kid/i);
  });

  it('refuses scope escalation and audiences the agent may not have', async () => {
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    await expectRefusal(agents['agent-a']!, { subject_token: subject, resource: API, scope: 'deputy.write' }, 'invalid_scope', /subject token does not grant/);
    await expectRefusal(agents['agent-a']!, { subject_token: subject, resource: API, scope: 'deputy.read admin' }, 'invalid_scope', /admin/);
    const wide = await idp.oktaAccessToken({ scp: ['deputy.read', 'payments.send'] });
    await expectRefusal(agents['agent-a']!, { subject_token: wide, resource: API, scope: 'payments.send' }, 'invalid_scope', /agent "agent-a" is not allowed the scope/);
    await expectRefusal(agents['agent-a']!, { subject_token: subject, resource: 'https://evil.example.com', scope: 'deputy.read' }, 'invalid_target', /not allowed the audience/);
    await expectRefusal(agents['agent-a']!, { subject_token: subject, resource: [API, MAIL], scope: 'deputy.read' }, 'invalid_target', /one resource or audience/);
    await expectRefusal(agents['agent-a']!, { subject_token: subject, scope: 'deputy.read' }, 'invalid_target', /required/);
  });

  it('a refused audience or scope that is long or shaped like a token still gets its deny receipt, reduced (before: the receipt was refused and only logged)', async () => {
    const a = agents['agent-a']!;
    const jws = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4eHh4eHgifQ.c2lnbmF0dXJlc2ln';
    const denies = async () => (await deputy.store.query<{ jws: string }>('SELECT jws FROM receipts WHERE agent_id = $1 ORDER BY seq', [a.id]))
      .map((r) => JSON.parse(Buffer.from(r.jws.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>)
      .filter((c) => c.decision === 'deny');
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read', jws] });
    const cases: Array<[Parameters<typeof exchange>[1], string]> = [
      [{ subject_token: subject, resource: `https://evil.example.com/${'x'.repeat(2000)}`, scope: 'deputy.read' }, 'invalid_target'],
      [{ subject_token: subject, resource: `https://evil.example.com/${jws}`, scope: 'deputy.read' }, 'invalid_target'],
      [{ subject_token: subject, resource: API, scope: jws }, 'invalid_scope'],
    ];
    for (const [params, error] of cases) {
      const before = (await denies()).length;
      const err = await exchangeError(a, params);
      expect(err.error).toBe(error);
      const after = await denies();
      expect(after).toHaveLength(before + 1);
      const receipt = after.at(-1)!;
      expect(JSON.stringify(receipt)).not.toContain(jws);
      for (const field of ['resource', 'reason', 'scope'] as const) if (receipt[field] !== undefined) expect(String(receipt[field]).length).toBeLessThanOrEqual(2048);
    }
  });

  it('refuses malformed requests with invalid_request', async () => {
    const subject = await idp.oktaAccessToken();
    const a = agents['agent-a']!;
    await expectRefusal(a, { subject_token: subject, subject_token_type: 'urn:ietf:params:oauth:token-type:saml2', resource: API }, 'invalid_request', /subject_token_type/);
    await expectRefusal(a, { subject_token: subject, resource: API, requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }, 'invalid_request', /requested_token_type/);
    await expectRefusal(a, { subject_token: subject, resource: API, actor_token: 'x' }, 'invalid_request', /actor_token_type/);
    await expectRefusal(a, { subject_token: 'x'.repeat(17 * 1024), resource: API }, 'invalid_request', /too large/);
    const missing = await rawExchange(deputy.url, deputy.issuer, { ...a, id: a.id }, { subject_token: '', resource: API });
    expect(missing.status).toBe(400);
    expect(await json(missing)).toMatchObject({ error: 'invalid_request', error_description: expect.stringMatching(/subject_token/) });
  });

  it('checks actor_token: the agent\'s own signed JWT is accepted once; another key is refused', async () => {
    const a = agents['agent-a']!;
    const subject = await idp.oktaAccessToken();
    const good = await actorToken(a, deputy.issuer);
    const first = await rawExchange(deputy.url, deputy.issuer, a, { subject_token: subject, resource: API, scope: 'deputy.read', actor_token: good, actor_token_type: JWT_TYPE });
    expect(await first.text()).toMatch(/access_token/);
    await expectRefusal(a, { subject_token: subject, resource: API, scope: 'deputy.read', actor_token: good, actor_token_type: JWT_TYPE }, 'invalid_grant', /already been used/);
    const foreign = await actorToken(a, deputy.issuer, keys['agent-b']!.privateKey);
    await expectRefusal(a, { subject_token: subject, resource: API, scope: 'deputy.read', actor_token: foreign, actor_token_type: JWT_TYPE }, 'invalid_grant', /actor_token/);
    // Another kind of token signed with the agent's own key is not an actor token (RFC 8725 §3.11),
    // nor is one signed with a symmetric algorithm.
    for (const typ of ['at+jwt', 'dpop+jwt', 'deputy-receipt+jwt']) {
      const typed = await new SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: 'ES256', typ }).setIssuer(a.id).setSubject(a.id).setAudience(deputy.issuer).setIssuedAt().setExpirationTime('60s').sign(a.keys.privateKey);
      await expectRefusal(a, { subject_token: subject, resource: API, scope: 'deputy.read', actor_token: typed, actor_token_type: JWT_TYPE }, 'invalid_grant', /plain JWT/);
    }
    const hs = await new SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: 'HS256' }).setIssuer(a.id).setSubject(a.id).setAudience(deputy.issuer).setIssuedAt().setExpirationTime('60s').sign(new Uint8Array(32));
    await expectRefusal(a, { subject_token: subject, resource: API, scope: 'deputy.read', actor_token: hs, actor_token_type: JWT_TYPE }, 'invalid_grant', /actor_token/);
  });

  it('actor_token jti: spent with the token it was used for (one of two racing exchanges wins), and spent by a refused exchange too', async () => {
    const a = agents['agent-a']!;
    const subject = await idp.oktaAccessToken();
    const racing = await actorToken(a, deputy.issuer);
    const both = await Promise.all([1, 2].map(() => rawExchange(deputy.url, deputy.issuer, a, { subject_token: subject, resource: API, scope: 'deputy.read', actor_token: racing, actor_token_type: JWT_TYPE })));
    const bodies = await Promise.all(both.map(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, unknown> })));
    expect(bodies.filter((b) => b.status === 200)).toHaveLength(1);
    expect(bodies.find((b) => b.status !== 200)).toMatchObject({ status: 400, body: { error: 'invalid_grant', error_description: expect.stringMatching(/already been used/) } });
    // Refused after the actor check (a scope the subject token does not grant): the jti is spent all the same.
    const refused = await actorToken(a, deputy.issuer);
    await expectRefusal(a, { subject_token: subject, resource: API, scope: 'deputy.read no.such.scope', actor_token: refused, actor_token_type: JWT_TYPE }, 'invalid_scope', /scope/);
    await expectRefusal(a, { subject_token: subject, resource: API, scope: 'deputy.read', actor_token: refused, actor_token_type: JWT_TYPE }, 'invalid_grant', /already been used/);
  });

  it('one DPoP proof in four of ten concurrent exchanges of one agent (one group): one of the four wins; the losers leave no token record and no receipt; each token has exactly one receipt', async () => {
    const a = agents['agent-a']!;
    const subject = await idp.oktaAccessToken();
    const proof = await dpopProof(a.dpop, `${deputy.issuer}/token`);
    const before = (await deputy.store.query<{ n: number }>('SELECT count(*)::int AS n FROM token_records WHERE agent_id = $1', [a.id]))[0]!.n;
    const responses = await Promise.all(Array.from({ length: 10 }, (_, n) =>
      rawExchange(deputy.url, deputy.issuer, a, { subject_token: subject, resource: API, scope: 'deputy.read' }, n % 3 === 0 ? { proof } : {})));
    const bodies = await Promise.all(responses.map(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, unknown> })));
    const shared = bodies.filter((_, n) => n % 3 === 0);
    expect(shared.filter((b) => b.status === 200)).toHaveLength(1);
    for (const b of shared.filter((x) => x.status !== 200)) expect(b).toMatchObject({ status: 400, body: { error: 'invalid_dpop_proof' } });
    expect(bodies.filter((_, n) => n % 3 !== 0).map((b) => b.status)).toEqual([200, 200, 200, 200, 200, 200]);
    const jtis = bodies.filter((b) => b.status === 200).map((b) => JSON.parse(Buffer.from(String(b.body.access_token).split('.')[1]!, 'base64url').toString()).jti as string);
    const records = await deputy.store.query<{ jti: string }>('SELECT jti FROM token_records WHERE agent_id = $1', [a.id]);
    expect(records.length - before).toBe(7);
    expect(jtis.every((jti) => records.some((r) => r.jti === jti))).toBe(true);
    const receipts = await deputy.store.query<{ jws: string }>('SELECT jws FROM receipts WHERE agent_id = $1', [a.id]);
    const attested = receipts.map((r) => JSON.parse(Buffer.from(r.jws.split('.')[1]!, 'base64url').toString()).token_id as string | undefined);
    for (const jti of jtis) expect(attested.filter((t) => t === jti)).toHaveLength(1);
    // No receipt names a token that has no record.
    for (const t of attested) if (t !== undefined) expect(records.some((r) => r.jti === t)).toBe(true);
  });

  it('honours may_act in an IdP token', async () => {
    const subject = await idp.oktaAccessToken({ may_act: { sub: 'agent-b' } });
    await expectRefusal(agents['agent-a']!, { subject_token: subject, resource: API, scope: 'deputy.read' }, 'invalid_grant', /may_act does not name agent "agent-a"/);
    await expect(exchange(agents['agent-b']!, { subject_token: subject, resource: API, scope: 'deputy.read' })).resolves.toHaveProperty('access_token');
  });

  it('changes nothing in the store when an exchange fails', async () => {
    const count = async () => (await deputy.store.query<{ n: number }>('SELECT (SELECT count(*) FROM token_records)::int + (SELECT count(*) FROM vault_secrets)::int AS n'))[0]!.n;
    const before = await count();
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    await exchangeError(agents['agent-a']!, { subject_token: subject, resource: API, scope: 'deputy.write' });
    await exchangeError(agents['agent-a']!, { subject_token: subject, resource: 'https://nope.example.com', scope: 'deputy.read' });
    expect(await count()).toBe(before);
  });
});

describe('token exchange: DPoP', () => {
  it('requires a proof, and binds the token to its key', async () => {
    const a = agents['agent-a']!;
    const subject = await idp.oktaAccessToken();
    const res = await rawExchange(deputy.url, deputy.issuer, a, { subject_token: subject, resource: API, scope: 'deputy.read' }, { proof: null });
    expect(res.status).toBe(400);
    expect(await json(res)).toMatchObject({ error: 'invalid_dpop_proof', error_description: expect.stringMatching(/DPoP proof is required/) });
  });

  it('refuses a replayed proof, wrong htm / htu, stale iat and a wrong typ', async () => {
    const a = agents['agent-a']!;
    const subject = await idp.oktaAccessToken();
    const params = { subject_token: subject, resource: API, scope: 'deputy.read' };
    const proof = await dpopProof(a.dpop, `${deputy.issuer}/token`);
    const first = await rawExchange(deputy.url, deputy.issuer, a, params, { proof });
    expect(await first.text()).toMatch(/access_token/);
    const replay = await rawExchange(deputy.url, deputy.issuer, a, params, { proof });
    expect(await json(replay)).toMatchObject({ error: 'invalid_dpop_proof', error_description: expect.stringMatching(/replay/) });

    const bad: Array<[Parameters<typeof dpopProof>[2], RegExp]> = [
      [{ htm: 'GET' }, /htm/],
      [{ htu: `${deputy.issuer}/introspect` }, /htu/],
      [{ htu: 'https://evil.example.com/token' }, /htu/],
      [{ typ: 'JWT' }, /DPoP/],
    ];
    for (const [options, description] of bad) {
      const res = await rawExchange(deputy.url, deputy.issuer, a, params, { proofOptions: options });
      expect(res.status).toBe(400);
      const body = await json(res);
      expect(body.error).toBe('invalid_dpop_proof');
      expect(body.error_description).toMatch(description);
    }
    // A stale proof without a nonce is answered with one (RFC 9449 §8, §11.1): a client whose
    // clock is off can still succeed with it.
    for (const age of [120, 3600]) {
      const stale = await rawExchange(deputy.url, deputy.issuer, a, params, { proofOptions: { iat: Math.floor(Date.now() / 1000) - age } });
      expect(stale.status).toBe(400);
      expect(await json(stale)).toMatchObject({ error: 'use_dpop_nonce', error_description: expect.stringMatching(/iat/) });
      const nonce = stale.headers.get('dpop-nonce');
      expect(nonce).toBeTruthy();
      const retried = await rawExchange(deputy.url, deputy.issuer, a, params, { proofOptions: { iat: Math.floor(Date.now() / 1000) - age, nonce: nonce! } });
      expect((await json(retried)).token_type).toBe('DPoP');
    }
  });
});

describe('sub-delegation and the chain', () => {
  it('delegates two levels deep through handoffs; scopes narrow; introspection returns the chain', async () => {
    const [a, b, c] = [agents['agent-a']!, agents['agent-b']!, agents['agent-c']!];
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read', 'deputy.write'] });
    const toB = await exchange(a, { subject_token: subject, audience: handoff('agent-b'), scope: 'deputy.read deputy.write' });
    expect(claimsOf(toB.access_token)).toMatchObject({ aud: handoff('agent-b'), may_act: { sub: 'agent-b' }, act: { sub: 'agent-a' }, cnf: { jkt: a.dpop.jkt } });

    // B cannot widen beyond what A's token carried or what B may hold.
    expect((await exchangeError(b, { subject_token: toB.access_token, audience: handoff('agent-c'), scope: 'deputy.write' })).error).toBe('invalid_scope');
    const bToC = await exchange(b, { subject_token: toB.access_token, audience: handoff('agent-c') });
    expect(bToC.scope).toBe('deputy.read');
    expect(claimsOf(bToC.access_token)).toMatchObject({ client_id: 'agent-b', act: { sub: 'agent-b', act: { sub: 'agent-a' } }, may_act: { sub: 'agent-c' }, cnf: { jkt: b.dpop.jkt } });

    const cToken = await exchange(c, { subject_token: bToC.access_token, resource: PAY });
    const claims = claimsOf(cToken.access_token);
    expect(claims).toMatchObject({ client_id: 'agent-c', aud: PAY, scope: 'deputy.read', act: { sub: 'agent-c', act: { sub: 'agent-b', act: { sub: 'agent-a' } } }, cnf: { jkt: c.dpop.jkt } });
    expect(claims.sub).toBe(claimsOf(toB.access_token).sub);

    const info = await introspect(cToken.access_token);
    expect(info).toMatchObject({
      active: true,
      sub: claims.sub,
      client_id: 'agent-c',
      token_type: 'DPoP',
      cnf: { jkt: c.dpop.jkt },
      act: { sub: 'agent-c', act: { sub: 'agent-b', act: { sub: 'agent-a' } } },
      delegation_chain: ['agent-a', 'agent-b', 'agent-c'],
      delegation_depth: 3,
    });
    // Another agent may not introspect C's token; C may.
    expect(await introspect(cToken.access_token, { id: 'agent-e', keys: keys['agent-e']! })).toEqual({ active: false });
    expect((await introspect(cToken.access_token, { id: 'agent-c', keys: keys['agent-c']! })).active).toBe(true);
  });

  it('refuses a leaked agent token presented by another agent', async () => {
    const subject = await idp.oktaAccessToken();
    const aToken = await exchange(agents['agent-a']!, { subject_token: subject, resource: API, scope: 'deputy.read' });
    const err = await exchangeError(agents['agent-e']!, { subject_token: aToken.access_token, resource: API });
    expect(err.error).toBe('invalid_grant');
    expect(err.error_description).toMatch(/bound to another key/);
    // A handoff for B is useless to E.
    const toB = await exchange(agents['agent-a']!, { subject_token: subject, audience: handoff('agent-b'), scope: 'deputy.read' });
    expect((await exchangeError(agents['agent-e']!, { subject_token: toB.access_token, resource: API })).error_description).toMatch(/may_act does not name agent "agent-e"/);
  });

  it('lets the holder narrow its own token with proof of possession (no new act level)', async () => {
    const a = agents['agent-a']!;
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read', 'deputy.write'] });
    const wide = await exchange(a, { subject_token: subject, resource: API, scope: 'deputy.read deputy.write' });
    const narrow = await exchange(a, { subject_token: wide.access_token, resource: MAIL, scope: 'deputy.read' });
    expect(claimsOf(narrow.access_token)).toMatchObject({ act: { sub: 'agent-a' }, scope: 'deputy.read', aud: MAIL });
    expect(claimsOf(narrow.access_token)).not.toHaveProperty('act.act');
  });

  it('enforces the depth limit', async () => {
    const subject = await idp.oktaAccessToken();
    const toD = await exchange(agents['agent-a']!, { subject_token: subject, audience: handoff('agent-d'), scope: 'deputy.read' });
    const err = await exchangeError(agents['agent-d']!, { subject_token: toD.access_token, resource: API });
    expect(err.error).toBe('invalid_grant');
    expect(err.error_description).toMatch(/depth 2 exceeds the limit of 1/);
  });

  it('revocation cascades through a three-level chain, and a revoked link cannot be extended', async () => {
    const [a, b, c] = [agents['agent-a']!, agents['agent-b']!, agents['agent-c']!];
    const subject = await idp.oktaAccessToken();
    const toB = await exchange(a, { subject_token: subject, audience: handoff('agent-b'), scope: 'deputy.read' });
    const bToC = await exchange(b, { subject_token: toB.access_token, audience: handoff('agent-c') });
    const cToken = await exchange(c, { subject_token: bToC.access_token, resource: PAY });
    const sibling = await exchange(a, { subject_token: subject, resource: API, scope: 'deputy.read' });

    // E is not in the chain: its revocation request is refused (RFC 7009 §2.1) and changes nothing.
    const refused = await revoke(toB.access_token, { id: 'agent-e', keys: keys['agent-e']! });
    expect(refused.status).toBe(400);
    expect((await json(refused)).error).toBe('unauthorized_client');
    expect((await introspect(cToken.access_token)).active).toBe(true);

    expect((await revoke(toB.access_token, { id: 'agent-a', keys: keys['agent-a']! })).status).toBe(200);
    for (const token of [toB, bToC, cToken]) expect(await introspect(token.access_token)).toEqual({ active: false });
    expect((await introspect(sibling.access_token)).active).toBe(true);
    expect(await deputy.revocations.isRevoked(claimsOf(cToken.access_token).jti!)).toBe(true);

    const again = await exchangeError(b, { subject_token: toB.access_token, audience: handoff('agent-c') });
    expect(again).toMatchObject({ error: 'invalid_grant', error_description: expect.stringMatching(/revoked/) });
  });

  it('an ancestor above the subject token revoked between the exchange\'s lineage check and its write → invalid_grant, nothing written', async () => {
    const [a, b, c] = [agents['agent-a']!, agents['agent-b']!, agents['agent-c']!];
    const subject = await idp.oktaAccessToken();
    const toB = await exchange(a, { subject_token: subject, audience: handoff('agent-b'), scope: 'deputy.read' });
    const bToC = await exchange(b, { subject_token: toB.access_token, audience: handoff('agent-c') });
    const receipts = deputy.receipts;
    const original = receipts.appendWith.bind(receipts);
    // The interleaving, made deterministic: C's exchange has verified bToC's lineage live and
    // signed; before its write runs, A revokes toB (bToC's parent, C's grandparent).
    receipts.appendWith = async (input, writes) => {
      receipts.appendWith = original;
      expect((await revoke(toB.access_token, { id: 'agent-a', keys: keys['agent-a']! })).status).toBe(200);
      return original(input, writes);
    };
    const chainBefore = await deputy.store.query<{ n: number }>("SELECT count(*)::int AS n FROM receipts WHERE agent_id = 'agent-c'");
    const recordsBefore = await deputy.store.query<{ n: number }>("SELECT count(*)::int AS n FROM token_records WHERE agent_id = 'agent-c'");
    try {
      const refused = await exchangeError(c, { subject_token: bToC.access_token, resource: PAY });
      expect(refused).toMatchObject({ error: 'invalid_grant', error_description: expect.stringMatching(/revoked/) });
    } finally {
      receipts.appendWith = original;
    }
    expect(await deputy.store.query("SELECT count(*)::int AS n FROM token_records WHERE agent_id = 'agent-c'")).toEqual(recordsBefore);
    expect(await deputy.store.query("SELECT count(*)::int AS n FROM receipts WHERE agent_id = 'agent-c'")).toEqual(chainBefore);
  });

  it('disabling an agent stops its authentication and revokes its tokens and their descendants', async () => {
    const keysX = await clientKeys();
    const created = await authenticatedPost(`${deputy.url}/token`, deputy.issuer, admin, { grant_type: 'client_credentials', scope: 'deputy:admin' });
    const adminToken = (await json(created)).access_token as string;
    const call = (path: string, init: RequestInit = {}) =>
      fetch(`${deputy.url}${path}`, { ...init, headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' } });
    expect((await call('/admin/agents', { method: 'POST', body: JSON.stringify({ id: 'agent-x', name: 'X', owner: 'o@example.com', scopes: ['deputy.read'], audiences: [API, handoff('agent-b')], jwks: keysX.jwks }) })).status).toBe(201);
    const x = await testAgent(deputy.issuer, 'agent-x', keysX);
    const subject = await idp.oktaAccessToken();
    const xToken = await exchange(x, { subject_token: subject, resource: API });
    const toB = await exchange(x, { subject_token: subject, audience: handoff('agent-b') });
    const bToken = await exchange(agents['agent-b']!, { subject_token: toB.access_token, resource: API });

    expect((await call('/admin/agents/agent-x/disable', { method: 'POST' })).status).toBe(200);
    for (const t of [xToken, toB, bToken]) expect((await introspect(t.access_token)).active).toBe(false);
    const refused = await exchangeError(x, { subject_token: subject, resource: API });
    expect(refused.error).toBe('invalid_client');
  });
});
