/**
 * Records of every token Deputy issues by token exchange. oidc-provider does not store JWT
 * access tokens, so introspection (RFC 7662), revocation (RFC 7009) and its cascade work from
 * these rows: revoking a token revokes every token exchanged from it, transitively.
 *
 * Concurrency: an exchange locks its parent row (`FOR SHARE`) and refuses a revoked parent in
 * the same transaction that inserts the child; a revocation updates the parent first
 * (conflicting lock), then walks the descendants. Whichever commits second sees the other's
 * row, so no child of a revoked token can survive the race.
 *
 * @module
 */
import type { Queryable, Store } from '../store/index.js';
import type { DelegatingUser } from './delegation-authorizer.js';
import type { DelegationChain } from './delegation-chain.js';

/** The user attributes carried along a chain for policy. */
export type UserAttributes = Omit<DelegatingUser, 'id' | 'issuerId'>;

export interface TokenRecord {
  jti: string;
  parentJti: string | undefined;
  rootJti: string;
  agentId: string;
  userId: string;
  userAttrs: UserAttributes;
  issuerId: string;
  audience: string;
  scope: string;
  chain: DelegationChain;
  cnfJkt: string | undefined;
  mayAct: Record<string, unknown> | undefined;
  /** Vault handle of the encrypted upstream subject token (first link only). */
  upstream: string | undefined;
  issuedAt: number;
  expiresAt: number;
  revokedAt: number | undefined;
  revokedReason: string | undefined;
}

export type NewTokenRecord = Omit<TokenRecord, 'revokedAt' | 'revokedReason' | 'issuedAt'> & { issuedAt: number };

interface Row {
  jti: string;
  parent_jti: string | null;
  root_jti: string;
  agent_id: string;
  user_id: string;
  user_attrs: UserAttributes;
  issuer_id: string;
  audience: string;
  scope: string;
  chain: string[];
  cnf_jkt: string | null;
  may_act: Record<string, unknown> | null;
  upstream: string | null;
  issued_at: number;
  expires_at: number;
  revoked_at: number | null;
  revoked_reason: string | null;
}

const COLUMNS = `jti, parent_jti, root_jti, agent_id, user_id, user_attrs, issuer_id, audience, scope, chain, cnf_jkt, may_act, upstream,
  extract(epoch FROM issued_at)::bigint AS issued_at, extract(epoch FROM expires_at)::bigint AS expires_at,
  extract(epoch FROM revoked_at)::bigint AS revoked_at, revoked_reason`;

function fromRow(row: Row): TokenRecord {
  return {
    jti: row.jti,
    parentJti: row.parent_jti ?? undefined,
    rootJti: row.root_jti,
    agentId: row.agent_id,
    userId: row.user_id,
    userAttrs: row.user_attrs,
    issuerId: row.issuer_id,
    audience: row.audience,
    scope: row.scope,
    chain: row.chain,
    cnfJkt: row.cnf_jkt ?? undefined,
    mayAct: row.may_act ?? undefined,
    upstream: row.upstream ?? undefined,
    issuedAt: Number(row.issued_at),
    expiresAt: Number(row.expires_at),
    revokedAt: row.revoked_at === null ? undefined : Number(row.revoked_at),
    revokedReason: row.revoked_reason ?? undefined,
  };
}

/** The parent of an exchange was revoked (or vanished) while the exchange ran. */
export class ParentRevoked extends Error {
  readonly code = 'ERR_PARENT_REVOKED';
  constructor() {
    super('the subject token has been revoked');
    this.name = 'ParentRevoked';
  }
}

export class TokenRecords {
  constructor(readonly store: Store) {}

  async find(jti: string, db: Queryable = this.store): Promise<TokenRecord | undefined> {
    const rows = await db.query<Row>(`SELECT ${COLUMNS} FROM token_records WHERE jti = $1`, [jti]);
    return rows[0] ? fromRow(rows[0]) : undefined;
  }

  /**
   * Inserts a record inside `tx`. With a parent, first takes a share lock on it and refuses
   * ({@link ParentRevoked}) if it was revoked meanwhile.
   */
  async insert(tx: Queryable, record: NewTokenRecord): Promise<void> {
    if (record.parentJti !== undefined) {
      const parent = await tx.query<{ revoked: boolean }>(
        'SELECT revoked_at IS NOT NULL AS revoked FROM token_records WHERE jti = $1 FOR SHARE',
        [record.parentJti],
      );
      if (!parent[0] || parent[0].revoked) throw new ParentRevoked();
    }
    await tx.query(
      `INSERT INTO token_records (jti, parent_jti, root_jti, agent_id, user_id, user_attrs, issuer_id, audience, scope, chain, depth, cnf_jkt, may_act, upstream, issued_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10::jsonb, $11, $12, $13::jsonb, $14, to_timestamp($15::bigint), to_timestamp($16::bigint))`,
      [
        record.jti, record.parentJti ?? null, record.rootJti, record.agentId, record.userId, JSON.stringify(record.userAttrs), record.issuerId, record.audience,
        record.scope, JSON.stringify(record.chain), record.chain.length, record.cnfJkt ?? null,
        record.mayAct === undefined ? null : JSON.stringify(record.mayAct), record.upstream ?? null, record.issuedAt, record.expiresAt,
      ],
    );
  }

  /**
   * Revokes `jti` and, transitively, every token exchanged from it. Returns the jtis newly
   * revoked (empty when the token was unknown or already revoked with its whole subtree).
   */
  async revokeCascade(jti: string, reason: string): Promise<string[]> {
    return this.store.transaction(async (tx) => {
      await tx.query('UPDATE token_records SET revoked_at = now(), revoked_reason = $2 WHERE jti = $1 AND revoked_at IS NULL', [jti, reason]);
      return this.#revokeDescendants(tx, [jti], reason, [jti]);
    });
  }

  /** Revokes every live token held by `agentId` and everything delegated from them. */
  async revokeByAgent(agentId: string, reason: string): Promise<string[]> {
    return this.store.transaction(async (tx) => {
      const held = await tx.query<{ jti: string }>(
        `UPDATE token_records SET revoked_at = now(), revoked_reason = $2
         WHERE agent_id = $1 AND revoked_at IS NULL AND expires_at > now() RETURNING jti`,
        [agentId, reason],
      );
      const roots = held.map((r) => r.jti);
      const all = await tx.query<{ jti: string }>('SELECT jti FROM token_records WHERE agent_id = $1 AND expires_at > now()', [agentId]);
      return this.#revokeDescendants(tx, all.map((r) => r.jti), reason, roots);
    });
  }

  /** Marks every live descendant of `parents` revoked; returns `already` plus those jtis. */
  async #revokeDescendants(tx: Queryable, parents: string[], reason: string, already: string[]): Promise<string[]> {
    if (parents.length === 0) return already;
    const rows = await tx.query<{ jti: string }>(
      `WITH RECURSIVE subtree(jti) AS (
         SELECT jti FROM token_records WHERE parent_jti = ANY($1::text[])
         UNION
         SELECT t.jti FROM token_records t JOIN subtree s ON t.parent_jti = s.jti
       )
       UPDATE token_records SET revoked_at = now(), revoked_reason = $2
       WHERE jti IN (SELECT jti FROM subtree) AND revoked_at IS NULL
       RETURNING jti`,
      [parents, reason],
    );
    return [...already, ...rows.map((r) => r.jti)];
  }

  /** Deletes records that expired more than `graceSeconds` ago; returns how many. */
  async purgeExpired(graceSeconds = 3600): Promise<number> {
    const rows = await this.store.query<{ n: number }>(
      `WITH d AS (DELETE FROM token_records WHERE expires_at < now() - make_interval(secs => $1::int) RETURNING 1) SELECT count(*)::int AS n FROM d`,
      [graceSeconds],
    );
    return rows[0]?.n ?? 0;
  }
}

/**
 * Answers "is this token revoked?" for resource-side checks (PDP, gateway), caching answers.
 *
 * Staleness bound: a revocation made on another instance is seen here at most
 * `activeTtlMs` later (default 2 s), because "not revoked" answers are cached only that long.
 * Revocations made through this instance are seen immediately ({@link forget}). "Revoked" is
 * final and cached until the token would have expired anyway.
 */
export class RevocationCache {
  readonly #records: TokenRecords;
  readonly #activeTtlMs: number;
  readonly #entries = new Map<string, { revoked: boolean; until: number }>();
  static readonly MAX_ENTRIES = 50_000;

  constructor(records: TokenRecords, options: { activeTtlMs?: number } = {}) {
    this.#records = records;
    this.#activeTtlMs = options.activeTtlMs ?? 2000;
  }

  /** True when the token is revoked, or unknown to Deputy (never issued by an exchange). */
  async isRevoked(jti: string, now = Date.now()): Promise<boolean> {
    const hit = this.#entries.get(jti);
    if (hit && hit.until > now) return hit.revoked;
    const record = await this.#records.find(jti);
    const revoked = record === undefined || record.revokedAt !== undefined;
    if (this.#entries.size >= RevocationCache.MAX_ENTRIES) this.#entries.clear();
    this.#entries.set(jti, { revoked, until: revoked ? (record?.expiresAt ?? 0) * 1000 + 60_000 : now + this.#activeTtlMs });
    return revoked;
  }

  /** Drops cached answers for tokens this instance just revoked. */
  forget(jtis: Iterable<string>): void {
    for (const jti of jtis) this.#entries.delete(jti);
  }
}
