/**
 * Client credentials files: what `deputy init` writes and `deputy token` / `deputy exchange`
 * read. One JSON object, mode 0600:
 *
 * ```json
 * { "client_id": "deputy-admin", "issuer": "http://localhost:3000", "private_jwk": { "kty": "EC", … } }
 * ```
 *
 * `issuer` is optional (the URL the CLI talks to by default). The private key signs
 * `private_key_jwt` client assertions (RFC 7523 §2.2); its public part is what the deployment
 * configuration lists under `admin.clients[].jwks` (or an agent's `jwks`).
 *
 * @module
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import { writeCompleteFile } from '../util/complete-file.js';
import { CliError } from './errors.js';

export interface ClientCredentials {
  client_id: string;
  issuer?: string;
  private_jwk: JWK;
}

/** A public JWK as the configuration takes it (`kty` always present). */
export type PublicJwk = JWK & { kty: string };

/** A new ES256 key pair: the private JWK (with `kid`, `alg`) and its public JWK. */
export async function newKeyPair(): Promise<{ privateJwk: JWK; publicJwk: PublicJwk }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const pub = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(pub);
  const publicJwk: PublicJwk = { ...pub, kty: pub.kty ?? 'EC', kid, alg: 'ES256', use: 'sig' };
  return { privateJwk: { ...(await exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' }, publicJwk };
}

/** The public part of a private JWK (EC / OKP / RSA). */
export function publicPart(jwk: JWK): PublicJwk {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, oth: _oth, key_ops: _ops, ext: _ext, ...pub } = jwk as JWK & Record<string, unknown>;
  return pub as PublicJwk;
}

/**
 * Reads a credentials file.
 *
 * @throws CliError (exit 1) when the file is missing, not JSON, or lacks `client_id` / `private_jwk`.
 */
export function readCredentials(file: string): ClientCredentials {
  if (!existsSync(file)) throw new CliError(`${file}: no such credentials file (deputy init writes one; or pass --credentials FILE)`);
  let doc: Partial<ClientCredentials>;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8')) as Partial<ClientCredentials>;
  } catch {
    throw new CliError(`${file}: not valid JSON`);
  }
  if (typeof doc.client_id !== 'string' || typeof doc.private_jwk !== 'object' || doc.private_jwk === null || typeof doc.private_jwk.d !== 'string') {
    throw new CliError(`${file}: not a credentials file (needs "client_id" and a private "private_jwk")`);
  }
  return doc as ClientCredentials;
}

/** Writes a credentials (or DPoP key) file completely, mode 0600, creating its folder. */
export function writeSecretJson(file: string, value: unknown): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeCompleteFile(file, `${JSON.stringify(value, null, 2)}\n`, { replace: true });
}

/** Imports a private JWK for signing. @throws CliError when the JWK is not a usable private key. */
export async function privateKey(jwk: JWK, what: string): Promise<CryptoKey> {
  try {
    return (await importJWK(jwk, jwk.alg ?? 'ES256')) as CryptoKey;
  } catch (err) {
    throw new CliError(`${what}: not a usable private key (${err instanceof Error ? err.message : String(err)})`);
  }
}
