/**
 * DpopVerifier (src/oauth/dpop.ts) as a pure unit: every RFC 9449 §4.3 check a proof goes
 * through, as a refusal matrix, plus nonces (§8), `ath` (§4.3 step 10), the key binding
 * (`cnf.jkt`, §6) and replay (§11.1). The replay store is a fake with recordOnce's semantics
 * (insert-or-fail); the SQL itself is covered by the store contract (test/store/contract.ts).
 */
import { randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { DeputyError } from '../../src/errors/index.js';
import { DPOP_REPLAY_NAMESPACE, DpopNonces, DpopVerifier, type DpopRequest } from '../../src/oauth/dpop.js';
import type { Queryable } from '../../src/store/index.js';
import { dpopKeys, dpopProof, type DpopKeys } from '../support/agents.js';

const URL_ = 'https://deputy.example.com/gw/crm/v1/items';
const SECRET = randomBytes(32);
const NOW = Math.floor(Date.now() / 1000);

/** recordOnce's contract over a Set: the first insert of (namespace, key) wins. */
function onceStore(): Queryable & { spent: Set<string> } {
  const spent = new Set<string>();
  return {
    spent,
    async query<T>(_sql: string, params?: unknown[]): Promise<T[]> {
      const id = `${String(params![0])}\0${String(params![1])}`;
      if (spent.has(id)) return [];
      spent.add(id);
      return [{ id: params![1] } as T];
    },
  } as Queryable & { spent: Set<string> };
}

function verifier(options: { requireNonce?: boolean; iatWindowSeconds?: number } = {}) {
  const db = onceStore();
  return { db, dpop: new DpopVerifier({ db, iatWindowSeconds: options.iatWindowSeconds ?? 60, requireNonce: options.requireNonce ?? false, nonceSecret: SECRET }) };
}

const request = (proof: string | string[], extra: Partial<DpopRequest> = {}): DpopRequest => ({
  proofs: Array.isArray(proof) ? proof : [proof],
  method: 'POST',
  url: URL_,
  ...extra,
});

async function refusal(p: Promise<unknown>): Promise<{ status: number; code: string; description: string; headers: Record<string, string> }> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(DeputyError);
  const e = err as DeputyError;
  return { status: e.status, code: e.code, description: e.description, headers: e.headers };
}

let keys: DpopKeys;
let other: DpopKeys;
beforeAll(async () => {
  keys = await dpopKeys();
  other = await dpopKeys();
});

describe('DpopVerifier.verify: a good proof', () => {
  it('returns the key thumbprint, jti, iat and htu, and spends the jti once', async () => {
    const { db, dpop } = verifier();
    const proof = await dpopProof(keys, URL_, { jti: 'jti-good-0001', iat: NOW });
    const verified = await dpop.verify(request(proof), NOW);
    expect(verified).toMatchObject({ jkt: keys.jkt, jti: 'jti-good-0001', iat: NOW, htu: URL_ });
    expect(verified.nextNonce).toBe(dpop.currentNonce(NOW * 1000)); // no nonce sent: handed the newest
    expect([...db.spent][0]!.startsWith(`${DPOP_REPLAY_NAMESPACE}\0`)).toBe(true);
    const replay = await refusal(dpop.verify(request(proof), NOW));
    expect(replay).toMatchObject({ status: 401, code: 'invalid_dpop_proof', description: 'DPoP proof has already been used (jti replay)' });
  });

  it('check() verifies without spending; spend() then refuses a second spend', async () => {
    const { db, dpop } = verifier();
    const proof = await dpopProof(keys, URL_, { iat: NOW });
    const checked = await dpop.check(request(proof), NOW);
    expect(db.spent.size).toBe(0);
    await dpop.check(request(proof), NOW); // still unspent: checks again
    await dpop.spend(checked.replayKey);
    await expect(dpop.spend(checked.replayKey)).rejects.toThrow(/jti replay/);
  });

  it('the same jti under another key is another proof (the replay key binds jkt and jti)', async () => {
    const { dpop } = verifier();
    await dpop.verify(request(await dpopProof(keys, URL_, { jti: 'shared-jti-01', iat: NOW })), NOW);
    await expect(dpop.verify(request(await dpopProof(other, URL_, { jti: 'shared-jti-01', iat: NOW })), NOW)).resolves.toMatchObject({ jkt: other.jkt });
  });

  it('binds ath to the access token and the key to cnf.jkt', async () => {
    const { dpop } = verifier();
    const proof = await dpopProof(keys, URL_, { iat: NOW, accessToken: 'token-a' });
    await expect(dpop.verify(request(proof, { accessToken: 'token-a', expectedJkt: keys.jkt }), NOW)).resolves.toMatchObject({ jkt: keys.jkt });
  });
});

describe('DpopVerifier.verify: refusal matrix (RFC 9449 §4.3)', () => {
  const cases: Array<[string, () => Promise<{ proofs: string | string[]; extra?: Partial<DpopRequest> }>, string, RegExp]> = [
    ['no proof', async () => ({ proofs: [] }), 'invalid_dpop_proof', /DPoP proof is missing/],
    ['two DPoP headers', async () => ({ proofs: [await dpopProof(keys, URL_, { iat: NOW }), await dpopProof(keys, URL_, { iat: NOW })] }), 'invalid_dpop_proof', /exactly one DPoP header/],
    ['an oversized proof', async () => ({ proofs: 'a'.repeat(9000) }), 'invalid_dpop_proof', /too large/],
    ['not a JWS', async () => ({ proofs: 'not.a.jws' }), 'invalid_dpop_proof', /not a compact JWS/],
    ['typ JWT', async () => ({ proofs: await dpopProof(keys, URL_, { iat: NOW, typ: 'JWT' }) }), 'invalid_dpop_proof', /typ must be "dpop\+jwt"/],
    ['alg HS256', async () => ({ proofs: await hmacProof() }), 'invalid_dpop_proof', /alg must be one of ES256/],
    ['no jwk in the header', async () => ({ proofs: await proofWithHeader({ jwk: undefined }) }), 'invalid_dpop_proof', /must carry the public key/],
    ['a private jwk in the header', async () => ({ proofs: await proofWithHeader({ jwk: { ...keys.publicJwk, d: 'AAAA' } }) }), 'invalid_dpop_proof', /must be a public key/],
    ['signed by another key than its jwk', async () => ({ proofs: await proofWithHeader({ jwk: other.publicJwk }) }), 'invalid_dpop_proof', /signature is invalid/],
    ['a short jti', async () => ({ proofs: await dpopProof(keys, URL_, { iat: NOW, jti: 'short' }) }), 'invalid_dpop_proof', /jti is missing or malformed/],
    ['another method', async () => ({ proofs: await dpopProof(keys, URL_, { iat: NOW, htm: 'GET' }) }), 'invalid_dpop_proof', /htm does not match/],
    ['another URL', async () => ({ proofs: await dpopProof(keys, URL_, { iat: NOW, htu: 'https://deputy.example.com/gw/erp/v1/items' }) }), 'invalid_dpop_proof', /htu does not match/],
    ['an iat outside the window', async () => ({ proofs: await dpopProof(keys, URL_, { iat: NOW - 3600 }) }), 'use_dpop_nonce', /iat is not within 60 seconds/],
    ['an iat in the future', async () => ({ proofs: await dpopProof(keys, URL_, { iat: NOW + 3600 }) }), 'use_dpop_nonce', /iat is not within/],
    ['a nonce that was never handed out', async () => ({ proofs: await dpopProof(keys, URL_, { iat: NOW, nonce: 'bm90LWEtbm9uY2U' }) }), 'use_dpop_nonce', /nonce is not valid/],
    ['no ath with an access token', async () => ({ proofs: await dpopProof(keys, URL_, { iat: NOW }), extra: { accessToken: 'token-a' } }), 'invalid_dpop_proof', /ath is missing/],
    ['the ath of another token', async () => ({ proofs: await dpopProof(keys, URL_, { iat: NOW, accessToken: 'token-b' }), extra: { accessToken: 'token-a' } }), 'invalid_dpop_proof', /ath does not match/],
    ['a key other than cnf.jkt', async () => ({ proofs: await dpopProof(other, URL_, { iat: NOW }), extra: { expectedJkt: keys.jkt } }), 'invalid_dpop_proof', /does not match the key the access token is bound to/],
  ];

  it.each(cases)('refuses %s (401 %s)', async (_what, make, code, description) => {
    const { db, dpop } = verifier();
    const { proofs, extra } = await make();
    const err = await refusal(dpop.verify(request(proofs, extra), NOW));
    expect(err.status).toBe(401);
    expect(err.code).toBe(code);
    expect(err.description).toMatch(description);
    if (code === 'use_dpop_nonce') expect(err.headers['DPoP-Nonce']).toBe(dpop.currentNonce(NOW * 1000));
    expect(db.spent.size).toBe(0); // a refused proof spends nothing
  });

  // checkDeferred (the gateway: the signature verifies while the call is decided) refuses each
  // proof with the same error as verify: either at once, or through its `signature`.
  const forgedTwice: (typeof cases)[number] = ['signed by another key, with another method too', async () => ({ proofs: await proofWithHeader({ jwk: other.publicJwk }, { htm: 'GET' }) }), 'invalid_dpop_proof', /signature is invalid/];
  it.each([...cases, forgedTwice])('checkDeferred refuses %s as verify does (401 %s)', async (_what, make, code, description) => {
    const { db, dpop } = verifier();
    const { proofs, extra } = await make();
    const err = await refusal(dpop.checkDeferred(request(proofs, extra), NOW).then((checked) => checked.signature));
    expect([err.status, err.code]).toEqual([401, code]);
    expect(err.description).toMatch(description);
    expect(db.spent.size).toBe(0);
  });

  it('checkDeferred: a good proof gives what check gives, and a signature that resolves', async () => {
    const { dpop } = verifier();
    const proof = await dpopProof(keys, URL_, { iat: NOW, accessToken: 'token-a' });
    const req = request(proof, { accessToken: 'token-a', expectedJkt: keys.jkt });
    const { signature, ...deferred } = await dpop.checkDeferred(req, NOW);
    await expect(signature).resolves.toBeUndefined();
    expect(deferred).toEqual(await dpop.check(req, NOW));
  });

  async function hmacProof(): Promise<string> {
    return new SignJWT({ htm: 'POST', htu: URL_, jti: 'hmac-proof-01' })
      .setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: keys.publicJwk })
      .setIssuedAt(NOW)
      .sign(randomBytes(32));
  }

  async function proofWithHeader(header: { jwk: Record<string, unknown> | undefined }, claims: { htm?: string } = {}): Promise<string> {
    return new SignJWT({ htm: claims.htm ?? 'POST', htu: URL_, jti: `hdr-${randomBytes(6).toString('hex')}` })
      .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', ...(header.jwk ? { jwk: header.jwk } : {}) })
      .setIssuedAt(NOW)
      .sign(keys.privateKey);
  }
});

describe('DpopVerifier: nonces (RFC 9449 §8)', () => {
  it('requireNonce: a proof without a nonce gets use_dpop_nonce and the nonce; with it, it passes', async () => {
    const { dpop } = verifier({ requireNonce: true });
    const err = await refusal(dpop.verify(request(await dpopProof(keys, URL_, { iat: NOW })), NOW));
    expect(err).toMatchObject({ status: 401, code: 'use_dpop_nonce' });
    const nonce = err.headers['DPoP-Nonce']!;
    const ok = await dpop.verify(request(await dpopProof(keys, URL_, { iat: NOW, nonce })), NOW);
    expect(ok.nextNonce).toBeUndefined(); // it held the newest one
  });

  it('a valid nonce stands in for iat freshness; an older accepted one is answered with the newest', async () => {
    const { dpop } = verifier();
    const nonces = new DpopNonces(SECRET);
    const older = nonces.next(NOW - 120);
    const ok = await dpop.verify(request(await dpopProof(keys, URL_, { iat: NOW - 3600, nonce: older })), NOW);
    expect(ok.nextNonce).toBe(nonces.next(NOW));
  });

  it('a nonce past its lifetime is refused with a fresh one', async () => {
    const { dpop } = verifier();
    const stale = new DpopNonces(SECRET).next(NOW - DpopNonces.LIFETIME_SECONDS - 2 * DpopNonces.STEP_SECONDS);
    const err = await refusal(dpop.verify(request(await dpopProof(keys, URL_, { iat: NOW, nonce: stale })), NOW));
    expect(err.code).toBe('use_dpop_nonce');
  });

  it('the nonce secret must be 32 bytes', () => {
    expect(() => new DpopNonces(randomBytes(16))).toThrow(TypeError);
  });
});

describe('DpopVerifier: algorithms', () => {
  it('accepts an EdDSA proof key', async () => {
    const ed = await dpopKeys('EdDSA');
    const { dpop } = verifier();
    const proof = await new SignJWT({ htm: 'POST', htu: URL_, jti: 'eddsa-proof-01' })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'dpop+jwt', jwk: ed.publicJwk })
      .setIssuedAt(NOW)
      .sign(ed.privateKey);
    await expect(dpop.verify(request(proof), NOW)).resolves.toMatchObject({ jkt: ed.jkt });
  });

  it('refuses an algorithm outside its configured list', async () => {
    const pair = await generateKeyPair('ES384');
    const jwk = await exportJWK(pair.publicKey);
    const db = onceStore();
    const dpop = new DpopVerifier({ db, iatWindowSeconds: 60, requireNonce: false, nonceSecret: SECRET, algorithms: ['ES256'] });
    const proof = await new SignJWT({ htm: 'POST', htu: URL_, jti: 'es384-proof-01' })
      .setProtectedHeader({ alg: 'ES384', typ: 'dpop+jwt', jwk })
      .setIssuedAt(NOW)
      .sign(pair.privateKey);
    expect((await refusal(dpop.verify(request(proof), NOW))).description).toBe('DPoP proof alg must be one of ES256');
  });
});
