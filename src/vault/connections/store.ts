/**
 * The connection registry: settings in `connections`, credentials in the vault.
 *
 * Write-only secrets: nothing here returns a secret except {@link ConnectionStore.secret}, which
 * only the credential sources (./credentials.ts) call, to inject it into an upstream request.
 * Listings carry `hasSecret`, the secret's version and when it last changed.
 *
 * Connections come from configuration (synced at each start, `source = 'config'`; their secrets
 * from the environment or a file) or from the admin API (`source = 'api'`). A configured
 * connection belongs to the file: the API cannot rotate or delete it, and a connection removed
 * from the file is deleted at the next start together with its credentials (a credential an
 * operator removed must not stay usable).
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { constantTimeEqual } from '../../util/constant-time.js';
import { readFileSync } from 'node:fs';
import { Conflict, NotFound } from '../../errors/index.js';
import type { Queryable, Store } from '../../store/index.js';
import type { EnvelopeVault } from '../envelope.js';
import type { ConnectionConfig, ConnectionInput, ConnectionKind, ConnectionSettings, SecretSource } from './config.js';
import { setBounded } from '../../util/bounded-map.js';
import { withinBound } from '../../util/fresh.js';

/** Vault kind of a connection's credential (API key, client secret); bound into the AAD. */
export const CONNECTION_SECRET_KIND = 'connection_secret';

/** A connection as read: settings, source (`config` / `api`), whether it has a secret and its version (never the secret). */
export interface Connection {
  id: string;
  kind: ConnectionKind;
  settings: ConnectionSettings;
  hasSecret: boolean;
  /** Bumped at every secret change; caches of derived tokens are keyed by it. */
  secretVersion: number;
  secretUpdatedAt: number | undefined;
  source: 'config' | 'api';
  createdAt: number;
  updatedAt: number;
}

interface Row {
  id: string;
  kind: ConnectionKind;
  settings: ConnectionSettings;
  secret_handle: string | null;
  secret_version: number;
  secret_updated_at: number | null;
  source: 'config' | 'api';
  created_at: number;
  updated_at: number;
}

const COLUMNS = `id, kind, settings, secret_handle, secret_version, extract(epoch FROM secret_updated_at)::bigint AS secret_updated_at, source,
  extract(epoch FROM created_at)::bigint AS created_at, extract(epoch FROM updated_at)::bigint AS updated_at`;

/** A configured secret reference that cannot be resolved: stops the start, naming what is missing. */
export class ConnectionSecretUnavailable extends Error {
  readonly code = 'ERR_CONNECTION_SECRET';
  constructor(message: string) {
    super(message);
    this.name = 'ConnectionSecretUnavailable';
  }
}

/** Reads a configured secret reference. The value is trimmed of a trailing newline (files). */
export function readSecretSource(id: string, source: SecretSource, env: Readonly<Record<string, string | undefined>>): string {
  if ('env' in source) {
    const value = env[source.env];
    if (!value) throw new ConnectionSecretUnavailable(`connection "${id}": environment variable ${source.env} is not set`);
    return value;
  }
  let text: string;
  try {
    text = readFileSync(source.file, 'utf8');
  } catch (err) {
    throw new ConnectionSecretUnavailable(`connection "${id}": cannot read secret file ${source.file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const value = text.replace(/\r?\n$/, '');
  if (!value) throw new ConnectionSecretUnavailable(`connection "${id}": secret file ${source.file} is empty`);
  return value;
}

function settingsOf<C extends ConnectionConfig | ConnectionInput>(c: C): ConnectionSettings {
  const { secret: _secret, ...settings } = c;
  return settings as ConnectionSettings;
}

function fromRow(r: Row): Connection & { secretHandle: string | undefined } {
  return {
    id: r.id,
    kind: r.kind,
    settings: r.settings,
    hasSecret: r.secret_handle !== null,
    secretHandle: r.secret_handle ?? undefined,
    secretVersion: Number(r.secret_version),
    secretUpdatedAt: r.secret_updated_at === null ? undefined : Number(r.secret_updated_at),
    source: r.source,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

type Stored = Connection & { secretHandle: string | undefined };

/**
 * The connection registry: settings in `connections`, secrets in the vault (write-only). Throws `NotFound` /
 * `Conflict` on admin changes and {@link ConnectionSecretUnavailable} when a secret cannot be read.
 */
export class ConnectionStore {
  readonly #store: Store;
  readonly #vault: EnvelopeVault;
  readonly #ttlMs: number;
  readonly #cache = new Map<string, { value: Stored | undefined; lookedUpAt: number }>();
  /**
   * Decrypted secrets by connection id, valid for the cached row they were read for (same
   * handle and version) and for the row cache's TTL at most: the gateway injects a secret on
   * every call, and a vault read + unwrap + decrypt per call bought nothing the TTL does not
   * already allow. Dropped with the row on a change through this instance.
   */
  readonly #secrets = new Map<string, { handle: string; version: number; value: string; lookedUpAt: number }>();
  static readonly MAX_CACHED_SECRETS = 1_000;
  readonly #listeners: Array<(id: string) => void> = [];

  /**
   * `cacheTtlMs`: how long a lookup is reused (default 2 s) — the bound on how late another
   * instance's change (rotation, deletion) is seen here; changes through this instance are seen
   * at once.
   */
  constructor(store: Store, vault: EnvelopeVault, options: { cacheTtlMs?: number } = {}) {
    this.#store = store;
    this.#vault = vault;
    this.#ttlMs = options.cacheTtlMs ?? 2000;
  }

  /** Called with a connection id after it changed through this instance (caches drop derived tokens). */
  onChange(listener: (id: string) => void): void {
    this.#listeners.push(listener);
  }

  async get(id: string): Promise<Connection | undefined> {
    const stored = await this.#get(id);
    return stored && publicView(stored);
  }

  async list(options: { limit: number; after?: string }): Promise<{ connections: Connection[]; next?: string }> {
    const rows = await this.#store.query<Row>(
      `SELECT ${COLUMNS} FROM connections WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2`,
      [options.after ?? null, options.limit + 1],
    );
    const page = rows.slice(0, options.limit).map((r) => publicView(fromRow(r)));
    return rows.length > options.limit ? { connections: page, next: page.at(-1)!.id } : { connections: page };
  }

  /** Creates a connection through the admin API (409 if the id exists). */
  async create(input: ConnectionInput): Promise<Connection> {
    const created = await this.#store.transaction(async (tx) => {
      const handle = input.secret === undefined ? null : newSecretHandle();
      const rows = await tx.query<Row>(
        `INSERT INTO connections (id, kind, settings, secret_handle, secret_version, secret_updated_at, source)
         VALUES ($1, $2, $3::jsonb, $4, $5, CASE WHEN $4::text IS NULL THEN NULL ELSE now() END, 'api')
         ON CONFLICT (id) DO NOTHING RETURNING ${COLUMNS}`,
        [input.id, input.kind, JSON.stringify(settingsOf(input)), handle, handle === null ? 0 : 1],
      );
      if (!rows[0]) throw new Conflict(`connection "${input.id}" already exists`);
      if (handle !== null) await this.#vault.put(tx, { handle, kind: CONNECTION_SECRET_KIND, plaintext: input.secret! });
      return fromRow(rows[0]);
    }, { retryConflicts: true });
    this.#changed(created.id);
    return publicView(created);
  }

  /** Replaces the secret of an API-created connection; the old one is gone at once. */
  async rotateSecret(id: string, secret: string): Promise<Connection> {
    const rotated = await this.#store.transaction(async (tx) => {
      const current = await lockRow(tx, id);
      if (current.source === 'config') throw new Conflict(`connection "${id}" is defined in configuration: change its secret there`);
      return this.#setSecret(tx, current, secret);
    }, { retryConflicts: true });
    this.#changed(id);
    return publicView(rotated);
  }

  /** Deletes an API-created connection with its credential, its users' tokens and pending connect flows. */
  async delete(id: string): Promise<void> {
    await this.#store.transaction(async (tx) => {
      const current = await lockRow(tx, id);
      if (current.source === 'config') throw new Conflict(`connection "${id}" is defined in configuration: remove it there`);
      await this.#deleteLocked(tx, current);
    }, { retryConflicts: true });
    this.#changed(id);
  }

  /**
   * The decrypted credential, for injection only. Undefined when none is set. Reused for at most
   * `cacheTtlMs` (the bound on seeing another instance's rotation, as for the row itself); a
   * rotation or deletion through this instance is seen at once.
   */
  async secret(connection: Connection, now = Date.now()): Promise<string | undefined> {
    const stored = await this.#get(connection.id);
    if (!stored?.secretHandle) return undefined;
    const hit = this.#secrets.get(stored.id);
    if (hit && withinBound(hit.lookedUpAt, now, this.#ttlMs) && hit.handle === stored.secretHandle && hit.version === stored.secretVersion) return hit.value;
    const value = await this.#vault.get(this.#store, stored.secretHandle, CONNECTION_SECRET_KIND);
    if (value === undefined) return undefined;
    setBounded(this.#secrets, stored.id, { handle: stored.secretHandle, version: stored.secretVersion, value, lookedUpAt: now }, ConnectionStore.MAX_CACHED_SECRETS);
    return value;
  }

  /**
   * Makes the configuration's connections exist as written: settings replaced, the secret
   * re-stored only when it differs from the stored one (so the version counts real changes), and
   * configured connections no longer in the file deleted. An API connection with a configured id
   * is refused: the file would silently take over a credential someone else set.
   */
  async syncFromConfig(configs: readonly ConnectionConfig[], env: Readonly<Record<string, string | undefined>>): Promise<{ removed: string[] }> {
    const secrets = new Map(configs.map((c) => [c.id, c.secret === undefined ? undefined : readSecretSource(c.id, c.secret, env)] as const));
    const removed = await this.#store.transaction(async (tx) => {
      for (const c of configs) {
        const existing = (await tx.query<Row>(`SELECT ${COLUMNS} FROM connections WHERE id = $1 FOR UPDATE`, [c.id]))[0];
        if (existing && existing.source !== 'config') {
          throw new ConnectionSecretUnavailable(`connection "${c.id}" exists already (created through the admin API): delete it there or rename the configured one`);
        }
        if (existing && existing.kind !== c.kind) await this.#deleteLocked(tx, fromRow(existing));
        const rows = await tx.query<Row>(
          `INSERT INTO connections (id, kind, settings, source) VALUES ($1, $2, $3::jsonb, 'config')
           ON CONFLICT (id) DO UPDATE SET settings = EXCLUDED.settings, updated_at = now() RETURNING ${COLUMNS}`,
          [c.id, c.kind, JSON.stringify(settingsOf(c))],
        );
        const current = fromRow(rows[0]!);
        const wanted = secrets.get(c.id);
        if (wanted === undefined) {
          if (current.secretHandle) await this.#clearSecret(tx, current);
        } else {
          const stored = current.secretHandle ? await this.#vault.get(tx, current.secretHandle, CONNECTION_SECRET_KIND).catch(() => undefined) : undefined;
          if (stored === undefined || !constantTimeEqual(stored, wanted)) await this.#setSecret(tx, current, wanted);
        }
      }
      const stale = await tx.query<Row>(
        `SELECT ${COLUMNS} FROM connections WHERE source = 'config' AND NOT (id = ANY($1::text[])) FOR UPDATE`,
        [configs.map((c) => c.id)],
      );
      for (const row of stale) await this.#deleteLocked(tx, fromRow(row));
      return stale.map((r) => r.id);
    }, { retryConflicts: true });
    this.#cache.clear();
    this.#secrets.clear();
    for (const c of configs) this.#changed(c.id);
    for (const id of removed) this.#changed(id);
    return { removed };
  }

  async #get(id: string): Promise<Stored | undefined> {
    const now = Date.now();
    const hit = this.#cache.get(id);
    if (hit && withinBound(hit.lookedUpAt, now, this.#ttlMs)) return hit.value;
    const rows = await this.#store.query<Row>(`SELECT ${COLUMNS} FROM connections WHERE id = $1`, [id]);
    const value = rows[0] ? fromRow(rows[0]) : undefined;
    setBounded(this.#cache, id, { value, lookedUpAt: now }, 10_000);
    return value;
  }

  async #setSecret(tx: Queryable, current: Stored, secret: string): Promise<Stored> {
    const handle = current.secretHandle ?? newSecretHandle();
    await this.#vault.replace(tx, { handle, kind: CONNECTION_SECRET_KIND, plaintext: secret });
    const rows = await tx.query<Row>(
      `UPDATE connections SET secret_handle = $2, secret_version = secret_version + 1, secret_updated_at = now(), updated_at = now()
       WHERE id = $1 RETURNING ${COLUMNS}`,
      [current.id, handle],
    );
    return fromRow(rows[0]!);
  }

  async #clearSecret(tx: Queryable, current: Stored): Promise<void> {
    await this.#vault.delete(tx, current.secretHandle!);
    await tx.query(
      'UPDATE connections SET secret_handle = NULL, secret_version = secret_version + 1, secret_updated_at = now(), updated_at = now() WHERE id = $1',
      [current.id],
    );
  }

  /** Deletes a locked connection row and every vault secret hanging off it. */
  async #deleteLocked(tx: Queryable, current: Stored): Promise<void> {
    const grants = await tx.query<{ refresh_handle: string | null; access_handle: string | null }>(
      'SELECT refresh_handle, access_handle FROM connection_grants WHERE connection_id = $1',
      [current.id],
    );
    const flows = await tx.query<{ verifier_handle: string | null }>('SELECT verifier_handle FROM connect_flows WHERE connection_id = $1', [current.id]);
    const handles = [
      current.secretHandle,
      ...grants.flatMap((g) => [g.refresh_handle, g.access_handle]),
      ...flows.map((f) => f.verifier_handle),
    ].filter((h): h is string => typeof h === 'string');
    await this.#vault.delete(tx, ...handles);
    await tx.query('DELETE FROM connections WHERE id = $1', [current.id]);
  }

  #changed(id: string): void {
    this.#cache.delete(id);
    this.#secrets.delete(id);
    for (const l of this.#listeners) l(id);
  }
}

async function lockRow(tx: Queryable, id: string): Promise<Stored> {
  const rows = await tx.query<Row>(`SELECT ${COLUMNS} FROM connections WHERE id = $1 FOR UPDATE`, [id]);
  if (!rows[0]) throw new NotFound(`connection "${id}" does not exist`);
  return fromRow(rows[0]);
}

function newSecretHandle(): string {
  return `cs_${randomBytes(18).toString('base64url')}`;
}

/** Strips the internal vault handle: what leaves this module. */
function publicView(c: Stored): Connection {
  const { secretHandle: _h, ...view } = c;
  return view;
}
