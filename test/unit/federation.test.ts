/**
 * FederationVerifier against a real-HTTP mock enterprise IdP (Okta, Entra ID, generic OIDC):
 * discovery with openid-client, remote JWKS with jose, every refusal with its own code.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { UnsecuredJWT } from 'jose';
import { trustedIssuerSchema, type TrustedIssuerConfigInput } from '../../src/federation/config.js';
import { FederationError, type FederationErrorCode } from '../../src/federation/errors.js';
import { peekIssuer } from '../../src/federation/issuer.js';
import { refuseOktaOrgAccessToken } from '../../src/federation/presets/okta.js';
import { oidcIdentity } from '../../src/federation/presets/oidc.js';
import { entraIdentity } from '../../src/federation/presets/entra.js';
import { FederationVerifier, MAX_SUBJECT_TOKEN_BYTES, type SubjectTokenKind } from '../../src/federation/verify.js';
import {
  ENTRA_API_CLIENT_ID,
  ENTRA_APP_ID_URI,
  ENTRA_CLIENT_APP_ID,
  ENTRA_OTHER_TENANT,
  ENTRA_TENANT,
  ENTRA_USER_OID,
  OKTA_AUDIENCE,
  OKTA_CLIENT_ID,
  OKTA_USER_ID,
  secretOf,
  startMockIdp,
  type MockIdp,
} from '../support/mock-idp.js';

const THIRD_TENANT = 'c0ffee00-1234-4abc-8def-0123456789ab';

let idp: MockIdp;

beforeAll(async () => {
  idp = await startMockIdp();
});

afterAll(async () => {
  await idp?.close();
});

function verifier(...configs: TrustedIssuerConfigInput[]): FederationVerifier {
  return new FederationVerifier(configs.map((config) => trustedIssuerSchema.parse(config)));
}

/** Claim values the tests put in tokens; no error description may repeat them. */
const SECRET_VALUES = [OKTA_USER_ID, ENTRA_USER_OID, 'alice@example.com', 'alice@contoso.example', 'user-1234', 'SECRET-MARKER'];

/** The refusal must carry `code` and a description naming neither the token nor claim values from it. */
async function expectRefusal(v: FederationVerifier, token: string, kind: SubjectTokenKind, code: FederationErrorCode): Promise<FederationError> {
  const error = await v.verify(token, kind).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected ${code}`).toBeInstanceOf(FederationError);
  const refusal = error as FederationError;
  expect(refusal.code, refusal.description).toBe(code);
  expectCleanDescription(refusal, token);
  return refusal;
}

function expectCleanDescription(error: FederationError, token: string): void {
  expect(error.description.length).toBeGreaterThan(10);
  expect(error.message).toBe(error.description);
  if (token.length > 0) expect(error.description).not.toContain(token);
  for (const part of token.split('.')) if (part.length >= 8) expect(error.description).not.toContain(part.slice(0, 8));
  for (const value of SECRET_VALUES) expect(error.description).not.toContain(value);
}

function host(): string {
  return new URL(idp.base).host;
}

describe('FederationVerifier: accepted tokens', () => {
  it('Okta custom authorization server access token', async () => {
    const v = verifier(idp.issuerConfig('okta'));
    const token = await idp.oktaAccessToken({ scp: ['openid', 'deputy.read', 'deputy.write'], groups: ['Engineering'] });
    const identity = await v.verify(token, 'access_token');
    expect(identity).toMatchObject({
      userId: `okta:${host()}:${OKTA_USER_ID}`,
      issuer: idp.oktaIssuer,
      issuerId: 'okta',
      preset: 'okta',
      subject: 'alice@example.com',
      scopes: ['openid', 'deputy.read', 'deputy.write'],
      groups: ['Engineering'],
      clientId: OKTA_CLIENT_ID,
    });
    expect(identity.expiresAt).toBeGreaterThan(Date.now() / 1000);
    expect(identity.tokenId).toMatch(/^AT\./);
    expect(identity.tenant).toBeUndefined();
    // the same token presented as a generic JWT
    await expect(v.verify(token, 'jwt')).resolves.toMatchObject({ userId: `okta:${host()}:${OKTA_USER_ID}` });
  });

  it('Okta ID token (aud = idToken.clientId, not the API audience), custom and org authorization servers', async () => {
    const custom = verifier(idp.issuerConfig('okta', { idToken: { clientId: OKTA_CLIENT_ID } }));
    const identity = await custom.verify(await idp.oktaIdToken(), 'id_token');
    expect(identity).toMatchObject({
      userId: `okta:${host()}:${OKTA_USER_ID}`,
      subject: OKTA_USER_ID,
      email: 'alice@example.com',
      name: 'Alice Example',
      scopes: [],
    });
    expect(identity.clientId).toBeUndefined();

    const org = verifier(idp.issuerConfig('okta', { id: 'okta-org', issuer: idp.oktaOrgIssuer, audience: idp.base, idToken: { clientId: OKTA_CLIENT_ID } }));
    const orgIdentity = await org.verify(await idp.oktaIdToken({ server: 'org' }), 'id_token');
    // same org, same user id, whichever authorization server
    expect(orgIdentity).toMatchObject({ userId: identity.userId, issuerId: 'okta-org', issuer: idp.base });
  });

  it('Entra ID v2.0 access token', async () => {
    const v = verifier(idp.issuerConfig('entra'));
    const token = await idp.entraAccessToken({ scp: 'Deputy.Read Deputy.Write', roles: ['Deputy.Admin'] });
    const identity = await v.verify(token, 'access_token');
    expect(identity).toMatchObject({
      userId: `entra:${ENTRA_TENANT}:${ENTRA_USER_OID}`,
      issuer: idp.entraIssuer(ENTRA_TENANT),
      preset: 'entra',
      tenant: ENTRA_TENANT,
      scopes: ['Deputy.Read', 'Deputy.Write'],
      roles: ['Deputy.Admin'],
      clientId: ENTRA_CLIENT_APP_ID,
      email: 'alice@contoso.example',
    });
    expect(identity.tokenId).toBeTruthy();
  });

  it('Entra ID v1.0 access token (sts issuer, appid, upn, App ID URI audience)', async () => {
    const v = verifier(idp.issuerConfig('entra'));
    const token = await idp.entraAccessToken({ version: 1, scp: 'Deputy.Read', clientId: 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee' });
    const identity = await v.verify(token, 'access_token');
    expect(identity).toMatchObject({
      userId: `entra:${ENTRA_TENANT}:${ENTRA_USER_OID}`,
      issuer: idp.entraIssuer(ENTRA_TENANT, 1),
      scopes: ['Deputy.Read'],
      roles: [],
      clientId: 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee',
      email: 'alice@contoso.example',
    });
    expect(JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).aud).toBe(ENTRA_APP_ID_URI);
  });

  it('Entra ID multi-tenant: every allowed tenant, one key set', async () => {
    const v = verifier(idp.issuerConfig('entra', { tenants: [ENTRA_TENANT, ENTRA_OTHER_TENANT] }));
    const a = await v.verify(await idp.entraAccessToken({ tid: ENTRA_TENANT }), 'access_token');
    const b = await v.verify(await idp.entraAccessToken({ tid: ENTRA_OTHER_TENANT, version: 1 }), 'access_token');
    expect(a.userId).toBe(`entra:${ENTRA_TENANT}:${ENTRA_USER_OID}`);
    expect(b.userId).toBe(`entra:${ENTRA_OTHER_TENANT}:${ENTRA_USER_OID}`);
    expect(b.tenant).toBe(ENTRA_OTHER_TENANT);
    await expectRefusal(v, await idp.entraAccessToken({ tid: THIRD_TENANT }), 'access_token', 'ERR_FEDERATION_TENANT');
  });

  it('Entra ID single tenant (tenant-specific issuer and discovery)', async () => {
    const before = idp.requests.byPath[`/${ENTRA_TENANT}/v2.0/.well-known/openid-configuration`] ?? 0;
    const v = verifier(idp.issuerConfig('entra', { issuer: idp.entraIssuer(ENTRA_TENANT), tenants: undefined }));
    await expect(v.verify(await idp.entraAccessToken(), 'access_token')).resolves.toMatchObject({ tenant: ENTRA_TENANT });
    expect(idp.requests.byPath[`/${ENTRA_TENANT}/v2.0/.well-known/openid-configuration`]).toBe(before + 1);
    await expectRefusal(v, await idp.entraAccessToken({ tid: ENTRA_OTHER_TENANT }), 'access_token', 'ERR_FEDERATION_TENANT');
  });

  it('generic OIDC: userId is {iss}#{sub}', async () => {
    const v = verifier(idp.issuerConfig('oidc'));
    const identity = await v.verify(await idp.oidcToken({ scope: 'read write', azp: 'client-7', email: 'bob@example.org' }), 'jwt');
    expect(identity).toMatchObject({
      userId: `${idp.oidcIssuer}#user-1234`,
      preset: 'oidc',
      scopes: ['read', 'write'],
      clientId: 'client-7',
      email: 'bob@example.org',
    });
  });

  it('routes by iss across several issuers; issuerFor peeks', async () => {
    const v = verifier(idp.issuerConfig('okta'), idp.issuerConfig('entra'), idp.issuerConfig('oidc'));
    expect(v.issuerFor(idp.oktaIssuer)?.id).toBe('okta');
    expect(v.issuerFor(idp.entraIssuer(ENTRA_TENANT, 1))?.id).toBe('entra');
    expect(v.issuerFor(idp.entraIssuer(THIRD_TENANT))).toBeUndefined();
    expect(v.issuerFor(`${idp.oidcIssuer}/`)).toBeUndefined();
    expect((await v.verify(await idp.oktaAccessToken(), 'access_token')).preset).toBe('okta');
    expect((await v.verify(await idp.entraAccessToken(), 'access_token')).preset).toBe('entra');
    expect((await v.verify(await idp.oidcToken(), 'jwt')).preset).toBe('oidc');
  });

  it('caches the JWKS: two verifications, one discovery and one JWKS fetch', async () => {
    const v = verifier(idp.issuerConfig('okta'));
    const { discovery, jwks } = idp.requests;
    await v.verify(await idp.oktaAccessToken(), 'access_token');
    await v.verify(await idp.oktaAccessToken({ uid: '00uother' }), 'access_token');
    expect(idp.requests.discovery - discovery).toBe(1);
    expect(idp.requests.jwks - jwks).toBe(1);
  });

  it('concurrent first verifications share one discovery and one JWKS fetch', async () => {
    const v = verifier(idp.issuerConfig('oidc'));
    const { discovery, jwks } = idp.requests;
    const tokens = await Promise.all([1, 2, 3, 4].map((n) => idp.oidcToken({ sub: `u${n}` })));
    await Promise.all(tokens.map((t) => v.verify(t, 'jwt')));
    expect(idp.requests.discovery - discovery).toBe(1);
    expect(idp.requests.jwks - jwks).toBe(1);
  });

  it('accepts exp within the clock tolerance', async () => {
    const v = verifier(idp.issuerConfig('oidc', { clockToleranceSeconds: 30 }));
    await expect(v.verify(await idp.oidcToken({ expiresIn: -10 }), 'jwt')).resolves.toBeTruthy();
  });
});

describe('FederationVerifier: refusals', () => {
  it('untrusted issuer, missing iss, Entra v1 when acceptV1 is false', async () => {
    const v = verifier(idp.issuerConfig('oidc'), idp.issuerConfig('entra', { acceptV1: false }));
    const wrong = await expectRefusal(v, await idp.oidcToken({ iss: `${idp.base}/other` }), 'jwt', 'ERR_FEDERATION_UNTRUSTED_ISSUER');
    expect(wrong.description).toContain('oidc, entra');
    await expectRefusal(v, await idp.oidcToken({ iss: `${idp.oidcIssuer}/` }), 'jwt', 'ERR_FEDERATION_UNTRUSTED_ISSUER');
    await expectRefusal(v, await idp.oidcToken({ iss: undefined }), 'jwt', 'ERR_FEDERATION_UNTRUSTED_ISSUER');
    await expectRefusal(v, await idp.oidcToken({ iss: 42 }), 'jwt', 'ERR_FEDERATION_UNTRUSTED_ISSUER');
    await expectRefusal(v, await idp.entraAccessToken({ version: 1 }), 'access_token', 'ERR_FEDERATION_UNTRUSTED_ISSUER');
    await expectRefusal(verifier(), await idp.oidcToken(), 'jwt', 'ERR_FEDERATION_UNTRUSTED_ISSUER');
  });

  it('wrong audience names the required audience', async () => {
    const v = verifier(idp.issuerConfig('okta'));
    const error = await expectRefusal(v, await idp.oktaAccessToken({ aud: 'api://default' }), 'access_token', 'ERR_FEDERATION_AUDIENCE');
    expect(error.description).toContain(OKTA_AUDIENCE);
    const entra = verifier(idp.issuerConfig('entra'));
    const graphAud = await expectRefusal(entra, await idp.entraAccessToken({ aud: 'https://management.azure.com' }), 'access_token', 'ERR_FEDERATION_AUDIENCE');
    expect(graphAud.description).toContain(`${ENTRA_API_CLIENT_ID} or ${ENTRA_APP_ID_URI}`);
    const idToken = verifier(idp.issuerConfig('okta', { idToken: { clientId: OKTA_CLIENT_ID } }));
    const id = await expectRefusal(idToken, await idp.oktaIdToken({ aud: '0oaSomeOtherClient' }), 'id_token', 'ERR_FEDERATION_AUDIENCE');
    expect(id.description).toMatch(/client id/);
    // an access token's audience presented as an ID token does not pass either
    await expectRefusal(idToken, await idp.oktaAccessToken(), 'id_token', 'ERR_FEDERATION_AUDIENCE');
  });

  it('Entra tenant not in the allow-list', async () => {
    const v = verifier(idp.issuerConfig('entra'));
    const { jwks } = idp.requests;
    const error = await expectRefusal(v, await idp.entraAccessToken({ tid: THIRD_TENANT }), 'access_token', 'ERR_FEDERATION_TENANT');
    expect(error.description).toContain('"entra"');
    expect(error.description).not.toContain(THIRD_TENANT);
    expect(idp.requests.jwks).toBe(jwks);
  });

  it('Entra tid differing from the tenant of iss', async () => {
    const v = verifier(idp.issuerConfig('entra', { tenants: [ENTRA_TENANT, ENTRA_OTHER_TENANT] }));
    const token = await idp.entraAccessToken({ tid: ENTRA_OTHER_TENANT, iss: idp.entraIssuer(ENTRA_TENANT) });
    const error = await expectRefusal(v, token, 'access_token', 'ERR_FEDERATION_CLAIMS');
    expect(error.description).toMatch(/tid/);
  });

  it('expired, not yet valid, issued in the future', async () => {
    const v = verifier(idp.issuerConfig('okta'));
    const now = Math.floor(Date.now() / 1000);
    const expired = await expectRefusal(v, await idp.oktaAccessToken({ expiresIn: -120 }), 'access_token', 'ERR_FEDERATION_EXPIRED');
    // the cause (for logs) names the failed check, not the claims set jose attaches to its errors
    expect(expired.cause).toMatchObject({ code: 'ERR_JWT_EXPIRED', claim: 'exp' });
    expect(JSON.stringify(expired.cause)).not.toContain(OKTA_USER_ID);
    await expectRefusal(v, await idp.oktaAccessToken({ nbf: now + 300 }), 'access_token', 'ERR_FEDERATION_NOT_YET_VALID');
    await expectRefusal(v, await idp.oktaAccessToken({ iat: now + 300 }), 'access_token', 'ERR_FEDERATION_NOT_YET_VALID');
  });

  it('missing exp or sub', async () => {
    const v = verifier(idp.issuerConfig('oidc'));
    const noExp = await expectRefusal(v, await idp.oidcToken({ exp: undefined }), 'jwt', 'ERR_FEDERATION_CLAIMS');
    expect(noExp.description).toContain('"exp"');
    const noSub = await expectRefusal(v, await idp.oidcToken({ sub: undefined }), 'jwt', 'ERR_FEDERATION_CLAIMS');
    expect(noSub.description).toContain('"sub"');
    await expectRefusal(v, await idp.oidcToken({ exp: 'tomorrow' }), 'jwt', 'ERR_FEDERATION_CLAIMS');
    await expectRefusal(verifier(idp.issuerConfig('entra')), await idp.entraAccessToken({ oid: undefined }), 'access_token', 'ERR_FEDERATION_CLAIMS');
  });

  it('identifier and attribute claims too long or shaped like a token are refused as malformed, naming the claim (they become the user id and every receipt\'s user)', async () => {
    const v = verifier(idp.issuerConfig('oidc'));
    const jws = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4eHh4eHgifQ.c2lnbmF0dXJlc2ln';
    const identifiers = ['sub', 'tid', 'oid', 'uid', 'azp', 'client_id', 'cid', 'appid', 'jti', 'uti'];
    const attributes = ['email', 'preferred_username', 'upn', 'name'];
    for (const [claims, max] of [[identifiers, 255], [attributes, 1024]] as const) {
      for (const claim of claims) {
        for (const value of ['x'.repeat(max + 1), `user ${jws}`, jws]) {
          const error = await expectRefusal(v, await idp.oidcToken({ [claim]: value }), 'jwt', 'ERR_FEDERATION_CLAIMS');
          expect(error.description).toContain(`"${claim}"`);
          expect(error.description).toContain(`at most ${max} characters`);
        }
        // at the bound, and an ordinary dotted value, still verify
        await expect(v.verify(await idp.oidcToken({ [claim]: 'y'.repeat(max) }), 'jwt')).resolves.toBeDefined();
        await expect(v.verify(await idp.oidcToken({ [claim]: 'first.last@example.org' }), 'jwt')).resolves.toBeDefined();
      }
    }
  });

  it('alg none, HS256 signed with the public key as secret, an algorithm not configured', async () => {
    const v = verifier(idp.issuerConfig('okta'));
    const { jwks } = idp.requests;
    await expectRefusal(v, await idp.oktaAccessToken({ sign: { alg: 'none' } }), 'access_token', 'ERR_FEDERATION_ALG');
    const pem = await idp.publicKeyPem();
    await expectRefusal(v, await idp.oktaAccessToken({ sign: { alg: 'HS256', key: secretOf(pem) } }), 'access_token', 'ERR_FEDERATION_ALG');
    const jwkJson = JSON.stringify(idp.activeKey.publicJwk);
    await expectRefusal(v, await idp.oktaAccessToken({ sign: { alg: 'HS256', key: secretOf(jwkJson) } }), 'access_token', 'ERR_FEDERATION_ALG');
    const ec = await idp.createKey('ES256');
    await expectRefusal(v, await idp.oktaAccessToken({ sign: { key: ec } }), 'access_token', 'ERR_FEDERATION_ALG');
    const [, payload, signature] = (await idp.oktaAccessToken()).split('.');
    const noAlg = `${Buffer.from(JSON.stringify({ typ: 'JWT', kid: idp.activeKey.kid })).toString('base64url')}.${payload}.${signature}`;
    await expectRefusal(v, noAlg, 'access_token', 'ERR_FEDERATION_ALG');
    // refused before any key was fetched
    expect(idp.requests.jwks).toBe(jwks);
  });

  it('unknown kid (key not published, after a refetch)', async () => {
    const v = verifier(idp.issuerConfig('okta'));
    await v.verify(await idp.oktaAccessToken(), 'access_token');
    const { jwks } = idp.requests;
    const stranger = await idp.createKey();
    await expectRefusal(v, await idp.oktaAccessToken({ sign: { key: stranger } }), 'access_token', 'ERR_FEDERATION_UNKNOWN_KID');
    expect(idp.requests.jwks - jwks).toBe(1);
    await expectRefusal(v, await idp.oktaAccessToken({ sign: { kid: 'no-such-kid' } }), 'access_token', 'ERR_FEDERATION_UNKNOWN_KID');
  });

  it('published kid, wrong key: signature', async () => {
    const v = verifier(idp.issuerConfig('okta'));
    const stranger = await idp.createKey();
    await expectRefusal(v, await idp.oktaAccessToken({ sign: { key: stranger, kid: idp.activeKey.kid } }), 'access_token', 'ERR_FEDERATION_SIGNATURE');
  });

  it('tampered payload', async () => {
    const v = verifier(idp.issuerConfig('okta'));
    const [header, payload, signature] = (await idp.oktaAccessToken()).split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const forged = Buffer.from(JSON.stringify({ ...claims, uid: '00uadmin', scp: ['deputy.admin'] })).toString('base64url');
    await expectRefusal(v, `${header}.${forged}.${signature}`, 'access_token', 'ERR_FEDERATION_SIGNATURE');
    await expectRefusal(v, `${header}.${payload}.${signature.slice(0, -4)}AAAA`, 'access_token', 'ERR_FEDERATION_SIGNATURE');
  });

  it('oversized token', async () => {
    const v = verifier(idp.issuerConfig('okta'));
    const big = await idp.oktaAccessToken({ padding: 'x'.repeat(MAX_SUBJECT_TOKEN_BYTES) });
    const error = await expectRefusal(v, big, 'access_token', 'ERR_FEDERATION_TOO_LARGE');
    expect(error.description).toContain(String(MAX_SUBJECT_TOKEN_BYTES));
    await expectRefusal(v, 'é'.repeat(MAX_SUBJECT_TOKEN_BYTES / 2 + 1), 'access_token', 'ERR_FEDERATION_TOO_LARGE');
  });

  it('malformed tokens and encrypted tokens', async () => {
    const v = verifier(idp.issuerConfig('okta'));
    const b64 = (value: string) => Buffer.from(value).toString('base64url');
    for (const token of ['', 'not-a-jwt', 'a.b', 'a.b.c.d', `${b64('{"alg":"RS256"}')}.${b64('{}')}.sig nature`, `${b64('nope')}.${b64('{}')}.c2ln`, `${b64('{"alg":"RS256"}')}.${b64('[1,2]')}.c2ln`, `${b64('{"alg":"RS256"}')}.${b64('not json')}.c2ln`, '{"payload":"e30","signatures":[]}']) {
      await expectRefusal(v, token, 'access_token', 'ERR_FEDERATION_MALFORMED');
    }
    const jwe = `${b64('{"alg":"RSA-OAEP-256","enc":"A256GCM"}')}.${b64('key')}.${b64('iv')}.${b64('ciphertext')}.${b64('tag')}`;
    const error = await expectRefusal(v, jwe, 'access_token', 'ERR_FEDERATION_MALFORMED');
    expect(error.description).toMatch(/encrypted/);
  });

  it('Microsoft Graph token (header nonce) is unverifiable', async () => {
    const v = verifier(idp.issuerConfig('entra'));
    const { jwks } = idp.requests;
    const token = await idp.entraAccessToken({ aud: '00000003-0000-0000-c000-000000000000', sign: { header: { nonce: 'SECRET-MARKER-nonce' } } });
    const error = await expectRefusal(v, token, 'access_token', 'ERR_FEDERATION_UNVERIFIABLE');
    expect(error.description).toContain('Microsoft Graph');
    expect(idp.requests.jwks).toBe(jwks);
  });

  it('Okta org authorization server access token is unverifiable (ID tokens are fine)', async () => {
    const v = verifier(idp.issuerConfig('okta', { id: 'okta-org', issuer: idp.oktaOrgIssuer, audience: idp.base, idToken: { clientId: OKTA_CLIENT_ID } }));
    const error = await expectRefusal(v, await idp.oktaAccessToken({ server: 'org' }), 'access_token', 'ERR_FEDERATION_UNVERIFIABLE');
    expect(error.description).toMatch(/org authorization server/);
    await expectRefusal(v, await idp.oktaAccessToken({ server: 'org' }), 'jwt', 'ERR_FEDERATION_UNVERIFIABLE');
    await expect(v.verify(await idp.oktaIdToken({ server: 'org' }), 'jwt')).resolves.toMatchObject({ issuerId: 'okta-org' });
  });
});

describe('FederationVerifier: key rotation and availability', () => {
  let rotating: MockIdp;

  beforeAll(async () => {
    rotating = await startMockIdp();
  });

  afterAll(async () => {
    await rotating?.close();
  });

  it('follows a rotation without restart; tokens of the removed key are refused', async () => {
    const v = verifier(rotating.issuerConfig('okta'));
    const oldToken = await rotating.oktaAccessToken();
    await v.verify(oldToken, 'access_token');
    const { jwks } = rotating.requests;
    const { previous, current } = await rotating.rotate();
    expect(rotating.publishedKeys.map((k) => k.kid)).toEqual([current.kid]);
    // a token with the new kid triggers one refetch, then verifies
    await expect(v.verify(await rotating.oktaAccessToken(), 'access_token')).resolves.toMatchObject({ preset: 'okta' });
    expect(rotating.requests.jwks - jwks).toBe(1);
    // the old key is gone from the refreshed key set
    await expectRefusal(v, await rotating.oktaAccessToken({ sign: { key: previous } }), 'access_token', 'ERR_FEDERATION_UNKNOWN_KID');
    await expectRefusal(v, oldToken, 'access_token', 'ERR_FEDERATION_UNKNOWN_KID');
  });

  it('keeps accepting the previous key while it stays published', async () => {
    const v = verifier(rotating.issuerConfig('entra'));
    const { previous } = await rotating.rotate({ keepOld: true });
    await expect(v.verify(await rotating.entraAccessToken(), 'access_token')).resolves.toBeTruthy();
    await expect(v.verify(await rotating.entraAccessToken({ sign: { key: previous } }), 'access_token')).resolves.toBeTruthy();
  });

  it('IdP unavailable: discovery, JWKS, connection refused; recovers afterwards', async () => {
    try {
      rotating.setUnavailable('discovery');
      const v = verifier(rotating.issuerConfig('oidc'));
      const token = await rotating.oidcToken();
      const error = await expectRefusal(v, token, 'jwt', 'ERR_FEDERATION_ISSUER_UNAVAILABLE');
      expect(error.description).toContain('"oidc"');

      rotating.setUnavailable('jwks');
      await expectRefusal(v, token, 'jwt', 'ERR_FEDERATION_ISSUER_UNAVAILABLE');

      rotating.setUnavailable(false);
      // jwksCooldownSeconds is 0 in tests: the same verifier recovers
      await expect(v.verify(token, 'jwt')).resolves.toMatchObject({ preset: 'oidc' });
    } finally {
      rotating.setUnavailable(false);
    }

    const gone = await startMockIdp();
    const config = gone.issuerConfig('okta');
    const token = await gone.oktaAccessToken();
    await gone.close();
    await expectRefusal(verifier(config), token, 'access_token', 'ERR_FEDERATION_ISSUER_UNAVAILABLE');
  });
});

describe('FederationVerifier: IdP key rotation without a wait (issue 11.5)', () => {
  const COOLDOWN_S = 30;
  const MAX_AGE_S = 600;
  let idpR: MockIdp;

  beforeAll(async () => {
    idpR = await startMockIdp();
  });

  afterAll(async () => {
    await idpR?.close();
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  /** Production-like limits (the mock's default config has no cooldown); only `Date` is faked, frozen. */
  function rotationVerifier(): FederationVerifier {
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
    return verifier(idpR.issuerConfig('okta', { jwksCooldownSeconds: COOLDOWN_S, jwksCacheMaxAgeSeconds: MAX_AGE_S }));
  }

  const advance = (seconds: number) => vi.setSystemTime(Date.now() + seconds * 1000);
  const fetches = () => idpR.requests.jwks;

  it('a key published right after the first fetch verifies at once, with one refetch', async () => {
    const v = rotationVerifier();
    await v.verify(await idpR.oktaAccessToken(), 'access_token');
    const before = fetches();
    await idpR.rotate({ keepOld: true });
    await expect(v.verify(await idpR.oktaAccessToken(), 'access_token')).resolves.toMatchObject({ preset: 'okta' });
    expect(fetches() - before).toBe(1);
    // Cached from now on: no more fetches for the new key.
    await v.verify(await idpR.oktaAccessToken(), 'access_token');
    expect(fetches() - before).toBe(1);
  });

  it('concurrent tokens with a newly published kid share one refetch and all verify', async () => {
    const v = rotationVerifier();
    await v.verify(await idpR.oktaAccessToken(), 'access_token');
    const before = fetches();
    await idpR.rotate({ keepOld: true });
    const tokens = await Promise.all(Array.from({ length: 6 }, (_, i) => idpR.oktaAccessToken({ uid: `00u${i}` })));
    const results = await Promise.all(tokens.map((t) => v.verify(t, 'access_token')));
    expect(results.every((r) => r.preset === 'okta')).toBe(true);
    expect(fetches() - before).toBe(1);
  });

  it('a key published right after a cache-expiry fetch verifies at once', async () => {
    const v = rotationVerifier();
    await v.verify(await idpR.oktaAccessToken(), 'access_token');
    advance(MAX_AGE_S + 1);
    const before = fetches();
    await v.verify(await idpR.oktaAccessToken(), 'access_token');
    expect(fetches() - before).toBe(1);
    await idpR.rotate({ keepOld: true });
    await expect(v.verify(await idpR.oktaAccessToken(), 'access_token')).resolves.toMatchObject({ preset: 'okta' });
    expect(fetches() - before).toBe(2);
  });

  it('only an unknown-kid refetch within the cooldown delays the next one', async () => {
    const v = rotationVerifier();
    await v.verify(await idpR.oktaAccessToken(), 'access_token');
    await idpR.rotate({ keepOld: true });
    await v.verify(await idpR.oktaAccessToken(), 'access_token'); // unknown kid: refetch
    const before = fetches();
    await idpR.rotate({ keepOld: true }); // a second rotation within the cooldown
    await expectRefusal(v, await idpR.oktaAccessToken(), 'access_token', 'ERR_FEDERATION_UNKNOWN_KID');
    expect(fetches() - before).toBe(0);
    advance(COOLDOWN_S);
    await expect(v.verify(await idpR.oktaAccessToken(), 'access_token')).resolves.toMatchObject({ preset: 'okta' });
    expect(fetches() - before).toBe(1);
  });

  it('a flood of tokens with unknown kids causes at most one refetch per cooldown', async () => {
    const v = rotationVerifier();
    await v.verify(await idpR.oktaAccessToken(), 'access_token');
    const flood = () => Promise.all(Array.from({ length: 25 }, async () => idpR.oktaAccessToken({ sign: { kid: randomBytes(12).toString('base64url') } })));
    for (const round of [1, 2]) {
      const before = fetches();
      const tokens = await flood();
      // Concurrent, then one after another.
      await Promise.all(tokens.map((t) => expectRefusal(v, t, 'access_token', 'ERR_FEDERATION_UNKNOWN_KID')));
      for (const t of await flood()) await expectRefusal(v, t, 'access_token', 'ERR_FEDERATION_UNKNOWN_KID');
      expect(fetches() - before, `round ${round}`).toBe(1);
      // The published key keeps verifying throughout, without fetches.
      await v.verify(await idpR.oktaAccessToken(), 'access_token');
      expect(fetches() - before, `round ${round}`).toBe(1);
      advance(COOLDOWN_S);
    }
  });

  it('a key removed from the JWKS stops verifying once the cache max age has passed', async () => {
    const v = rotationVerifier();
    await v.verify(await idpR.oktaAccessToken(), 'access_token');
    const { previous } = await idpR.rotate({ keepOld: false });
    // Still cached: the removed key verifies until the set is fetched again.
    advance(MAX_AGE_S - 1);
    await expect(v.verify(await idpR.oktaAccessToken({ sign: { key: previous } }), 'access_token')).resolves.toBeTruthy();
    advance(2);
    await expectRefusal(v, await idpR.oktaAccessToken({ sign: { key: previous } }), 'access_token', 'ERR_FEDERATION_UNKNOWN_KID');
    await expect(v.verify(await idpR.oktaAccessToken(), 'access_token')).resolves.toBeTruthy();
  });
});

describe('FederationError descriptions', () => {
  it('never contain the token or claim values from it', async () => {
    const v = verifier(idp.issuerConfig('okta'), idp.issuerConfig('entra'), idp.issuerConfig('oidc'));
    const now = Math.floor(Date.now() / 1000);
    const marker = { sub: 'SECRET-MARKER-sub', name: 'SECRET-MARKER-name', email: 'SECRET-MARKER@example.com' };
    const cases: Array<[string, SubjectTokenKind]> = [
      [await idp.oidcToken({ ...marker, iss: 'https://SECRET-MARKER.example' }), 'jwt'],
      [await idp.oidcToken({ ...marker, aud: 'SECRET-MARKER-aud' }), 'jwt'],
      [await idp.oidcToken({ ...marker, expiresIn: -600 }), 'jwt'],
      [await idp.oidcToken({ ...marker, nbf: now + 600 }), 'jwt'],
      [await idp.oidcToken({ ...marker, exp: 'SECRET-MARKER-exp' }), 'jwt'],
      [await idp.oidcToken({ ...marker, sign: { alg: 'none' } }), 'jwt'],
      [await idp.oidcToken({ ...marker, sign: { kid: 'SECRET-MARKER-kid' } }), 'jwt'],
      [await idp.oktaAccessToken({ ...marker, uid: 'SECRET-MARKER-uid', aud: 'SECRET-MARKER-aud' }), 'access_token'],
      [await idp.entraAccessToken({ ...marker, tid: THIRD_TENANT, oid: 'SECRET-MARKER-oid' }), 'access_token'],
      [await idp.entraAccessToken({ ...marker, tid: ENTRA_OTHER_TENANT, iss: idp.entraIssuer(ENTRA_TENANT) }), 'access_token'],
      [await idp.entraAccessToken({ ...marker, sign: { header: { nonce: 'SECRET-MARKER-nonce' } } }), 'access_token'],
      [`${(await idp.oidcToken(marker)).slice(0, -6)}AAAAAA`, 'jwt'],
    ];
    for (const [token, kind] of cases) {
      const error = await v.verify(token, kind).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(FederationError);
      const { description } = error as FederationError;
      expectCleanDescription(error as FederationError, token);
      expect(description).not.toMatch(/SECRET-MARKER/);
      // the cause is for logs; it still never holds the claims set
      expect(JSON.stringify((error as FederationError).cause ?? null)).not.toContain('SECRET-MARKER-sub');
      expect(description).not.toContain(THIRD_TENANT);
      expect(description).not.toContain(ENTRA_OTHER_TENANT);
    }
  });
});

describe('peekIssuer (the unverified iss that routes a subject token or an ID-JAG)', () => {
  const b64 = (value: string) => Buffer.from(value).toString('base64url');
  const jwt = (claims: string) => `${b64('{"alg":"RS256"}')}.${b64(claims)}.c2ln`;

  it('reads a string iss without verifying anything', () => {
    expect(peekIssuer(jwt('{"iss":"https://idp.example.com","sub":"u"}'))).toBe('https://idp.example.com');
  });

  // Every class of malformed input is `undefined`, never a throw: each caller refuses it with its
  // own protocol error (subject tokens: invalid_grant from the federation verifier; ID-JAGs:
  // invalid_grant "not a JWT with an iss claim"; the CLI: a usage error).
  it.each([
    ['empty', ''],
    ['not a JWT', 'not-a-jwt'],
    ['two parts', 'a.b'],
    ['claims not base64url JSON', `${b64('{"alg":"RS256"}')}.${b64('not json')}.c2ln`],
    ['claims a JSON array', jwt('[1,2]')],
    ['no iss', jwt('{"sub":"u"}')],
    ['numeric iss', jwt('{"iss":42}')],
    ['array iss', jwt('{"iss":["https://idp.example.com"]}')],
    ['null iss', jwt('{"iss":null}')],
    ['object iss', jwt('{"iss":{"href":"https://idp.example.com"}}')],
  ])('%s → undefined', (_name, token) => {
    expect(peekIssuer(token)).toBeUndefined();
  });
});

describe('FederationVerifier: subject-token signature verification remembered (issue 16)', () => {
  afterEach(() => {
    vi.restoreAllMocks();
    vi.useRealTimers();
  });

  /** Counts WebCrypto signature verifications from here on. */
  function countVerifies(): () => number {
    const spy = vi.spyOn(crypto.subtle, 'verify');
    return () => spy.mock.calls.length;
  }

  it('an accepted token is accepted again without decoding it or running its claim rules again; the answer is a copy', async () => {
    const v = verifier(idp.issuerConfig('okta'));
    const token = await idp.oktaAccessToken({ scp: ['deputy.read'], groups: ['engineering'] });
    const first = await v.verify(token, 'access_token');
    // jose's claim validation of a remembered signature (UnsecuredJWT.decode) no longer runs per use.
    const decodes = vi.spyOn(UnsecuredJWT, 'decode');
    const verifies = countVerifies();
    first.scopes.push('deputy.admin');
    first.groups.push('admins');
    for (let i = 0; i < 3; i++) {
      const again = await v.verify(token, 'access_token');
      expect(again).toMatchObject({ preset: 'okta', tokenKind: 'access_token', userId: first.userId, scopes: ['deputy.read'], groups: ['engineering'] });
      again.roles.push('owner');
    }
    expect(decodes).not.toHaveBeenCalled();
    expect(verifies()).toBe(0);
    expect((await v.verify(token, 'access_token')).roles).toEqual([]);
    // Accepted per declared kind: the same token declared `jwt` is decided by its own rules first.
    await expect(v.verify(token, 'jwt')).resolves.toMatchObject({ tokenKind: 'access_token' });
    expect(decodes).toHaveBeenCalledTimes(1);
  });

  it('the same token verifies its signature once; every claim rule runs on its first use as each declared kind', async () => {
    const v = verifier(idp.issuerConfig('okta', { idToken: { clientId: OKTA_CLIENT_ID } }));
    const token = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    await v.verify(token, 'access_token');
    const verifies = countVerifies();
    for (let i = 0; i < 3; i++) await expect(v.verify(token, 'access_token')).resolves.toMatchObject({ preset: 'okta', scopes: ['deputy.read'] });
    expect(verifies()).toBe(0);
    // The declared kind's rules run on the remembered token: an access token is no ID token.
    await expectRefusal(v, token, 'id_token', 'ERR_FEDERATION_AUDIENCE');
    // Another token (even of the same user) verifies its own signature.
    await v.verify(await idp.oktaAccessToken({ scp: ['deputy.read'] }), 'access_token');
    expect(verifies()).toBe(1);
  });

  it('a remembered token is refused once expired, and not yet valid before nbf', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
    const v = verifier(idp.issuerConfig('oidc'));
    const token = await idp.oidcToken({ expiresIn: 60 });
    await v.verify(token, 'jwt');
    // Within the clock tolerance (30 s by default) still accepted, past it refused.
    vi.setSystemTime(Date.now() + 80_000);
    await expect(v.verify(token, 'jwt')).resolves.toBeTruthy();
    vi.setSystemTime(Date.now() + 15_000);
    await expectRefusal(v, token, 'jwt', 'ERR_FEDERATION_EXPIRED');
    vi.useRealTimers();
    const later = await idp.oidcToken({ nbf: Math.floor(Date.now() / 1000) + 120 });
    await expectRefusal(v, later, 'jwt', 'ERR_FEDERATION_NOT_YET_VALID');
    await expectRefusal(v, later, 'jwt', 'ERR_FEDERATION_NOT_YET_VALID');
  });

  it('a tampered copy of a remembered token is verified (and refused), not looked up', async () => {
    const v = verifier(idp.issuerConfig('okta'));
    const token = await idp.oktaAccessToken();
    await v.verify(token, 'access_token');
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const forged = `${header}.${Buffer.from(JSON.stringify({ ...claims, uid: 'someone-else' })).toString('base64url')}.${signature}`;
    await expectRefusal(v, forged, 'access_token', 'ERR_FEDERATION_SIGNATURE');
  });

  /** A token verified (and remembered), then the IdP's keys rotated and its cached set aged out. */
  async function afterRotation(keepOld: boolean, check: (v: ReturnType<typeof verifier>, token: string) => Promise<void>): Promise<void> {
    const rotating = await startMockIdp();
    try {
      vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
      const v = verifier(rotating.issuerConfig('okta', { jwksCacheMaxAgeSeconds: 600 }));
      const token = await rotating.oktaAccessToken({ expiresIn: 3600 });
      await v.verify(token, 'access_token');
      await rotating.rotate({ keepOld });
      vi.setSystemTime(Date.now() + 601_000);
      await check(v, token);
    } finally {
      await rotating.close();
    }
  }

  it('a change of the issuer\'s key set verifies remembered tokens again', async () => {
    await afterRotation(true, async (v, token) => {
      const verifies = countVerifies();
      // The set is fetched again (its keys imported anew): the signature is verified again, once.
      await expect(v.verify(token, 'access_token')).resolves.toMatchObject({ preset: 'okta' });
      await expect(v.verify(token, 'access_token')).resolves.toMatchObject({ preset: 'okta' });
      expect(verifies()).toBe(1);
    });
  });

  it('a remembered token whose key rotated out of the JWKS is refused once the set is fetched again', async () => {
    await afterRotation(false, async (v, token) => {
      await expectRefusal(v, token, 'access_token', 'ERR_FEDERATION_UNKNOWN_KID');
      await expectRefusal(v, token, 'access_token', 'ERR_FEDERATION_UNKNOWN_KID');
    });
  });

  it('a remembered ID token presented as another type gets that type\'s rules, and never the scopes of an access token', async () => {
    const v = verifier(idp.issuerConfig('okta', { idToken: { clientId: OKTA_CLIENT_ID, scopes: ['deputy.read'] } }));
    const token = await idp.oktaIdToken();
    await expect(v.verify(token, 'id_token')).resolves.toMatchObject({ tokenKind: 'id_token', scopes: ['deputy.read'] });
    await expectRefusal(v, token, 'access_token', 'ERR_FEDERATION_AUDIENCE');
    await expect(v.verify(token, 'jwt')).resolves.toMatchObject({ tokenKind: 'id_token', scopes: ['deputy.read'] });
    // The same bytes as the ID token of a sign-in with another client id: that audience is checked.
    await expect(v.verify(token, 'id_token', { signInClientId: 'another-client' })).rejects.toMatchObject({ code: 'ERR_FEDERATION_AUDIENCE' });
    // And a remembered access token is no ID token, whatever it is declared as.
    const access = await idp.oktaAccessToken({ scp: ['deputy.write'] });
    await v.verify(access, 'access_token');
    await expectRefusal(v, access, 'id_token', 'ERR_FEDERATION_AUDIENCE');
    await expect(v.verify(access, 'jwt')).resolves.toMatchObject({ tokenKind: 'access_token', scopes: ['deputy.write'] });
  });

  it('alg confusion stays refused before any look-up: HS256 with the public key, alg none, a re-signed copy by an unpublished key', async () => {
    const v = verifier(idp.issuerConfig('okta'));
    const token = await idp.oktaAccessToken();
    await v.verify(token, 'access_token');
    const pem = await idp.publicKeyPem();
    for (let i = 0; i < 2; i++) await expectRefusal(v, await idp.oktaAccessToken({ sign: { alg: 'HS256', key: secretOf(pem) } }), 'access_token', 'ERR_FEDERATION_ALG');
    const [, payload] = token.split('.') as [string, string, string];
    const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${payload}.`;
    await expectRefusal(v, none, 'access_token', 'ERR_FEDERATION_ALG');
    // The same claims signed by a key the IdP does not publish (its kid unknown).
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const stranger = await idp.createKey();
    await expectRefusal(v, await idp.sign(claims, { key: stranger }), 'access_token', 'ERR_FEDERATION_UNKNOWN_KID');
    // …and by that key under the published kid: the same claims, another signature, verified anew.
    await expectRefusal(v, await idp.sign(claims, { key: stranger, kid: idp.activeKey.kid }), 'access_token', 'ERR_FEDERATION_SIGNATURE');
    await expect(v.verify(token, 'access_token')).resolves.toMatchObject({ preset: 'okta' });
  });
});

describe('the Okta org authorization server check reads own claims only', () => {
  it('an ID token presented as jwt is not taken for an access token by a cid/scp inherited from a polluted Object.prototype', () => {
    const polluted = Object.prototype as Record<string, unknown>;
    const idToken = JSON.parse('{"iss": "https://acme.okta.com", "sub": "00u1", "aud": "client"}') as Record<string, unknown>;
    expect(() => refuseOktaOrgAccessToken('https://acme.okta.com', { ...idToken, cid: 'c' }, 'jwt')).toThrow(FederationError);
    polluted.cid = 'inherited';
    polluted.scp = ['inherited'];
    try {
      expect(() => refuseOktaOrgAccessToken('https://acme.okta.com', idToken, 'jwt')).not.toThrow();
    } finally {
      delete polluted.cid;
      delete polluted.scp;
    }
  });
});

describe('every preset reads own claims only', () => {
  it('groups, roles, may_act, email and client inherited from a polluted Object.prototype are no claims of the token', () => {
    const polluted = Object.prototype as Record<string, unknown>;
    const claims = JSON.parse('{"iss": "https://idp.example", "sub": "u1", "aud": "deputy", "exp": 4102444800, "tid": "t1", "oid": "o1"}') as Record<string, unknown>;
    const inherited = { groups: ['admins'], roles: ['Global Administrator'], may_act: { sub: 'rogue-agent' }, email: 'ceo@example.com', azp: 'rogue', name: 'CEO', scope: 'admin', scp: 'admin', iat: 1 };
    Object.assign(polluted, inherited);
    try {
      for (const identity of [oidcIdentity(claims, 'idp'), entraIdentity(claims, 'idp', 't1')]) {
        expect(identity.groups).toEqual([]);
        expect(identity.roles).toEqual([]);
        expect(identity.scopes).toEqual([]);
        for (const member of ['mayAct', 'email', 'name', 'issuedAt']) expect(Object.hasOwn(identity, member) ? (identity as unknown as Record<string, unknown>)[member] : undefined).toBeUndefined();
        expect(identity.clientId).not.toBe('rogue');
      }
    } finally {
      for (const k of Object.keys(inherited)) delete polluted[k];
    }
  });
});
