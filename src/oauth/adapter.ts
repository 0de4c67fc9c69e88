/**
 * oidc-provider's storage adapter over Deputy's store: one JSONB row per model instance in
 * `oidc_models`, with the secondary keys the contract needs (grant id, session uid, user code).
 *
 * The contract (oidc-provider `example/my_adapter.js`): `upsert(id, payload, expiresIn)`,
 * `find`, `findByUid`, `findByUserCode`, `consume`, `destroy`, `revokeByGrantId`. Expiry is
 * decided by the database clock so that every instance agrees. Expired rows are invisible and
 * removed by {@link purgeExpired}.
 *
 * The `Client` model is not stored here: clients are agents, read from the agent registry.
 *
 * @module
 */
import type { Adapter, AdapterPayload } from 'oidc-provider';
import type { Agent, AgentRegistry } from '../agents/registry.js';
import type { Queryable } from '../store/index.js';

interface ModelRow {
  payload: AdapterPayload;
  consumed: number | null;
}

const SELECT = `SELECT payload, extract(epoch FROM consumed_at)::int AS consumed FROM oidc_models`;
const LIVE = `(expires_at IS NULL OR expires_at > now())`;

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
 * The `Client` model, read-only, backed by the agent registry. A disabled or unknown agent is
 * "not found", so its client authentication fails with `invalid_client`.
 */
export class AgentClientAdapter implements Adapter {
  constructor(
    private readonly registry: AgentRegistry,
    private readonly toMetadata: (agent: Agent) => AdapterPayload,
  ) {}

  async find(id: string): Promise<AdapterPayload | undefined> {
    const agent = await this.registry.get(id);
    return agent && agent.status === 'active' ? this.toMetadata(agent) : undefined;
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

/**
 * Single-use insert for replay detection (DPoP `jti`, client assertion `jti`): true when this
 * call recorded `key`, false when it was already recorded and has not expired. Strict under
 * concurrency and across instances: insert-or-fail, never find-then-insert.
 */
export async function recordOnce(db: Queryable, namespace: string, key: string, ttlSeconds: number): Promise<boolean> {
  const rows = await db.query<{ id: string }>(
    `INSERT INTO oidc_models (model, id, payload, expires_at)
     VALUES ($1, $2, '{}'::jsonb, now() + make_interval(secs => $3::int))
     ON CONFLICT (model, id) DO UPDATE SET expires_at = EXCLUDED.expires_at, payload = EXCLUDED.payload
       WHERE oidc_models.expires_at <= now()
     RETURNING id`,
    [namespace, key, Math.max(1, Math.ceil(ttlSeconds))],
  );
  return rows.length === 1;
}

/** A key that may be recorded once only ({@link recordOnce}): replay detection's unit. */
export interface OnceKey {
  namespace: string;
  key: string;
  /** How long the record must outlive the thing it guards (a proof's acceptance window), in seconds. */
  ttlSeconds: number;
}

/**
 * {@link recordOnce} for several keys in one statement (one round trip inside a caller's
 * transaction, e.g. a receipt group). Returns the keys this call recorded, as
 * `namespace\0key`; a key already recorded and unexpired is missing from the result. The
 * keys must be distinct (one statement cannot claim a row twice): callers dedupe first.
 */
export async function recordEachOnce(db: Queryable, keys: readonly OnceKey[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const rows = await db.query<{ model: string; id: string }>(
    `INSERT INTO oidc_models (model, id, payload, expires_at)
     SELECT m, i, '{}'::jsonb, now() + make_interval(secs => t) FROM unnest($1::text[], $2::text[], $3::int[]) AS k(m, i, t)
     ON CONFLICT (model, id) DO UPDATE SET expires_at = EXCLUDED.expires_at, payload = EXCLUDED.payload
       WHERE oidc_models.expires_at <= now()
     RETURNING model, id`,
    [keys.map((k) => k.namespace), keys.map((k) => k.key), keys.map((k) => Math.max(1, Math.ceil(k.ttlSeconds)))],
  );
  return new Set(rows.map((r) => onceKeyId(r.model, r.id)));
}

/** The identity of a {@link OnceKey} in {@link recordEachOnce}'s result. */
export function onceKeyId(namespace: string, key: string): string {
  return `${namespace}\0${key}`;
}

/** Deletes expired rows; returns how many. Run periodically by the server. */
export async function purgeExpired(db: Queryable): Promise<number> {
  const rows = await db.query<{ n: number }>(
    `WITH d AS (DELETE FROM oidc_models WHERE expires_at <= now() RETURNING 1) SELECT count(*)::int AS n FROM d`,
  );
  return rows[0]?.n ?? 0;
}
