/**
 * `oauth2_user` connections: each user's downstream grant — the refresh token from the connect
 * flow (./connect-flows.ts) and the current access token, both vault secrets referenced from
 * `connection_grants` — and refreshing it (RFC 6749 §6).
 *
 * One refresh at a time per user and connection, across instances: a refresh runs in a
 * transaction holding the grant row's lock (`SELECT … FOR UPDATE`); whoever waited for the lock
 * re-reads the row and uses the token the first one stored. Within one instance, concurrent
 * callers also share one refresh (single flight) instead of queueing on the lock. This matters
 * beyond efficiency: with refresh-token rotation (OAuth 2.0 Security BCP, RFC 9700 §4.14.2) a
 * second refresh with the same token is reuse, and the AS revokes the whole grant.
 *
 * The lock is held during the token request (bounded by the token-endpoint timeout). On
 * PGlite — one connection, one process — that briefly serialises other queries too.
 *
 * A refresh token the AS rejects (`invalid_grant`: revoked, expired, consent withdrawn) ends the
 * grant: its secrets are deleted and the caller gets {@link NotConnected}, which the gateway
 * answers with 424 and a new connect link.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import * as client from 'openid-client';
import type { Queryable, Store } from '../../store/index.js';
import type { EnvelopeVault } from '../envelope.js';
import type { ConnectionSettings } from './config.js';
import { bearer, type CallIdentity, type Credential, type CredentialSource } from './credentials.js';
import { downstreamError, oauthErrorCode, useUntil, type DownstreamClients } from './oauth-client.js';
import type { Connection } from './store.js';
import { ConnectionRequired } from '../../errors/index.js';
import { SingleFlight } from '../../util/single-flight.js';

export const USER_REFRESH_TOKEN_KIND = 'connection_refresh_token';
export const USER_ACCESS_TOKEN_KIND = 'connection_access_token';

/** The user has no usable grant for this connection (never connected, or the AS revoked it). */
export class NotConnected extends Error {
  readonly code = 'ERR_NOT_CONNECTED';
  constructor(
    readonly connectionId: string,
    readonly reason: 'not_connected' | 'revoked',
  ) {
    super(reason === 'revoked' ? `the user's grant for connection "${connectionId}" was revoked` : `the user has not connected "${connectionId}"`);
    this.name = 'NotConnected';
  }
}

/** The tokens a grant stores (from the code exchange or a refresh). */
export interface GrantTokens {
  access_token: string;
  refresh_token?: string | undefined;
  /** Seconds. */
  expires_in?: number | undefined;
  scope?: string | undefined;
}

interface GrantRow {
  refresh_handle: string | null;
  access_handle: string | null;
  access_expires_at: number | null;
}

/** What user grants read: store, vault, downstream clients, the connect URI builder, a refresh hook, the clock. */
export interface UserGrantsDeps {
  store: Store;
  vault: EnvelopeVault;
  clients: DownstreamClients;
  /** A connect link for this user and connection (the 424's `connect_uri`). */
  connectUri: (connection: Connection, who: CallIdentity) => Promise<string>;
  /** Told about each refresh (tests count them; logs). Never given a token. */
  onRefresh?: (event: { connectionId: string; userId: string; outcome: 'refreshed' | 'revoked' | 'failed' }) => void;
  now?: () => number;
}

/**
 * A user's grant per `oauth2_user` connection (RFC 6749 §4.1): tokens encrypted in the vault, refreshed
 * once per grant at a time (§6). Throws {@link NotConnected} (the gateway answers `connection_required` with `connect_uri`) when the user has not connected.
 */
export class UserGrants implements CredentialSource {
  readonly #d: UserGrantsDeps;
  readonly #now: () => number;
  /** The refresh under way per connection and user: concurrent callers share it (§6, one at a time). */
  readonly #refreshes = new SingleFlight<string, string>();

  constructor(deps: UserGrantsDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
  }

  async credential(connection: Connection, who: CallIdentity): Promise<Credential> {
    try {
      const token = await this.accessToken(connection, who.userId);
      return bearer(token, () => this.expire(connection.id, who.userId));
    } catch (err) {
      if (!(err instanceof NotConnected)) throw err;
      const uri = await this.#d.connectUri(connection, who);
      const why = err.reason === 'revoked' ? 'the user\'s authorization was revoked at the provider' : 'the user has not connected this account yet';
      throw new ConnectionRequired(`connection "${connection.id}": ${why}; the user must open connect_uri`, uri);
    }
  }

  /** The user's current access token, refreshed if needed. Throws {@link NotConnected}. */
  async accessToken(connection: Connection, userId: string): Promise<string> {
    const row = await this.#row(this.#d.store, connection.id, userId);
    if (!row?.refresh_handle && !row?.access_handle) throw new NotConnected(connection.id, 'not_connected');
    if (this.#fresh(row)) {
      const token = await this.#d.vault.get(this.#d.store, row.access_handle!, USER_ACCESS_TOKEN_KIND);
      if (token !== undefined) return token;
    }
    const key = `${connection.id}\0${userId}`;
    return this.#refreshes.run(key, () => this.#refresh(connection, userId), undefined);
  }

  /** Stores the tokens of a completed connect flow (replacing any previous grant). */
  async save(tx: Queryable, connectionId: string, userId: string, tokens: GrantTokens): Promise<void> {
    const current = await this.#row(tx, connectionId, userId, true);
    const refreshHandle = current?.refresh_handle ?? newHandle('urt');
    const accessHandle = current?.access_handle ?? newHandle('uat');
    await this.#d.vault.replace(tx, { handle: accessHandle, kind: USER_ACCESS_TOKEN_KIND, plaintext: tokens.access_token });
    if (tokens.refresh_token) await this.#d.vault.replace(tx, { handle: refreshHandle, kind: USER_REFRESH_TOKEN_KIND, plaintext: tokens.refresh_token });
    else await this.#d.vault.delete(tx, refreshHandle);
    await tx.query(
      `INSERT INTO connection_grants (connection_id, user_id, refresh_handle, access_handle, access_expires_at, scope)
       VALUES ($1, $2, $3, $4, to_timestamp($5::double precision / 1000), $6)
       ON CONFLICT (connection_id, user_id) DO UPDATE SET refresh_handle = EXCLUDED.refresh_handle, access_handle = EXCLUDED.access_handle,
         access_expires_at = EXCLUDED.access_expires_at, scope = EXCLUDED.scope, created_at = now(), refreshed_at = NULL`,
      [connectionId, userId, tokens.refresh_token ? refreshHandle : null, accessHandle, useUntil(tokens.expires_in, this.#now()), tokens.scope ?? null],
    );
  }

  /** The upstream refused the access token: the next call refreshes. */
  async expire(connectionId: string, userId: string): Promise<void> {
    await this.#d.store.query('UPDATE connection_grants SET access_expires_at = now() - interval \'1 second\' WHERE connection_id = $1 AND user_id = $2', [connectionId, userId]);
  }

  /** Forgets a user's grant and its secrets. */
  async disconnect(connectionId: string, userId: string): Promise<boolean> {
    return this.#d.store.transaction(async (tx) => this.#deleteGrant(tx, connectionId, userId), { retryConflicts: true });
  }

  #fresh(row: GrantRow): boolean {
    return row.access_handle !== null && row.access_expires_at !== null && Number(row.access_expires_at) * 1000 > this.#now();
  }

  async #row(db: Queryable, connectionId: string, userId: string, lock = false): Promise<GrantRow | undefined> {
    const rows = await db.query<GrantRow>(
      `SELECT refresh_handle, access_handle, extract(epoch FROM access_expires_at)::double precision AS access_expires_at
       FROM connection_grants WHERE connection_id = $1 AND user_id = $2${lock ? ' FOR UPDATE' : ''}`,
      [connectionId, userId],
    );
    return rows[0];
  }

  async #refresh(connection: Connection, userId: string): Promise<string> {
    // Outside the lock: discovery must not hold a database connection.
    const config = await this.#d.clients.config(connection);
    const s = connection.settings as Extract<ConnectionSettings, { kind: 'oauth2_user' }>;
    // Never run again after a conflict (40001, 40P01: 503 instead): the refresh inside may have
    // rotated the upstream refresh token, and a second run would spend the old one (invalid_grant)
    // and delete the user's grant.
    const outcome = await this.#d.store.transaction(async (tx): Promise<{ token: string; refreshed: boolean } | { revoked: true } | { failed: unknown }> => {
      const row = await this.#row(tx, connection.id, userId, true);
      if (!row) return { revoked: true };
      // Someone (another instance) refreshed while this one waited for the lock.
      if (this.#fresh(row)) {
        const token = await this.#d.vault.get(tx, row.access_handle!, USER_ACCESS_TOKEN_KIND);
        if (token !== undefined) return { token, refreshed: false };
      }
      const refreshToken = row.refresh_handle ? await this.#d.vault.get(tx, row.refresh_handle, USER_REFRESH_TOKEN_KIND) : undefined;
      if (refreshToken === undefined) {
        await this.#deleteGrant(tx, connection.id, userId);
        return { revoked: true };
      }
      let res: Awaited<ReturnType<typeof client.refreshTokenGrant>>;
      try {
        res = await client.refreshTokenGrant(config, refreshToken, s.scopes.length ? { scope: s.scopes.join(' ') } : {});
      } catch (err) {
        if (oauthErrorCode(err) !== 'invalid_grant') return { failed: err };
        await this.#deleteGrant(tx, connection.id, userId);
        return { revoked: true };
      }
      // RFC 6749 §6: a new refresh token replaces the old one; without one, the old stays valid.
      await this.#d.vault.replace(tx, { handle: row.access_handle ?? newHandle('uat'), kind: USER_ACCESS_TOKEN_KIND, plaintext: res.access_token });
      if (res.refresh_token) await this.#d.vault.replace(tx, { handle: row.refresh_handle!, kind: USER_REFRESH_TOKEN_KIND, plaintext: res.refresh_token });
      await tx.query(
        `UPDATE connection_grants SET access_handle = COALESCE(access_handle, $3), access_expires_at = to_timestamp($4::double precision / 1000),
           scope = COALESCE($5, scope), refreshed_at = now() WHERE connection_id = $1 AND user_id = $2`,
        [connection.id, userId, row.access_handle, useUntil(res.expiresIn(), this.#now()), res.scope ?? null],
      );
      return { token: res.access_token, refreshed: true };
    });
    if ('token' in outcome) {
      if (outcome.refreshed) this.#d.onRefresh?.({ connectionId: connection.id, userId, outcome: 'refreshed' });
      return outcome.token;
    }
    if ('revoked' in outcome) {
      this.#d.onRefresh?.({ connectionId: connection.id, userId, outcome: 'revoked' });
      throw new NotConnected(connection.id, 'revoked');
    }
    this.#d.onRefresh?.({ connectionId: connection.id, userId, outcome: 'failed' });
    throw downstreamError(outcome.failed, `connection "${connection.id}": refreshing the user's token failed`);
  }

  async #deleteGrant(tx: Queryable, connectionId: string, userId: string): Promise<boolean> {
    const rows = await tx.query<{ refresh_handle: string | null; access_handle: string | null }>(
      'DELETE FROM connection_grants WHERE connection_id = $1 AND user_id = $2 RETURNING refresh_handle, access_handle',
      [connectionId, userId],
    );
    const handles = rows.flatMap((r) => [r.refresh_handle, r.access_handle]).filter((h): h is string => h !== null);
    await this.#d.vault.delete(tx, ...handles);
    return rows.length > 0;
  }
}

function newHandle(prefix: string): string {
  return `${prefix}_${randomBytes(18).toString('base64url')}`;
}
