/**
 * Red team of the accepted subject tokens (issue 16, ninth round: `AcceptedSubjectTokens` in
 * src/federation/verify.ts). A verifier that accepted a token before must answer exactly as a
 * verifier that never saw it: the same identity, or the same refusal (code and description), for
 * every declared kind, at every time — and nothing a caller does with an answer may change a
 * later one.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { UnsecuredJWT } from 'jose';
import { trustedIssuerSchema, type TrustedIssuerConfigInput } from '../../src/federation/config.js';
import { FederationError } from '../../src/federation/errors.js';
import type { FederatedIdentity } from '../../src/federation/identity.js';
import { FederationVerifier, MAX_ACCEPTED_TOKEN_BYTES, MAX_SUBJECT_TOKEN_BYTES, type SubjectTokenKind } from '../../src/federation/verify.js';
import { ENTRA_OTHER_TENANT, OKTA_CLIENT_ID, startMockIdp, type MockIdp } from '../support/mock-idp.js';

let idp: MockIdp;

beforeAll(async () => {
  idp = await startMockIdp();
});

afterAll(async () => {
  await idp?.close();
});

afterEach(() => {
  vi.useRealTimers();
});

const KINDS: readonly SubjectTokenKind[] = ['access_token', 'id_token', 'jwt'];

function verifier(configs: readonly TrustedIssuerConfigInput[]): FederationVerifier {
  return new FederationVerifier(configs.map((config) => trustedIssuerSchema.parse(config)));
}

/** What a verification answers: the identity, or the refusal's code and description. */
async function outcome(v: FederationVerifier, token: string, kind: SubjectTokenKind): Promise<unknown> {
  return v.verify(token, kind).then(
    (identity) => ({ identity }),
    (error: unknown) => (error instanceof FederationError ? { code: error.code, description: error.description } : { thrown: String(error) }),
  );
}

/** Tokens of every preset and kind, accepted and refused ones, with what distinguishes them. */
async function tokens(): Promise<Record<string, string>> {
  return {
    'okta access': await idp.oktaAccessToken({ scp: ['deputy.read'], groups: ['eng'] }),
    'okta id': await idp.oktaIdToken(),
    'okta org access': await idp.oktaAccessToken({ server: 'org' }),
    'okta access with nonce': await idp.oktaAccessToken({ nonce: 'n-1' }),
    'okta id carrying scp': await idp.oktaIdToken({ scp: ['deputy.admin'] }),
    'okta access, typ JWT-ish': await idp.oktaAccessToken({ sign: { header: { typ: 'logout+jwt' } } }),
    'okta access with events': await idp.oktaAccessToken({ events: {} }),
    'entra v2 access': await idp.entraAccessToken({ roles: ['Reader'] }),
    'entra v1 access': await idp.entraAccessToken({ version: 1 }),
    'entra id': await idp.entraIdToken(),
    'entra other tenant': await idp.entraAccessToken({ tid: ENTRA_OTHER_TENANT }),
    'oidc access': await idp.oidcToken({ may_act: { sub: 'agent-a' }, cnf: { jkt: 'abc' } }),
    'oidc id': await idp.oidcIdToken(),
    'oidc malformed may_act': await idp.oidcToken({ may_act: 'agent-a' }),
  };
}

const CONFIGS: Record<string, () => TrustedIssuerConfigInput[]> = {
  'ID tokens accepted': () => [idp.issuerConfig('okta'), idp.issuerConfig('entra'), idp.issuerConfig('oidc')],
  'no ID tokens': () => [
    idp.issuerConfig('okta', { idToken: undefined }),
    idp.issuerConfig('entra', { idToken: undefined }),
    idp.issuerConfig('oidc', { idToken: { clientId: 'another-client', scopes: ['deputy.read'] } }),
  ],
};

describe('accepted subject tokens: a verifier that saw a token answers as one that never did', () => {
  it.each(Object.keys(CONFIGS))('every token, every declared kind, in every order (%s)', async (name) => {
    const configs = CONFIGS[name]!();
    const warm = verifier(configs);
    const all = await tokens();
    for (const [label, token] of Object.entries(all)) {
      // Warm the verifier with every kind in one order, then ask in the reverse order, twice.
      for (const kind of KINDS) await outcome(warm, token, kind);
      for (const kind of [...KINDS].reverse()) {
        const cold = await outcome(verifier(configs), token, kind);
        expect(await outcome(warm, token, kind), `${label} as ${kind}`).toEqual(cold);
        expect(await outcome(warm, token, kind), `${label} as ${kind}, again`).toEqual(cold);
      }
    }
  });

  it('at every time around nbf, iat and exp, inside and past the clock tolerance', async () => {
    const t0 = Math.floor(Date.now() / 1000);
    vi.useFakeTimers({ toFake: ['Date'], now: t0 * 1000 });
    const configs = [idp.issuerConfig('oidc'), idp.issuerConfig('okta')];
    // Accepted first inside the tolerance (30 s) of nbf and iat, then at later and earlier times.
    const early = await idp.oidcToken({ nbf: t0 + 20, iat: t0 + 10, expiresIn: 60 });
    const okta = await idp.oktaAccessToken({ expiresIn: 60 });
    const warm = verifier(configs);
    for (const token of [early, okta]) expect(await outcome(warm, token, 'jwt')).toHaveProperty('identity');
    for (const offset of [5, 15, 20, 21, 59, 60, 61, 89, 90, 91, 200, 10, -40, 0]) {
      vi.setSystemTime((t0 + offset) * 1000 + 500);
      for (const token of [early, okta]) {
        for (const kind of KINDS) {
          expect(await outcome(warm, token, kind), `t0 + ${offset}.5 s, ${kind}`).toEqual(await outcome(verifier(configs), token, kind));
        }
      }
    }
  });

  it('two first uses at once both verify, answer alike, and the token is remembered', async () => {
    const v = verifier([idp.issuerConfig('okta')]);
    const token = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    const [a, b] = await Promise.all([v.verify(token, 'access_token'), v.verify(token, 'access_token')]);
    expect(a).toEqual(b);
    const verifies = vi.spyOn(crypto.subtle, 'verify');
    await expect(v.verify(token, 'access_token')).resolves.toEqual(a);
    expect(verifies).not.toHaveBeenCalled();
    verifies.mockRestore();
  });
});

/** Runs `mutate`; a frozen answer refuses it (TypeError), which is as good as ignoring it. */
function attempt(mutate: () => void): void {
  try {
    mutate();
  } catch (error) {
    expect(error).toBeInstanceOf(TypeError);
  }
}

/** Changes everything mutable a caller could reach inside an identity. */
function tamper(identity: FederatedIdentity): void {
  const claims = identity.claims as Record<string, unknown>;
  attempt(() => {
    (identity.mayAct as Record<string, unknown>).sub = 'agent-b';
  });
  attempt(() => {
    (claims.cnf as Record<string, unknown>).jkt = 'attacker-key';
  });
  attempt(() => {
    (claims.scp as string[]).push('deputy.admin');
  });
  attempt(() => {
    (claims.groups as string[]).push('admins');
  });
  attempt(() => {
    (claims.may_act as Record<string, unknown>).sub = 'agent-c';
  });
}

describe('accepted subject tokens: an answer shares nothing mutable with a later one', () => {
  it('may_act, cnf and the claims set\'s arrays stay as the token says, whatever a caller did to an earlier answer', async () => {
    const v = verifier([idp.issuerConfig('okta', { idToken: { clientId: OKTA_CLIENT_ID } })]);
    const token = await idp.oktaAccessToken({ scp: ['deputy.read'], groups: ['eng'], may_act: { sub: 'agent-a' }, cnf: { jkt: 'the-key' } });
    const expected = { scp: ['deputy.read'], groups: ['eng'], may_act: { sub: 'agent-a' }, cnf: { jkt: 'the-key' } };
    const first = await v.verify(token, 'access_token');
    tamper(first);
    for (let i = 0; i < 2; i++) {
      const again = await v.verify(token, 'access_token');
      expect(again.mayAct, `use ${i + 2}`).toEqual({ sub: 'agent-a' });
      expect(again.claims, `use ${i + 2}`).toMatchObject(expected);
      expect(again.scopes).toEqual(['deputy.read']);
      tamper(again);
    }
    // The same token as another declared kind: its own answer, as untouched.
    expect((await v.verify(token, 'jwt')).claims).toMatchObject(expected);
  });
});

describe('accepted subject tokens: bounded in bytes, not only in number', () => {
  it('large tokens past MAX_ACCEPTED_TOKEN_BYTES evict the ones accepted longest ago (each is verified again, and accepted)', async () => {
    const big = await startMockIdp({ alg: 'ES256' });
    try {
      const v = verifier([big.issuerConfig('okta', { algorithms: ['ES256'] } as Partial<TrustedIssuerConfigInput>)]);
      // Tokens of ~15.9 KB (a user in ~380 groups): under the 16 KiB size limit each.
      const groups = Array.from({ length: 370 }, (_, i) => `group-number-${i}-engineering`);
      const first = await big.oktaAccessToken({ groups, jti: 'first' });
      expect(first.length).toBeGreaterThan(15_000);
      expect(first.length).toBeLessThanOrEqual(MAX_SUBJECT_TOKEN_BYTES);
      const count = Math.ceil(MAX_ACCEPTED_TOKEN_BYTES / first.length) + 1;
      await v.verify(first, 'access_token');
      let last = first;
      for (let i = 1; i < count; i++) {
        last = await big.oktaAccessToken({ groups, jti: `t-${i}` });
        await v.verify(last, 'access_token');
      }
      // Far fewer than 10,000 tokens, yet the first is no longer remembered: decided in full again.
      const decodes = vi.spyOn(UnsecuredJWT, 'decode');
      await expect(v.verify(last, 'access_token')).resolves.toMatchObject({ preset: 'okta' });
      expect(decodes).not.toHaveBeenCalled();
      await expect(v.verify(first, 'access_token')).resolves.toMatchObject({ preset: 'okta', groups });
      expect(decodes).toHaveBeenCalledTimes(1);
      decodes.mockRestore();
    } finally {
      await big.close();
    }
  }, 120_000);

  it('and at 10,000 tokens: the 10,001st evicts the one accepted longest ago', async () => {
    const many = await startMockIdp({ alg: 'ES256' });
    try {
      const v = verifier([many.issuerConfig('okta', { algorithms: ['ES256'] } as Partial<TrustedIssuerConfigInput>)]);
      const tokens = await Promise.all(Array.from({ length: 10_001 }, (_, i) => many.oktaAccessToken({ jti: `n-${i}` })));
      for (const token of tokens.slice(0, 10_000)) await v.verify(token, 'access_token');
      // Expired from this cache by the clock: the second is accepted anew (and so the newest).
      vi.spyOn(Date, 'now').mockReturnValueOnce(Date.now() + 3_600_000);
      await v.verify(tokens[1]!, 'access_token');
      vi.restoreAllMocks();
      await v.verify(tokens[10_000]!, 'access_token');
      // Decided in full: jose's claim checks over a remembered signature, or the signature verified.
      const decodes = vi.spyOn(UnsecuredJWT, 'decode');
      const verifies = vi.spyOn(crypto.subtle, 'verify');
      const full = () => decodes.mock.calls.length + verifies.mock.calls.length;
      for (const i of [1, 2, 9_999, 10_000]) await v.verify(tokens[i]!, 'access_token');
      expect(full()).toBe(0);
      await v.verify(tokens[0]!, 'access_token');
      expect(full()).toBe(1);
      vi.restoreAllMocks();
    } finally {
      await many.close();
    }
  }, 120_000);
});

describe('input that fails the cheap checks, while tokens are remembered (issue 16, ninth round red team)', () => {
  it('a non-string, an empty or an oversized input gets its own refusal as with nothing remembered (before: hashed first — a non-string threw a TypeError)', async () => {
    const v = verifier([idp.issuerConfig('okta')]);
    const fresh = verifier([idp.issuerConfig('okta')]);
    const token = await idp.oktaAccessToken();
    await v.verify(token, 'access_token');
    const inputs: unknown[] = [undefined, 42, { token }, ['a.b.c'], '', `${token}${'A'.repeat(MAX_SUBJECT_TOKEN_BYTES)}`, 'a.b.c.d.e'];
    for (const input of inputs) {
      const expected = await outcome(fresh, input as string, 'access_token');
      expect(expected).toMatchObject({ code: expect.stringMatching(/^ERR_FEDERATION_(MALFORMED|TOO_LARGE)$/) });
      expect(await outcome(v, input as string, 'access_token')).toEqual(expected);
    }
    // The remembered token is still answered.
    expect(await outcome(v, token, 'access_token')).toMatchObject({ identity: expect.anything() });
  });
});
