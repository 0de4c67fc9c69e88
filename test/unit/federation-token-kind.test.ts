/**
 * FederationVerifier: a subject token is validated as the type declared, by rules the other kind
 * of the same issuer cannot satisfy (src/federation/token-kind.ts), and a malformed restricting
 * claim refuses the token (src/federation/claims.ts). Real-HTTP mock IdP, every preset.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trustedIssuerSchema, type TrustedIssuerConfigInput } from '../../src/federation/config.js';
import { FederationError, type FederationErrorCode } from '../../src/federation/errors.js';
import { FederationVerifier, type SubjectTokenKind } from '../../src/federation/verify.js';
import { ENTRA_API_CLIENT_ID, ENTRA_TENANT, OIDC_AUDIENCE, OKTA_AUDIENCE, OKTA_CLIENT_ID, startMockIdp, type MockIdp } from '../support/mock-idp.js';

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

async function refusal(v: FederationVerifier, token: string, kind: SubjectTokenKind): Promise<FederationError> {
  const error = await v.verify(token, kind).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, 'expected a refusal').toBeInstanceOf(FederationError);
  return error as FederationError;
}

async function expectRefused(v: FederationVerifier, token: string, kind: SubjectTokenKind, code: FederationErrorCode, description: RegExp): Promise<void> {
  const error = await refusal(v, token, kind);
  expect(error.code, error.description).toBe(code);
  expect(error.description).toMatch(description);
}

describe('token kinds: the same value configured as API audience and OIDC client id', () => {
  // An Entra app registration that is both the client and the API: ID tokens and v2 access
  // tokens then carry the same `aud`. The claim rules alone must keep the kinds apart.
  const same = () => verifier(idp.issuerConfig('entra', { audience: ENTRA_API_CLIENT_ID, idToken: { clientId: ENTRA_API_CLIENT_ID, scopes: ['Deputy.Read'] } }));
  const okta = () => verifier(idp.issuerConfig('okta', { audience: OKTA_AUDIENCE, idToken: { clientId: OKTA_AUDIENCE } }));

  it.each([
    { name: 'Entra v2 access token (scp, azpacr)', make: () => idp.entraAccessToken({ aud: ENTRA_API_CLIENT_ID }), v: same, carries: /"scp", "azpacr"/ },
    { name: 'Entra v2 app-only access token (roles, azpacr, no scp)', make: () => idp.entraAccessToken({ aud: ENTRA_API_CLIENT_ID, scp: undefined, roles: ['Deputy.Admin'] }), v: same, carries: /"azpacr"/ },
    { name: 'Okta access token (scp, cid, uid)', make: () => idp.oktaAccessToken(), v: okta, carries: /"scp", "cid", "uid"/ },
  ])('$name declared id_token → not an ID token', async ({ make, v, carries }) => {
    const error = await refusal(v(), await make(), 'id_token');
    expect(error.code).toBe('ERR_FEDERATION_TOKEN_TYPE');
    expect(error.description).toMatch(/is not an ID token/);
    expect(error.description).toMatch(carries);
    expect(error.description).toMatch(/only access tokens carry/);
  });

  it.each([
    { name: 'Entra ID token', make: () => idp.entraIdToken({ aud: ENTRA_API_CLIENT_ID }), v: same },
    { name: 'Okta ID token', make: () => idp.oktaIdToken({ aud: OKTA_AUDIENCE }), v: okta },
  ])('$name declared access_token → not an access token (it authorizes no client)', async ({ make, v }) => {
    await expectRefused(v(), await make(), 'access_token', 'ERR_FEDERATION_TOKEN_TYPE', /is not an access token.*carries none of/);
  });

  it('jwt resolves each token to the one kind it satisfies; scopes follow the kind', async () => {
    const at = await same().verify(await idp.entraAccessToken({ aud: ENTRA_API_CLIENT_ID, scp: 'Deputy.Write' }), 'jwt');
    expect(at).toMatchObject({ tokenKind: 'access_token', scopes: ['Deputy.Write'] });
    const id = await same().verify(await idp.entraIdToken({ aud: ENTRA_API_CLIENT_ID }), 'jwt');
    expect(id).toMatchObject({ tokenKind: 'id_token', scopes: ['Deputy.Read'] });
  });
});

describe('token kinds: rules of each kind', () => {
  const v = () => verifier(idp.issuerConfig('okta'), idp.issuerConfig('entra'), idp.issuerConfig('oidc'));

  it.each([
    { name: 'ID token with typ at+jwt', make: () => idp.oktaIdToken({ sign: { header: { typ: 'at+jwt' } } }), kind: 'id_token', why: /header typ/ },
    { name: 'ID token without iat', make: () => idp.oidcIdToken({ iat: undefined }), kind: 'id_token', why: /"iat"/ },
    { name: 'ID token with scope', make: () => idp.oidcIdToken({ scope: 'deputy.read' }), kind: 'id_token', why: /"scope"/ },
    { name: 'ID token with client_id', make: () => idp.oidcIdToken({ client_id: 'x' }), kind: 'id_token', why: /"client_id"/ },
    { name: 'logout token (events) as ID token', make: () => idp.oidcIdToken({ events: { 'http://schemas.openid.net/event/backchannel-logout': {} } }), kind: 'id_token', why: /"events"/ },
    { name: 'logout token (typ logout+jwt) as ID token', make: () => idp.oidcIdToken({ sign: { header: { typ: 'logout+jwt' } } }), kind: 'id_token', why: /header typ/ },
    { name: 'access token with nonce', make: () => idp.oktaAccessToken({ nonce: 'n-0S6_WzA2Mj' }), kind: 'access_token', why: /"nonce".*only ID tokens carry/ },
    { name: 'access token with at_hash', make: () => idp.entraAccessToken({ at_hash: 'abc' }), kind: 'access_token', why: /"at_hash"/ },
    { name: 'access token with typ dpop+jwt', make: () => idp.oidcToken({ sign: { header: { typ: 'dpop+jwt' } } }), kind: 'access_token', why: /header typ/ },
    { name: 'access token with typ secevent+jwt', make: () => idp.oidcToken({ sign: { header: { typ: 'secevent+jwt' } } }), kind: 'access_token', why: /header typ/ },
    { name: 'access token without scope or client id', make: () => idp.oidcToken({ scope: undefined }), kind: 'access_token', why: /carries none of/ },
    { name: 'ID token with typ at+jwt as jwt', make: () => idp.oidcIdToken({ sign: { header: { typ: 'at+jwt' } } }), kind: 'jwt', why: /neither kind.*not an access token.*not an ID token/ },
  ] as const)('$name → ERR_FEDERATION_TOKEN_TYPE', async ({ make, kind, why }) => {
    await expectRefused(v(), await make(), kind, 'ERR_FEDERATION_TOKEN_TYPE', why);
  });

  it.each([
    { name: 'RFC 9068 access token (typ at+jwt)', make: () => idp.oidcToken({ sign: { header: { typ: 'at+jwt' } } }), kind: 'access_token' },
    { name: 'RFC 9068 access token (typ application/at+jwt) as jwt', make: () => idp.oidcToken({ sign: { header: { typ: 'application/at+jwt' } } }), kind: 'jwt' },
    { name: 'ID token without typ', make: () => idp.oidcIdToken({ sign: { header: { typ: undefined } } }), kind: 'id_token' },
    { name: 'ID token with nonce, at_hash and azp', make: () => idp.oktaIdToken({ nonce: 'n', at_hash: 'h', azp: OKTA_CLIENT_ID }), kind: 'id_token' },
    { name: 'Entra v1 ID token', make: () => idp.entraIdToken({ version: 1 }), kind: 'id_token' },
  ] as const)('$name is accepted', async ({ make, kind }) => {
    await expect(v().verify(await make(), kind)).resolves.toMatchObject({ tokenKind: kind === 'jwt' ? 'access_token' : kind });
  });

  it('an ID token delegates idToken.scopes only (none by default), whatever it carries', async () => {
    const identity = await v().verify(await idp.oktaIdToken(), 'id_token');
    expect(identity).toMatchObject({ tokenKind: 'id_token', scopes: [] });
    const granted = verifier(idp.issuerConfig('okta', { idToken: { clientId: OKTA_CLIENT_ID, scopes: ['deputy.read'] } }));
    expect((await granted.verify(await idp.oktaIdToken(), 'id_token')).scopes).toEqual(['deputy.read']);
  });

  it('without idToken.clientId, ID tokens are refused before any key is fetched, naming the setting', async () => {
    const noIdTokens = verifier(idp.issuerConfig('oidc', { idToken: undefined }));
    const { jwks, discovery } = idp.requests;
    await expectRefused(noIdTokens, await idp.oidcIdToken(), 'id_token', 'ERR_FEDERATION_TOKEN_TYPE_NOT_ACCEPTED', /idToken\.clientId/);
    // even an access token declared id_token: the declared type is what is not accepted
    await expectRefused(noIdTokens, await idp.oidcToken(), 'id_token', 'ERR_FEDERATION_TOKEN_TYPE_NOT_ACCEPTED', /idToken\.clientId/);
    expect(idp.requests.jwks).toBe(jwks);
    expect(idp.requests.discovery).toBe(discovery);
    // as jwt, only the access-token kind is a candidate
    await expectRefused(noIdTokens, await idp.oidcIdToken({ aud: OIDC_AUDIENCE }), 'jwt', 'ERR_FEDERATION_TOKEN_TYPE', /not an access token/);
    await expect(noIdTokens.verify(await idp.oidcToken(), 'jwt')).resolves.toMatchObject({ tokenKind: 'access_token' });
  });

  it('configuration: idToken.clientId is required when idToken is set; scopes must be scope tokens', () => {
    expect(trustedIssuerSchema.safeParse(idp.issuerConfig('oidc', { idToken: {} as never })).success).toBe(false);
    expect(trustedIssuerSchema.safeParse(idp.issuerConfig('oidc', { idToken: { clientId: '' } })).success).toBe(false);
    expect(trustedIssuerSchema.safeParse(idp.issuerConfig('oidc', { idToken: { clientId: 'c', scopes: ['a b'] } })).success).toBe(false);
    expect(trustedIssuerSchema.safeParse(idp.issuerConfig('oidc', { idToken: { clientId: 'c', extra: 1 } as never })).success).toBe(false);
    expect(trustedIssuerSchema.parse(idp.issuerConfig('oidc', { idToken: { clientId: ['c', 'd'] } })).idToken).toEqual({ clientId: ['c', 'd'], scopes: [] });
  });
});

describe('malformed restricting claims refuse the token, every preset and kind', () => {
  const v = () => verifier(idp.issuerConfig('okta'), idp.issuerConfig('entra'), idp.issuerConfig('oidc'));

  const TOKENS: Array<{ name: string; kind: SubjectTokenKind; make: (claims: Record<string, unknown>) => Promise<string> }> = [
    { name: 'Okta access token', kind: 'access_token', make: (c) => idp.oktaAccessToken(c) },
    { name: 'Okta ID token', kind: 'id_token', make: (c) => idp.oktaIdToken(c) },
    // `iss` given explicitly: the mock derives it from `tid`, which some rows break on purpose
    { name: 'Entra v2 access token', kind: 'access_token', make: (c) => idp.entraAccessToken({ ...c, iss: idp.entraIssuer(ENTRA_TENANT) }) },
    { name: 'Entra v1 access token', kind: 'access_token', make: (c) => idp.entraAccessToken({ version: 1, ...c, iss: idp.entraIssuer(ENTRA_TENANT, 1) }) },
    { name: 'Entra ID token', kind: 'id_token', make: (c) => idp.entraIdToken({ ...c, iss: idp.entraIssuer(ENTRA_TENANT) }) },
    { name: 'OIDC access token', kind: 'access_token', make: (c) => idp.oidcToken(c) },
    { name: 'OIDC ID token', kind: 'id_token', make: (c) => idp.oidcIdToken(c) },
  ];

  const MALFORMED: Array<{ claim: string; value: unknown }> = [
    { claim: 'may_act', value: 'beta' },
    { claim: 'may_act', value: ['beta'] },
    { claim: 'may_act', value: null },
    { claim: 'may_act', value: {} },
    { claim: 'may_act', value: { sub: 7 } },
    { claim: 'may_act', value: { sub: 'beta', iss: ['x'] } },
    { claim: 'act', value: 'alpha' },
    { claim: 'act', value: [{ sub: 'alpha' }] },
    { claim: 'act', value: { sub: 'a', act: { client_id: 'b' } } },
    { claim: 'cnf', value: 'jkt' },
    { claim: 'cnf', value: [] },
    { claim: 'cnf', value: { jkt: 1 } },
    { claim: 'scope', value: 5 },
    { claim: 'scope', value: ['read', 5] },
    { claim: 'scp', value: { read: true } },
    { claim: 'scp', value: [''] },
    { claim: 'aud', value: ['placeholder', 5] },
    { claim: 'groups', value: 3 },
    { claim: 'roles', value: [{ name: 'admin' }] },
    { claim: 'tid', value: 42 },
    { claim: 'oid', value: ['x'] },
    { claim: 'uid', value: 42 },
    { claim: 'sub', value: 42 },
    { claim: 'azp', value: ['x'] },
    { claim: 'email', value: { address: 'x' } },
    { claim: 'jti', value: 1 },
  ];

  /** aud must still name the expected audience, so that the shape (not the audience) is what fails. */
  function withAudience(token: (typeof TOKENS)[number], value: unknown): unknown {
    if (!Array.isArray(value) || value[0] !== 'placeholder') return value;
    return [token.kind === 'id_token' ? ({ 'Okta ID token': OKTA_CLIENT_ID, 'Entra ID token': '3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f', 'OIDC ID token': 'deputy-web' } as Record<string, string>)[token.name]! : token.name.startsWith('Okta') ? OKTA_AUDIENCE : token.name.startsWith('Entra v1') ? 'api://deputy' : token.name.startsWith('Entra') ? ENTRA_API_CLIENT_ID : OIDC_AUDIENCE, 5];
  }

  const ROWS = TOKENS.flatMap((token) => MALFORMED.map(({ claim, value }) => ({ token, claim, value: withAudience(token, value), label: `${token.name}: ${claim} = ${JSON.stringify(value)}` })));

  it.each(ROWS)('$label → ERR_FEDERATION_CLAIMS naming $claim', async ({ token, claim, value }) => {
    const error = await refusal(v(), await token.make({ [claim]: value }), token.kind);
    expect(error.code, error.description).toBe('ERR_FEDERATION_CLAIMS');
    expect(error.description).toContain(`"${claim}"`);
  });

  it.each(TOKENS)('control: $name with well-formed restricting claims is accepted', async (token) => {
    const claims = { may_act: { sub: 'beta' }, act: { sub: 'upstream-actor' }, cnf: { jkt: 'abc' }, groups: ['Engineering'], roles: 'reader' };
    const identity = await v().verify(await token.make(claims), token.kind);
    expect(identity.mayAct).toEqual({ sub: 'beta' });
    expect(identity.tokenKind).toBe(token.kind);
  });
});
