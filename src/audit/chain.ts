/**
 * Per-agent hash chains in the store (`receipt_chains`, `receipts`; migration 003).
 *
 * Two ways to append, both linear: no two receipts ever get the same `seq` or the same `prev`.
 * - Optimistic ({@link appendIfHead}): receipts signed against the head the caller expects are
 *   written, and the head moved, by one statement that does so only if the head is still the
 *   expected one (an atomic insert-or-update on the head row, PostgreSQL's `ON CONFLICT DO
 *   UPDATE … WHERE`); otherwise it writes nothing and the caller re-reads and re-signs. No lock is
 *   held while signing, and a lone append is one round trip (one commit).
 * - Locked ({@link lockHead} then {@link appendLocked}, in one transaction): the head row is
 *   locked (`SELECT … FOR UPDATE`), the receipts signed against it, inserted, and the head moved.
 *   The fallback when the optimistic write cannot decide alone (a once-key recorded before).
 * Every appender for the agent — on any connection, on any instance sharing the PostgreSQL
 * database — serialises on that head row. PGlite runs one statement or transaction at a time,
 * which is the same guarantee within its single process.
 *
 * @module
 */
import { inLockOrder, type OnceKey } from '../oauth/adapter.js';
import type { PartRow, Queryable, StatementPart } from '../store/index.js';
import { genesisHash, type SignedReceipt } from './receipt.js';

/** The last receipt of a chain: its `seq` (0 for an empty chain) and hash (genesis when empty). */
export interface ChainHead {
  seq: number;
  hash: string;
}

interface HeadRow {
  seq: string | number;
  head: string;
}

interface ReceiptRow {
  id: string;
  agent_id: string;
  seq: string | number;
  hash: string;
  prev: string;
  jws: string;
}

const RECEIPT_COLUMNS = 'id, agent_id, seq, hash, prev, jws';

/**
 * Locks the agent's chain head for the rest of `tx` and returns it. The first append for an agent
 * creates the row; a concurrent first append waits on the primary key, then locks the same row.
 */
export async function lockHead(tx: Queryable, agent: string): Promise<ChainHead> {
  const select = () => tx.query<HeadRow>('SELECT seq, head FROM receipt_chains WHERE agent_id = $1 FOR UPDATE', [agent]);
  let rows = await select();
  if (rows.length === 0) {
    await tx.query('INSERT INTO receipt_chains (agent_id, seq, head) VALUES ($1, 0, $2) ON CONFLICT (agent_id) DO NOTHING', [agent, genesisHash(agent)]);
    rows = await select();
  }
  const row = rows[0]!;
  return { seq: Number(row.seq), hash: row.head };
}

/**
 * Inserts `receipts` (consecutive, starting right after the locked head) and moves the head to
 * the last one, in one statement (a data-modifying CTE runs exactly once, PostgreSQL §7.8.4).
 */
export async function appendLocked(tx: Queryable, agent: string, receipts: readonly SignedReceipt[]): Promise<void> {
  const last = receipts[receipts.length - 1];
  if (!last) return;
  await tx.query(
    `WITH inserted AS (
       INSERT INTO receipts (agent_id, seq, id, hash, prev, jws)
       SELECT $1, s, i, h, p, j FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[]) AS r(s, i, h, p, j))
     UPDATE receipt_chains SET seq = $7, head = $8, updated_at = now() WHERE agent_id = $1`,
    [
      agent,
      receipts.map((r) => r.seq),
      receipts.map((r) => r.id),
      receipts.map((r) => r.hash),
      receipts.map((r) => r.prev),
      receipts.map((r) => r.jws),
      last.seq,
      last.hash,
    ],
  );
}

/**
 * What {@link appendIfHead} did: `written` (receipts, head and once-keys, all of them),
 * `moved` (the head was not the expected one: nothing written) or `recorded` (a once-key was
 * recorded already: nothing written; the locked path must split the group).
 */
export type ConditionalAppend = 'written' | 'moved' | 'recorded';

/**
 * The CHECK constraint (`receipts.seq >= 1`, migration 003) that {@link appendIfHead} violates on
 * purpose to undo its own statement: a statement that fails changes nothing, atomically, without
 * a transaction around it.
 */
const UNDO_CONSTRAINT = 'receipts_seq_check';

/**
 * The primary key of the once-keys' rows (`oidc_models`, migration 001): a key recorded before
 * fails {@link spentMember}'s plain insert on it, which {@link runConditional} reads as `recorded`.
 */
const KEY_CONSTRAINT = 'oidc_models_pkey';

/**
 * The `spent` member of {@link appendIfHead}'s statements: records the once-keys `rows` selects
 * (`model, id, payload, expires_at`), only when the head moved. A plain `INSERT`: a key recorded
 * before fails the whole statement on {@link KEY_CONSTRAINT} (also when its row has expired and
 * is not purged yet — the locked path, `recordEachOnce`, then reuses that row), so a written
 * statement recorded every key, and no member needs to count them. The arbiter probe, the
 * speculative insertion and its confirmation record of `ON CONFLICT … DO UPDATE` (one WAL record
 * and ~48 bytes per key, `scripts/bench/receipt-statement-parts.ts`) are left to the rare path
 * that can reuse an expired row (issue 16, thirteenth round).
 */
function spentMember(rows: string): string {
  return `spent AS (
         INSERT INTO oidc_models (model, id, payload, expires_at)
         ${rows}
         WHERE EXISTS (SELECT 1 FROM moved)),`;
}

/** Moves the head from `$4`/`$5` to `$2`/`$3` if it is still there (a concurrent move is waited for, then re-checked). */
const MOVE_HEAD = 'UPDATE receipt_chains SET seq = $2::bigint, head = $3::text, updated_at = now() WHERE agent_id = $1::text AND seq = $4::bigint AND head = $5::text';
/** The same from an empty chain: creates the head row, or moves the genesis row an earlier locked append created. */
const MOVE_FROM_GENESIS = `INSERT INTO receipt_chains AS c (agent_id, seq, head) VALUES ($1::text, $2::bigint, $3::text)
  ON CONFLICT (agent_id) DO UPDATE SET seq = EXCLUDED.seq, head = EXCLUDED.head, updated_at = now() WHERE c.seq = $4::bigint AND c.head = $5::text`;

/**
 * One statement, all or nothing: if `agent`'s head is still `expected` (for `seq` 0: no head row,
 * or the genesis row), records every `once` key (insert-or-fail), runs every
 * write of `parts`, inserts `receipts` (consecutive, signed after `expected`) and moves the head
 * to the last of them.
 *
 * The head row is the serialisation point: the conditional `UPDATE` (from genesis: an upsert)
 * locks it, and its `WHERE` is checked again against the latest committed version after waiting
 * for a concurrent writer (PostgreSQL §13.2.1, read committed; `ON CONFLICT DO UPDATE` is an
 * atomic insert or update), so of two appenders that expected the same head one moves it and the
 * other writes nothing. A head row that is missing is never created past genesis. The keys and
 * receipts are written only when the head moved (they read its `RETURNING` row). If a key was
 * recorded already (its row present, expired or not: {@link spentMember}), its insert fails on the
 * key's primary key and so undoes the whole statement: no key is spent without its receipt, and
 * no receipt is written for a replay; the caller's locked path then decides (`recordEachOnce`
 * reuses an expired row). `once` keys must be distinct; they are recorded in one order (`inLockOrder`), so two
 * instances' statements holding the same keys cannot deadlock on them.
 *
 * `parts`: other modules' writes attested by these receipts (the token exchange's token record
 * and vault row), each an `INSERT` (no `RETURNING`) that must write exactly one row (several parts
 * of one kind offering a row form are written as one set, which must write one row per part:
 * {@link asWrites}). They run in
 * the same statement whatever the head; if one writes no row, or the head had moved, the
 * receipts' `seq` is 0, which fails `receipts_seq_check` and so undoes the statement too. With parts, `recorded` thus
 * also means "a part refused or the head moved": the caller tells them apart by reading the head.
 *
 * The receipts' `INSERT` has no `RETURNING` and the statement reads only `moved`: a data-modifying
 * `WITH` member runs exactly once and to completion whether or not anything reads it (PostgreSQL
 * §7.8.4), so its rows, and its undo through `receipts_seq_check`, are the same; what it saves is
 * the returned rows' store and a second sub-select on every call (issue 16, eleventh round).
 *
 * @returns `written`, `moved` or `recorded` ({@link ConditionalAppend})
 * @throws the store's error for anything else (connection lost: {@link StoreUnavailableError})
 */
export function appendIfHead(
  db: Queryable,
  agent: string,
  expected: ChainHead,
  receipts: readonly SignedReceipt[],
  given: readonly OnceKey[] = [],
  parts: readonly StatementPart[] = [],
): Promise<ConditionalAppend> {
  // Not `async`: the statement's promise is handed back as it is (an `async` function returning a
  // promise costs two more per receipt; issue 16, twelfth round). Anything thrown rejects.
  try {
    return conditionalAppend(db, agent, expected, receipts, given, parts);
  } catch (err) {
    return Promise.reject(err as Error);
  }
}

/** {@link appendIfHead}'s statement, run. */
function conditionalAppend(
  db: Queryable,
  agent: string,
  expected: ChainHead,
  receipts: readonly SignedReceipt[],
  given: readonly OnceKey[],
  parts: readonly StatementPart[],
): Promise<ConditionalAppend> {
  const last = receipts[receipts.length - 1];
  if (!last) return Promise.resolve('written');
  const once = inLockOrder(given);
  if (receipts.length === 1 && once.length <= 1 && parts.length === 0) return runConditional(db, singleAppend(agent, expected, last, once[0]));
  if (scalarGroup(expected, receipts, once, parts)) return runConditional(db, groupAppend(agent, expected, receipts, once));
  if (receipts.length === 1 && parts.length > 0 && once.length <= LONE_KEYS) return runConditional(db, loneAppendWith(agent, expected, last, once, parts));
  return runConditional(db, generalAppend(agent, expected, receipts, once, parts));
}

/**
 * {@link appendIfHead}'s statement in its general form (any group): keys and receipts as `unnest`
 * over arrays. Exported for the in-process A/B of scripts/bench/exchange-statement-micro.ts.
 */
export function generalAppend(agent: string, expected: ChainHead, receipts: readonly SignedReceipt[], once: readonly OnceKey[], parts: readonly StatementPart[]): Conditional {
  const last = receipts[receipts.length - 1]!;
  const params: unknown[] = [
    agent,
    last.seq,
    last.hash,
    expected.seq,
    expected.hash,
    once.map((k) => k.namespace),
    once.map((k) => k.key),
    once.map((k) => Math.max(1, Math.ceil(k.ttlSeconds))),
    receipts.map((r) => r.seq),
    receipts.map((r) => r.id),
    receipts.map((r) => r.hash),
    receipts.map((r) => r.prev),
    receipts.map((r) => r.jws),
  ];
  // Each write must write all its rows: one for a part, one per part for a set of one kind.
  // Each write must write all its rows: one for a part, one per part for a set of one kind (the
  // keys need no check: a key recorded before fails the statement, spentMember).
  const ok = parts.length ? ['EXISTS (SELECT 1 FROM moved)'] : [];
  const writes = inShapeOrder(asWrites(parts)).map(({ part, rows }, i) => {
    const first = params.length + 1;
    ok.push(`(SELECT count(*) FROM w${i}) = ${rows === undefined ? '1' : `cardinality($${first}::${rows}[])`}`);
    params.push(...part.params);
    return `w${i} AS (${part.sql(first)} RETURNING 1),`;
  });
  // Without parts the receipts are written only when the head moved; with parts, a head that did
  // not move must undo the parts too, so the receipts are always inserted and their `seq` says.
  return {
    sql: `WITH moved AS (${expected.seq === 0 ? MOVE_FROM_GENESIS : MOVE_HEAD} RETURNING 1),
       ${spentMember(`SELECT m, i, '{}'::jsonb, now() + make_interval(secs => t) FROM unnest($6::text[], $7::text[], $8::int[]) AS k(m, i, t)`)}
       ${writes.join('\n       ')}
       inserted AS (
         INSERT INTO receipts (agent_id, seq, id, hash, prev, jws)
         SELECT $1, ${ok.length ? `CASE WHEN ${ok.join(' AND ')} THEN s ELSE 0 END` : 's'}, i, h, p, j
         FROM unnest($9::bigint[], $10::text[], $11::text[], $12::text[], $13::text[]) AS r(s, i, h, p, j)
         ${parts.length ? '' : 'WHERE EXISTS (SELECT 1 FROM moved)'})
     SELECT (SELECT count(*) FROM moved)::int AS moved`,
    params,
    // Its text varies with the parts (other modules' writes, each its own text): one shape of many.
    prepare: 'shape',
  };
}

/** Once-keys of a lone append with parts written by {@link loneAppendWith} at most (the token exchange has two, three with an actor token). */
const LONE_KEYS = 4;

/**
 * {@link appendIfHead} for one receipt with parts and at most {@link LONE_KEYS} once-keys (the
 * token exchange's append when it is alone: every exchange at concurrency 1): the general
 * statement's members with scalar parameters — the keys in a `VALUES` list, the receipt's columns
 * as parameters — instead of `unnest` over eight arrays, whose literals (the receipt's JWS among
 * them, escaped) are built in JavaScript and parsed back by the database (issue 16, twelfth
 * round). Same guarantees as the general form with parts: the keys are recorded only when the
 * head moved (a key recorded before fails the statement), the parts run whatever the head, and
 * the receipt is always inserted, its `seq` 0 — undoing the whole statement — unless the head
 * moved and every part wrote its one row. Its text depends on the number of keys, the parts' texts and whether the chain is new.
 */
export function loneAppendWith(agent: string, expected: ChainHead, receipt: SignedReceipt, once: readonly OnceKey[], parts: readonly StatementPart[]): Conditional {
  const params: unknown[] = [agent, receipt.seq, receipt.hash, expected.seq, expected.hash, receipt.id, receipt.prev, receipt.jws];
  const keys = once.map((k) => {
    params.push(k.namespace, k.key, Math.max(1, Math.ceil(k.ttlSeconds)));
    const at = params.length - 2;
    return `($${at}::text, $${at + 1}::text, $${at + 2}::int)`;
  });
  const spent = keys.length ? spentMember(`SELECT m, i, '{}'::jsonb, now() + make_interval(secs => t) FROM (VALUES ${keys.join(', ')}) AS k(m, i, t)`) : '';
  const writes = inShapeOrder(parts.map((part) => ({ part }))).map(({ part }, i) => {
    const sql = `w${i} AS (${part.sql(params.length + 1)} RETURNING 1),`;
    params.push(...part.params);
    return sql;
  });
  const ok = ['EXISTS (SELECT 1 FROM moved)', ...parts.map((_, i) => `(SELECT count(*) FROM w${i}) = 1`)];
  return {
    sql: `WITH moved AS (${expected.seq === 0 ? MOVE_FROM_GENESIS : MOVE_HEAD} RETURNING 1),
       ${spent}
       ${writes.join('\n       ')}
       inserted AS (
         INSERT INTO receipts (agent_id, seq, id, hash, prev, jws)
         SELECT $1, CASE WHEN ${ok.join(' AND ')} THEN $2::bigint ELSE 0 END, $6::text, $3, $7::text, $8::text)
     SELECT (SELECT count(*) FROM moved)::int AS moved`,
    params,
    // Its text varies with the parts, as the general form's: one shape of several.
    prepare: 'shape',
  };
}

/**
 * The writes ordered by their text (each numbered from `$1`): the general statement's text then
 * depends on which parts a group holds ({@link asWrites}: one or a set of each kind), not on their order. The exchange's
 * appends take two or three kinds of parts (a new IdP token's vault row and token record, a
 * remembered one's record on the condition of its row, a sub-delegation's record with its lineage
 * check); in call order, a group of k mixed appends took up to 2^k texts, past the store's bound on
 * named shapes at concurrency 8 (src/store/prepared.ts `MAX_SHAPES_NAMED`): half the groups ran
 * unnamed, planned every time (scripts/bench/receipt-shapes.ts; issue 16, eleventh round). Each part
 * must write its one row whatever its place: the members of one `WITH` run on one snapshot, in no
 * order PostgreSQL promises (§7.8.4), and none waits on another (their locks skip, their keys are new).
 */
function inShapeOrder(writes: readonly Write[]): readonly Write[] {
  if (writes.length < 2) return writes;
  const keyed = writes.map((write) => ({ write, key: write.part.sql(1) }));
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return keyed.map((k) => k.write);
}

/** A member write of the general statement: one part, or the parts of one kind as a set (`rows`: its first column's type, whose array's length is the rows it must write). */
interface Write {
  part: StatementPart;
  rows?: string;
}

/**
 * `parts` as the statement's writes: two or more parts of one kind that offer a row form
 * (`StatementPart.row`: the exchange's vault rows, its token records of each kind) become one
 * write over `unnest` of their columns, so the text depends on which kinds a group holds (and
 * whether one or several of each), not on how many: three kinds of exchange in groups of up to 8
 * took 145 texts, past the store's bound on named shapes (issue 16, twelfth round). A part alone
 * keeps its scalar form (the single exchange's statement unchanged: no arrays built and parsed).
 * Each row is refused as its part alone would be (the rows' count is checked as the part's one).
 */
function asWrites(parts: readonly StatementPart[]): Write[] {
  const byKind = new Map<string, StatementPart[]>();
  for (const part of parts) {
    if (part.row === undefined) continue;
    const same = byKind.get(part.row.kind);
    if (same) same.push(part);
    else byKind.set(part.row.kind, [part]);
  }
  const writes: Write[] = [];
  for (const part of parts) {
    const same = part.row === undefined ? undefined : byKind.get(part.row.kind);
    if (same === undefined || same.length === 1) writes.push({ part });
    else if (same.length > 1) {
      writes.push(rowSet(part.row!.types, same.map((p) => p.row!)));
      same.length = 0; // written: the kind's later parts are in this set
    }
  }
  return writes;
}

/** The parts of one kind as one write over `unnest($first::type0[], …) AS v(c0, …)`. */
function rowSet(types: readonly string[], rows: readonly PartRow[]): Write {
  const values = rows.map((r) => r.values());
  const params = types.map((_, c) => values.map((v) => v[c]));
  const columns = types.map((_, c) => `c${c}`).join(', ');
  const sql = (first: number) => rows[0]!.sql(`unnest(${types.map((t, c) => `$${first + c}::${t}[]`).join(', ')}) AS v(${columns})`);
  return { part: { sql, params }, rows: types[0]! };
}

/** A statement of {@link appendIfHead} with its parameters. */
export interface Conditional {
  sql: string;
  params: unknown[];
  /** `'shape'` for the general statement, whose text varies with its parts (store.ts `QueryOptions`); the others take few shapes. */
  prepare?: true | 'shape';
}

/** Whether `err` is a statement of {@link appendIfHead} undoing itself: a part or the head refused ({@link UNDO_CONSTRAINT}), or a key recorded before ({@link KEY_CONSTRAINT}). */
function undone(err: unknown): boolean {
  const { code, constraint } = (err ?? {}) as { code?: unknown; constraint?: unknown };
  return (code === '23514' && constraint === UNDO_CONSTRAINT) || (code === '23505' && constraint === KEY_CONSTRAINT);
}

/**
 * Runs a statement of {@link appendIfHead} and says what it did (the undo constraint's violation:
 * `recorded`): one derived promise on the store's (issue 16, twelfth round).
 */
function runConditional(db: Queryable, { sql, params, prepare = true }: Conditional): Promise<ConditionalAppend> {
  // Prepared: every gateway call and PDP decision runs one of these few shapes (issue 16).
  return db.query<{ moved: number }>(sql, params, { prepare }).then(
    (rows): ConditionalAppend => (rows[0]?.moved === 1 ? 'written' : 'moved'),
    (err: unknown): ConditionalAppend => {
      if (undone(err)) return 'recorded';
      throw err;
    },
  );
}

/**
 * {@link appendIfHead} for one receipt and at most one once-key, no parts (the gateway's call, a
 * PDP decision): the same statement with scalar parameters instead of `unnest` over arrays — a
 * smaller plan and no array (de)serialisation, which on PGlite is part of the request's own CPU
 * (issue 16, fourth round). Same guarantees: the key is recorded and the receipt inserted only
 * when the head moved, and a key recorded already fails the statement on its primary key.
 */
function singleAppend(agent: string, expected: ChainHead, receipt: SignedReceipt, once: OnceKey | undefined): Conditional {
  const params: unknown[] = [agent, receipt.seq, receipt.hash, expected.seq, expected.hash, receipt.id, receipt.prev, receipt.jws];
  if (once) params.push(once.namespace, once.key, Math.max(1, Math.ceil(once.ttlSeconds)));
  return { sql: SINGLE_APPEND[expected.seq === 0 ? 'genesis' : 'head'][once ? 'once' : 'plain'], params };
}

/** The text of {@link singleAppend}'s statement: from genesis or from a head, with a once-key or without. */
function singleAppendSql(fromGenesis: boolean, once: boolean): string {
  const spent = once ? spentMember(`SELECT $9::text, $10::text, '{}'::jsonb, now() + make_interval(secs => $11::int)`) : '';
  return `WITH moved AS (${fromGenesis ? MOVE_FROM_GENESIS : MOVE_HEAD} RETURNING 1),
       ${spent}
       inserted AS (
         INSERT INTO receipts (agent_id, seq, id, hash, prev, jws)
         SELECT $1, $2::bigint, $6::text, $3, $7::text, $8::text
         WHERE EXISTS (SELECT 1 FROM moved))
     SELECT (SELECT count(*) FROM moved)::int AS moved`;
}

/**
 * {@link singleAppendSql}'s four texts, built once: every gateway call and PDP decision runs one
 * of them, and a constant text is neither rebuilt (~1 KB per call) nor hashed again when the store
 * looks its prepared name up (issue 16, ninth round).
 */
const SINGLE_APPEND = {
  genesis: { once: singleAppendSql(true, true), plain: singleAppendSql(true, false) },
  head: { once: singleAppendSql(false, true), plain: singleAppendSql(false, false) },
} as const;

/**
 * Groups of at most this many receipts, from a head, with one once-key per receipt or none and no
 * parts (the gateway's and the PDP's concurrent calls of one agent), are written by
 * {@link groupAppend}: at most 2 × 7 statement shapes.
 */
const SCALAR_GROUP = 8;

/** Whether {@link appendIfHead} writes this group with {@link groupAppend}. */
function scalarGroup(expected: ChainHead, receipts: readonly SignedReceipt[], once: readonly OnceKey[], parts: readonly StatementPart[]): boolean {
  return parts.length === 0 && expected.seq > 0 && receipts.length <= SCALAR_GROUP && (once.length === 0 || once.length === receipts.length);
}

/**
 * {@link appendIfHead} for a small group ({@link SCALAR_GROUP}): the same statement with scalar
 * parameters in `VALUES` lists instead of `unnest` over five text arrays — no array literal built
 * in JavaScript (each JWS escaped) and parsed back by the database (issue 16, ninth round: per
 * receipt of a group of three, PostgreSQL's backend −22 µs and the client −7, PGlite −14, paired
 * medians under load). Same guarantees: keys recorded and receipts inserted only when the head
 * moved; a key recorded already fails the statement on its primary key.
 */
function groupAppend(agent: string, expected: ChainHead, receipts: readonly SignedReceipt[], once: readonly OnceKey[]): Conditional {
  const last = receipts[receipts.length - 1]!;
  const params: unknown[] = [agent, last.seq, last.hash, expected.seq, expected.hash];
  for (const k of once) params.push(k.namespace, k.key, Math.max(1, Math.ceil(k.ttlSeconds)));
  for (const r of receipts) params.push(r.seq, r.id, r.hash, r.prev, r.jws);
  return { sql: groupAppendSql(receipts.length, once.length > 0), params };
}

/** {@link groupAppend}'s texts, by size and whether its appends carry keys: built once each. */
const GROUP_APPEND = new Map<string, string>();

/** The text of {@link groupAppend}'s statement for `size` receipts (and as many keys when `keyed`). */
function groupAppendSql(size: number, keyed: boolean): string {
  const shape = `${size}/${keyed}`;
  const known = GROUP_APPEND.get(shape);
  if (known) return known;
  const list = (first: number, width: number, types: readonly string[]) =>
    Array.from({ length: size }, (_, row) => `(${types.map((type, col) => `$${first + row * width + col}::${type}`).join(', ')})`).join(', ');
  const rowsAt = keyed ? 6 + 3 * size : 6;
  const spent = keyed ? spentMember(`SELECT m, i, '{}'::jsonb, now() + make_interval(secs => t) FROM (VALUES ${list(6, 3, ['text', 'text', 'int'])}) AS k(m, i, t)`) : '';
  const sql = `WITH moved AS (${MOVE_HEAD} RETURNING 1),
       ${spent}
       inserted AS (
         INSERT INTO receipts (agent_id, seq, id, hash, prev, jws)
         SELECT $1, s, i, h, p, j
         FROM (VALUES ${list(rowsAt, 5, ['bigint', 'text', 'text', 'text', 'text'])}) AS r(s, i, h, p, j)
         WHERE EXISTS (SELECT 1 FROM moved))
     SELECT (SELECT count(*) FROM moved)::int AS moved`;
  GROUP_APPEND.set(shape, sql);
  return sql;
}

export async function readHead(db: Queryable, agent: string): Promise<ChainHead | undefined> {
  const rows = await db.query<HeadRow>('SELECT seq, head FROM receipt_chains WHERE agent_id = $1', [agent]);
  return rows[0] ? { seq: Number(rows[0].seq), hash: rows[0].head } : undefined;
}

/** Receipts of `agent` with `from <= seq <= to`, in chain order, at most `limit`. */
export async function readRange(db: Queryable, agent: string, from: number, to: number, limit: number): Promise<SignedReceipt[]> {
  const rows = await db.query<ReceiptRow>(
    `SELECT ${RECEIPT_COLUMNS} FROM receipts WHERE agent_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $4`,
    [agent, from, to, limit],
  );
  return rows.map(fromRow);
}

export async function readById(db: Queryable, id: string): Promise<SignedReceipt | undefined> {
  const rows = await db.query<ReceiptRow>(`SELECT ${RECEIPT_COLUMNS} FROM receipts WHERE id = $1`, [id]);
  return rows[0] ? fromRow(rows[0]) : undefined;
}

function fromRow(r: ReceiptRow): SignedReceipt {
  return { id: r.id, agent: r.agent_id, seq: Number(r.seq), hash: r.hash, prev: r.prev, jws: r.jws };
}
