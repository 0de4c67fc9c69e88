/**
 * DEVELOPMENT ONLY: a minimal OpenID provider on plain HTTP (127.0.0.1) that signs users' access
 * tokens on request, with no sign-in at all. It exists so `deputy dev` can show a token exchange
 * by hand without an Okta or Entra tenant. Anyone who can reach it gets a token for any user:
 * never run it beside a real deployment, and never trust it (`allowInsecureHttp`) in one.
 *
 * - `GET /.well-known/openid-configuration`: discovery (OpenID Connect Discovery 1.0 §3)
 * - `GET /jwks`: its public signing key (RS256, generated at start)
 * - `POST /dev/user-token` (form: `sub`, `scope`, optional `email`): a user's access token,
 *   RFC 9068 shaped (`typ: at+jwt`, `aud` = {@link DEV_IDP_AUDIENCE}), valid one hour, as the
 *   response body in plain text, so `USER_TOKEN=$(curl …)` works without a JSON tool.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { NO_STORE } from '../util/http.js';

/** The audience of the development IdP's access tokens: what Deputy's trusted issuer entry expects. */
export const DEV_IDP_AUDIENCE = 'deputy';
/** The user a token is for when the request names none. */
export const DEV_IDP_DEFAULT_USER = 'alice@example.com';
/** The largest form body the token endpoint reads, in bytes. */
const MAX_FORM_BYTES = 8192;

export interface DevIdp {
  /** `http://127.0.0.1:<port>`: also its issuer identifier. */
  readonly issuer: string;
  /** A user's access token (what `POST /dev/user-token` answers). */
  userToken(sub: string, scope: string, email?: string): Promise<string>;
  close(): Promise<void>;
}

/** Starts the development IdP on `port` (0 = any free port) on 127.0.0.1. */
export async function startDevIdp(port = 0): Promise<DevIdp> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const pub = await exportJWK(publicKey);
  const jwk: JWK = { ...pub, kid: await calculateJwkThumbprint(pub), alg: 'RS256', use: 'sig' };
  let issuer = '';
  const userToken = (sub: string, scope: string, email?: string) => signUserToken(privateKey, jwk.kid!, issuer, sub, scope, email);
  const server = createServer((req, res) => {
    handle(req, res, issuer, jwk, userToken).catch(() => send(res, 500, 'text/plain', 'error\n'));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { issuer, userToken, close: () => closeServer(server) };
}

function signUserToken(key: CryptoKey, kid: string, issuer: string, sub: string, scope: string, email?: string): Promise<string> {
  return new SignJWT({ scope, client_id: 'dev-app', ...(email || sub.includes('@') ? { email: email || sub } : {}), jti: randomUUID() })
    .setProtectedHeader({ alg: 'RS256', kid, typ: 'at+jwt' })
    .setIssuer(issuer)
    .setSubject(sub)
    .setAudience(DEV_IDP_AUDIENCE)
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(key);
}

async function handle(req: IncomingMessage, res: ServerResponse, issuer: string, jwk: JWK, userToken: DevIdp['userToken']): Promise<void> {
  const path = new URL(req.url ?? '/', issuer).pathname;
  if (req.method === 'GET' && path === '/.well-known/openid-configuration') {
    return send(res, 200, 'application/json', JSON.stringify({
      issuer,
      jwks_uri: `${issuer}/jwks`,
      token_endpoint: `${issuer}/dev/user-token`,
      response_types_supported: [],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['RS256'],
    }));
  }
  if (req.method === 'GET' && path === '/jwks') return send(res, 200, 'application/jwk-set+json', JSON.stringify({ keys: [jwk] }));
  if (req.method === 'POST' && path === '/dev/user-token') {
    const form = new URLSearchParams(await readBody(req));
    const sub = form.get('sub') || DEV_IDP_DEFAULT_USER;
    return send(res, 200, 'text/plain', `${await userToken(sub, form.get('scope') ?? '', form.get('email') ?? undefined)}\n`);
  }
  send(res, 404, 'text/plain', 'not found\n');
}

async function readBody(req: IncomingMessage): Promise<string> {
  let body = '';
  for await (const chunk of req) {
    body += String(chunk);
    if (body.length > MAX_FORM_BYTES) throw new Error('form too large');
  }
  return body;
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': NO_STORE }).end(body);
}

/** Closes an HTTP server and its keep-alive connections. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
