/**
 * A real downstream OAuth 2.0 provider for `oauth2_user` connect-flow tests: node-oidc-provider
 * on 127.0.0.1 (random port) with one confidential client (Deputy), PKCE required, refresh
 * tokens issued and rotated at every use, plain OAuth scopes (no `openid`).
 *
 * The "user" logs in and consents without a page: the interaction endpoint finishes the
 * interaction at once for {@link OAuthProviderOptions.accountId}. A {@link Browser} with a
 * per-host cookie jar follows the redirects, as a user's browser would.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK } from 'jose';
import { rsaKeyPair } from './rsa-keys.js';
import Provider, { type KoaContextWithOIDC } from 'oidc-provider';

export interface OAuthProviderOptions {
  clientId: string;
  clientSecret: string;
  redirectUri: string;
  /** The downstream account the "user" logs in as. */
  accountId: string;
  scopes: string[];
}

export interface OAuthProvider {
  readonly issuer: string;
  readonly provider: Provider;
  /** Grants made at the token endpoint, by grant type. */
  readonly tokenGrants: Record<string, number>;
  /** Denies the next interaction with `access_denied` (the user clicks "cancel"). */
  denyNextInteraction(): void;
  close(): Promise<void>;
}

export async function startOAuthProvider(options: OAuthProviderOptions): Promise<OAuthProvider> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const { privateKey } = await rsaKeyPair('RS256');
  const tokenGrants: Record<string, number> = {};
  let deny = false;

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: options.clientId,
        client_secret: options.clientSecret,
        redirect_uris: [options.redirectUri],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: 'rs1', alg: 'RS256', use: 'sig' }] } as never,
    cookies: { keys: ['downstream-cookie-key-0123456789'] },
    scopes: options.scopes,
    features: { devInteractions: { enabled: false } },
    pkce: { required: () => true },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    // Rotation at every use (RFC 9700 §4.14.2): a refresh token used twice is reuse, and revokes the grant.
    rotateRefreshToken: () => true,
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: async (_ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
    ttl: { AccessToken: 3600, AuthorizationCode: 60, RefreshToken: 86_400, Interaction: 600, Session: 600, Grant: 86_400 },
  });
  provider.on('grant.success', (ctx: KoaContextWithOIDC) => {
    const type = String((ctx.oidc.params as Record<string, unknown>).grant_type);
    tokenGrants[type] = (tokenGrants[type] ?? 0) + 1;
  });
  const callback = provider.callback();

  async function interaction(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const details = await provider.interactionDetails(req, res);
    if (deny) {
      deny = false;
      await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the user declined' }, { mergeWithLastSubmission: false });
      return;
    }
    const grant = new provider.Grant({ accountId: options.accountId, clientId: String(details.params.client_id) });
    grant.addOIDCScope(String(details.params.scope ?? ''));
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { login: { accountId: options.accountId }, consent: { grantId } }, { mergeWithLastSubmission: false });
  }

  server.on('request', (req, res) => {
    if (req.url?.startsWith('/interaction/')) {
      interaction(req, res).catch((err: unknown) => {
        res.writeHead(500).end(String(err));
      });
      return;
    }
    void callback(req, res);
  });

  return {
    issuer,
    provider,
    tokenGrants,
    denyNextInteraction: () => {
      deny = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A user's browser: follows redirects by hand, keeping cookies per host (ports share cookies, RFC 6265 §8.5). */
export class Browser {
  readonly #jar = new Map<string, Map<string, string>>();

  /** GETs `url`, following redirects until a non-redirect answer or `stopAt` matches the next URL. */
  async visit(url: string, options: { stopAt?: (next: URL) => boolean; maxHops?: number } = {}): Promise<{ status: number; url: string; body: string; location?: string }> {
    let current = new URL(url);
    for (let hop = 0; hop < (options.maxHops ?? 10); hop++) {
      const res = await fetch(current, { redirect: 'manual', headers: { cookie: this.#cookieHeader(current) } });
      this.#store(current, res.headers.getSetCookie());
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        const next = new URL(location, current);
        await res.arrayBuffer();
        if (options.stopAt?.(next)) return { status: res.status, url: current.href, body: '', location: next.href };
        current = next;
        continue;
      }
      return { status: res.status, url: current.href, body: await res.text() };
    }
    throw new Error('too many redirects');
  }

  /** Sets a cookie for `host` (e.g. the user's session at the mock IdP). */
  setCookie(host: string, name: string, value: string): void {
    const jar = this.#jar.get(host) ?? new Map<string, string>();
    jar.set(name, value);
    this.#jar.set(host, jar);
  }

  /** POSTs a form to `url` with this browser's cookies (redirects not followed). */
  async submit(url: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<{ status: number; body: string; location?: string }> {
    const target = new URL(url);
    const res = await fetch(target, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie: this.#cookieHeader(target), 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams(fields).toString(),
    });
    this.#store(target, res.headers.getSetCookie());
    const location = res.headers.get('location');
    return { status: res.status, body: await res.text(), ...(location ? { location: new URL(location, target).href } : {}) };
  }

  cookies(host: string): ReadonlyMap<string, string> {
    return this.#jar.get(host) ?? new Map();
  }

  #cookieHeader(url: URL): string {
    return [...(this.#jar.get(url.hostname) ?? new Map()).entries()].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  #store(url: URL, setCookies: string[]): void {
    const jar = this.#jar.get(url.hostname) ?? new Map<string, string>();
    for (const line of setCookies) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      const expired = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a) || /^\s*expires=thu, 01 jan 1970/i.test(a));
      if (expired || value === '') jar.delete(name);
      else jar.set(name, value);
    }
    this.#jar.set(url.hostname, jar);
  }
}
