/**
 * oidc-provider's storage adapter over Deputy's store: one JSONB row per model instance in
 * `oidc_models`, with the secondary keys the contract needs (grant id, session uid, user code).
 *
 * The contract (oidc-provider `example/my_adapter.js`): `upsert(id, payload, expiresIn)`,
 * `find`, `findByUid`, `findByUserCode`, `consume`, `destroy`, `revokeByGrantId`. Expiry is
 * decided by the database clock so that every instance agrees. Expired rows are invisible and
 * removed by `purgeExpired` (../adapter.ts).
 *
 * The `Client` model is not stored here: clients are agents, read from the agent registry.
 *
 * @module
 */
import type { Adapter, AdapterPayload } from 'oidc-provider';
import type { Agent, AgentRegistry } from '../../agents/index.js';
import type { Queryable } from '../../store/index.js';

interface ModelRow {
  payload: AdapterPayload;
  consumed: number | null;
}

const SELECT = `SELECT payload, extract(epoch FROM consumed_at)::int AS consumed FROM oidc_models`;
const LIVE = `(expires_at IS NULL OR expires_at > now())`;

/** oidc-provider's `Adapter` for one model (`AccessToken`, `ReplayDetection`, …) over `oidc_models`. */
export class StoreAdapter implements Adapter {
  constructor(
    readonly model: string,
    readonly db: Queryable,
  ) {}

  async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
    await this.db.query(
      `INSERT INTO oidc_models (model, id, payload, grant_id, uid, user_code, expires_at)
       VALUES ($1, $2, $3::jsonb, $4, $5, $6, CASE WHEN $7::int IS NULL THEN NULL ELSE now() + make_interval(secs => $7::int) END)
       ON CONFLICT (model, id) DO UPDATE SET payload = EXCLUDED.payload, grant_id = EXCLUDED.grant_id,
         uid = EXCLUDED.uid, user_code = EXCLUDED.user_code, expires_at = EXCLUDED.expires_at, consumed_at = NULL`,
      [
        this.model,
        id,
        JSON.stringify(payload),
        payload.grantId ?? null,
        payload.uid ?? null,
        payload.userCode ?? null,
        typeof expiresIn === 'number' && Number.isFinite(expiresIn) ? Math.ceil(expiresIn) : null,
      ],
    );
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return this.#one(`${SELECT} WHERE model = $1 AND id = $2 AND ${LIVE}`, [this.model, id]);
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.#one(`${SELECT} WHERE model = $1 AND uid = $2 AND ${LIVE}`, [this.model, uid]);
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.#one(`${SELECT} WHERE model = $1 AND user_code = $2 AND ${LIVE}`, [this.model, userCode]);
  }

  async consume(id: string): Promise<void> {
    await this.db.query(`UPDATE oidc_models SET consumed_at = now() WHERE model = $1 AND id = $2 AND consumed_at IS NULL`, [this.model, id]);
  }

  async destroy(id: string): Promise<void> {
    await this.db.query(`DELETE FROM oidc_models WHERE model = $1 AND id = $2`, [this.model, id]);
  }

  /** Revokes every token of the grant, whatever its model (as the reference memory adapter does). */
  async revokeByGrantId(grantId: string): Promise<void> {
    await this.db.query(`DELETE FROM oidc_models WHERE grant_id = $1`, [grantId]);
  }

  async #one(sql: string, params: unknown[]): Promise<AdapterPayload | undefined> {
    const rows = await this.db.query<ModelRow>(sql, params);
    const row = rows[0];
    if (!row) return undefined;
    return row.consumed === null ? row.payload : { ...row.payload, consumed: row.consumed };
  }
}

/**
 * Removes every grant oidc-provider keeps for `clientId` and every row of those grants (refresh
 * tokens, authorization codes…), plus any other row naming the client: what a deleted agent's
 * client leaves behind. Without it a metadata-document client's refresh token would recreate its
 * agent at the next refresh (the agent is created on use), bypassing the user's consent.
 * Returns how many rows went.
 *
 * Both arms are index look-ups — `(payload->>'clientId')` (migration 018, partial: the
 * single-use rows of replay detection, most of the table under traffic, carry no client) and
 * `grant_id` — combined as one bitmap; with `grant_id IN (subquery)` the planner could only
 * filter a sequential scan of every row (issue 16, seventh round).
 */
export async function deleteClientGrants(db: Queryable, clientId: string): Promise<number> {
  const rows = await db.query<{ n: number }>(
    `WITH d AS (
       DELETE FROM oidc_models WHERE (payload->>'clientId') = $1
          OR grant_id = ANY (ARRAY(SELECT id FROM oidc_models WHERE model = 'Grant' AND (payload->>'clientId') = $1))
       RETURNING 1)
     SELECT count(*)::int AS n FROM d`,
    [clientId],
  );
  return rows[0]?.n ?? 0;
}

/**
 * The `Client` model, read-only, backed by the agent registry. A disabled or unknown agent, or the
 * agent of a metadata-document client, is "not found", so its client authentication fails with
 * `invalid_client`.
 */
export class AgentClientAdapter implements Adapter {
  constructor(
    private readonly registry: AgentRegistry,
    private readonly toMetadata: (agent: Agent) => AdapterPayload,
  ) {}

  async find(id: string): Promise<AdapterPayload | undefined> {
    const agent = await this.registry.get(id);
    // A metadata-document client's agent has no keys: it is only ever the client of its URL (the
    // document), never one that authenticates under its `cimd-…` id.
    return agent && agent.status === 'active' && agent.source !== 'client_id_metadata' ? this.toMetadata(agent) : undefined;
  }

  async upsert(): Promise<void> {
    throw new Error('agents are managed through the agent registry');
  }
  async findByUid(): Promise<undefined> {
    return undefined;
  }
  async findByUserCode(): Promise<undefined> {
    return undefined;
  }
  async consume(): Promise<void> {}
  async destroy(): Promise<void> {
    throw new Error('agents are managed through the agent registry');
  }
  async revokeByGrantId(): Promise<void> {}
}
