/**
 * A subject token is validated as the type declared (RFC 8693 §2.1, §3; RFC 8725 §3.11–3.12):
 * every actual kind of token an agent could present × every declared `subject_token_type`, over
 * HTTP, as real agents (openid-client, DPoP). Also: malformed restricting claims refuse the token,
 * in IdP tokens and in Deputy's own tokens.
 */
import { importJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ACCESS_TOKEN_TYPE,
  agentConfig,
  claimsOf,
  clientAssertion,
  dpopProof,
  exchange,
  exchangeError,
  ID_TOKEN_TYPE,
  JWT_TYPE,
  testAgent,
  type TestAgent,
} from '../support/agents.js';
import { clientKeys, type ClientKeys } from '../support/clients.js';
import { OIDC_CLIENT_ID, startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';

const API = 'https://api.example.com';
const handoff = (id: string) => `urn:deputy:agent:${id}`;

let idp: MockIdp;
let deputy: TestDeputy;
const agents: Record<string, TestAgent> = {};

beforeAll(async () => {
  idp = await startMockIdp();
  const keys: Record<string, ClientKeys> = { alpha: await clientKeys(), beta: await clientKeys() };
  deputy = await startTestDeputy({
    config: {
      // Okta and Entra accept ID tokens but grant ID-token subjects no scope (the default); the
      // generic issuer grants them deputy.read.
      // The Okta org authorization server is trusted without idToken: it accepts no ID tokens.
      trustedIssuers: [
        idp.issuerConfig('okta'),
        idp.issuerConfig('entra'),
        idp.issuerConfig('oidc', { idToken: { clientId: OIDC_CLIENT_ID, scopes: ['deputy.read'] } }),
        idp.issuerConfig('okta', { id: 'okta-org', issuer: idp.oktaOrgIssuer, audience: idp.base, idToken: undefined }),
      ],
      agents: [
        agentConfig('alpha', keys.alpha!, { scopes: ['deputy.read', 'deputy.write', 'Deputy.Read', 'Deputy.Write'], audiences: [API, handoff('beta')], maxDelegationDepth: 3 }),
        agentConfig('beta', keys.beta!, { scopes: ['deputy.read', 'deputy.write', 'Deputy.Read'], audiences: [API], maxDelegationDepth: 3 }),
      ],
    },
  });
  for (const id of Object.keys(keys)) agents[id] = await testAgent(deputy.issuer, id, keys[id]!);
});
afterAll(async () => {
  await deputy?.stop();
  await idp?.close();
});

const alpha = () => agents.alpha!;
const beta = () => agents.beta!;

/** A Deputy agent token held by alpha (bound to alpha's DPoP key), from an Okta access token. */
async function agentToken(audience = API): Promise<string> {
  const okta = await idp.oktaAccessToken({ scp: ['deputy.read'] });
  return (await exchange(alpha(), { subject_token: okta, resource: audience, scope: 'deputy.read' })).access_token;
}

/** One kind of token an agent could present, and who presents it. */
interface Kind {
  name: string;
  make: () => Promise<string>;
  presenter: () => TestAgent;
}

const KINDS: Record<string, Kind> = {
  oktaAccessToken: { name: 'Okta access token', make: () => idp.oktaAccessToken({ scp: ['deputy.read'] }), presenter: alpha },
  oktaIdToken: { name: 'Okta ID token', make: () => idp.oktaIdToken(), presenter: alpha },
  oktaOrgIdToken: { name: 'Okta org ID token (issuer without idToken)', make: () => idp.oktaIdToken({ server: 'org' }), presenter: alpha },
  entraV2AccessToken: { name: 'Entra v2 access token', make: () => idp.entraAccessToken({ scp: 'Deputy.Read' }), presenter: alpha },
  entraV1AccessToken: { name: 'Entra v1 access token', make: () => idp.entraAccessToken({ version: 1, scp: 'Deputy.Read' }), presenter: alpha },
  entraIdToken: { name: 'Entra ID token', make: () => idp.entraIdToken(), presenter: alpha },
  oidcAccessToken: { name: 'OIDC access token', make: () => idp.oidcToken({ scope: 'deputy.read' }), presenter: alpha },
  oidcIdToken: { name: 'OIDC ID token', make: () => idp.oidcIdToken(), presenter: alpha },
  agentToken: { name: 'Deputy agent token', make: () => agentToken(), presenter: alpha },
  handoffToken: { name: 'Deputy handoff token', make: () => agentToken(handoff('beta')), presenter: beta },
  receipt: {
    name: 'Deputy receipt',
    make: async () => {
      await agentToken();
      return (await deputy.store.query<{ jws: string }>('SELECT jws FROM receipts ORDER BY seq DESC LIMIT 1'))[0]!.jws;
    },
    presenter: alpha,
  },
  dpopProof: { name: 'DPoP proof', make: () => dpopProof(alpha().dpop, `${deputy.issuer}/token`), presenter: alpha },
  clientAssertion: { name: 'client assertion', make: () => clientAssertion(alpha(), deputy.issuer), presenter: alpha },
};

type Outcome = { scope: string } | { error: string; description: RegExp };
const ok = (scope: string): Outcome => ({ scope });
const refused = (error: string, description: RegExp): Outcome => ({ error, description });

// The audience split: an ID token is checked only against idToken.clientId, an access token only
// against the API audience (the claim rules behind it: test/unit/federation-token-kind.test.ts).
const notAnIdToken = refused('invalid_grant', /audience \(aud\) does not include the OIDC client id configured by trusted issuer/);
const notAnAccessToken = refused('invalid_grant', /audience \(aud\) does not include the audience required by trusted issuer/);
const noIdTokenScope = refused('invalid_scope', /ID token delegates only the scopes trusted issuer "(okta|entra)" grants in idToken\.scopes/);
const deputyAsIdToken = refused('invalid_request', /Deputy access token but subject_token_type says id_token/);
const receipt = refused('invalid_request', /is a Deputy receipt, never a subject token/);
const proof = refused('invalid_request', /is a DPoP proof .*never a subject token/);
const assertion = refused('invalid_grant', /issuer is not trusted/);

const UNSUPPORTED = [
  'urn:ietf:params:oauth:token-type:saml2',
  'urn:ietf:params:oauth:token-type:saml1',
  'urn:ietf:params:oauth:token-type:refresh_token',
  'urn:ietf:params:oauth:token-type:id-jag',
  'urn:ietf:params:oauth:token-type:ID_TOKEN',
  'id_token',
  'JWT',
] as const;

/** kind → declared type → outcome. No `scope` parameter: the "every scope the agent may hold" case. */
const MATRIX: Record<keyof typeof KINDS, Record<'access_token' | 'id_token' | 'jwt', Outcome>> = {
  oktaAccessToken: { access_token: ok('deputy.read'), id_token: notAnIdToken, jwt: ok('deputy.read') },
  oktaIdToken: { access_token: notAnAccessToken, id_token: noIdTokenScope, jwt: noIdTokenScope },
  oktaOrgIdToken: {
    access_token: refused('invalid_grant', /Okta org authorization server .* cannot be verified by third parties/),
    id_token: refused('invalid_request', /trusted issuer "okta-org" accepts no ID tokens .*idToken\.clientId/),
    jwt: notAnAccessToken,
  },
  entraV2AccessToken: { access_token: ok('Deputy.Read'), id_token: notAnIdToken, jwt: ok('Deputy.Read') },
  entraV1AccessToken: { access_token: ok('Deputy.Read'), id_token: notAnIdToken, jwt: ok('Deputy.Read') },
  entraIdToken: { access_token: notAnAccessToken, id_token: noIdTokenScope, jwt: noIdTokenScope },
  oidcAccessToken: { access_token: ok('deputy.read'), id_token: notAnIdToken, jwt: ok('deputy.read') },
  oidcIdToken: { access_token: notAnAccessToken, id_token: ok('deputy.read'), jwt: ok('deputy.read') },
  agentToken: { access_token: ok('deputy.read'), id_token: deputyAsIdToken, jwt: ok('deputy.read') },
  handoffToken: { access_token: ok('deputy.read'), id_token: deputyAsIdToken, jwt: ok('deputy.read') },
  receipt: { access_token: receipt, id_token: receipt, jwt: receipt },
  dpopProof: { access_token: proof, id_token: proof, jwt: proof },
  clientAssertion: { access_token: assertion, id_token: assertion, jwt: assertion },
};

const TYPE_URN = { access_token: ACCESS_TOKEN_TYPE, id_token: ID_TOKEN_TYPE, jwt: JWT_TYPE } as const;

const ROWS = Object.entries(MATRIX).flatMap(([kind, byType]) =>
  Object.entries(byType).map(([declared, outcome]) => ({ kind, declared: declared as keyof typeof TYPE_URN, outcome, label: `${KINDS[kind]!.name} as ${declared}` })),
);

async function expectOutcome(kind: Kind, subjectTokenType: string, outcome: Outcome, scope?: string): Promise<void> {
  const token = await kind.make();
  const params = { subject_token: token, subject_token_type: subjectTokenType, resource: API, ...(scope === undefined ? {} : { scope }) };
  if ('scope' in outcome) {
    const res = await exchange(kind.presenter(), params);
    expect(res.scope).toBe(outcome.scope);
    expect(claimsOf(res.access_token).client_id).toBe(kind.presenter().id);
    return;
  }
  const err = await exchangeError(kind.presenter(), params);
  expect(err).toMatchObject({ error: outcome.error, status: 400 });
  expect(err.error_description).toMatch(outcome.description);
  expect(err.error_description).not.toContain(token.split('.')[1]!.slice(0, 16));
}

describe('subject_token_type: every actual kind × every declared type', () => {
  it.each(ROWS)('$label', async ({ kind, declared, outcome }) => {
    await expectOutcome(KINDS[kind]!, TYPE_URN[declared], outcome);
  });

  it.each(Object.keys(KINDS).flatMap((kind) => UNSUPPORTED.map((type) => ({ kind, type, label: `${KINDS[kind]!.name} as ${type}` }))))(
    '$label is refused: unsupported type',
    async ({ kind, type }) => {
      await expectOutcome(KINDS[kind]!, type, refused('invalid_request', /subject_token_type .* is not supported/));
    },
  );
});

describe('token-type confusion cannot widen scope (issue 10, part 1)', () => {
  const ACCESS_TOKENS = [
    { name: 'Okta access token (scp deputy.read)', make: () => idp.oktaAccessToken({ scp: ['deputy.read'] }), wider: 'deputy.write' },
    { name: 'Entra v2 access token (scp Deputy.Read)', make: () => idp.entraAccessToken({ scp: 'Deputy.Read' }), wider: 'Deputy.Write' },
    { name: 'Entra v1 access token (scp Deputy.Read)', make: () => idp.entraAccessToken({ version: 1, scp: 'Deputy.Read' }), wider: 'Deputy.Write' },
    { name: 'OIDC access token (scope deputy.read)', make: () => idp.oidcToken({ scope: 'deputy.read' }), wider: 'deputy.write' },
  ];
  const ROWS2 = ACCESS_TOKENS.flatMap((t) => [
    { ...t, scope: t.wider, label: `${t.name} declared id_token, scope=${t.wider}` },
    { ...t, scope: undefined, label: `${t.name} declared id_token, no scope` },
  ]);

  it.each(ROWS2)('$label → invalid_grant', async ({ make, name, scope }) => {
    await expectOutcome({ name, make, presenter: alpha }, ID_TOKEN_TYPE, notAnIdToken, scope);
  });

  it.each(ACCESS_TOKENS)('$name declared access_token or jwt cannot get a scope it lacks', async ({ make, name, wider }) => {
    for (const type of [ACCESS_TOKEN_TYPE, JWT_TYPE]) {
      await expectOutcome({ name, make, presenter: alpha }, type, refused('invalid_scope', /subject token does not grant the scope/), wider);
    }
  });

  it('an ID token delegates no scope unless its issuer grants some, and never more than it grants', async () => {
    await expectOutcome(KINDS.oktaIdToken!, ID_TOKEN_TYPE, noIdTokenScope, 'deputy.read');
    await expectOutcome(KINDS.oidcIdToken!, ID_TOKEN_TYPE, refused('invalid_scope', /does not grant the scope "deputy.write".*idToken\.scopes/), 'deputy.write');
    await expectOutcome(KINDS.oidcIdToken!, ID_TOKEN_TYPE, ok('deputy.read'), 'deputy.read');
  });
});

describe('malformed restricting claims refuse the token (issue 10, part 3)', () => {
  const MALFORMED: Array<{ claim: string; value: unknown }> = [
    { claim: 'may_act', value: 'beta' },
    { claim: 'may_act', value: ['beta'] },
    { claim: 'may_act', value: { sub: 42 } },
    { claim: 'may_act', value: {} },
    { claim: 'act', value: 'beta' },
    { claim: 'act', value: [{ sub: 'beta' }] },
    { claim: 'cnf', value: 'key' },
    { claim: 'cnf', value: { jkt: 7 } },
    { claim: 'scp', value: [1] },
    { claim: 'scope', value: 5 },
    { claim: 'uid', value: 42 },
    { claim: 'sub', value: { id: 'alice' } },
    { claim: 'aud', value: ['api://deputy', 1] },
    { claim: 'groups', value: { admins: true } },
    { claim: 'roles', value: 7 },
  ];

  it.each(MALFORMED.map((m) => ({ ...m, label: `Okta access token with ${m.claim} = ${JSON.stringify(m.value)}` })))('$label → invalid_grant naming $claim', async ({ claim, value }) => {
    const token = await idp.oktaAccessToken({ [claim]: value });
    for (const agent of [alpha(), beta()]) {
      await expectOutcome({ name: claim, make: async () => token, presenter: () => agent }, ACCESS_TOKEN_TYPE, refused('invalid_grant', new RegExp(`"${claim}" claim is malformed`)));
    }
  });

  it('a well-formed may_act still binds: it names the one agent that may exchange the token', async () => {
    const token = () => idp.oktaAccessToken({ may_act: { sub: 'beta' } });
    await expectOutcome({ name: 'may_act', make: token, presenter: alpha }, ACCESS_TOKEN_TYPE, refused('invalid_grant', /may_act does not name agent "alpha"/));
    await expectOutcome({ name: 'may_act', make: token, presenter: beta }, ACCESS_TOKEN_TYPE, ok('deputy.read'));
  });

  it('a well-formed cnf still binds: a sender-constrained IdP token needs a proof of its key', async () => {
    const bound = () => idp.oktaAccessToken({ cnf: { jkt: alpha().dpop.jkt } });
    await expectOutcome({ name: 'cnf', make: bound, presenter: alpha }, ACCESS_TOKEN_TYPE, ok('deputy.read'));
    await expectOutcome({ name: 'cnf', make: bound, presenter: beta }, ACCESS_TOKEN_TYPE, refused('invalid_grant', /sender-constrained \(cnf\)/));
    const mtls = () => idp.oktaAccessToken({ cnf: { 'x5t#S256': 'bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2' } });
    await expectOutcome({ name: 'cnf', make: mtls, presenter: alpha }, ACCESS_TOKEN_TYPE, refused('invalid_grant', /sender-constrained \(cnf\)/));
  });

  /** A Deputy agent token re-signed with Deputy's own key, its record untouched, one claim changed. */
  async function tamperedAgentToken(claim: string, value: unknown): Promise<string> {
    const genuine = await agentToken();
    const jwk = deputy.keys.activeSigningKey.jwk;
    const key = await importJWK(jwk, jwk.alg);
    const claims: Record<string, unknown> = { ...claimsOf(genuine), [claim]: value };
    if (value === undefined) delete claims[claim];
    return new SignJWT(claims).setProtectedHeader({ alg: jwk.alg, kid: jwk.kid, typ: 'at+jwt' }).sign(key);
  }

  const DEPUTY_CLAIMS: Array<{ claim: string; value: unknown }> = [
    { claim: 'may_act', value: 'beta' },
    { claim: 'may_act', value: { sub: 'beta' } },
    { claim: 'act', value: 'alpha' },
    { claim: 'act', value: { sub: 'beta' } },
    { claim: 'cnf', value: 'key' },
    { claim: 'cnf', value: undefined },
    { claim: 'scope', value: ['deputy.read'] },
    { claim: 'scope', value: 'deputy.read deputy.write' },
    { claim: 'aud', value: [API, 'https://other.example.com'] },
    { claim: 'client_id', value: 'beta' },
    { claim: 'sub', value: 'someone-else' },
  ];

  it.each(DEPUTY_CLAIMS.map((m) => ({ ...m, label: `Deputy agent token with ${m.claim} = ${JSON.stringify(m.value) ?? 'absent'}` })))(
    '$label → invalid_grant naming $claim',
    async ({ claim, value }) => {
      const token = await tamperedAgentToken(claim, value);
      await expectOutcome({ name: claim, make: async () => token, presenter: alpha }, ACCESS_TOKEN_TYPE, refused('invalid_grant', new RegExp(`"${claim}" claim is malformed or differs`)));
    },
  );

  it('control: a re-signed agent token whose restricting claims are unchanged is accepted', async () => {
    const token = await tamperedAgentToken('note', 'not a restricting claim');
    await expectOutcome({ name: 'control', make: async () => token, presenter: alpha }, ACCESS_TOKEN_TYPE, ok('deputy.read'));
  });
});
