/**
 * The Okta custom authorization server's browser sign-in, for the mock IdP (./mock-idp.ts):
 * `/oauth2/default/v1/authorize` and `/oauth2/default/v1/token`, authorization code + PKCE S256
 * (OpenID Connect Core §3.1, RFC 7636), `state`, `nonce`, RFC 9207 `iss` in the response, ID
 * tokens shaped like Okta's (`sub` = the Okta user id `00u…`, `aud` = the client id).
 *
 * The same endpoints serve an Entra-shaped tenant (`/{tid}/oauth2/v2.0/authorize`, ID tokens with
 * `tid` and `oid`) with other `paths` and `idToken`.
 *
 * Who is signed in at the "IdP" is a cookie of the browser, `okta_user` = the Okta user id, set
 * with `Browser.setCookie` (the user's IdP session). Without it the authorize endpoint answers a
 * login page (200), as Okta would.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRemoteJWKSet, jwtVerify } from 'jose';

/** A client registered for sign-in at the mock Okta. */
export interface MockSignInClient {
  clientId: string;
  redirectUri: string;
  /** `client_secret_basic` / `client_secret_post` secret; else `private_key_jwt` against `jwksUri`. */
  secret?: string;
  jwksUri?: string;
}

/** What a user looks like at the mock Okta. */
export interface MockOktaUser {
  email?: string;
  name?: string;
  groups?: string[];
}

interface PendingCode {
  clientId: string;
  redirectUri: string;
  challenge: string;
  nonce: string | undefined;
  uid: string;
  expiresAt: number;
}

export interface MockOktaSignIn {
  registerClient(client: MockSignInClient): void;
  setUser(uid: string, user: MockOktaUser): void;
  /** The next authorization request is answered `error=access_denied` (the user cancels at Okta). */
  denyNext(): void;
  /** Token requests that redeemed a code, by client id. */
  readonly redeemed: Record<string, number>;
  /** Handles the request when it is one of the sign-in endpoints; returns false otherwise. */
  handle(req: IncomingMessage, res: ServerResponse, path: string): boolean;
}

export function mockOktaSignIn(options: {
  issuer: string;
  idToken: (claims: { sub: string; aud: string; nonce?: string; email?: string; name?: string; groups?: string[] }) => Promise<string>;
  /** Endpoint paths; default Okta's `{issuer path}/v1/authorize` and `/v1/token`. */
  paths?: { authorize: string; token: string };
  /** The cookie naming the signed-in user; default `okta_user`. */
  cookie?: string;
}): MockOktaSignIn {
  const clients = new Map<string, MockSignInClient>();
  const users = new Map<string, MockOktaUser>();
  const codes = new Map<string, PendingCode>();
  const redeemed: Record<string, number> = {};
  const path = new URL(options.issuer).pathname;
  const paths = options.paths ?? { authorize: `${path}/v1/authorize`, token: `${path}/v1/token` };
  const cookieName = options.cookie ?? 'okta_user';
  let deny = false;

  function authorize(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', options.issuer);
    const q = url.searchParams;
    const client = clients.get(q.get('client_id') ?? '');
    if (!client || q.get('redirect_uri') !== client.redirectUri) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('unknown client or redirect_uri');
      return;
    }
    const back = new URL(client.redirectUri);
    back.searchParams.set('iss', options.issuer);
    if (q.get('state')) back.searchParams.set('state', q.get('state')!);
    const fail = (error: string) => {
      back.searchParams.set('error', error);
      res.writeHead(302, { location: back.href }).end();
    };
    if (q.get('response_type') !== 'code' || !(q.get('scope') ?? '').split(' ').includes('openid')) return fail('invalid_request');
    if (q.get('code_challenge_method') !== 'S256' || !q.get('code_challenge')) return fail('invalid_request');
    const uid = new RegExp(`(?:^|;\\s*)${cookieName}=([^;]+)`).exec(req.headers.cookie ?? '')?.[1];
    if (!uid) {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>Okta sign-in</title><form><label>Username <input name="username"></label></form>');
      return;
    }
    if (deny) {
      deny = false;
      return fail('access_denied');
    }
    const code = randomBytes(24).toString('base64url');
    codes.set(code, { clientId: client.clientId, redirectUri: client.redirectUri, challenge: q.get('code_challenge')!, nonce: q.get('nonce') ?? undefined, uid, expiresAt: Date.now() + 60_000 });
    back.searchParams.set('code', code);
    res.writeHead(302, { location: back.href }).end();
  }

  async function authenticate(req: IncomingMessage, form: URLSearchParams): Promise<MockSignInClient | undefined> {
    const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '');
    if (basic) {
      const [id, secret] = Buffer.from(basic[1]!, 'base64').toString().split(':').map(decodeURIComponent);
      const c = clients.get(id ?? '');
      return c?.secret !== undefined && c.secret === secret ? c : undefined;
    }
    const assertion = form.get('client_assertion');
    if (assertion) {
      const c = clients.get(form.get('client_id') ?? '');
      if (!c?.jwksUri) return undefined;
      try {
        const tokenEndpoint = new URL(paths.token, options.issuer).href;
        await jwtVerify(assertion, createRemoteJWKSet(new URL(c.jwksUri)), { issuer: c.clientId, subject: c.clientId, audience: [options.issuer, tokenEndpoint] });
        return c;
      } catch {
        return undefined;
      }
    }
    const c = clients.get(form.get('client_id') ?? '');
    return c?.secret !== undefined && c.secret === form.get('client_secret') ? c : undefined;
  }

  async function token(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const form = new URLSearchParams(Buffer.concat(chunks).toString());
    const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
    const client = await authenticate(req, form);
    if (!client) return void json(401, { error: 'invalid_client' });
    const code = codes.get(form.get('code') ?? '');
    codes.delete(form.get('code') ?? '');
    const verifier = form.get('code_verifier') ?? '';
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    if (form.get('grant_type') !== 'authorization_code' || !code || code.clientId !== client.clientId || code.expiresAt < Date.now() || code.redirectUri !== form.get('redirect_uri') || challenge !== code.challenge) {
      return void json(400, { error: 'invalid_grant' });
    }
    redeemed[client.clientId] = (redeemed[client.clientId] ?? 0) + 1;
    const user = users.get(code.uid) ?? {};
    const idToken = await options.idToken({ sub: code.uid, aud: client.clientId, ...(code.nonce ? { nonce: code.nonce } : {}), ...user });
    json(200, { access_token: randomBytes(24).toString('base64url'), token_type: 'Bearer', expires_in: 3600, scope: 'openid profile email', id_token: idToken });
  }

  return {
    registerClient: (c) => void clients.set(c.clientId, c),
    setUser: (uid, user) => void users.set(uid, user),
    denyNext: () => {
      deny = true;
    },
    redeemed,
    handle(req, res, requestPath) {
      if (req.method === 'GET' && requestPath === paths.authorize) {
        authorize(req, res);
        return true;
      }
      if (req.method === 'POST' && requestPath === paths.token) {
        token(req, res).catch((err: unknown) => res.writeHead(500).end(String(err)));
        return true;
      }
      return false;
    },
  };
}
