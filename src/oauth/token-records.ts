/**
 * Records of every token Deputy issues by token exchange. oidc-provider does not store JWT
 * access tokens, so introspection (RFC 7662), revocation (RFC 7009) and its cascade work from
 * these rows: revoking a token revokes every token exchanged from it, transitively.
 *
 * Liveness is derived, never copied. A revocation marks one row (the token revoked, or the
 * tokens an agent holds); a token is revoked when it **or any token it was exchanged from**
 * (its lineage, walked up `parent_jti` at read time) is marked, or when a link of that lineage
 * is missing. {@link TokenRecords.find} applies this rule in one statement, so every reader
 * (introspection, exchange of a Deputy subject token, gateway, PDP, {@link RevocationCache})
 * sees the same answer. A child committed after its ancestor's revocation — whatever the
 * interleaving of the two transactions, on any number of instances — is dead the moment it is
 * read: its lineage contains the revoked row, which existed before the child did.
 *
 * The insert still refuses a parent that is already revoked (to answer `invalid_grant` rather
 * than issue a dead token), and refuses an agent that is no longer active, under a share lock
 * on the agent's row: disabling an agent updates that row and revokes the agent's tokens in
 * the same transaction, so either the disable sees the new token or the insert sees the
 * disabled agent.
 *
 * @module
 */
import type { Queryable, PartRow, StatementCondition, StatementPart, Store } from '../store/index.js';
import type { DelegatingUser, DelegationChain } from '../delegation/index.js';
import { BoundedReadCache } from '../util/single-flight.js';

/** The user attributes carried along a chain for policy. */
export type UserAttributes = Omit<DelegatingUser, 'id' | 'issuerId'>;

/** A token Deputy issued, as stored: `jti`, parent and root `jti`, agent, delegating user, audience, scope, chain, `cnf.jkt`, times (epoch seconds), revocation. */
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
  /** Epoch seconds. */
  issuedAt: number;
  /** Epoch seconds. */
  expiresAt: number;
  /**
   * Epoch seconds of the *effective* revocation (as read by {@link TokenRecords.find}): this
   * token's own, or the earliest of any token it was exchanged from. Undefined while live.
   */
  revokedAt: number | undefined;
  /** Why, as recorded by that revocation. */
  revokedReason: string | undefined;
}

/** A token record as inserted (not yet revoked). */
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

/** Longest lineage walked; a deeper (or cyclic) one is treated as broken, hence revoked. */
export const MAX_LINEAGE = 64;

const INSERT_RECORD = `INSERT INTO token_records (jti, parent_jti, root_jti, agent_id, user_id, user_attrs, issuer_id, audience, scope, chain, depth, cnf_jkt, may_act, upstream, issued_at, expires_at)`;
/** Typed, so that `INSERT … SELECT` (which cannot infer parameter types from the columns) works too. */
const RECORD_VALUES = `$1::text, $2::text, $3::text, $4::text, $5::text, $6::jsonb, $7::text, $8::text, $9::text, $10::jsonb, $11::int, $12::text, $13::jsonb, $14::text, to_timestamp($15::bigint), to_timestamp($16::bigint)`;

/**
 * One record with its effective revocation ($1 = jti): the earliest revocation marked on the
 * record or on any token of its lineage; a lineage whose top still names a parent (a purged or
 * missing row, or deeper than {@link MAX_LINEAGE}) counts as revoked.
 */
const FIND_LIVE = `
  WITH RECURSIVE lineage(jti, parent_jti, revoked_at, revoked_reason, hops) AS (
    SELECT jti, parent_jti, revoked_at, revoked_reason, 0 FROM token_records WHERE jti = $1
    UNION ALL
    SELECT p.jti, p.parent_jti, p.revoked_at, p.revoked_reason, l.hops + 1
      FROM lineage l JOIN token_records p ON p.jti = l.parent_jti
     WHERE l.hops < ${MAX_LINEAGE}
  )
  SELECT t.jti, t.parent_jti, t.root_jti, t.agent_id, t.user_id, t.user_attrs, t.issuer_id, t.audience, t.scope, t.chain,
         t.cnf_jkt, t.may_act, t.upstream,
         extract(epoch FROM t.issued_at)::bigint AS issued_at, extract(epoch FROM t.expires_at)::bigint AS expires_at,
         extract(epoch FROM CASE WHEN top.broken THEN coalesce(mark.revoked_at, now()) ELSE mark.revoked_at END)::bigint AS revoked_at,
         CASE WHEN mark.revoked_at IS NOT NULL THEN mark.revoked_reason
              WHEN top.broken THEN 'a token it was exchanged from no longer exists' END AS revoked_reason
    FROM token_records t
    LEFT JOIN LATERAL (
      SELECT revoked_at, revoked_reason FROM lineage WHERE revoked_at IS NOT NULL ORDER BY revoked_at, hops DESC LIMIT 1
    ) mark ON true
    CROSS JOIN LATERAL (SELECT parent_jti IS NOT NULL AS broken FROM lineage ORDER BY hops DESC LIMIT 1) top
   WHERE t.jti = $1`;

/**
 * A boolean SQL expression: the token `jtiParam` (an SQL parameter reference such as `$17::text`)
 * is live by {@link FIND_LIVE}'s rule — recorded, no token of its lineage marked revoked, and the
 * lineage ends at a first link (no missing link, not deeper than {@link MAX_LINEAGE}). False
 * (never null) otherwise, so it can stand in a `WHERE`.
 */
function liveLineage(jtiParam: string): string {
  return `coalesce((WITH RECURSIVE lineage(jti, parent_jti, revoked_at, hops) AS (
      SELECT jti, parent_jti, revoked_at, 0 FROM token_records WHERE jti = ${jtiParam}
      UNION ALL
      SELECT p.jti, p.parent_jti, p.revoked_at, l.hops + 1
        FROM lineage l JOIN token_records p ON p.jti = l.parent_jti
       WHERE l.hops < ${MAX_LINEAGE}
    ) SELECT bool_and(revoked_at IS NULL) AND bool_or(parent_jti IS NULL) FROM lineage), false)`;
}

/** {@link RECORD_VALUES} numbered from `$first`, by `first` (each group statement asks for a few; the regex ran per exchange). */
const recordValuesByFirst = new Map<number, string>();

function recordValuesFrom(first: number): string {
  let text = recordValuesByFirst.get(first);
  if (text === undefined) {
    text = RECORD_VALUES.replace(/\$(\d+)/g, (_, n: string) => `$${Number(n) + first - 1}`);
    // Offsets grow with a group's size (at most the receipt writer's batch): bounded, but not trusted to be.
    if (recordValuesByFirst.size < 1024) recordValuesByFirst.set(first, text);
  }
  return text;
}

/** {@link RECORD_VALUES}' types, as `unnest` columns (`v.c0`…`v.c15`). */
const RECORD_TYPES: readonly string[] = ['text', 'text', 'text', 'text', 'text', 'jsonb', 'text', 'text', 'text', 'jsonb', 'int', 'text', 'jsonb', 'text', 'bigint', 'bigint'];
/** {@link RECORD_VALUES} read from an `unnest` row. */
const RECORD_COLUMNS = `${RECORD_TYPES.map((_, i) => (i >= 14 ? `to_timestamp(v.c${i})` : `v.c${i}`)).join(', ')}`;

/**
 * `TokenRecords.insertPart`'s write as a `PartRow`: the record's columns, then its parent's jti
 * (a sub-delegation: its lineage checked) and the condition's value, each row under the same
 * rules as the part alone (the agent active and not locked, the lineage live, the condition true).
 */
function recordRow(values: readonly unknown[], parentJti: string | undefined, requires: StatementCondition['column']): PartRow {
  const types = [...RECORD_TYPES, ...(parentJti === undefined ? [] : ['text']), ...(requires ? [requires.type] : [])];
  const lineage = parentJti === undefined ? undefined : liveLineage(`v.c${RECORD_TYPES.length}`);
  const required = requires?.sql(`v.c${types.length - 1}`);
  const where = [lineage, required].filter((c) => c !== undefined);
  const sql = (rows: string) =>
    `${INSERT_RECORD} SELECT ${RECORD_COLUMNS} FROM ${rows} JOIN agents ON agents.id = v.c3 AND agents.status = 'active'${where.length ? ` WHERE ${where.join(' AND ')}` : ''} FOR SHARE OF agents SKIP LOCKED`;
  return {
    kind: `token_records${lineage ? '+lineage' : ''}${required ? `+${required}` : ''}`,
    types,
    values: () => [...values, ...(parentJti === undefined ? [] : [parentJti]), ...(requires ? [requires.value] : [])],
    sql,
  };
}

/** The parameters of {@link RECORD_VALUES}, in order. */
function recordValues(record: NewTokenRecord): unknown[] {
  return [
    record.jti, record.parentJti ?? null, record.rootJti, record.agentId, record.userId, JSON.stringify(record.userAttrs), record.issuerId, record.audience,
    record.scope, JSON.stringify(record.chain), record.chain.length, record.cnfJkt ?? null,
    record.mayAct === undefined ? null : JSON.stringify(record.mayAct), record.upstream ?? null, record.issuedAt, record.expiresAt,
  ];
}

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

/** The agent a new token is for was disabled (or removed) while the exchange ran. */
export class AgentNotActive extends Error {
  readonly code = 'ERR_AGENT_NOT_ACTIVE';
  constructor(readonly agentId: string) {
    super(`agent "${agentId}" is not active`);
    this.name = 'AgentNotActive';
  }
}

/**
 * Token records in the store: insert (refused when the parent is revoked or the agent not active),
 * effective revocation across the lineage (cascade, RFC 7009 §2.1), purge of expired rows.
 */
export class TokenRecords {
  constructor(readonly store: Store) {}

  /**
   * The record of `jti` with its **effective** revocation: `revokedAt` / `revokedReason` are
   * set when the token itself, or any token it was exchanged from, was revoked (epoch
   * seconds; the earliest such revocation), or when a link of its lineage is missing. This is
   * the one liveness rule every reader uses. Undefined when Deputy never recorded `jti`.
   */
  async find(jti: string, db: Queryable = this.store): Promise<TokenRecord | undefined> {
    const rows = await db.query<Row>(FIND_LIVE, [jti], { prepare: true });
    return rows[0] ? fromRow(rows[0]) : undefined;
  }

  /**
   * Inserts a record inside `tx`, after two checks made in the same transaction:
   * - the agent's row, share-locked until commit, is still `active` (else {@link AgentNotActive});
   *   this is what makes a concurrent disable ({@link revokeByAgent}) see the new token;
   * - the parent, if any, is live by {@link find}'s rule (else {@link ParentRevoked}). This
   *   check is for a clear refusal only: a parent revoked after it still kills the new token.
   *
   * `also`: another module's write of the same transaction (the upstream token's vault row) run
   * within the insert's statement when it can be (a first link), else just before it.
   */
  async insert(tx: Queryable, record: NewTokenRecord, also?: StatementPart): Promise<void> {
    const values = recordValues(record);
    if (record.parentJti === undefined) {
      // No parent to check in between: the agent's share lock, its status check and the insert
      // are one statement (one round trip fewer per first-link exchange; issue 16). The insert
      // happens only when the locked row is active; the lock is held until commit as before.
      // `also` (the exchange's vault row) runs in it too; a refusal rolls the transaction back.
      const part = also ? `part AS (${also.sql(values.length + 1)}),` : '';
      const rows = await tx.query<{ status: string | null; inserted: number }>(
        `WITH agent AS (SELECT status FROM agents WHERE id = $4 FOR SHARE), ${part}
              inserted AS (${INSERT_RECORD} SELECT ${RECORD_VALUES} FROM agent WHERE agent.status = 'active' RETURNING 1)
         SELECT (SELECT status FROM agent) AS status, (SELECT count(*) FROM inserted)::int AS inserted`,
        also ? [...values, ...also.params] : values,
      );
      if (rows[0]?.inserted !== 1) throw new AgentNotActive(record.agentId);
      return;
    }
    if (also) await tx.query(also.sql(1), also.params);
    const agent = await tx.query<{ status: string }>('SELECT status FROM agents WHERE id = $1 FOR SHARE', [record.agentId]);
    if (agent[0]?.status !== 'active') throw new AgentNotActive(record.agentId);
    const parent = await this.find(record.parentJti, tx);
    if (!parent || parent.revokedAt !== undefined) throw new ParentRevoked();
    await tx.query(`${INSERT_RECORD} VALUES (${RECORD_VALUES})`, values);
  }

  /**
   * {@link insert} as a {@link StatementPart} (an `INSERT` writing one row, or none when refused)
   * for a statement of the caller's — the token exchange's receipt append (src/audit/chain.ts
   * `appendIfHead`), which undoes itself when the part writes no row. The same checks in the same
   * statement: the agent's row share-locked (until that statement commits) and `active`; the
   * parent, if any, live by {@link find}'s rule over its **whole lineage** ({@link liveLineage}).
   * An agent row locked for update elsewhere is skipped, not waited for (no row written: the
   * caller decides on its locked path).
   * The exchange verified the lineage live before signing, but an ancestor revoked since (by any
   * instance) must still turn the exchange into `invalid_grant` with nothing written, rather than
   * hand out a token that is dead on arrival: so the write re-checks what it depends on, in its
   * own snapshot. A refusal is told apart by {@link insert} (the caller's fallback), which throws
   * the precise error.
   *
   * A root token (no parent: the exchange of an IdP token) gets a statement text without the
   * lineage clause rather than `(NULL IS NULL OR …)`: with the clause, the server's plan cache
   * keeps re-planning the whole issuing statement (a custom plan folds the `NULL` away and looks
   * cheaper than the generic one), which cost ~1 ms of PGlite CPU per exchange (issue 16, sixth
   * round). Same rows refused, same rows written.
   *
   * `requires`: another module's condition the row depends on, checked in the same statement (a
   * remembered vault row of the upstream token that this insert references without writing it:
   * `EnvelopeVault.exists`); when false, the part writes no row, like any other refusal.
   */
  insertPart(record: NewTokenRecord, requires?: StatementCondition): StatementPart {
    const values = recordValues(record);
    const agentActive = (first: number) => `FROM agents WHERE id = $${first + 3}::text AND status = 'active'`;
    const parent = record.parentJti === undefined ? [] : [record.parentJti];
    const params = [...values, ...parent, ...(requires?.params ?? [])];
    return {
      params,
      // As a row of a set (chain.ts writes several exchanges' records with one statement), when the condition has a column form.
      ...(requires === undefined || requires.column !== undefined ? { row: recordRow(values, record.parentJti, requires?.column) } : {}),
      sql: (first) => {
        const lineage = parent.length ? ` AND ${liveLineage(`$${first + values.length}::text`)}` : '';
        const required = requires ? ` AND ${requires.sql(first + values.length + parent.length)}` : '';
        // SKIP LOCKED: an agent row held for update (its deletion, an admin change) is not waited
        // for — the caller's statement holds the agent's chain head by now, and a deletion takes
        // the row first and the head last (a deadlock). No row: the part writes nothing, and the
        // caller's locked path waits for the row before the head (red team, issue 16 eighth round).
        return `${INSERT_RECORD} SELECT ${recordValuesFrom(first)} ${agentActive(first)}${lineage}${required} FOR SHARE OF agents SKIP LOCKED`;
      },
    };
  }

  /**
   * Revokes `jti` (RFC 7009) and so, by the lineage rule of {@link find}, every token exchanged
   * from it — including ones whose exchange commits after this call. Only `jti`'s row is
   * marked. Returns `jti` and the descendants recorded so far (for logs; empty when the token is
   * unknown or was already revoked).
   */
  async revokeCascade(jti: string, reason: string): Promise<string[]> {
    const marked = await this.store.query<{ jti: string }>(
      'UPDATE token_records SET revoked_at = now(), revoked_reason = $2 WHERE jti = $1 AND revoked_at IS NULL RETURNING jti',
      [jti, reason],
    );
    return marked.length === 0 ? [] : [jti, ...(await this.#descendants(this.store, [jti]))];
  }

  /**
   * Revokes every live token held by `agentId` and so, by the lineage rule, everything
   * delegated from them. Run it in the transaction that disables the agent (`tx`): with the
   * insert's share lock on the agent row, no token of the agent can commit unseen. Returns the
   * tokens marked and their descendants recorded so far.
   */
  async revokeByAgent(agentId: string, reason: string, tx: Queryable = this.store): Promise<string[]> {
    const held = await tx.query<{ jti: string }>(
      `UPDATE token_records SET revoked_at = now(), revoked_reason = $2
       WHERE agent_id = $1 AND revoked_at IS NULL AND expires_at > now() RETURNING jti`,
      [agentId, reason],
    );
    const roots = held.map((r) => r.jti);
    return roots.length === 0 ? [] : [...roots, ...(await this.#descendants(tx, roots))];
  }

  /**
   * Detaches the upstream subject tokens `agentId`'s first-link exchanges captured (vault handles,
   * shared by the tokens exchanged from them) and returns the handles, for the caller to delete
   * from the vault in the same transaction `tx`. Run when the agent is deleted, after
   * {@link revokeByAgent}: every token that could reach one of them is revoked by then.
   *
   * A handle is written by a first-link exchange, shared only by the same agent's later
   * first-link exchanges of the same IdP token (src/oauth/upstream-capture.ts), and passed only
   * from parent to child (`upstream: parent.upstream`, src/oauth/token-exchange.ts), so the rows
   * carrying it are that agent's roots and their descendants: the statement walks them by `agent_id` and `parent_jti` (both
   * indexed) rather than looking rows up by `upstream`, which no index serves — a full scan of
   * every token record, under the deletion's locks, when the table is large (issue 16, seventh
   * round; an index on `upstream` would cost every exchange an index insert instead). A child
   * never outlives its parent (its lifetime is capped by the parent's), so the purge cannot leave
   * a descendant the walk misses. The walk goes one hop past {@link MAX_LINEAGE}: the insert
   * accepts a parent exactly `MAX_LINEAGE` hops from its root, so a record (dead on arrival, but
   * carrying the handle) can lie `MAX_LINEAGE + 1` hops down — and none deeper, its own children
   * being refused (red team, issue 16 seventh round).
   */
  async detachUpstream(agentId: string, tx: Queryable): Promise<string[]> {
    const rows = await tx.query<{ upstream: string }>(
      `WITH RECURSIVE captured AS (
         SELECT jti, upstream FROM token_records WHERE agent_id = $1 AND parent_jti IS NULL AND upstream IS NOT NULL
       ), carrying(jti, hops) AS (
         SELECT jti, 0 FROM captured
         UNION
         SELECT t.jti, c.hops + 1 FROM token_records t JOIN carrying c ON t.parent_jti = c.jti WHERE c.hops <= ${MAX_LINEAGE}
       ), cleared AS (
         UPDATE token_records SET upstream = NULL
         WHERE jti = ANY (ARRAY(SELECT jti FROM carrying)) AND upstream = ANY (ARRAY(SELECT upstream FROM captured))
         RETURNING 1
       )
       SELECT DISTINCT upstream FROM captured`,
      [agentId],
    );
    return rows.map((r) => r.upstream);
  }

  /** Every recorded descendant of `parents` (not including them). */
  async #descendants(db: Queryable, parents: string[]): Promise<string[]> {
    const rows = await db.query<{ jti: string }>(
      `WITH RECURSIVE subtree(jti, hops) AS (
         SELECT jti, 1 FROM token_records WHERE parent_jti = ANY($1::text[])
         UNION
         SELECT t.jti, s.hops + 1 FROM token_records t JOIN subtree s ON t.parent_jti = s.jti WHERE s.hops < ${MAX_LINEAGE}
       )
       SELECT DISTINCT jti FROM subtree`,
      [parents],
    );
    return rows.map((r) => r.jti).filter((j) => !parents.includes(j));
  }

  /**
   * Deletes records that expired more than `graceSeconds` ago, except those whose captured
   * upstream row is still in the vault; returns how many. A row can outlive every record that
   * references it (it expires up to a day plus a token lifetime after it was written:
   * ./token-exchange.ts `UPSTREAM_REUSE_SECONDS`), and an agent's deletion finds its rows only
   * through its records ({@link detachUpstream}): without them the user's IdP token stayed in the
   * vault past the deletion. Such a record goes at the first purge after its row's.
   */
  async purgeExpired(graceSeconds = 3600): Promise<number> {
    const rows = await this.store.query<{ n: number }>(
      `WITH d AS (DELETE FROM token_records t WHERE t.expires_at < now() - make_interval(secs => $1::int)
         AND (t.upstream IS NULL OR NOT EXISTS (SELECT 1 FROM vault_secrets v WHERE v.handle = t.upstream))
       RETURNING 1) SELECT count(*)::int AS n FROM d`,
      [graceSeconds],
    );
    return rows[0]?.n ?? 0;
  }
}

/**
 * Answers "is this token revoked?" for resource-side checks (PDP, gateway), caching answers —
 * and, for live tokens, the record itself ({@link liveRecord}), so the gateway reads a token's
 * record once per staleness bound rather than once per call.
 * The answer is {@link TokenRecords.find}'s: the token or a token of its lineage was revoked.
 *
 * Staleness bound: a revocation made on another instance is seen here at most
 * `activeTtlMs` later (default 2 s), because "not revoked" answers are cached only that long.
 * Revocations made through this instance are seen immediately ({@link forget}). "Revoked" is
 * final and cached until the token would have expired anyway. A record's other fields never
 * change after issue, so a cached live record differs from the store's only in revocation.
 */
export class RevocationCache {
  /** The store's answers: the record as found (revoked or not), undefined for an unknown token. */
  readonly #cache: BoundedReadCache<string, TokenRecord | undefined>;
  /** Bound on cached answers; past it (or {@link BUDGET_BYTES}) the answers read longest ago go. */
  static readonly MAX_ENTRIES = 50_000;
  /**
   * Bound on the bytes cached answers count ({@link answerFootprint}): a record holds the user's
   * attributes from the IdP token, which an attacker with a large token makes large — bounded by
   * entries alone, the cache grew with entries × record size.
   */
  static readonly BUDGET_BYTES = 32 * 1024 * 1024;

  /**
   * `activeTtlMs`: how long a "not revoked" answer is reused (ms, default 2000); `budgetBytes`,
   * `maxEntries`: the bounds (defaults {@link BUDGET_BYTES}, {@link MAX_ENTRIES}).
   */
  constructor(records: TokenRecords, options: { activeTtlMs?: number; budgetBytes?: number; maxEntries?: number } = {}) {
    const ttlMs = options.activeTtlMs ?? 2000;
    this.#cache = new BoundedReadCache((jti) => records.find(jti), {
      ttlMs,
      maxEntries: options.maxEntries ?? RevocationCache.MAX_ENTRIES,
      budgetBytes: options.budgetBytes ?? RevocationCache.BUDGET_BYTES,
      sizeOf: answerFootprint,
      // "Live" for the bound; "revoked" is final, kept until the token would have expired anyway
      // (an unknown token's lifetime is already over: never kept).
      lifetime: (found, startedAt) =>
        live(found) ? { until: startedAt + ttlMs, final: false } : { until: (found?.expiresAt ?? 0) * 1000 + 60_000, final: true },
      // In the last quarter of a "live" answer's bound, re-read in the background, so a token in
      // steady use never waits for its re-read (issue 16, sixth round: the c1 tail).
      refreshAhead: true,
    });
  }

  /** Bytes the cached answers count ({@link answerFootprint}); never more than the budget. */
  get bytes(): number {
    return this.#cache.bytes;
  }

  /** Answers cached now; never more than the entry bound. */
  get size(): number {
    return this.#cache.size;
  }

  /** True when the token (or one it was exchanged from) is revoked, or unknown to Deputy. */
  async isRevoked(jti: string, now = Date.now()): Promise<boolean> {
    return (await this.liveRecord(jti, now)) === undefined;
  }

  /**
   * The token's record while it is live (by {@link TokenRecords.find}'s rule, within this cache's
   * staleness bound); undefined when it, or a token it was exchanged from, is revoked, or when
   * Deputy never recorded it. `now` in milliseconds since the epoch. Concurrent misses share one
   * read, never one begun before a {@link forget} or more than `activeTtlMs` before the call
   * (BoundedReadCache, src/util/single-flight.ts).
   */
  async liveRecord(jti: string, now = Date.now()): Promise<TokenRecord | undefined> {
    const found = await this.#cache.get(jti, now);
    return live(found) ? found : undefined;
  }

  /**
   * Whether {@link liveRecord} would answer "live" at `now` from this cache, without a read:
   * false when the token is revoked, unknown, or its cached answer is stale (a read is due).
   * Synchronous, for callers that only need to know whether an earlier answer still stands.
   */
  knownLive(jti: string, now: number): boolean {
    return live(this.#cache.peek(jti, now)?.value);
  }

  /**
   * Call after this instance committed a revocation. Drops every cached "not revoked" answer:
   * a revocation reaches descendants the revoker never listed (children committed late), so
   * no per-jti list can be complete. Revocations are rare; re-reading is cheap.
   */
  forget(): void {
    this.#cache.invalidate();
  }
}

/**
 * What one token record keeps on the heap, estimated: its JSON twice over (the objects and
 * strings holding it; the user's attributes, from the IdP token, may be large). Counted by the
 * caches that hold records ({@link RevocationCache}, the agent token resolver).
 */
export function recordFootprint(record: TokenRecord): number {
  return 2 * JSON.stringify(record).length;
}

/** The heap one {@link RevocationCache} answer costs besides its record: the key, the map slot, the entry. */
const ANSWER_OVERHEAD_BYTES = 256;

/** What one cached revocation answer keeps: its `jti` key, the record found (if any), the entry. */
function answerFootprint(jti: string, found: TokenRecord | undefined): number {
  return jti.length + ANSWER_OVERHEAD_BYTES + (found === undefined ? 0 : recordFootprint(found));
}

/** A record found and not revoked (by the lineage rule {@link TokenRecords.find} applies). */
function live(found: TokenRecord | undefined): boolean {
  return found !== undefined && found.revokedAt === undefined;
}
