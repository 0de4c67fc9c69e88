/**
 * The MCP server registry and the pin store, on PostgreSQL and PGlite alike (one SQL dialect).
 *
 * Servers come from configuration (synced at each start, `source = 'config'`) or from the admin
 * API (`source = 'api'`). A configured server belongs to the file: the API cannot delete it, and
 * one removed from the file is deleted at the next start together with its pins.
 *
 * @module
 */
import { Conflict, NotFound } from '../errors/index.js';
import type { Queryable, Store } from '../store/index.js';
import type { McpServerConfig } from './config.js';
import { setBounded } from '../util/bounded-map.js';

export interface McpServer {
  id: string;
  settings: McpServerConfig;
  source: 'config' | 'api';
  createdAt: number;
  updatedAt: number;
}

/** A stored pin: the JWS as signed, and the definition it was made from when known. */
export interface StoredPin {
  server: string;
  tool: string;
  digest: string;
  jws: string;
  /** RFC 8785 canonical JSON of the pinned definition (absent for a publisher pin imported alone). */
  definition: string | undefined;
  signer: 'deputy' | 'publisher';
  createdAt: number;
}

interface ServerRow {
  id: string;
  settings: McpServerConfig;
  source: 'config' | 'api';
  created_at: number;
  updated_at: number;
}

interface PinRow {
  server_id: string;
  tool: string;
  digest: string;
  jws: string;
  definition: string | null;
  signer: 'deputy' | 'publisher';
  created_at: number;
}

const SERVER_COLUMNS = `id, settings, source, extract(epoch FROM created_at)::bigint AS created_at, extract(epoch FROM updated_at)::bigint AS updated_at`;
const PIN_COLUMNS = `server_id, tool, digest, jws, definition, signer, extract(epoch FROM created_at)::bigint AS created_at`;

const toServer = (r: ServerRow): McpServer => ({
  id: r.id,
  settings: typeof r.settings === 'string' ? (JSON.parse(r.settings) as McpServerConfig) : r.settings,
  source: r.source,
  createdAt: Number(r.created_at),
  updatedAt: Number(r.updated_at),
});

const toPin = (r: PinRow): StoredPin => ({
  server: r.server_id,
  tool: r.tool,
  digest: r.digest,
  jws: r.jws,
  definition: r.definition ?? undefined,
  signer: r.signer,
  createdAt: Number(r.created_at),
});

/** How long a server read is reused: changes through another instance apply within this bound. */
export const SERVER_CACHE_MS = 2000;

export class McpServerStore {
  /** id → the server (or its absence) and when it was read; every gateway request reads one. */
  readonly #cache = new Map<string, { server: McpServer | undefined; at: number }>();

  constructor(readonly db: Store) {}

  /** {@link get} through a read cache of {@link SERVER_CACHE_MS} (this instance's own writes apply at once). */
  async cached(id: string, now = Date.now()): Promise<McpServer | undefined> {
    const hit = this.#cache.get(id);
    if (hit && now - hit.at < SERVER_CACHE_MS) return hit.server;
    const server = await this.get(id);
    setBounded(this.#cache, id, { server, at: now }, 1000);
    return server;
  }

  /**
   * Makes the stored configured servers equal `configured`: upserts each, deletes configured
   * servers no longer listed (with their pins). A server the API created under a configured id
   * is taken over by the file. Returns the ids removed.
   */
  async syncFromConfig(configured: readonly McpServerConfig[]): Promise<{ removed: string[] }> {
    return this.db.transaction(async (tx) => {
      for (const s of configured) await upsert(tx, s, 'config');
      const ids = configured.map((s) => s.id);
      const removed = await tx.query<{ id: string }>(`DELETE FROM mcp_servers WHERE source = 'config' AND NOT (id = ANY($1::text[])) RETURNING id`, [ids]);
      return { removed: removed.map((r) => r.id) };
    });
  }

  /** @throws Conflict when the id is taken. */
  async create(settings: McpServerConfig): Promise<McpServer> {
    const rows = await this.db.query<ServerRow>(
      `INSERT INTO mcp_servers (id, settings, source) VALUES ($1, $2, 'api') ON CONFLICT (id) DO NOTHING RETURNING ${SERVER_COLUMNS}`,
      [settings.id, JSON.stringify(settings)],
    );
    if (!rows[0]) throw new Conflict(`MCP server "${settings.id}" exists already`);
    this.#cache.delete(settings.id);
    return toServer(rows[0]);
  }

  async get(id: string): Promise<McpServer | undefined> {
    const rows = await this.db.query<ServerRow>(`SELECT ${SERVER_COLUMNS} FROM mcp_servers WHERE id = $1`, [id]);
    return rows[0] ? toServer(rows[0]) : undefined;
  }

  /** Every server, by id (a deployment has few). */
  async list(): Promise<McpServer[]> {
    return (await this.db.query<ServerRow>(`SELECT ${SERVER_COLUMNS} FROM mcp_servers ORDER BY id LIMIT 1000`)).map(toServer);
  }

  /**
   * Deletes an API-created server and its pins.
   *
   * @throws NotFound, or Conflict for a configured server (it belongs to the file).
   */
  async delete(id: string): Promise<void> {
    const server = await this.get(id);
    if (!server) throw new NotFound(`MCP server "${id.slice(0, 64)}" does not exist`);
    if (server.source === 'config') throw new Conflict(`MCP server "${id}" is defined in the configuration file; remove it there`);
    await this.db.query('DELETE FROM mcp_servers WHERE id = $1', [id]);
    this.#cache.delete(id);
  }
}

async function upsert(tx: Queryable, s: McpServerConfig, source: 'config' | 'api'): Promise<void> {
  await tx.query(
    `INSERT INTO mcp_servers (id, settings, source) VALUES ($1, $2, $3)
     ON CONFLICT (id) DO UPDATE SET settings = EXCLUDED.settings, source = EXCLUDED.source, updated_at = now()
     WHERE mcp_servers.settings IS DISTINCT FROM EXCLUDED.settings OR mcp_servers.source <> EXCLUDED.source`,
    [s.id, JSON.stringify(s), source],
  );
}

/** Pins by server and tool name. */
export class PinStore {
  constructor(readonly db: Queryable) {}

  /** Stores (or replaces: re-approval) the pin of one tool. */
  async put(pin: Omit<StoredPin, 'createdAt'>): Promise<StoredPin> {
    const rows = await this.db.query<PinRow>(
      `INSERT INTO mcp_tool_pins (server_id, tool, digest, jws, definition, signer) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (server_id, tool) DO UPDATE SET digest = EXCLUDED.digest, jws = EXCLUDED.jws, definition = EXCLUDED.definition,
         signer = EXCLUDED.signer, created_at = now()
       RETURNING ${PIN_COLUMNS}`,
      [pin.server, pin.tool, pin.digest, pin.jws, pin.definition ?? null, pin.signer],
    );
    return toPin(rows[0]!);
  }

  /** Every pin of `server`, by tool name. */
  async forServer(server: string): Promise<Map<string, StoredPin>> {
    const rows = await this.db.query<PinRow>(`SELECT ${PIN_COLUMNS} FROM mcp_tool_pins WHERE server_id = $1 ORDER BY tool`, [server]);
    return new Map(rows.map((r) => [r.tool, toPin(r)]));
  }

  /** Removes a tool's pin; false when there was none. */
  async delete(server: string, tool: string): Promise<boolean> {
    const rows = await this.db.query('DELETE FROM mcp_tool_pins WHERE server_id = $1 AND tool = $2 RETURNING tool', [server, tool]);
    return rows.length > 0;
  }
}
