/**
 * Red team (issue 16, ninth round): a subject token without `kid` (optional, RFC 7515 §4.1.4)
 * from an issuer publishing two keys of its `alg` — a key rotation's overlap. jose 6's key-set
 * resolver then matches both and throws `JWKSMultipleMatchingKeys`, whose async iterator yields
 * the candidates; `jwtVerify` does not try them itself (its docs show the caller's loop). Deputy
 * refused such tokens (`ERR_FEDERATION_SIGNATURE`), its comment saying jose handled it. It now
 * tries each candidate (src/federation/verify.ts `jwtVerifyEachKey`): the key that verifies is
 * the answer; none verifying is still a signature refusal.
 */
import { generateKeyPairSync } from 'node:crypto';
import { generateKeyPair, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trustedIssuerSchema } from '../../src/federation/config.js';
import { FederationError } from '../../src/federation/errors.js';
import { FederationVerifier } from '../../src/federation/verify.js';
import { startMockIdp, type MockIdp, type MockKey } from '../support/mock-idp.js';

let idp: MockIdp;
let previous: MockKey;
let current: MockKey;

beforeAll(async () => {
  idp = await startMockIdp({ keepOldKeysOnRotate: true });
  ({ previous, current } = await idp.rotate());
});

afterAll(async () => {
  await idp?.close();
});

const verifier = () => new FederationVerifier([trustedIssuerSchema.parse(idp.issuerConfig('okta'))]);

async function refusal(v: FederationVerifier, token: string): Promise<string | undefined> {
  return v.verify(token, 'access_token').then(
    () => undefined,
    (e: unknown) => (e instanceof FederationError ? e.code : String(e)),
  );
}

describe('a token without kid from an issuer publishing two keys of its alg', () => {
  it('verifies with whichever of the two signed it (before: refused, ERR_FEDERATION_SIGNATURE), again on a second use', async () => {
    expect(idp.publishedKeys.map((k) => k.kid)).toEqual([current.kid, previous.kid]);
    const v = verifier();
    for (const key of [previous, current]) {
      const token = await idp.oktaAccessToken({ sub: `user-${key.kid}`, sign: { key: key.privateKey } });
      expect(JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString())).not.toHaveProperty('kid');
      const first = await v.verify(token, 'access_token');
      expect(first.subject).toBe(`user-${key.kid}`);
      // The remembered answers (signature, accepted token) resolve the same candidate: alike.
      expect(await v.verify(token, 'access_token')).toEqual(first);
      expect(await verifier().verify(token, 'access_token')).toEqual(first);
    }
  });

  it('signed by a key the issuer does not publish: still refused as a signature that does not verify', async () => {
    const stranger = await generateKeyPair('RS256');
    const token = await idp.oktaAccessToken({ sign: { key: stranger.privateKey } });
    expect(await refusal(verifier(), token)).toBe('ERR_FEDERATION_SIGNATURE');
  });

  it('a claim refusal from the key that verifies is the answer, not a signature refusal', async () => {
    const token = await idp.oktaAccessToken({ aud: 'https://someone-else.example.com', sign: { key: previous.privateKey } });
    expect(await refusal(verifier(), token)).toBe('ERR_FEDERATION_AUDIENCE');
  });
});

describe('a token without kid whose candidates include a key jose will not verify with (a legacy 1024-bit RSA key published first)', () => {
  let legacyIdp: MockIdp;

  beforeAll(async () => {
    legacyIdp = await startMockIdp();
    const legacy = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' }) as JWK;
    legacyIdp.publishJwk({ ...legacy, alg: 'RS256', use: 'sig', kid: 'legacy-1024' });
  });

  afterAll(async () => {
    await legacyIdp?.close();
  });

  const legacyVerifier = () => new FederationVerifier([trustedIssuerSchema.parse(legacyIdp.issuerConfig('okta'))]);

  it('verifies with the key that signed it: the unusable candidate is skipped (before: refused, its TypeError ending the candidates)', async () => {
    const token = await legacyIdp.oktaAccessToken({ sub: 'user-legacy', sign: { key: legacyIdp.activeKey.privateKey } });
    expect(JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString())).not.toHaveProperty('kid');
    const v = legacyVerifier();
    const first = await v.verify(token, 'access_token');
    expect(first.subject).toBe('user-legacy');
    expect(await v.verify(token, 'access_token')).toEqual(first);
  });

  it('signed by a key the issuer does not publish: still refused as a signature that does not verify', async () => {
    const stranger = await generateKeyPair('RS256');
    const token = await legacyIdp.oktaAccessToken({ sign: { key: stranger.privateKey } });
    expect(await refusal(legacyVerifier(), token)).toBe('ERR_FEDERATION_SIGNATURE');
  });

  it('a claim refusal from the key that verifies is still the answer', async () => {
    const token = await legacyIdp.oktaAccessToken({ aud: 'https://someone-else.example.com', sign: { key: legacyIdp.activeKey.privateKey } });
    expect(await refusal(legacyVerifier(), token)).toBe('ERR_FEDERATION_AUDIENCE');
  });
});
