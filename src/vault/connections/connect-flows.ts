/**
 * The connect flow of `oauth2_user` connections: the user links their downstream account once,
 * through the provider's authorization-code flow with PKCE (RFC 6749 §4.1, RFC 7636 S256), and
 * Deputy keeps the refresh token (./user-grants.ts).
 *
 * 1. A gateway call for a user without a grant gets 424 with `connect_uri`
 *    (`{issuer}/connect/{connection}?ticket=…`): a random ticket, stored only as its SHA-256,
 *    bound to the user and connection, single use, short-lived (`gateway.connectTicketSeconds`).
 * 2. The user's browser opens it: Deputy creates `state` and a PKCE verifier (the verifier in
 *    the vault), sets a cookie holding the state (binds the callback to this browser, RFC 9700
 *    §4.7.1 CSRF), and redirects to the provider's authorization endpoint.
 * 3. The provider redirects to `{issuer}/connect/callback`: the state must match the cookie and
 *    a started, unexpired, uncompleted flow; openid-client checks the response (RFC 9207 `iss`
 *    when the provider sends it) and redeems the code with the verifier. The grant is stored,
 *    the flow completed — both in one transaction, so a code is redeemed for one flow only.
 *
 * Who may complete a flow: only the user the link was made for. Before step 2 the browser signs
 * in at the enterprise IdP (src/signin/), and the signed-in user must be the link's user, at the
 * start and again at the callback; anyone else is refused (`access_denied`) and nothing is
 * attached. Without this, whoever opened a link — a victim lured by an attacker's agent —
 * would attach *their* downstream account to the attacker's grant slot, and the attacker's next
 * gateway call would carry the victim's token (RFC 9700 §4.7, account-linking CSRF).
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import * as client from 'openid-client';
import { AccessDenied, InvalidRequest, NotFound } from '../../errors/index.js';
import { constantTimeEqual } from '../../util/constant-time.js';
import { ERROR_CODE } from '../../util/scope.js';
import type { Store } from '../../store/index.js';
import type { EnvelopeVault } from '../envelope.js';
import type { ConnectionSettings } from './config.js';
import type { CallIdentity } from './credentials.js';
import { downstreamError, type DownstreamClients } from './oauth-client.js';
import type { Connection, ConnectionStore } from './store.js';
import type { UserGrants } from './user-grants.js';
import { sha256Base64url as sha256 } from '../../util/sha256.js';

export const PKCE_VERIFIER_KIND = 'connect_pkce_verifier';
/** The cookie that binds a started flow to the browser that started it. */
export const CONNECT_COOKIE = 'deputy_connect';

/** What the connect flow reads: store, vault, connections, downstream clients, user grants, issuer, and the ticket lifetime in seconds. */
export interface ConnectFlowsDeps {
  store: Store;
  vault: EnvelopeVault;
  connections: ConnectionStore;
  clients: DownstreamClients;
  grants: UserGrants;
  issuer: string;
  ticketSeconds: number;
}


/**
 * The connect flow of `oauth2_user` connections: authorization request with PKCE (RFC 7636) and `state`,
 * bound to the browser by a signed cookie, then the callback's code exchanged and the grant stored.
 */
export class ConnectFlows {
  readonly #d: ConnectFlowsDeps;
  readonly #base: string;

  constructor(deps: ConnectFlowsDeps) {
    this.#d = deps;
    this.#base = deps.issuer;
  }

  /** Where the provider sends the user back; register it as a redirect URI there. */
  get callbackUrl(): string {
    return `${this.#base}/connect/callback`;
  }

  /** Step 1: a new connect link for this user and connection. */
  async connectUri(connection: Connection, who: CallIdentity): Promise<string> {
    const ticket = randomBytes(32).toString('base64url');
    await this.#d.store.query(
      `INSERT INTO connect_flows (id, connection_id, user_id, agent_id, expires_at) VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::int))`,
      [sha256(ticket), connection.id, who.userId, who.agentId, this.#d.ticketSeconds],
    );
    return `${this.#base}/connect/${encodeURIComponent(connection.id)}?ticket=${ticket}`;
  }

  /**
   * Step 2: the browser opened the link. Returns where to send it and the state for the cookie.
   * Opening the link again (a reload) starts over with a new state and verifier.
   */
  async start(connectionId: string, ticket: string | undefined, signedInUser: string): Promise<{ redirectTo: string; state: string }> {
    if (!ticket || !/^[A-Za-z0-9_-]{20,100}$/.test(ticket)) throw new InvalidRequest('the connect link is malformed');
    const connection = await this.#d.connections.get(connectionId);
    if (!connection || connection.kind !== 'oauth2_user') throw new NotFound(`connection "${connectionId}" does not exist or needs no connect flow`);
    const config = await this.#d.clients.config(connection);
    const state = client.randomState();
    const verifier = client.randomPKCECodeVerifier();
    const verifierHandle = `pkce_${randomBytes(18).toString('base64url')}`;
    await this.#d.store.transaction(async (tx) => {
      const rows = await tx.query<{ verifier_handle: string | null; user_id: string }>(
        `SELECT verifier_handle, user_id FROM connect_flows
         WHERE id = $1 AND connection_id = $2 AND completed_at IS NULL AND expires_at > now() FOR UPDATE`,
        [sha256(ticket), connectionId],
      );
      if (!rows[0]) throw new InvalidRequest('the connect link has expired or was already used: ask the agent for a new one');
      requireLinkUser(rows[0].user_id, signedInUser);
      if (rows[0].verifier_handle) await this.#d.vault.delete(tx, rows[0].verifier_handle);
      await this.#d.vault.put(tx, { handle: verifierHandle, kind: PKCE_VERIFIER_KIND, plaintext: verifier });
      await tx.query('UPDATE connect_flows SET state_hash = $2, verifier_handle = $3, started_at = now() WHERE id = $1', [sha256(ticket), sha256(state), verifierHandle]);
    }, { retryConflicts: true });
    const s = connection.settings as Extract<ConnectionSettings, { kind: 'oauth2_user' }>;
    const url = client.buildAuthorizationUrl(config, {
      ...s.authorizationParams,
      redirect_uri: this.callbackUrl,
      response_type: 'code',
      ...(s.scopes.length ? { scope: s.scopes.join(' ') } : {}),
      state,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    });
    return { redirectTo: url.href, state };
  }

  /**
   * Step 3: the provider's redirect. `query` is the callback's raw query string; `cookieState`
   * the {@link CONNECT_COOKIE} value the browser sent.
   */
  async complete(query: string, cookieState: string | undefined, signedInUser: string): Promise<{ connectionId: string; userId: string }> {
    const params = new URLSearchParams(query);
    const state = params.get('state');
    if (!state) throw new InvalidRequest('the callback carries no state');
    if (!cookieState || !constantTimeEqual(cookieState, state)) {
      throw new InvalidRequest('this callback does not belong to a connect flow started in this browser');
    }
    const flow = (
      await this.#d.store.query<{ connection_id: string; user_id: string; verifier_handle: string | null }>(
        `SELECT connection_id, user_id, verifier_handle FROM connect_flows
         WHERE state_hash = $1 AND started_at IS NOT NULL AND completed_at IS NULL AND expires_at > now()`,
        [sha256(state)],
      )
    )[0];
    if (!flow?.verifier_handle) throw new InvalidRequest('the connect flow has expired or was already completed: ask the agent for a new link');
    // Again here: the session may have changed (sign-out, another user) since the start.
    requireLinkUser(flow.user_id, signedInUser);
    const error = params.get('error');
    if (error) {
      const code = ERROR_CODE.test(error) ? error : 'error';
      throw new InvalidRequest(`the provider did not authorize the connection ("${code}")`);
    }
    const connection = await this.#d.connections.get(flow.connection_id);
    if (!connection) throw new NotFound('the connection of this flow no longer exists');
    const config = await this.#d.clients.config(connection);
    const verifier = await this.#d.vault.get(this.#d.store, flow.verifier_handle, PKCE_VERIFIER_KIND);
    if (verifier === undefined) throw new InvalidRequest('the connect flow was restarted in another tab: finish that one');
    let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
    try {
      tokens = await client.authorizationCodeGrant(config, new URL(`${this.callbackUrl}?${params}`), { pkceCodeVerifier: verifier, expectedState: state });
    } catch (err) {
      // The authorization response itself failed validation (state, iss, error): the browser's
      // request is at fault. A token endpoint that answered badly is the upstream's failure.
      const upstreamFault = err instanceof client.ClientError && /RESPONSE_IS_NOT_(CONFORM|JSON)/.test(String(err.code));
      if (err instanceof client.AuthorizationResponseError || (err instanceof client.ClientError && !upstreamFault)) {
        throw new InvalidRequest('the provider\'s authorization response failed validation', { cause: err });
      }
      throw downstreamError(err, `connection "${connection.id}": redeeming the authorization code failed`);
    }
    await this.#d.store.transaction(async (tx) => {
      const done = await tx.query(
        'UPDATE connect_flows SET completed_at = now(), verifier_handle = NULL WHERE state_hash = $1 AND completed_at IS NULL RETURNING id',
        [sha256(state)],
      );
      if (done.length !== 1) throw new InvalidRequest('the connect flow was completed meanwhile');
      await this.#d.vault.delete(tx, flow.verifier_handle!);
      await this.#d.grants.save(tx, connection.id, flow.user_id, {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        expires_in: tokens.expiresIn(),
        scope: tokens.scope,
      });
    }, { retryConflicts: true });
    return { connectionId: connection.id, userId: flow.user_id };
  }

  /** Deletes flows that expired (and their verifiers); returns how many. */
  async purgeExpired(): Promise<number> {
    return this.#d.store.transaction(async (tx) => {
      const rows = await tx.query<{ verifier_handle: string | null }>(
        'DELETE FROM connect_flows WHERE expires_at < now() - interval \'1 hour\' RETURNING verifier_handle',
      );
      await this.#d.vault.delete(tx, ...rows.map((r) => r.verifier_handle).filter((h): h is string => h !== null));
      return rows.length;
    }, { retryConflicts: true });
  }
}

/**
 * The signed-in user must be the user the link was made for (RFC 9700 §4.7).
 * @throws AccessDenied (403 `access_denied`) otherwise; the flow is left untouched
 */
function requireLinkUser(linkUser: string, signedInUser: string): void {
  if (!constantTimeEqual(linkUser, signedInUser)) {
    throw new AccessDenied('this connect link was made for another user than the one signed in: nothing was connected. Sign out, or ask your agent for your own link');
  }
}
