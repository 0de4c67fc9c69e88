/**
 * Agents as real clients of Deputy: openid-client with private_key_jwt and a DPoP handle for
 * the normal path, and a raw form POST (own client assertion, own DPoP proof) for tests that
 * need to break one thing at a time.
 */
import { randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import * as client from 'openid-client';
import { clientKeys, type ClientKeys } from './clients.js';

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
export const ID_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id_token';
export const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

export interface DpopKeys {
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  publicJwk: JWK;
  jkt: string;
}

export async function dpopKeys(alg: 'ES256' | 'EdDSA' = 'ES256'): Promise<DpopKeys> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  return { privateKey, publicKey, publicJwk, jkt: await calculateJwkThumbprint(publicJwk) };
}

export interface TestAgent {
  id: string;
  keys: ClientKeys;
  dpop: DpopKeys;
  config: client.Configuration;
  handle: client.DPoPHandle;
}

/** The agent entry for Deputy's configuration. */
export function agentConfig(id: string, keys: ClientKeys, fields: { scopes: string[]; audiences: string[]; maxDelegationDepth?: number }) {
  return { id, name: `Agent ${id}`, owner: 'owner@example.com', jwks: keys.jwks, ...fields };
}

export async function testAgent(issuer: string, id: string, keys: ClientKeys): Promise<TestAgent> {
  const config = await client.discovery(new URL(issuer), id, {}, client.PrivateKeyJwt(keys.privateKey), { execute: [client.allowInsecureRequests] });
  const dpop = await dpopKeys();
  const handle = client.getDPoPHandle(config, { privateKey: dpop.privateKey, publicKey: dpop.publicKey });
  return { id, keys, dpop, config, handle };
}

export async function newAgentKeys(): Promise<ClientKeys> {
  return clientKeys();
}

export interface ExchangeParams {
  subject_token: string;
  subject_token_type?: string;
  actor_token?: string;
  actor_token_type?: string;
  requested_token_type?: string;
  resource?: string | string[];
  audience?: string | string[];
  scope?: string;
}

function toSearchParams(params: ExchangeParams): URLSearchParams {
  const body = new URLSearchParams();
  for (const [name, value] of Object.entries({ subject_token_type: ACCESS_TOKEN_TYPE, ...params })) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) body.append(name, v);
  }
  return body;
}

/** A token exchange through openid-client, exactly as an agent would do it. */
export async function exchange(agent: TestAgent, params: ExchangeParams): Promise<client.TokenEndpointResponse> {
  return client.genericGrantRequest(agent.config, TOKEN_EXCHANGE, toSearchParams(params), { DPoP: agent.handle });
}

/** The OAuth error of a failed exchange through openid-client. */
export async function exchangeError(agent: TestAgent, params: ExchangeParams): Promise<{ error: string; error_description: string; status: number }> {
  try {
    await exchange(agent, params);
  } catch (err) {
    if (err instanceof client.ResponseBodyError) return { error: err.error, error_description: err.error_description ?? '', status: err.status };
    throw err;
  }
  throw new Error('exchange unexpectedly succeeded');
}

export interface ProofOptions {
  htm?: string;
  htu?: string;
  iat?: number;
  jti?: string;
  nonce?: string;
  accessToken?: string;
  keys?: DpopKeys;
  typ?: string;
}

/** A DPoP proof (RFC 9449 §4.2) with every member under the test's control. */
export async function dpopProof(keys: DpopKeys, htu: string, options: ProofOptions = {}): Promise<string> {
  const k = options.keys ?? keys;
  const claims: JWTPayload = {
    htm: options.htm ?? 'POST',
    htu: options.htu ?? htu,
    jti: options.jti ?? randomUUID(),
    ...(options.nonce ? { nonce: options.nonce } : {}),
  };
  if (options.accessToken) {
    const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(options.accessToken));
    claims.ath = Buffer.from(digest).toString('base64url');
  }
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', typ: options.typ ?? 'dpop+jwt', jwk: k.publicJwk })
    .setIssuedAt(options.iat ?? Math.floor(Date.now() / 1000))
    .sign(k.privateKey);
}

/**
 * A short-lived JWT the agent signs about itself (`iss` = `sub` = its id, `aud` = Deputy): both a
 * private_key_jwt client assertion (RFC 7523 §2.2) and Deputy's form of RFC 8693 `actor_token`.
 */
async function selfSignedJwt(agent: { id: string; keys: ClientKeys }, issuer: string, key: CryptoKey = agent.keys.privateKey): Promise<string> {
  return new SignJWT({ jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256' })
    .setIssuer(agent.id)
    .setSubject(agent.id)
    .setAudience(issuer)
    .setIssuedAt()
    .setExpirationTime('60s')
    .sign(key);
}

export const clientAssertion = (agent: { id: string; keys: ClientKeys }, issuer: string): Promise<string> => selfSignedJwt(agent, issuer);

/** An actor token, signed with the agent's key or (to test refusals) another one. */
export const actorToken = (agent: { id: string; keys: ClientKeys }, issuer: string, key?: CryptoKey): Promise<string> => selfSignedJwt(agent, issuer, key);

/**
 * A raw token-exchange POST. `proof: null` sends no DPoP header; a string sends that proof;
 * undefined makes a fresh valid one with the agent's DPoP key.
 */
export async function rawExchange(
  url: string,
  issuer: string,
  agent: { id: string; keys: ClientKeys; dpop: DpopKeys },
  params: ExchangeParams,
  options: { proof?: string | null; proofOptions?: ProofOptions } = {},
): Promise<Response> {
  const body = toSearchParams(params);
  body.set('grant_type', TOKEN_EXCHANGE);
  body.set('client_id', agent.id);
  body.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
  body.set('client_assertion', await clientAssertion(agent, issuer));
  const proof = options.proof === undefined ? await dpopProof(agent.dpop, `${issuer}/token`, options.proofOptions) : options.proof;
  return fetch(`${url}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(proof === null ? {} : { dpop: proof }) },
    body,
  });
}

/** POSTs a form to an endpoint authenticated with private_key_jwt (introspection, revocation). */
export async function authenticatedPost(url: string, issuer: string, caller: { id: string; keys: ClientKeys }, form: Record<string, string>): Promise<Response> {
  const body = new URLSearchParams(form);
  body.set('client_id', caller.id);
  body.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
  body.set('client_assertion', await clientAssertion(caller, issuer));
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
}

/** The claims of a JWT, for assertions. */
export function claimsOf(token: string): JWTPayload & Record<string, unknown> {
  return decodeJwt(token) as JWTPayload & Record<string, unknown>;
}
