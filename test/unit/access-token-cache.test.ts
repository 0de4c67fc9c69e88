/**
 * AccessTokenVerifier's cache of verified tokens: what a cache hit still checks (expiry, the
 * audience asked for) and when the cache is dropped (the signing key set changed).
 */
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import type { KeyStore } from '../../src/keys/keystore.js';
import { AccessTokenVerifier } from '../../src/oauth/access-token.js';
import type { DpopVerifier } from '../../src/oauth/dpop.js';

const ISSUER = 'https://deputy.example.com';
const AUD = `${ISSUER}/gw/echo`;
let key: { privateKey: CryptoKey; jwk: JWK };

beforeAll(async () => {
  const pair = await generateKeyPair('ES256');
  key = { privateKey: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256' } };
});

/** A verifier over a key set the test controls; DPoP is never reached (verify() only). */
function verifierWith(keys: { current: JWK[] }): AccessTokenVerifier {
  const store = { publicJwks: () => ({ keys: keys.current }) } as unknown as KeyStore;
  return new AccessTokenVerifier({ issuer: ISSUER, keys: store, dpop: {} as DpopVerifier });
}

/** A Deputy-shaped access token (RFC 9068) issued at `iat` seconds, living `ttl` seconds. */
function token(iat: number, ttl: number, aud = AUD): Promise<string> {
  return new SignJWT({ client_id: 'agent-a', scope: 'deputy.read', jti: `jti-${iat}-${aud}` })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'at+jwt' })
    .setIssuer(ISSUER).setAudience(aud).setSubject('user').setIssuedAt(iat).setExpirationTime(iat + ttl)
    .sign(key.privateKey);
}

describe('AccessTokenVerifier: verified-token cache', () => {
  it('a cached token is refused once it expires, and only for the audience it was verified for', async () => {
    const verifier = verifierWith({ current: [key.jwk] });
    const now = Date.now();
    const t = await token(Math.floor(now / 1000), 60);
    expect((await verifier.verify(t, AUD, now)).client_id).toBe('agent-a');
    expect((await verifier.verify(t, AUD, now + 1000)).client_id).toBe('agent-a'); // a hit
    await expect(verifier.verify(t, `${ISSUER}/gw/other`, now + 1000)).rejects.toThrow(/"aud" claim check failed/);
    await expect(verifier.verify(t, AUD, now + 60_000)).rejects.toThrow(/expired/);
  });

  it('a key leaving the signing key set stops the tokens it signed at once, cached or not', async () => {
    const keys = { current: [key.jwk] };
    const verifier = verifierWith(keys);
    const now = Date.now();
    const t = await token(Math.floor(now / 1000), 3600);
    await verifier.verify(t, AUD, now);
    keys.current = [];
    // The key set is re-read at most every 30 s; from then on the cache must not answer.
    await expect(verifier.verify(t, AUD, now + 31_000)).rejects.toThrow(/unknown key|malformed or invalid/);
  });
});
