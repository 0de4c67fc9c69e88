/**
 * Real OAuth clients for tests: key pairs, openid-client configurations using private_key_jwt,
 * and admin tokens obtained with client_credentials, exactly as a deployment's clients would.
 */
import { exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import * as client from 'openid-client';

/** A public JWK as Deputy's configuration schema takes it (`kty` always present). */
export type PublicJwk = JWK & { kty: string };

export interface ClientKeys {
  privateKey: CryptoKey;
  publicJwk: PublicJwk;
  jwks: { keys: PublicJwk[] };
}

export async function clientKeys(alg: 'ES256' | 'RS256' | 'EdDSA' = 'ES256'): Promise<ClientKeys> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  const publicJwk: PublicJwk = { ...jwk, kty: jwk.kty ?? 'EC', alg, use: 'sig' };
  return { privateKey, publicJwk, jwks: { keys: [publicJwk] } };
}

/** An openid-client Configuration for `clientId` authenticating with private_key_jwt. */
export async function oauthClient(issuer: string, clientId: string, keys: ClientKeys): Promise<client.Configuration> {
  return client.discovery(new URL(issuer), clientId, {}, client.PrivateKeyJwt(keys.privateKey), {
    execute: [client.allowInsecureRequests],
  });
}

/** An admin (or PEP) access token through client_credentials. */
export async function clientCredentialsToken(config: client.Configuration, scope: string): Promise<string> {
  const tokens = await client.clientCredentialsGrant(config, { scope });
  return tokens.access_token;
}

export async function adminSetup(): Promise<{ clientId: string; keys: ClientKeys; config: { client_id: string; scopes: Array<'deputy:admin' | 'authzen:evaluate'>; jwks: { keys: PublicJwk[] } } }> {
  const keys = await clientKeys();
  return { clientId: 'test-admin', keys, config: { client_id: 'test-admin', scopes: ['deputy:admin'], jwks: keys.jwks } };
}
