/**
 * AccessTokenVerifier.authenticate (src/oauth/access-token.ts) as a unit: RFC 6750 §2.1 / RFC 9449
 * §7.1 credentials, RFC 9068 token checks, DPoP binding and scope, each refusal with its status,
 * code and `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9449 §7.1). The key store is a stub
 * holding one ES256 key; DPoP runs for real over a fake replay store.
 */
import { randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { DeputyError } from '../../src/errors/index.js';
import { serializeError } from '../../src/errors/serialize.js';
import type { KeyStore } from '../../src/keys/keystore.js';
import { AccessTokenVerifier, CredentialsRequired, dpopOnlyChallenge, type ResourceRequest } from '../../src/oauth/access-token.js';
import { DpopVerifier } from '../../src/oauth/dpop.js';
import type { Queryable } from '../../src/store/index.js';
import { DPOP_ALGS } from '../../src/util/algorithms.js';
import { dpopKeys, dpopProof, type DpopKeys } from '../support/agents.js';

const ISSUER = 'https://deputy.example.com';
const AUD = `${ISSUER}/admin`;
const URL_ = `${ISSUER}/admin/agents`;
let signing: { privateKey: CryptoKey; jwk: JWK };
let stranger: CryptoKey;
let holder: DpopKeys;

beforeAll(async () => {
  const pair = await generateKeyPair('ES256');
  signing = { privateKey: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256' } };
  stranger = (await generateKeyPair('ES256')).privateKey;
  holder = await dpopKeys();
});

function verifier(): AccessTokenVerifier {
  const keys = { publicJwks: () => ({ keys: [signing.jwk] }) } as unknown as KeyStore;
  const spent = new Set<string>();
  const db = {
    async query<T>(_sql: string, params?: unknown[]): Promise<T[]> {
      const id = `${String(params![0])}\0${String(params![1])}`;
      if (spent.has(id)) return [];
      spent.add(id);
      return [{ id } as T];
    },
  } as Queryable;
  const dpop = new DpopVerifier({ db, iatWindowSeconds: 60, requireNonce: false, nonceSecret: randomBytes(32) });
  return new AccessTokenVerifier({ issuer: ISSUER, keys, dpop });
}

interface TokenOptions {
  claims?: Record<string, unknown>;
  header?: Record<string, unknown>;
  key?: CryptoKey;
  aud?: string;
  iss?: string;
  ttl?: number;
  iat?: number;
}

/** An RFC 9068 access token as Deputy signs them, with every part under the test's control. */
function token(o: TokenOptions = {}): Promise<string> {
  const iat = o.iat ?? Math.floor(Date.now() / 1000);
  return new SignJWT({ client_id: 'admin-client', scope: 'deputy:admin', jti: randomBytes(8).toString('hex'), ...o.claims })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'at+jwt', ...o.header })
    .setIssuer(o.iss ?? ISSUER).setAudience(o.aud ?? AUD).setSubject('admin-client')
    .setIssuedAt(iat).setExpirationTime(iat + (o.ttl ?? 300))
    .sign(o.key ?? signing.privateKey);
}

const req = (authorization: string | undefined, dpopProofs: string[] = []): ResourceRequest => ({ authorization, dpopProofs, method: 'GET', url: URL_ });

async function refused(p: Promise<unknown>): Promise<DeputyError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(DeputyError);
  return err as DeputyError;
}

/** The `WWW-Authenticate` header the one serializer (src/errors/serialize.ts) writes for `err`. */
const challengeOf = (err: DeputyError): string | undefined => serializeError(err).headers['WWW-Authenticate'];

describe('AccessTokenVerifier.authenticate: accepted', () => {
  it('a Bearer token for the audience with the scope', async () => {
    const t = await token();
    const auth = await verifier().authenticate(req(`Bearer ${t}`), AUD, 'deputy:admin');
    expect(auth).toMatchObject({ token: t, scheme: 'Bearer', claims: { client_id: 'admin-client' } });
    expect([...auth.scopes]).toEqual(['deputy:admin']);
  });

  it('a DPoP-bound token with its proof (scheme case-insensitive); the proof is spent', async () => {
    const v = verifier();
    const t = await token({ claims: { cnf: { jkt: holder.jkt } } });
    const proof = await dpopProof(holder, URL_, { htm: 'GET', accessToken: t });
    const auth = await v.authenticate(req(`dpop ${t}`, [proof]), AUD, 'deputy:admin');
    expect(auth.scheme).toBe('DPoP');
    expect(auth.dpopNonce).toBeDefined();
    const replay = await refused(v.authenticate(req(`DPoP ${t}`, [proof]), AUD, 'deputy:admin'));
    expect(replay).toMatchObject({ status: 401, code: 'invalid_dpop_proof' });
    expect(challengeOf(replay)).toMatch(/^DPoP realm="deputy", error="invalid_dpop_proof"/);
  });

  it('deferProofSpend leaves the proof unspent until spendProof', async () => {
    const v = verifier();
    const t = await token({ claims: { cnf: { jkt: holder.jkt } } });
    const proof = await dpopProof(holder, URL_, { htm: 'GET', accessToken: t });
    const auth = await v.authenticate(req(`DPoP ${t}`, [proof]), AUD, { deferProofSpend: true });
    expect(auth.unspentProof).toBeDefined();
    await v.spendProof(auth.unspentProof!);
    await expect(v.spendProof(auth.unspentProof!)).rejects.toThrow(/jti replay/);
  });
});

describe('AccessTokenVerifier.authenticate: refusal matrix', () => {
  const now = () => Math.floor(Date.now() / 1000);
  const cases: Array<[string, () => Promise<ResourceRequest>, number, string, RegExp, RegExp]> = [
    ['no Authorization header', async () => req(undefined), 401, 'invalid_token', /an access token is required/, /^Bearer realm="deputy", scope="deputy:admin", DPoP realm="deputy", scope="deputy:admin", algs="/],
    ['another scheme (Basic)', async () => req('Basic YWRtaW46YWRtaW4='), 401, 'invalid_token', /an access token is required/, /^Bearer realm="deputy"/],
    ['a malformed Bearer value', async () => req('Bearer a b'), 400, 'invalid_request', /malformed Authorization header/, /^Bearer realm="deputy", error="invalid_request"/],
    ['an oversized token', async () => req(`Bearer ${'a'.repeat(17 * 1024)}`), 401, 'invalid_token', /too large/, /error="invalid_token"/],
    ['not a JWT', async () => req('Bearer not-a-jwt'), 401, 'invalid_token', /malformed or invalid/, /error="invalid_token"/],
    ['an expired token', async () => req(`Bearer ${await token({ iat: now() - 600, ttl: 60 })}`), 401, 'invalid_token', /has expired/, /error_description="access token has expired"/],
    ['another audience', async () => req(`Bearer ${await token({ aud: `${ISSUER}/access` })}`), 401, 'invalid_token', /"aud" claim check failed/, /error="invalid_token"/],
    ['another issuer', async () => req(`Bearer ${await token({ iss: 'https://evil.example.com' })}`), 401, 'invalid_token', /"iss" claim check failed/, /error="invalid_token"/],
    ['typ JWT (not at+jwt)', async () => req(`Bearer ${await token({ header: { typ: 'JWT' } })}`), 401, 'invalid_token', /"typ" claim check failed/, /error="invalid_token"/],
    ['an unknown kid', async () => req(`Bearer ${await token({ header: { kid: 'k2' } })}`), 401, 'invalid_token', /unknown key/, /error="invalid_token"/],
    ['a forged signature', async () => req(`Bearer ${await token({ key: stranger })}`), 401, 'invalid_token', /signature is invalid/, /error="invalid_token"/],
    ['no client_id claim', async () => req(`Bearer ${await token({ claims: { client_id: undefined } })}`), 401, 'invalid_token', /"client_id" claim check failed/, /error="invalid_token"/],
    ['a bound token under Bearer', async () => req(`Bearer ${await token({ claims: { cnf: { jkt: holder.jkt } } })}`), 401, 'invalid_token', /DPoP-bound: use the DPoP/, /^DPoP realm="deputy", error="invalid_token"/],
    ['an unbound token under DPoP', async () => req(`DPoP ${await token()}`, [await dpopProof(holder, URL_, { htm: 'GET' })]), 401, 'invalid_token', /not DPoP-bound/, /^DPoP realm="deputy", error="invalid_token"/],
    ['a bound token without proof', async () => req(`DPoP ${await token({ claims: { cnf: { jkt: holder.jkt } } })}`), 401, 'invalid_dpop_proof', /proof is missing/, /^DPoP realm="deputy", error="invalid_dpop_proof"/],
    ['a proof by another key', async () => {
      const t = await token({ claims: { cnf: { jkt: holder.jkt } } });
      return req(`DPoP ${t}`, [await dpopProof(await dpopKeys(), URL_, { htm: 'GET', accessToken: t })]);
    }, 401, 'invalid_dpop_proof', /cnf\.jkt/, /^DPoP realm="deputy", error="invalid_dpop_proof"/],
    ['a token without the scope', async () => req(`Bearer ${await token({ claims: { scope: 'authzen:evaluate' } })}`), 403, 'insufficient_scope', /lacks the "deputy:admin" scope/, /^Bearer realm="deputy", error="insufficient_scope", error_description="(?:[^"\\]|\\.)*", scope="deputy:admin"$/],
  ];

  it.each(cases)('refuses %s', async (_what, make, status, code, description, challenge) => {
    const err = await refused(verifier().authenticate(await make(), AUD, 'deputy:admin'));
    expect({ status: err.status, code: err.code }).toEqual({ status, code });
    expect(err.description).toMatch(description);
    expect(challengeOf(err)).toMatch(challenge);
    expect(err.expose).toBe(true);
  });

  it('a refusal never echoes the token', async () => {
    const t = await token({ aud: 'https://elsewhere.example.com' });
    const err = await refused(verifier().authenticate(req(`Bearer ${t}`), AUD));
    expect(JSON.stringify(serializeError(err))).not.toContain(t);
  });
});

describe('dpopOnlyChallenge (the gateways)', () => {
  it('no credentials: a DPoP challenge without error; other refusals: one DPoP challenge naming the error', async () => {
    const none = await refused(verifier().authenticate(req(undefined), AUD));
    expect(none).toBeInstanceOf(CredentialsRequired);
    expect(challengeOf(dpopOnlyChallenge(none))).toBe(`DPoP realm="deputy", algs="${DPOP_ALGS.join(' ')}"`);
    const bearer = await refused(verifier().authenticate(req(`Bearer ${await token({ aud: 'https://x.example' })}`), AUD));
    expect(challengeOf(dpopOnlyChallenge(bearer))).toMatch(/^DPoP realm="deputy", error="invalid_token", error_description="(?:[^"\\]|\\.)+", algs="ES256 /);
  });
});
