/**
 * Deputy as an OAuth client of downstream authorization servers (openid-client): one
 * `Configuration` per connection and secret version, from discovery (RFC 8414 / OpenID
 * Discovery) or from the configured endpoints; the error mapping every token request shares;
 * and a small in-memory token cache with one fetch at a time per key.
 *
 * @module
 */
import * as client from 'openid-client';
import { BadGateway, GatewayTimeout } from '../../errors/index.js';
import { BoundedReadCache } from '../../util/single-flight.js';
import { ERROR_CODE } from '../../util/scope.js';
import type { Connection, ConnectionStore } from './store.js';
import type { ConnectionSettings } from './config.js';

type OAuthSettings = Extract<ConnectionSettings, { clientId: string }>;

export function isOAuthSettings(s: ConnectionSettings): s is OAuthSettings {
  return s.kind !== 'api_key';
}

/**
 * openid-client configurations of upstream authorization servers, one per connection (discovery cached),
 * for client credentials (RFC 6749 §4.4), token exchange (RFC 8693) and user grants (§4.1, RFC 7636).
 */
export class DownstreamClients {
  /** Configurations kept at most (connections × versions; a new one past it evicts the oldest). */
  static readonly MAX_CONFIGS = 1000;
  readonly #connections: ConnectionStore;
  readonly #timeoutSeconds: number;
  /**
   * One configuration per connection version, on the one single-flight cache: concurrent builds
   * share one discovery (joined only within the discovery's timeout), a failed one is not kept
   * (the next call discovers again), and a build under way when its connection changes is neither
   * joined nor kept after the change. No age bound: a version's configuration lives until the
   * connection changes (a new key) or this instance hears of the change.
   */
  readonly #configs: BoundedReadCache<string, client.Configuration>;

  constructor(connections: ConnectionStore, options: { timeoutSeconds: number }) {
    this.#connections = connections;
    this.#timeoutSeconds = options.timeoutSeconds;
    this.#configs = new BoundedReadCache<string, client.Configuration>(() => Promise.reject(new TypeError('DownstreamClients: no build given')), {
      ttlMs: Number.POSITIVE_INFINITY,
      joinWithinMs: options.timeoutSeconds * 1000,
      maxEntries: DownstreamClients.MAX_CONFIGS,
    });
    connections.onChange((id) => this.#configs.forget((key) => key.startsWith(`${id}\0`)));
  }

  /** The openid-client configuration of an OAuth connection (discovered once per version, then reused). */
  config(connection: Connection): Promise<client.Configuration> {
    const key = `${connection.id}\0${connection.secretVersion}\0${connection.updatedAt}`;
    return this.#configs.get(key, Date.now(), () => this.#build(connection));
  }

  async #build(connection: Connection): Promise<client.Configuration> {
    const s = connection.settings;
    if (!isOAuthSettings(s)) throw new TypeError(`connection "${connection.id}" is not an OAuth connection`);
    const secret = s.clientAuth === 'none' ? undefined : await this.#connections.secret(connection);
    if (s.clientAuth !== 'none' && secret === undefined) {
      throw new BadGateway(`connection "${connection.id}" has no client secret configured`);
    }
    const auth = s.clientAuth === 'none' ? client.None() : s.clientAuth === 'client_secret_post' ? client.ClientSecretPost(secret) : client.ClientSecretBasic(secret);
    const execute = s.allowInsecureHttp ? [client.allowInsecureRequests] : [];
    let config: client.Configuration;
    if (s.tokenEndpoint === undefined) {
      try {
        config = await client.discovery(new URL(s.issuer!), s.clientId, undefined, auth, { execute, timeout: this.#timeoutSeconds });
      } catch (cause) {
        throw downstreamError(cause, `discovery of ${new URL(s.issuer!).origin} failed`);
      }
    } else {
      // Explicit endpoints, no discovery; `issuer` (when given) is the identifier RFC 9207
      // authorization responses are checked against.
      const authorizationEndpoint = 'authorizationEndpoint' in s ? s.authorizationEndpoint : undefined;
      config = new client.Configuration(
        {
          issuer: s.issuer ?? new URL(s.tokenEndpoint).origin,
          token_endpoint: s.tokenEndpoint,
          ...(authorizationEndpoint ? { authorization_endpoint: authorizationEndpoint } : {}),
        },
        s.clientId,
        undefined,
        auth,
      );
      for (const e of execute) e(config);
    }
    config.timeout = this.#timeoutSeconds;
    return config;
  }
}

/** An OAuth error code from a token endpoint (RFC 6749 §5.2), if that is what `err` is. */
export function oauthErrorCode(err: unknown): string | undefined {
  return err instanceof client.ResponseBodyError ? err.error : undefined;
}

/**
 * A downstream failure as the agent sees it: which step failed and the AS's error code, never
 * its `error_description` (free text from another system) or anything Deputy sent.
 */
export function downstreamError(err: unknown, what: string): BadGateway | GatewayTimeout {
  if (err instanceof BadGateway || err instanceof GatewayTimeout) return err;
  const name = (err as { name?: unknown })?.name;
  const causeName = ((err as { cause?: { name?: unknown } })?.cause)?.name;
  if (name === 'TimeoutError' || name === 'AbortError' || causeName === 'TimeoutError') return new GatewayTimeout(`${what}: no answer in time`, { cause: err });
  const code = oauthErrorCode(err);
  const safe = code && ERROR_CODE.test(code) ? code : undefined;
  return new BadGateway(safe ? `${what}: the authorization server answered "${safe}"` : `${what}: the authorization server could not be used`, { cause: err });
}

/** A token and when to stop using it (milliseconds since the epoch). */
export interface CachedToken {
  value: string;
  useUntil: number;
}

/** Lifetime assumed when a token response has no `expires_in` (RFC 6749 §5.1 makes it optional). */
export const DEFAULT_TOKEN_SECONDS = 300;

/**
 * When to stop using a token that expires in `expiresIn` seconds: a margin before expiry so a
 * token is never sent that expires in flight (10% of its life, between 5 s and 60 s).
 */
export function useUntil(expiresIn: number | undefined, now = Date.now()): number {
  const life = expiresIn ?? DEFAULT_TOKEN_SECONDS;
  const margin = Math.min(60, Math.max(5, life / 10));
  return now + Math.max(0, life - margin) * 1000;
}

/**
 * In-memory tokens by key, fetched once at a time per key (concurrent callers share one fetch),
 * on the one single-flight cache (src/util/single-flight.ts `BoundedReadCache`), so it keeps that
 * cache's bounds: a token is used until its `useUntil` and never after a wall clock stepped back
 * to before its fetch began; a fetch stalled longer than `joinWithinMs` (default 30 s) is not
 * joined (later callers fetch anew); a failed fetch is not cached; at most `maxEntries` tokens
 * (default 10,000; a new one for a full cache evicts the one fetched longest ago); no token is used more than 24 h after its
 * fetch began, whatever its `expires_in`. A {@link drop} while a fetch of that key runs keeps
 * its token out of the cache (it still answers its callers); other keys' fetches are unaffected.
 */
export class TokenCache {
  /** The longest a token is used, from the start of its fetch (ms). */
  static readonly MAX_USE_MS = 24 * 3600 * 1000;
  readonly #tokens: BoundedReadCache<string, CachedToken>;

  constructor(options: { maxEntries?: number; joinWithinMs?: number } = {}) {
    this.#tokens = new BoundedReadCache<string, CachedToken>(() => Promise.reject(new TypeError('TokenCache: no fetch given')), {
      ttlMs: TokenCache.MAX_USE_MS,
      joinWithinMs: options.joinWithinMs ?? 30_000,
      maxEntries: options.maxEntries ?? 10_000,
      lifetime: (token) => ({ until: token.useUntil, final: false }),
    });
  }

  /** The token for `key`: cached while usable at `now` (epoch ms), else `fetch`ed (its errors reach every caller that shared it). */
  async get(key: string, fetch: () => Promise<CachedToken>, now = Date.now()): Promise<string> {
    return (await this.#tokens.get(key, now, fetch)).value;
  }

  /**
   * Forgets the token (the upstream refused it); the next call fetches a new one. With `refused`,
   * only while that is still the token cached: calls refused together (a token revoked upstream)
   * then share the first one's fresh fetch instead of detaching it, one fetch each.
   */
  drop(key: string, refused?: string): void {
    if (refused !== undefined && this.#tokens.peek(key, Date.now())?.value.value !== refused) return;
    // That key's fetches under way are detached, other keys' are not (they are still good).
    this.#tokens.forget((k) => k === key);
  }

  /** Forgets every token whose key starts with `prefix`. */
  dropPrefix(prefix: string): void {
    this.#tokens.forget((k) => k.startsWith(prefix));
  }
}
