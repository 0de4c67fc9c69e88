/**
 * Credentials the gateway injects, one source per connection kind. Each source answers "what
 * must this upstream request carry?" for one connection and one caller (user + chain), and
 * keeps whatever it derives (downstream access tokens) out of every other path.
 *
 * | kind | credential | cached |
 * | --- | --- | --- |
 * | `api_key` | the stored secret, as a header or query parameter | no (one vault read) |
 * | `oauth2_client_credentials` | Deputy's own token (RFC 6749 §4.4) | in memory, per connection + secret version |
 * | `oauth2_user` | the user's token, refreshed with their stored refresh token | in the vault (./user-grants.ts) |
 * | `on_behalf_of` | a token exchanged for the user's upstream IdP token | in memory, per connection + upstream token |
 *
 * @module
 */
import * as client from 'openid-client';
import { BadGateway } from '../../errors/index.js';
import type { DelegationChain } from '../../delegation/index.js';
import type { ConnectionSettings } from './config.js';
import { downstreamError, TokenCache, useUntil, type DownstreamClients } from './oauth-client.js';
import type { Connection, ConnectionStore } from './store.js';

/** Who the call is for: the user at the root of the chain and the agents acting. */
export interface CallIdentity {
  userId: string;
  /** The agent holding the token (the current actor). */
  agentId: string;
  chain: DelegationChain;
  /** `jti` of the agent token. */
  tokenJti: string;
  /** Vault handle of the user's upstream IdP token captured at the chain's first exchange. */
  upstreamHandle: string | undefined;
}

/** What an upstream request must carry. */
export interface Credential {
  headers: ReadonlyArray<readonly [string, string]>;
  query: ReadonlyArray<readonly [string, string]>;
  /** The secret values in it, so that nothing returned to the agent can contain them. */
  secrets: readonly string[];
  /** The upstream refused it (401): forget cached tokens so the next call obtains new ones. */
  rejected(): Promise<void>;
}

/** Obtains the upstream credential of one call for one kind of connection. */
export interface CredentialSource {
  credential(connection: Connection, who: CallIdentity): Promise<Credential>;
}

/** RFC 6750 §2.1 (or a connection's own scheme for API keys). */
export function bearer(token: string, rejected: () => Promise<void> = async () => {}): Credential {
  return { headers: [['authorization', `Bearer ${token}`]], query: [], secrets: [token], rejected };
}

/** `api_key`: the stored secret, as configured (header with optional scheme, or query parameter). */
export class ApiKeySource implements CredentialSource {
  constructor(readonly connections: ConnectionStore) {}

  async credential(connection: Connection): Promise<Credential> {
    const s = connection.settings as Extract<ConnectionSettings, { kind: 'api_key' }>;
    const secret = await this.connections.secret(connection);
    if (secret === undefined) throw new BadGateway(`connection "${connection.id}" has no credential configured`);
    const value = s.scheme ? `${s.scheme} ${secret}` : secret;
    return {
      headers: s.header !== undefined ? [[s.header.toLowerCase(), value]] : [],
      query: s.query !== undefined ? [[s.query, secret]] : [],
      secrets: [secret],
      rejected: async () => {},
    };
  }
}

/**
 * `oauth2_client_credentials`: Deputy's own access token at the downstream AS. One token per
 * connection and secret version, shared by every caller, fetched once at a time, used until
 * shortly before it expires.
 */
export class ClientCredentialsSource implements CredentialSource {
  readonly #clients: DownstreamClients;
  readonly #cache = new TokenCache();

  constructor(clients: DownstreamClients) {
    this.#clients = clients;
  }

  async credential(connection: Connection): Promise<Credential> {
    const s = connection.settings as Extract<ConnectionSettings, { kind: 'oauth2_client_credentials' }>;
    const key = `${connection.id}\0${connection.secretVersion}\0${connection.updatedAt}`;
    const token = await this.#cache.get(key, async () => {
      const config = await this.#clients.config(connection);
      const params: Record<string, string> = {};
      if (s.scopes.length) params.scope = s.scopes.join(' ');
      if (s.resource) params.resource = s.resource;
      if (s.audience) params.audience = s.audience;
      try {
        const res = await client.clientCredentialsGrant(config, params);
        return { value: res.access_token, useUntil: useUntil(res.expiresIn()) };
      } catch (err) {
        throw downstreamError(err, `connection "${connection.id}": client credentials grant failed`);
      }
    });
    return bearer(token, async () => this.#cache.drop(key, token));
  }
}

/** Picks the source for a connection's kind. */
export class CredentialBroker implements CredentialSource {
  constructor(readonly sources: Readonly<Record<Connection['kind'], CredentialSource>>) {}

  credential(connection: Connection, who: CallIdentity): Promise<Credential> {
    return this.sources[connection.kind].credential(connection, who);
  }
}
