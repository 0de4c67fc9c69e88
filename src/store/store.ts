/**
 * The store boundary: one small SQL interface over PostgreSQL (`pg.Pool`) and embedded PGlite.
 *
 * Every persistent concern (oidc-provider models, agents, replay cache, vault, receipts) goes
 * through {@link Store}. SQL is written once, in PostgreSQL dialect, and runs on both backends.
 * Values that must agree across Deputy instances live here, never only in process memory.
 *
 * @module
 */

/** Something SQL can be sent to: the store itself or an open transaction. */
export interface Queryable {
  /** Runs one parameterised statement (`$1`, `$2`, …) and returns its rows. */
  query<R extends object = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<R[]>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
}

export interface Store extends Queryable {
  /** `postgres` for a server reached through `DATABASE_URL`, `pglite` for the embedded database. */
  readonly kind: 'postgres' | 'pglite';
  /**
   * Runs `fn` in one transaction: committed when `fn` resolves, rolled back when it throws.
   * Statements inside must go through the `tx` argument.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Throws {@link StoreUnavailable} when the database cannot answer. */
  ping(timeoutMs?: number): Promise<void>;
  /** Releases connections / closes the embedded database. Idempotent. */
  close(): Promise<void>;
}

/** The database cannot be reached or answered with an infrastructure error. */
export class StoreUnavailable extends Error {
  readonly code = 'ERR_STORE_UNAVAILABLE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailable';
  }
}

/** Rejects after `ms` unless `p` settles first. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StoreUnavailable(`${what} timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
