/**
 * Single-use records and expiry in `oidc_models` (the table oidc-provider's storage adapter,
 * ./oidc-provider/adapter.ts, also uses): replay detection for DPoP proofs, client assertions,
 * actor tokens and receipts, and the periodic purge of expired rows.
 *
 * @module
 */
import type { Queryable } from '../store/index.js';

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
    { prepare: true },
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
 * `keys` in the one order every statement records them in: by namespace, then key. A key being
 * recorded by another transaction is waited for (its unique index entry); two statements taking
 * the same keys in opposite orders would each hold one and wait for the other — a deadlock that
 * PostgreSQL breaks only after `deadlock_timeout`, stalling both agents' chains (two instances,
 * proofs replayed across two agents' groups; issue 16, ninth round). In one order, the second
 * waits for the first and then finds its replays recorded.
 */
export function inLockOrder(keys: readonly OnceKey[]): readonly OnceKey[] {
  if (keys.length < 2) return keys;
  return [...keys].sort((a, b) => (a.namespace === b.namespace ? compare(a.key, b.key) : compare(a.namespace, b.namespace)));
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * {@link recordOnce} for several keys in one statement (one round trip inside a caller's
 * transaction, e.g. a receipt group), recorded {@link inLockOrder}. Returns the keys this call
 * recorded, as `namespace\0key`; a key already recorded and unexpired is missing from the
 * result. The keys must be distinct (one statement cannot claim a row twice): callers dedupe first.
 */
export async function recordEachOnce(db: Queryable, given: readonly OnceKey[]): Promise<Set<string>> {
  if (given.length === 0) return new Set();
  const keys = inLockOrder(given);
  const rows = await db.query<{ model: string; id: string }>(
    `INSERT INTO oidc_models (model, id, payload, expires_at)
     SELECT m, i, '{}'::jsonb, now() + make_interval(secs => t) FROM unnest($1::text[], $2::text[], $3::int[]) AS k(m, i, t)
     ON CONFLICT (model, id) DO UPDATE SET expires_at = EXCLUDED.expires_at, payload = EXCLUDED.payload
       WHERE oidc_models.expires_at <= now()
     RETURNING model, id`,
    [keys.map((k) => k.namespace), keys.map((k) => k.key), keys.map((k) => Math.max(1, Math.ceil(k.ttlSeconds)))],
    { prepare: true },
  );
  return new Set(rows.map((r) => onceKeyId(r.model, r.id)));
}

/**
 * Which of `keys` are recorded and unexpired, read without writing (as `namespace\0key`, like
 * {@link recordEachOnce}'s result): a cheap early refusal of a replay before a request does any
 * work, when the keys are then recorded by {@link recordEachOnce} in the request's own
 * transaction (which alone decides a race).
 */
export async function findRecorded(db: Queryable, keys: readonly OnceKey[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const rows = await db.query<{ model: string; id: string }>(
    `SELECT model, id FROM oidc_models
     WHERE (model, id) IN (SELECT * FROM unnest($1::text[], $2::text[])) AND expires_at > now()`,
    [keys.map((k) => k.namespace), keys.map((k) => k.key)],
    { prepare: true },
  );
  return new Set(rows.map((r) => onceKeyId(r.model, r.id)));
}

/** The identity of a {@link OnceKey} in {@link recordEachOnce}'s result. */
export function onceKeyId(namespace: string, key: string): string {
  return `${namespace}\0${key}`;
}

/** A value a request may use once ({@link OnceKey}), and the refusal a replay of it gets. */
export interface SingleUse {
  once: OnceKey;
  /** The protocol error for a replay (e.g. `invalid_dpop_proof`, `invalid_client`). */
  replayed: () => Error;
}

/**
 * Records every item's key in one statement ({@link recordEachOnce}) and returns the first item
 * (in the given order) that was recorded already, or `undefined` when all were fresh. The other
 * keys are recorded either way: inside a transaction, the caller decides by rolling back.
 */
export async function spendEach(db: Queryable, items: readonly SingleUse[]): Promise<SingleUse | undefined> {
  if (items.length === 0) return undefined;
  const recorded = await recordEachOnce(db, items.map((i) => i.once));
  return items.find((i) => !recorded.has(onceKeyId(i.once.namespace, i.once.key)));
}

/**
 * The first item (in the given order) whose key is recorded and unexpired, read without writing
 * ({@link findRecorded}: one statement), or `undefined`: a refusal of a known replay before a
 * request writes anything of its own, when its keys are then recorded by a later statement that
 * alone decides a race.
 */
export async function firstRecorded(db: Queryable, items: readonly SingleUse[]): Promise<SingleUse | undefined> {
  if (items.length === 0) return undefined;
  const recorded = await findRecorded(db, items.map((i) => i.once));
  return items.find((i) => recorded.has(onceKeyId(i.once.namespace, i.once.key)));
}

/** Deletes expired rows; returns how many. Run periodically by the server. */
export async function purgeExpired(db: Queryable): Promise<number> {
  const rows = await db.query<{ n: number }>(
    `WITH d AS (DELETE FROM oidc_models WHERE expires_at <= now() RETURNING 1) SELECT count(*)::int AS n FROM d`,
  );
  return rows[0]?.n ?? 0;
}
