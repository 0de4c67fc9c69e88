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
   * at most `MAX_NAMED` texts and runs the rest unnamed. Results and errors are the same.
   */
  prepare?: boolean;
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
}

/**
 * A boolean SQL expression for another module's statement (a `WHERE` clause of its), with its
 * parameters numbered from `$first` as a {@link StatementPart}'s.
 */
export type StatementCondition = StatementPart;

/** Deputy's database (PGlite or PostgreSQL): queries and transactions (`Queryable`), its `kind`, a liveness `ping`, and `close`. */
export interface Store extends Queryable {
  /** `postgres` for a server reached through `DATABASE_URL`, `pglite` for the embedded database. */
  readonly kind: 'postgres' | 'pglite';
  /**
   * Runs `fn` in one transaction: committed when `fn` resolves, rolled back when it throws.
   * Statements inside must go through the `tx` argument.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Throws {@link StoreUnavailableError} when the database cannot answer. */
  ping(timeoutMs?: number): Promise<void>;
  /** Releases connections / closes the embedded database. Idempotent. */
  close(): Promise<void>;
  /** Pool use (PostgreSQL only; PGlite has no pool), read by the `deputy_store_pool_*` gauges. */
  poolStats?(): { total: number; idle: number; waiting: number };
}

/**
 * The database cannot be reached or answered with an infrastructure error (refused or dropped
 * connection, server shutting down or starting, pool timeout). Every surface answers it with
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
 * SQLSTATE classes and codes that mean "the server is not there for us", not "your statement is
 * wrong" (PostgreSQL Appendix A): 08xxx connection exceptions, 57P01 admin_shutdown, 57P02
 * crash_shutdown, 57P03 cannot_connect_now, 53300 too_many_connections.
 */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);
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
 * Whether a raw driver error (node-postgres, PGlite, a socket) means the database is not there:
 * a refused, lost or timed-out connection, or a server shutting down or starting. Statement
 * errors (syntax, constraint, serialization) are not.
 */
export function isConnectionFailure(err: unknown): boolean {
  if (err instanceof AggregateError) return err.errors.some((x) => isConnectionFailure(x));
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && ((code.length === 5 && code.startsWith('08')) || UNAVAILABLE_SQLSTATES.has(code) || UNAVAILABLE_ERRNOS.has(code))) return true;
  const message = (err as { message?: unknown } | null)?.message;
  return typeof message === 'string' && UNAVAILABLE_MESSAGES.some((re) => re.test(message));
}

/**
 * What a store operation throws: a connection failure becomes {@link StoreUnavailableError}
 * (the driver's error as its `cause`); anything else is returned unchanged.
 */
export function classifyStoreError(err: unknown): unknown {
  if (err instanceof StoreUnavailableError || !isConnectionFailure(err)) return err;
  return new StoreUnavailableError('the database is unreachable', { cause: err });
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
