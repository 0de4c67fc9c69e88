/**
 * A wall clock stepped back never stretches a federation cache's life (issue 16, eighth round,
 * the bounds of the shared single-flight cache applied where that cache does not fit): the cached
 * JWK Set of a trusted issuer is fetched again, an unknown-`kid` refetch is not held back by a
 * cooldown that "began in the future", and a failed discovery is retried rather than answered
 * from its cooldown. `fetch` is stood in for; the clock is `Date.now`.
 */
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { trustedIssuerSchema } from '../../src/federation/config.js';
import { TrustedIssuer } from '../../src/federation/issuer.js';
import { CachedJwks } from '../../src/federation/jwks.js';

const ISSUER = 'https://idp.example.com';
const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

afterEach(() => {
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
});

async function signedWith(kid: string) {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid }).sign(privateKey);
  return { jwk, token };
}

describe('federation caches and a clock stepped back', () => {
  it('the cached JWK Set is fetched again when the clock steps back past its fetch (before: kept for the step too)', async () => {
    const a = await signedWith('a');
    let fetches = 0;
    vi.stubGlobal('fetch', async () => (fetches++, json({ keys: [a.jwk] })));
    const jwks = new CachedJwks(new URL(`${ISSUER}/jwks`), { cacheMaxAgeMs: 600_000, unknownKidCooldownMs: 30_000, timeoutMs: 5000 });
    const header = { alg: 'ES256', kid: 'a' };
    await jwks.getKey(header, { payload: '', signature: '' } as never);
    await jwks.getKey(header, { payload: '', signature: '' } as never);
    expect(fetches).toBe(1);
    const now = Date.now();
    vi.spyOn(Date, 'now').mockReturnValue(now - 3_600_000);
    await jwks.getKey(header, { payload: '', signature: '' } as never);
    expect(fetches).toBe(2);
  });

  it('an unknown kid after the clock stepped back past the last refetch: refetched, not held by the cooldown', async () => {
    const [a, b, c] = [await signedWith('a'), await signedWith('b'), await signedWith('c')];
    let published = [a.jwk];
    let fetches = 0;
    vi.stubGlobal('fetch', async () => (fetches++, json({ keys: published })));
    const jwks = new CachedJwks(new URL(`${ISSUER}/jwks`), { cacheMaxAgeMs: 600_000, unknownKidCooldownMs: 30_000, timeoutMs: 5000 });
    const get = (kid: string) => jwks.getKey({ alg: 'ES256', kid }, { payload: '', signature: '' } as never);
    await get('a');
    published = [a.jwk, b.jwk];
    await get('b');
    expect(fetches).toBe(2);
    const now = Date.now();
    vi.spyOn(Date, 'now').mockReturnValue(now - 3_600_000);
    published = [a.jwk, b.jwk, c.jwk];
    // The set fetched "in the future" is refetched anyway (its age is negative), so c verifies.
    await expect(get('c')).resolves.toBeDefined();
  });

  it('a failed discovery is retried after the clock stepped back past the failure (before: refused for the step too)', async () => {
    let discoveries = 0;
    vi.stubGlobal('fetch', async () => (discoveries++, json({ error: 'down' }, 503)));
    const issuer = new TrustedIssuer(trustedIssuerSchema.parse({ id: 'idp', preset: 'oidc', issuer: ISSUER, audience: 'api://deputy', jwksCooldownSeconds: 30 }));
    await expect(issuer.keySet()).rejects.toThrow();
    await expect(issuer.keySet()).rejects.toThrow();
    expect(discoveries).toBe(1);
    const now = Date.now();
    vi.spyOn(Date, 'now').mockReturnValue(now - 3_600_000);
    await expect(issuer.keySet()).rejects.toThrow();
    expect(discoveries).toBe(2);
  });
});
