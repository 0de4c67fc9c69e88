/**
 * `on_behalf_of` connections: the user's own enterprise IdP token — captured at the chain's
 * first token exchange and kept in the vault (`token_records.upstream`) — is exchanged at the
 * IdP's token endpoint for a token to the downstream API, so the downstream sees the *user*
 * (with the IdP's own consent and conditional-access checks), not a Deputy service account.
 *
 * - `entra_obo`: Microsoft identity platform on-behalf-of flow — `grant_type`
 *   `urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523 §2.1), `assertion` = the user's
 *   token, `requested_token_use=on_behalf_of`, `scope` (e.g. `https://graph.microsoft.com/.default`).
 * - `token_exchange`: RFC 8693 §2.1 at any other AS — `subject_token` = the user's token of type
 *   `access_token`, optional `resource` / `audience` / `scope`.
 *
 * Results are cached in memory per connection and upstream token, until shortly before expiry.
 *
 * @module
 */
import * as client from 'openid-client';
import { AccessDenied, InvalidToken } from '../../errors/index.js';
import type { Store } from '../../store/index.js';
import type { EnvelopeVault } from '../envelope.js';
import type { ConnectionSettings } from './config.js';
import { bearer, type CallIdentity, type Credential, type CredentialSource } from './credentials.js';
import { downstreamError, oauthErrorCode, TokenCache, useUntil, type DownstreamClients } from './oauth-client.js';
import type { Connection } from './store.js';

/** Vault kind under which token exchange stores the user's upstream token (src/oauth/token-exchange.ts). */
export const UPSTREAM_SUBJECT_TOKEN_KIND = 'upstream_subject_token';

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/**
 * Credentials `on_behalf_of` connections: the agent token exchanged at the upstream authorization server
 * (RFC 8693 §2.1), cached until shortly before expiry. Throws `AccessDenied` when the chain carries no user IdP token, `InvalidToken` when that token expired.
 */
export class OnBehalfOfSource implements CredentialSource {
  readonly #store: Store;
  readonly #vault: EnvelopeVault;
  readonly #clients: DownstreamClients;
  readonly #cache = new TokenCache();

  constructor(deps: { store: Store; vault: EnvelopeVault; clients: DownstreamClients }) {
    this.#store = deps.store;
    this.#vault = deps.vault;
    this.#clients = deps.clients;
  }

  async credential(connection: Connection, who: CallIdentity): Promise<Credential> {
    const s = connection.settings as Extract<ConnectionSettings, { kind: 'on_behalf_of' }>;
    const handle = who.upstreamHandle;
    if (handle === undefined) throw new AccessDenied(`connection "${connection.id}" acts on behalf of the user, and this token's chain carries no user token from an IdP`);
    const key = `${connection.id}\0${connection.secretVersion}\0${connection.updatedAt}\0${handle}`;
    const token = await this.#cache.get(key, async () => {
      const upstream = await this.#vault.get(this.#store, handle, UPSTREAM_SUBJECT_TOKEN_KIND);
      if (upstream === undefined) throw new InvalidToken('the user\'s IdP token behind this chain has expired: exchange a fresh user token');
      const config = await this.#clients.config(connection);
      const scope: Record<string, string> = s.scopes.length ? { scope: s.scopes.join(' ') } : {};
      const params: Record<string, string> =
        s.grant === 'entra_obo'
          ? { assertion: upstream, requested_token_use: 'on_behalf_of', ...scope }
          : {
              subject_token: upstream,
              subject_token_type: ACCESS_TOKEN_TYPE,
              requested_token_type: ACCESS_TOKEN_TYPE,
              ...scope,
              ...(s.resource ? { resource: s.resource } : {}),
              ...(s.audience ? { audience: s.audience } : {}),
            };
      try {
        const res = await client.genericGrantRequest(config, s.grant === 'entra_obo' ? JWT_BEARER : TOKEN_EXCHANGE, params);
        return { value: res.access_token, useUntil: useUntil(res.expiresIn()) };
      } catch (err) {
        // The IdP refused to issue a token for this user (consent missing, conditional access,
        // user token revoked): a decision about the user, not a failure of the gateway.
        if (oauthErrorCode(err) === 'invalid_grant' || oauthErrorCode(err) === 'interaction_required' || oauthErrorCode(err) === 'consent_required') {
          throw new AccessDenied(`connection "${connection.id}": the identity provider refused the on-behalf-of exchange ("${oauthErrorCode(err)}")`, { cause: err });
        }
        throw downstreamError(err, `connection "${connection.id}": on-behalf-of exchange failed`);
      }
    });
    return bearer(token, async () => this.#cache.drop(key, token));
  }
}
