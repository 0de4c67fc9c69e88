/**
 * The agent registry: every agent is an OAuth client (`private_key_jwt`, RFC 7523 §2.2) with an
 * accountable human owner and delegation limits (scopes, audiences, maximum chain depth).
 *
 * Agents come from configuration (synced at each start, `source = 'config'`) or from the admin
 * API (`source = 'api'`). Status is owned by the store once an agent exists: an agent disabled
 * through the API stays disabled across restarts even if the configuration says `active`.
 *
 * Deleting an agent ({@link AgentRegistry.delete}) runs the disable path first (its tokens and
 * everything delegated from them revoked, in the same transaction), then the delete hooks, then
 * removes the row. Its receipts are evidence and stay, chained under its id. A configured agent is
 * deleted by removing it from the configuration: the next start deletes it the same way.
 *
 * The delegation rules over these limits (who may act for whom, at which audience, how deep)
 * live in the delegation model: src/delegation/registry-rules.ts.
 *
 * @module
 */
import type { AgentConfig } from '../config/schema.js';
import { Conflict, NotFound } from '../errors/index.js';
import type { Queryable, Store } from '../store/index.js';
import { BoundedReadCache } from '../util/single-flight.js';
import { documentAgentId, type DocumentClient } from './document-client.js';

/** Whether an agent may authenticate and act (`disabled` refuses it everywhere). */
export type AgentStatus = 'active' | 'disabled';
/** Where an agent comes from: configuration, the admin API, or a Client ID Metadata Document (./document-client.ts). */
export type AgentSource = 'config' | 'api' | 'client_id_metadata';

/** A registered agent: client id, public keys, owner, status, source and delegation limits. */
export interface Agent {
  id: string;
  name: string;
  owner: string;
  scopes: string[];
  audiences: string[];
  maxDelegationDepth: number;
  status: AgentStatus;
  jwks?: { keys: Array<{ kty: string; [member: string]: unknown }> };
  jwks_uri?: string;
  /** Where it comes from: configuration, the admin API, or a Client ID Metadata Document (./document-client.ts). */
  source: AgentSource;
  /** For `source: 'client_id_metadata'`: the `client_id` (the document's https URL). */
  clientIdUrl?: string;
  createdAt: string;
  updatedAt: string;
}

/** Fields the admin API may change. */
export type AgentPatch = Partial<Pick<Agent, 'name' | 'owner' | 'scopes' | 'audiences' | 'maxDelegationDepth' | 'status' | 'jwks' | 'jwks_uri'>>;

interface AgentRow {
  id: string;
  name: string;
  owner: string;
  scopes: string[];
  audiences: string[];
  max_delegation_depth: number;
  status: AgentStatus;
  jwks: Agent['jwks'] | null;
  jwks_uri: string | null;
  source: AgentSource;
  client_id_url: string | null;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS = 'id, name, owner, scopes, audiences, max_delegation_depth, status, jwks, jwks_uri, source, client_id_url, created_at, updated_at';

/**
 * Listeners learn about every change so caches (oidc-provider clients, PDP entities) can drop
 * entries; `change` is `'deleted'` when the agent no longer exists (`agent` is its last state).
 */
export type AgentChangeListener = (agent: Agent, change: 'saved' | 'deleted') => void | Promise<void>;

/**
 * Runs inside the transaction that leaves an agent disabled — or deletes it (`why`) — while its
 * row is locked: what it writes commits (or rolls back) with the change. Used to revoke the
 * agent's tokens.
 */
export type AgentDisableHook = (agentId: string, tx: Queryable, why: 'disabled' | 'deleted') => Promise<void>;

/**
 * How an agent came to be deleted: through the admin API ({@link AgentRegistry.delete}, with
 * the request's `X-Request-ID` when known) or by its removal from the configuration (at start).
 */
export type AgentDeletion = { readonly via: 'admin_api'; readonly requestId?: string } | { readonly via: 'configuration' };

/**
 * Runs inside the transaction that deletes an agent, after the disable hooks and before the row
 * goes: removes what only served the agent (its OAuth grants, the upstream tokens its exchanges
 * captured) and records the deletion (a receipt closing its chain). Receipts are never removed.
 */
export type AgentDeleteHook = (agent: Agent, tx: Queryable, deletion: AgentDeletion) => Promise<void>;

/**
 * How long a read agent is reused without asking the store. Every authentication and exchange
 * reads its agent, so this keeps the store off the hot path. Changes made through this instance
 * take effect at once; changes made on another instance within this bound (documented in the
 * README as the staleness bound of agent status across instances).
 */
export const AGENT_CACHE_TTL_MS = 2000;

/**
 * The agent registry over the store: config sync at start, admin CRUD, a short read cache
 * ({@link AGENT_CACHE_TTL_MS}), change listeners and disable hooks (revocation on disable).
 */
export class AgentRegistry {
  readonly #store: Store;
  readonly #listeners: AgentChangeListener[] = [];
  readonly #disableHooks: AgentDisableHook[] = [];
  readonly #deleteHooks: AgentDeleteHook[] = [];
  /**
   * The short read cache ({@link AGENT_CACHE_TTL_MS}), single flight (BoundedReadCache,
   * src/util/single-flight.ts): concurrent lookups of a due agent share one store read, never one
   * that started before this instance changed an agent or more than the TTL before the lookup
   * (a stalled store); a failed read is never reused nor cached (the next lookup reads again and
   * fails closed while the store is away). A value is a `{ agent }` box, kept across a re-read
   * that finds the row as it was (see {@link get}), so {@link peek} hands out no new object.
   */
  readonly #cache: BoundedReadCache<string, { readonly agent: Agent | undefined }>;

  constructor(store: Store, options: { cacheTtlMs?: number } = {}) {
    this.#store = store;
    this.#cache = new BoundedReadCache(async (id) => ({ agent: await this.#read(id, this.#store) }), {
      ttlMs: options.cacheTtlMs ?? AGENT_CACHE_TTL_MS,
      maxEntries: 10_000,
      keep: (previous, next) => (previous.agent !== undefined && sameAgent(previous.agent, next.agent) ? previous : next),
    });
  }

  onChange(listener: AgentChangeListener): void {
    this.#listeners.push(listener);
  }

  /**
   * Registers `hook` to run in every transaction that sets an agent's status to `disabled`
   * (admin API, or configuration at start). Register before {@link syncFromConfig}.
   */
  onDisable(hook: AgentDisableHook): void {
    this.#disableHooks.push(hook);
  }

  /**
   * Registers `hook` to run in every transaction that deletes an agent ({@link delete}, or a
   * configured agent removed from the configuration at start). Register before {@link syncFromConfig}.
   */
  onDelete(hook: AgentDeleteHook): void {
    this.#deleteHooks.push(hook);
  }

  async #disabled(agentId: string, tx: Queryable, why: 'disabled' | 'deleted' = 'disabled'): Promise<void> {
    for (const hook of this.#disableHooks) await hook(agentId, tx, why);
  }

  /** Deletes the locked agent: the disable path (revocation), the delete hooks, then the row. */
  async #deleteLocked(agent: Agent, tx: Queryable, deletion: AgentDeletion): Promise<void> {
    await this.#disabled(agent.id, tx, 'deleted');
    for (const hook of this.#deleteHooks) await hook(agent, tx, deletion);
    await tx.query('DELETE FROM agents WHERE id = $1', [agent.id]);
  }

  /**
   * The agent, from a short-lived cache (see {@link AGENT_CACHE_TTL_MS}); `db` reads through.
   * A re-read that finds the row as it was keeps the cached object: callers that remember what
   * they derived from an agent by its identity (the PDP's link verdicts and decision bases) keep
   * it across re-reads, and a changed row is a new object.
   *
   * Concurrent lookups of an agent that is due share one store read (single flight); they all
   * get its answer, or its error (the store's, e.g. unavailable: nothing is answered from a stale
   * entry). A lookup that starts after a change made through this instance never joins a read
   * that started before it.
   */
  async get(id: string, db?: Queryable): Promise<Agent | undefined> {
    if (db !== undefined) return this.#read(id, db);
    return (await this.#cache.get(id)).agent;
  }

  /**
   * What {@link get} would answer at `nowMs` without reading the store: `{ agent }` (the agent
   * or undefined) while the cached read is fresh, undefined when `get` would read. Synchronous,
   * for callers that only need to know whether a cached answer still stands.
   */
  peek(id: string, nowMs: number): { readonly agent: Agent | undefined } | undefined {
    return this.#cache.peek(id, nowMs)?.value;
  }

  async #read(id: string, db: Queryable): Promise<Agent | undefined> {
    const rows = await db.query<AgentRow>(`SELECT ${COLUMNS} FROM agents WHERE id = $1`, [id], { prepare: true });
    return rows[0] ? fromRow(rows[0]) : undefined;
  }

  /** Agents ordered by id; `after` is the last id of the previous page. */
  async list(options: { limit: number; after?: string }): Promise<{ agents: Agent[]; next?: string }> {
    const rows = await this.#store.query<AgentRow>(
      `SELECT ${COLUMNS} FROM agents WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2`,
      [options.after ?? null, options.limit + 1],
    );
    const page = rows.slice(0, options.limit).map(fromRow);
    return rows.length > options.limit ? { agents: page, next: page[page.length - 1]!.id } : { agents: page };
  }

  async create(input: AgentConfig): Promise<Agent> {
    const rows = await this.#store.query<AgentRow>(
      `INSERT INTO agents (id, name, owner, scopes, audiences, max_delegation_depth, status, jwks, jwks_uri, source)
       VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6, $7, $8::jsonb, $9, 'api')
       ON CONFLICT (id) DO NOTHING RETURNING ${COLUMNS}`,
      toParams(input),
    );
    if (!rows[0]) throw new Conflict(`agent "${input.id}" already exists`);
    return this.#changed(fromRow(rows[0]));
  }

  /**
   * Applies a patch. Agents defined in configuration only accept status changes through the
   * API: anything else would be overwritten at the next start.
   */
  async update(id: string, patch: AgentPatch): Promise<Agent> {
    const agent = await this.#store.transaction(async (tx) => {
      const rows = await tx.query<AgentRow>(`SELECT ${COLUMNS} FROM agents WHERE id = $1 FOR UPDATE`, [id]);
      if (!rows[0]) throw new NotFound(`agent "${id}" does not exist`);
      const current = fromRow(rows[0]);
      const changed = Object.keys(patch).filter((k) => k !== 'status');
      if (current.source !== 'api' && changed.length > 0) {
        const where = current.source === 'config' ? 'is defined in configuration' : 'is a client metadata document client (its limits come from configuration)';
        throw new Conflict(`agent "${id}" ${where}; only "status" can be changed through the API (tried: ${changed.join(', ')})`);
      }
      const next = { ...current, ...patch };
      if (patch.jwks !== undefined) delete next.jwks_uri;
      if (patch.jwks_uri !== undefined) delete next.jwks;
      const updated = await tx.query<AgentRow>(
        `UPDATE agents SET name = $2, owner = $3, scopes = $4::jsonb, audiences = $5::jsonb, max_delegation_depth = $6,
           status = $7, jwks = $8::jsonb, jwks_uri = $9, updated_at = now() WHERE id = $1 RETURNING ${COLUMNS}`,
        toParams(next),
      );
      if (patch.status === 'disabled') await this.#disabled(id, tx);
      return fromRow(updated[0]!);
    }, { retryConflicts: true });
    return this.#changed(agent);
  }

  /**
   * Deletes an API-registered or metadata-document agent: every token it holds and everything
   * delegated from them is revoked, its OAuth grants and captured upstream tokens go (the delete
   * hooks), in one transaction with the row's removal. Its receipts stay (evidence; exported by
   * its id), and the hooks close its chain with an `agent_deleted` receipt naming
   * `context.requestId`. The id is free again afterwards: a metadata-document client's next consent creates
   * its agent anew, and its receipts continue the same chain. Returns the deleted agent.
   *
   * @throws NotFound when there is no such agent (a repeated DELETE, RFC 9110 §9.3.5: the effect
   *   of the first stays, nothing else changes).
   * @throws Conflict for an agent defined in configuration: the next start would create it
   *   again; it is deleted by removing it from the file (see {@link syncFromConfig}).
   */
  async delete(id: string, context: { requestId?: string } = {}): Promise<Agent> {
    const agent = await this.#store.transaction(async (tx) => {
      const rows = await tx.query<AgentRow>(`SELECT ${COLUMNS} FROM agents WHERE id = $1 FOR UPDATE`, [id]);
      if (!rows[0]) throw new NotFound(`agent "${id}" does not exist`);
      const current = fromRow(rows[0]);
      if (current.source === 'config') {
        throw new Conflict(`agent "${id}" is defined in configuration: remove it from the configuration file and it is deleted at the next start (POST /admin/agents/${id}/disable stops it now)`);
      }
      await this.#deleteLocked(current, tx, { via: 'admin_api', ...(context.requestId !== undefined ? { requestId: context.requestId } : {}) });
      return current;
    }, { retryConflicts: true });
    return this.#changed(agent, 'deleted');
  }

  /**
   * The agent of a Client ID Metadata Document client (id {@link documentAgentId}`(client.url)`),
   * created on first use and kept in step with the configuration's limits and the document's name.
   * Its status is never changed here: an operator's `disabled` holds however often the document is
   * fetched again.
   */
  async upsertDocumentClient(client: DocumentClient): Promise<Agent> {
    const id = documentAgentId(client.url);
    const current = await this.get(id);
    if (current && current.name === client.name && sameList(current.scopes, client.scopes) && sameList(current.audiences, client.audiences) && current.maxDelegationDepth === client.maxDelegationDepth) {
      return current;
    }
    const rows = await this.#store.query<AgentRow>(
      `INSERT INTO agents (id, name, owner, scopes, audiences, max_delegation_depth, status, source, client_id_url)
       VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6, 'active', 'client_id_metadata', $7)
       ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, scopes = EXCLUDED.scopes, audiences = EXCLUDED.audiences,
         max_delegation_depth = EXCLUDED.max_delegation_depth, updated_at = now()
       WHERE agents.source = 'client_id_metadata' AND agents.client_id_url = EXCLUDED.client_id_url
       RETURNING ${COLUMNS}`,
      [id, client.name, new URL(client.url).host, JSON.stringify(client.scopes), JSON.stringify(client.audiences), client.maxDelegationDepth, client.url],
    );
    if (!rows[0]) throw new Conflict(`agent "${id}" exists and is not the client of ${client.url}`);
    return this.#changed(fromRow(rows[0]));
  }

  /**
   * Makes the configuration's agents exist as written (status: see the module comment), and
   * deletes the configured agents no longer in it, as {@link delete} does. Returns their ids.
   */
  async syncFromConfig(agents: readonly AgentConfig[]): Promise<{ removed: string[] }> {
    const synced = await this.#store.transaction(async (tx) => {
      for (const a of agents) {
        const rows = await tx.query<{ status: AgentStatus }>(
          `INSERT INTO agents (id, name, owner, scopes, audiences, max_delegation_depth, status, jwks, jwks_uri, source)
           VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6, $7, $8::jsonb, $9, 'config')
           ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, owner = EXCLUDED.owner, scopes = EXCLUDED.scopes,
             audiences = EXCLUDED.audiences, max_delegation_depth = EXCLUDED.max_delegation_depth,
             status = CASE WHEN agents.status = 'disabled' THEN 'disabled' ELSE EXCLUDED.status END,
             jwks = EXCLUDED.jwks, jwks_uri = EXCLUDED.jwks_uri, source = 'config', updated_at = now()
           RETURNING status`,
          toParams(a),
        );
        // Also when it was disabled already: revoking the tokens of a disabled agent again is a no-op.
        if (rows[0]?.status === 'disabled') await this.#disabled(a.id, tx);
      }
      const stale = await tx.query<AgentRow>(
        `SELECT ${COLUMNS} FROM agents WHERE source = 'config' AND NOT (id = ANY($1::text[])) ORDER BY id FOR UPDATE`,
        [agents.map((a) => a.id)],
      );
      for (const row of stale) await this.#deleteLocked(fromRow(row), tx, { via: 'configuration' });
      return { removed: stale.map((r) => r.id) };
    }, { retryConflicts: true });
    // After the commit, so that no read that saw the rows as they were stays cached.
    this.#cache.invalidate();
    return synced;
  }

  async #changed(agent: Agent, change: 'saved' | 'deleted' = 'saved'): Promise<Agent> {
    // Also detaches every read under way: a lookup after the change must not join one that may
    // return the row as it was, and such a read must not cache it.
    this.#cache.invalidate((id) => id === agent.id);
    for (const l of this.#listeners) await l(agent, change);
    return agent;
  }
}

function toParams(a: Omit<AgentConfig, 'status'> & { status?: AgentStatus }): unknown[] {
  return [
    a.id,
    a.name,
    a.owner,
    JSON.stringify(a.scopes ?? []),
    JSON.stringify(a.audiences ?? []),
    a.maxDelegationDepth ?? 3,
    a.status ?? 'active',
    a.jwks ? JSON.stringify(a.jwks) : null,
    a.jwks_uri ?? null,
  ];
}

function fromRow(r: AgentRow): Agent {
  return {
    id: r.id,
    name: r.name,
    owner: r.owner,
    scopes: r.scopes,
    audiences: r.audiences,
    maxDelegationDepth: Number(r.max_delegation_depth),
    status: r.status,
    ...(r.jwks ? { jwks: r.jwks } : {}),
    ...(r.jwks_uri ? { jwks_uri: r.jwks_uri } : {}),
    source: r.source,
    ...(r.client_id_url ? { clientIdUrl: r.client_id_url } : {}),
    createdAt: new Date(r.created_at).toISOString(),
    updatedAt: new Date(r.updated_at).toISOString(),
  };
}

/** Whether two reads of an agent are the same row: every field equal (rows hold JSON values only). */
function sameAgent(a: Agent | undefined, b: Agent | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && JSON.stringify(a) === JSON.stringify(b));
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
