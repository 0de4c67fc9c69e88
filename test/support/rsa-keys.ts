/**
 * RSA key pairs for test IdPs and upstream authorization servers, from a pool generated once per
 * run (./global-setup.ts, `rsaKeyPool`) instead of once per use: RSA-2048 generation costs about
 * 130 ms of CPU each (EC keys cost well under 1 ms and are generated as needed).
 *
 * Within one test file every call returns a different key — the pool in order, then fresh keys
 * when it is used up — so tests that tell keys apart (rotation, a stranger's key) keep meaning.
 * Files run in separate workers and may receive the same keys; no test compares keys across files.
 */
import { generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import { inject } from 'vitest';

/** A private and public key of one RSA key pair, for `alg` (RS256 / PS256 share the key type). */
export interface RsaKeyPair {
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

let next = 0;

function pooled(): JWK | undefined {
  let pool: readonly JWK[] = [];
  try {
    pool = inject('rsaKeyPool') ?? [];
  } catch {
    // Outside a vitest worker (a script importing test support): no pool.
  }
  return pool[next++];
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi'] as const;

/** The next RSA key pair for `alg` (extractable): a pooled one while they last, then a new one. */
export async function rsaKeyPair(alg: 'RS256' | 'PS256'): Promise<RsaKeyPair> {
  const jwk = pooled();
  if (!jwk) return generateKeyPair(alg, { extractable: true });
  const publicJwk: JWK = Object.fromEntries(Object.entries(jwk).filter(([name]) => !(PRIVATE_MEMBERS as readonly string[]).includes(name)));
  return {
    privateKey: (await importJWK({ ...jwk, alg }, alg, { extractable: true })) as CryptoKey,
    publicKey: (await importJWK({ ...publicJwk, alg }, alg, { extractable: true })) as CryptoKey,
  };
}
