/**
 * Key material of an agent: the registered client key (for `private_key_jwt`, RFC 7523) and the
 * DPoP key (RFC 9449). Everything goes through jose; no key handling of our own.
 *
 * @module
 */
import { KeyObject as NodeKeyObject, type KeyObject } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import { DeputyAgentError } from './errors.js';

/** A private key as an agent may hold it: a private JWK, a Node.js `KeyObject` or a WebCrypto `CryptoKey`. */
export type PrivateKeyInput = JWK | KeyObject | CryptoKey;

/** JWS algorithms the library signs with (client assertions and DPoP proofs). */
export type SigningAlgorithm = 'ES256' | 'ES384' | 'ES512' | 'PS256' | 'PS384' | 'PS512' | 'RS256' | 'Ed25519' | 'EdDSA';

/** A signing key ready for openid-client: the CryptoKey, its algorithm and optional `kid`. */
export interface ImportedKey {
  key: CryptoKey;
  alg: SigningAlgorithm;
  kid?: string;
}

const CURVE_ALGS: Readonly<Record<string, SigningAlgorithm>> = { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512', Ed25519: 'Ed25519' };

/** WebCrypto keys identify themselves by their `Symbol.toStringTag` (as jose checks them). */
function isCryptoKey(k: unknown): k is CryptoKey {
  return typeof k === 'object' && k !== null && (k as { [Symbol.toStringTag]?: unknown })[Symbol.toStringTag] === 'CryptoKey';
}

function isKeyObject(k: unknown): k is KeyObject {
  return k instanceof NodeKeyObject;
}

/** The algorithm a JWK signs with: its `alg`, else by key type and curve (RSA → RS256). */
function algorithmOf(jwk: JWK, preferred?: SigningAlgorithm): SigningAlgorithm {
  if (preferred) return preferred;
  if (jwk.alg) return jwk.alg as SigningAlgorithm;
  if (jwk.kty === 'RSA') return 'RS256';
  const alg = jwk.crv ? CURVE_ALGS[jwk.crv] : undefined;
  if (!alg) throw new DeputyAgentError('ERR_DEPUTY_INVALID_KEY', `cannot tell the algorithm of a ${jwk.kty ?? 'typeless'} key; pass "algorithm"`);
  return alg;
}

/**
 * Imports a private signing key.
 *
 * @param algorithm required for a `CryptoKey` whose algorithm is ambiguous (RSA: RS256 or PS256);
 *   otherwise taken from the JWK's `alg`, else from its type and curve.
 * @throws DeputyAgentError `ERR_DEPUTY_INVALID_KEY` for a public or symmetric key, or an unknown algorithm.
 */
export async function importPrivateKey(input: PrivateKeyInput, algorithm?: SigningAlgorithm): Promise<ImportedKey> {
  if (isCryptoKey(input)) {
    if (input.type !== 'private') throw new DeputyAgentError('ERR_DEPUTY_INVALID_KEY', 'the key must be a private key');
    const name = (input.algorithm as { name: string; namedCurve?: string }).namedCurve ?? input.algorithm.name;
    const alg = algorithm ?? CURVE_ALGS[name] ?? (name === 'RSASSA-PKCS1-v1_5' ? 'RS256' : name === 'RSA-PSS' ? 'PS256' : undefined);
    if (!alg) throw new DeputyAgentError('ERR_DEPUTY_INVALID_KEY', `unsupported key algorithm ${name}`);
    return { key: input, alg };
  }
  // A KeyObject is exported to a JWK (Node ≥ 16) so that one path imports both forms.
  const jwk: JWK = isKeyObject(input) ? (input.export({ format: 'jwk' }) as JWK) : input;
  if (isKeyObject(input) && input.type !== 'private') throw new DeputyAgentError('ERR_DEPUTY_INVALID_KEY', 'the key must be a private key');
  if (typeof jwk !== 'object' || jwk === null || !jwk.d || jwk.kty === 'oct') throw new DeputyAgentError('ERR_DEPUTY_INVALID_KEY', 'the key must be an asymmetric private key (a JWK with "d")');
  const alg = algorithmOf(jwk, algorithm);
  try {
    const key = (await importJWK(jwk, alg)) as CryptoKey;
    return { key, alg, ...(jwk.kid ? { kid: jwk.kid } : {}) };
  } catch (err) {
    throw new DeputyAgentError('ERR_DEPUTY_INVALID_KEY', `the private key cannot be used with ${alg}`, { cause: err });
  }
}

/** A DPoP key pair (RFC 9449 §2): the proofs' signing key and the public key they embed. */
export interface DpopKeyPair {
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

/** What {@link dpopKeyPair} accepts: nothing (a fresh ES256 key), a WebCrypto pair, or a private JWK. */
export type DpopKeyInput = DpopKeyPair | JWK | undefined;

/**
 * The agent's DPoP key. A generated key is non-extractable: it never leaves the process, and a
 * stolen token is useless without it (RFC 9449 §2).
 */
export async function dpopKeyPair(input: DpopKeyInput, algorithm: SigningAlgorithm = 'ES256'): Promise<DpopKeyPair> {
  if (input === undefined) return generateKeyPair(algorithm, { extractable: false });
  if ('privateKey' in input && 'publicKey' in input) return input as DpopKeyPair;
  const jwk = input as JWK;
  if (!jwk.d) throw new DeputyAgentError('ERR_DEPUTY_INVALID_KEY', 'the DPoP key must be a private JWK');
  const alg = algorithmOf(jwk);
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, oth: _oth, ...publicJwk } = jwk;
  try {
    const privateKey = (await importJWK(jwk, alg)) as CryptoKey;
    const publicKey = (await importJWK({ ...publicJwk, ext: true }, alg)) as CryptoKey;
    return { privateKey, publicKey };
  } catch (err) {
    throw new DeputyAgentError('ERR_DEPUTY_INVALID_KEY', `the DPoP key cannot be used with ${alg}`, { cause: err });
  }
}

/** The public JWK of a DPoP key pair (for thumbprints). */
export function publicJwkOf(pair: DpopKeyPair): Promise<JWK> {
  return exportJWK(pair.publicKey);
}
