/**
 * The store boundary: one small SQL interface over PostgreSQL (`pg.Pool`) and embedded PGlite.
 *
 * Every persistent concern (oidc-provider models, agents, replay cache, vault, receipts) goes
 * through {@link Store}. SQL is written once, in PostgreSQL dialect, and runs on both backends.
 * Values that must agree across Deputy instances live here, never only in process memory.
 *
 * @module
 */

/** How {@link Queryable.query} runs one statement. */
export interface QueryOptions {
  /**
   * Run it as a named (prepared) statement: parsed once per connection, then only bound and
   * executed, and planned once PostgreSQL settles on a generic plan (./prepared.ts). For the hot
   * statements of the enforcement path, whose text is fixed or takes few shapes; the store names
   * at most `MAX_NAMED` texts and runs the rest unnamed. `'shape'` for a text that varies with the
   * input (a group's make-up): such texts take at most `MAX_SHAPES_NAMED` of the names, so they
   * never leave fixed ones unnamed. Results and errors are the same.
   */
  prepare?: boolean | 'shape';
}

/** Something SQL can be sent to: the store itself or an open transaction. */
export interface Queryable {
  /** Runs one parameterised statement (`$1`, `$2`, …) and returns its rows. */
  query<R extends object = Record<string, unknown>>(sql: string, params?: readonly unknown[], options?: QueryOptions): Promise<R[]>;
  /** Runs a script of several statements without parameters (migrations); named statements are prepared afresh afterwards. */
  exec(sql: string): Promise<void>;
}

/**
 * One data-modifying statement that another module runs as a member (`WITH part AS (…)`) of its
 * own statement, so that both writes cost one round trip. The owner of the table writes the SQL;
 * the caller only places it.
 */
export interface StatementPart {
  /** The statement, its parameters numbered from `$first`. */
  sql(first: number): string;
  /** The values of those parameters, in order. */
  params: readonly unknown[];
  /**
   * The same one-row write as a row of a set, when the owner offers it: the caller may write
   * several parts of one kind with one statement over `unnest` of their columns, so its text
   * depends on which kinds it holds, not on how many of each (src/audit/chain.ts `appendIfHead`).
   */
  row?: PartRow;
}

/**
 * A {@link StatementPart}'s write as one row of `rows`: `unnest($a::type0[], $b::type1[], …) AS
 * v(c0, c1, …)`, one array per column, its columns read as `v.c0`, `v.c1`, … The statement writes
 * one row per row of `rows`, or fewer when one is refused (as the part alone writes none).
 */
export interface PartRow {
  /** Parts of one kind have the same `types` and `sql`: they may be written together. */
  kind: string;
  /** Each column's type, as `unnest($n::type[])` takes it. */
  types: readonly string[];
  /** This part's value of each column (computed when asked: most parts are written alone). */
  values(): unknown[];
  /** The write of every row of `rows`. */
  sql(rows: string): string;
}

/**
 * A boolean SQL expression for another module's statement (a `WHERE` clause of its), with its
 * parameters numbered from `$first` as a {@link StatementPart}'s.
 */
export interface StatementCondition extends StatementPart {
  /** The same condition on one value given as a column (a {@link PartRow}'s): `sql(expr)` with `expr` that column, of `type`. */
  column?: { type: string; value: unknown; sql(expr: string): string };
}

/** How {@link Store.transaction} runs. */
export interface TransactionOptions {
  /** Run the whole transaction again when the database aborts it for a conflict ({@link retryConflicts}). */
  retryConflicts?: boolean;
}

/** Deputy's database (PGlite or PostgreSQL): queries and transactions (`Queryable`), its `kind`, a liveness `ping`, and `close`. */
export interface Store extends Queryable {
  /** `postgres` for a server reached through `DATABASE_URL`, `pglite` for the embedded database. */
  readonly kind: 'postgres' | 'pglite';
  /**
   * Runs `fn` in one transaction: committed when `fn` resolves, rolled back when it throws.
   * Statements inside must go through the `tx` argument. With `retryConflicts`, a transaction the
   * database aborted for a conflict with a concurrent one (40001, 40P01: {@link isTransactionConflict})
   * is run again, `fn` included, a bounded number of times ({@link retryConflicts}): only for an
   * `fn` whose every effect is on `tx` (rolled back) or harmless to repeat — never one that calls
   * another service (an upstream token refresh) or hands something out before the commit.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /** Throws {@link StoreUnavailableError} when the database cannot answer. */
  ping(timeoutMs?: number): Promise<void>;
  /** Releases connections / closes the embedded database. Idempotent. */
  close(): Promise<void>;
  /** Pool use (PostgreSQL only; PGlite has no pool), read by the `deputy_store_pool_*` gauges. */
  poolStats?(): { total: number; idle: number; waiting: number };
  /**
   * Why this store can never answer again in this process, or undefined while it can (only the
   * worker-thread PGlite store: its worker died). Unlike an outage (`ping` fails until the database
   * is back) nothing brings it back but a restart, so liveness (`/healthz`) fails with it.
   */
  lost?(): StoreUnavailableError | undefined;
}

/**
 * The database cannot be reached or cannot serve now (refused or dropped connection, server
 * shutting down or starting, pool timeout, a read-only standby, resources or time exhausted:
 * {@link unavailableReason}). Every surface answers it with
 * `503 temporarily_unavailable` and `Retry-After` (src/http/errors.ts): the request may succeed
 * once the store is back, and nothing was decided about it.
 */
export class StoreUnavailableError extends Error {
  readonly code = 'ERR_STORE_UNAVAILABLE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

/** Former name of {@link StoreUnavailableError}, kept for existing imports. */
export const StoreUnavailable = StoreUnavailableError;
export type StoreUnavailable = StoreUnavailableError;

/**
 * SQLSTATEs (PostgreSQL Appendix A) that mean "the database cannot serve this now; the same
 * statement may succeed later", by class, with what an operator is told. The rule: a condition of
 * the server or its resources — where it runs, what it may write, how much it may hold, how long
 * it may wait, which concurrent transaction it lost to — is the store's (503
 * `temporarily_unavailable` with `Retry-After`); a condition of the statement or of the data —
 * syntax, types, constraints, privileges, a transaction misused (the rest of 25 and 40), internal
 * errors (XX) — is Deputy's bug or a database beyond retrying, and stays a 500.
 *
 * - 08 connection exception: the connection could not be made or was lost.
 * - 25006 read_only_sql_transaction: a write on a read-only server — after a failover, a
 *   connection string that reaches a standby; writes succeed again once it reaches the primary.
 * - 40001 serialization_failure, 40P01 deadlock_detected: the server aborted the transaction
 *   because a concurrent one conflicted with it (an isolation level above READ COMMITTED, set
 *   by the operator's `default_transaction_isolation`; two transactions waiting on each other's
 *   locks). Nothing of it was committed, and the same transaction run again may succeed: the
 *   callers whose transaction is safe to re-run do so ({@link retryConflicts}); the others answer
 *   503. Not the rest of class 40: 40002 (a deferred constraint) is the data's, and 40003
 *   (statement_completion_unknown) may have committed.
 * - 53 insufficient resources: disk full (53100), out of memory (53200), too many connections
 *   (53300), a configuration limit (53400).
 * - 55P03 lock_not_available: `lock_timeout` passed waiting for a lock another session holds.
 * - 57 operator intervention: `statement_timeout` (57014 query_canceled), a server shutting down,
 *   crashed or starting (57P01–57P03), the database dropped (57P04), an idle session ended (57P05).
 * - 58000 system_error, 58030 io_error: the server's operating system failed it.
 */
const UNAVAILABLE_SQLSTATES: ReadonlyArray<[prefix: string, reason: string]> = [
  ['08', 'the database is unreachable'],
  ['25006', 'the database is read-only (a standby?)'],
  ['40001', 'the database aborted the transaction: a concurrent one conflicted with it (serialization_failure)'],
  ['40P01', 'the database aborted the transaction: it deadlocked with a concurrent one (deadlock_detected)'],
  ['53100', 'the database is out of disk space'],
  ['53200', 'the database is out of memory'],
  ['53300', 'the database refuses more connections (too_many_connections)'],
  ['53', 'the database is out of resources'],
  ['55P03', 'the database did not grant a lock in time (lock_timeout)'],
  ['57014', 'the database canceled the statement (statement_timeout)'],
  ['57', 'the database is unreachable'],
  ['58000', 'the database failed (system error)'],
  ['58030', 'the database failed (I/O error)'],
];
/** Node socket errors of a connection that could not be made or was lost. */
const UNAVAILABLE_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED']);
/** node-postgres reports a lost or timed-out connection with these messages and no code. */
const UNAVAILABLE_MESSAGES = [
  /^Connection terminated/,
  /timeout exceeded when trying to connect/,
  /Client has encountered a connection error and is not queryable/,
  /Client was closed and is not queryable/,
  /Connection ended unexpectedly/,
];

/**
 * Why a raw driver error (node-postgres, PGlite, a socket) means the database cannot serve now
 * ({@link UNAVAILABLE_SQLSTATES}: a lost connection, a read-only server, exhausted resources, a
 * timeout), as told to an operator; `undefined` for a statement's or Deputy's own error (syntax,
 * constraint, serialization), which stays what it is.
 */
export function unavailableReason(err: unknown): string | undefined {
  if (err instanceof AggregateError) return err.errors.map((x) => unavailableReason(x)).find((r) => r !== undefined);
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    if (code.length === 5) {
      const hit = UNAVAILABLE_SQLSTATES.find(([prefix]) => code.startsWith(prefix));
      if (hit) return hit[1];
    }
    if (UNAVAILABLE_ERRNOS.has(code)) return 'the database is unreachable';
  }
  const message = (err as { message?: unknown } | null)?.message;
  return typeof message === 'string' && UNAVAILABLE_MESSAGES.some((re) => re.test(message)) ? 'the database is unreachable' : undefined;
}

/** Whether a raw driver error means the database cannot serve now ({@link unavailableReason}). */
export function isConnectionFailure(err: unknown): boolean {
  return unavailableReason(err) !== undefined;
}

/**
 * What a store operation throws: an error meaning the database cannot serve now becomes
 * {@link StoreUnavailableError} naming why ({@link unavailableReason}; the driver's error, with its
 * SQLSTATE, as its `cause`); anything else is returned unchanged.
 */
export function classifyStoreError(err: unknown): unknown {
  if (err instanceof StoreUnavailableError) return err;
  const reason = unavailableReason(err);
  return reason === undefined ? err : new StoreUnavailableError(reason, { cause: err });
}

/**
 * The {@link StoreUnavailableError} in `err` or its `cause` chain (services may wrap it), if any.
 * Only the store classifies driver errors: an upstream API's ECONNRESET is not the store's.
 */
export function findStoreUnavailable(err: unknown): StoreUnavailableError | undefined {
  for (let e = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth += 1) {
    if (e instanceof StoreUnavailableError) return e;
  }
  return undefined;
}

/** SQLSTATEs of a transaction the server aborted for a conflict with a concurrent one ({@link UNAVAILABLE_SQLSTATES}). */
const CONFLICT_SQLSTATES = new Set(['40001', '40P01']);

/**
 * The SQLSTATE (`40001` serialization_failure, `40P01` deadlock_detected) when `err` — the
 * driver's error, or a {@link StoreUnavailableError} (or an error wrapping one) whose cause it is —
 * says the server aborted the transaction for a conflict with a concurrent one; else undefined.
 * Such a transaction committed nothing and may be run again.
 */
export function transactionConflict(err: unknown): '40001' | '40P01' | undefined {
  for (let e = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth += 1) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && CONFLICT_SQLSTATES.has(code)) return code as '40001' | '40P01';
  }
  return undefined;
}

/** Whether `err` is a transaction the server aborted for a conflict ({@link transactionConflict}). */
export function isTransactionConflict(err: unknown): boolean {
  return transactionConflict(err) !== undefined;
}

/** How many times {@link retryConflicts} runs a transaction in all (the first run included). */
export const CONFLICT_ATTEMPTS = 3;

/**
 * The pause before run `attempt` + 1 (ms): random in [attempt × 5, attempt × 20), so that two
 * transactions that conflicted do not collide again in step (a deadlock's loser retries while
 * the winner still holds its locks otherwise). Short: the caller's request waits through it.
 */
export function conflictBackoffMs(attempt: number, random: () => number = Math.random): number {
  return attempt * (5 + Math.floor(random() * 15));
}

/**
 * Runs `attempt` (one whole transaction) and, while it rejects with a transaction conflict
 * ({@link isTransactionConflict}), again — at most {@link CONFLICT_ATTEMPTS} runs, with
 * {@link conflictBackoffMs} between them. Any other error, and the last conflict (a
 * {@link StoreUnavailableError}: 503 `temporarily_unavailable`), is thrown as it came. A run that
 * succeeds the first time costs one promise more than `attempt()` alone (a `.catch`, not an
 * `async` frame: the budget ledger's transactions are on every gateway call).
 */
export function retryConflicts<T>(attempt: () => Promise<T>): Promise<T> {
  const again = async (err: unknown, run: number): Promise<T> => {
    if (run >= CONFLICT_ATTEMPTS || !isTransactionConflict(err)) throw err;
    await new Promise((resolve) => setTimeout(resolve, conflictBackoffMs(run)));
    return attempt().catch((next: unknown) => again(next, run + 1));
  };
  return attempt().catch((err: unknown) => again(err, 1));
}

/** Rejects after `ms` unless `p` settles first. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StoreUnavailableError(`${what} timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
