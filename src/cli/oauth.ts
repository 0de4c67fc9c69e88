/**
 * The CLI as an OAuth client of Deputy, through openid-client: discovery (RFC 8414),
 * `client_credentials` and token exchange (RFC 8693) with `private_key_jwt` (RFC 7523), DPoP
 * (RFC 9449, nonces answered by openid-client), and DPoP proofs for curl users.
 *
 * Plain `http:` is accepted only for loopback hosts (`insecureAllowed` in ./shared.ts), where
 * openid-client needs `allowInsecureRequests`; any other `http:` URL is refused (exit 2).
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import * as client from 'openid-client';
import { privateKey, publicPart, writeSecretJson, type ClientCredentials } from './credentials.js';
import { CliError, ServerRefused } from './errors.js';
import { baseOf, insecureAllowed } from './shared.js';

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const TOKEN_TYPES: Readonly<Record<string, string>> = {
  access_token: 'urn:ietf:params:oauth:token-type:access_token',
  id_token: 'urn:ietf:params:oauth:token-type:id_token',
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
};

/** Turns openid-client and fetch failures into CLI errors with their exit codes. */
export function asCliError(err: unknown, url: string): CliError {
  if (err instanceof CliError) return err;
  if (err instanceof client.ResponseBodyError) return new ServerRefused(err.status, err.error, err.error_description);
  if (err instanceof client.ClientError && err.cause instanceof Error && /fetch failed|ECONNREFUSED/.test(`${err.cause.message} ${String((err.cause as { cause?: unknown }).cause)}`)) {
    return new CliError(`cannot reach ${url} (is Deputy running?)`);
  }
  const message = err instanceof Error ? err.message : String(err);
  if (/fetch failed|ECONNREFUSED/.test(message)) return new CliError(`cannot reach ${url} (is Deputy running?)`);
  return new CliError(`${url}: ${message}`);
}

/** openid-client configuration for a client of Deputy at `url`, authenticating with `private_key_jwt`. */
export async function discover(url: string, credentials: ClientCredentials): Promise<client.Configuration> {
  const insecure = insecureAllowed(url);
  const key = await privateKey(credentials.private_jwk, `private_jwk of ${credentials.client_id}`);
  try {
    return await client.discovery(new URL(url), credentials.client_id, {}, client.PrivateKeyJwt(key), insecure ? { execute: [client.allowInsecureRequests] } : {});
  } catch (err) {
    throw asCliError(err, url);
  }
}

/** Deputy's resource identifier for a scope: `<issuer>/admin` or `<issuer>/access` (README "Agents and admin clients"). */
export function resourceForScope(issuer: string, scope: string): string | undefined {
  const base = baseOf(issuer);
  if (scope === 'deputy:admin') return `${base}/admin`;
  if (scope === 'authzen:evaluate') return `${base}/access`;
  return undefined;
}

/**
 * An admin (`deputy:admin`) or PEP (`authzen:evaluate`) token through `client_credentials`
 * (RFC 6749 §4.4), DPoP-bound when `dpop` is given.
 * @throws ServerRefused (exit 3) with the OAuth error; CliError when Deputy is unreachable.
 */
export async function clientCredentialsToken(config: client.Configuration, scope: string, options: { resource?: string; dpop?: client.DPoPHandle } = {}): Promise<client.TokenEndpointResponse> {
  const resource = options.resource ?? resourceForScope(config.serverMetadata().issuer, scope);
  try {
    return await client.clientCredentialsGrant(config, { scope, ...(resource ? { resource } : {}) }, options.dpop ? { DPoP: options.dpop } : {});
  } catch (err) {
    throw asCliError(err, config.serverMetadata().issuer);
  }
}

export interface ExchangeRequest {
  subjectToken: string;
  subjectTokenType: string;
  resource?: string;
  audience?: string;
  scope?: string;
}

/** An RFC 8693 token exchange with DPoP, as an agent does it. @throws ServerRefused with the OAuth error. */
export async function exchangeToken(config: client.Configuration, dpop: client.DPoPHandle, req: ExchangeRequest): Promise<client.TokenEndpointResponse> {
  const type = TOKEN_TYPES[req.subjectTokenType] ?? req.subjectTokenType;
  const params = new URLSearchParams({ subject_token: req.subjectToken, subject_token_type: type });
  if (req.resource) params.set('resource', req.resource);
  if (req.audience) params.set('audience', req.audience);
  if (req.scope) params.set('scope', req.scope);
  try {
    return await client.genericGrantRequest(config, TOKEN_EXCHANGE, params, { DPoP: dpop });
  } catch (err) {
    throw asCliError(err, config.serverMetadata().issuer);
  }
}

/** A DPoP key held in a file (a private JWK, mode 0600). */
export interface DpopKey {
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  publicJwk: JWK;
  /** RFC 7638 thumbprint: the `cnf.jkt` of tokens bound to this key. */
  jkt: string;
}

/** Reads the DPoP key in `file`; with `create`, generates one (ES256) there when the file does not exist. */
export async function dpopKey(file: string, create: boolean): Promise<DpopKey & { created: boolean }> {
  let jwk: JWK;
  let created = false;
  if (existsSync(file)) {
    try {
      jwk = JSON.parse(readFileSync(file, 'utf8')) as JWK;
    } catch {
      throw new CliError(`${file}: not valid JSON`);
    }
  } else if (create) {
    const pair = await generateKeyPair('ES256', { extractable: true });
    jwk = { ...(await exportJWK(pair.privateKey)), alg: 'ES256' };
    writeSecretJson(file, jwk);
    created = true;
  } else {
    throw new CliError(`${file}: no such DPoP key file`);
  }
  if (typeof jwk.d !== 'string') throw new CliError(`${file}: not a private JWK`);
  const priv = await privateKey(jwk, file);
  const publicJwk = publicPart(jwk);
  const pub = (await importJWK(publicJwk, jwk.alg ?? 'ES256')) as CryptoKey;
  return { privateKey: priv, publicKey: pub, publicJwk, jkt: await calculateJwkThumbprint(publicJwk), created };
}

/**
 * A DPoP proof (RFC 9449 §4.2) for one request: `htm`, `htu` (query and fragment dropped,
 * §4.3), a fresh `jti`, `iat` now, `ath` when the request carries an access token (§4.2), and
 * the server's `nonce` when given (§8).
 */
export async function dpopProof(key: DpopKey, htm: string, htu: string, options: { accessToken?: string; nonce?: string } = {}): Promise<string> {
  const target = new URL(htu);
  target.search = '';
  target.hash = '';
  const claims: Record<string, string> = { htm: htm.toUpperCase(), htu: target.href, jti: randomUUID() };
  if (options.nonce) claims.nonce = options.nonce;
  if (options.accessToken) {
    const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(options.accessToken));
    claims.ath = Buffer.from(digest).toString('base64url');
  }
  return new SignJWT(claims)
    .setProtectedHeader({ alg: (key.publicJwk.alg as string | undefined) ?? 'ES256', typ: 'dpop+jwt', jwk: key.publicJwk })
    .setIssuedAt()
    .sign(key.privateKey);
}
