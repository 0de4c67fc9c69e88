/**
 * {@link Store} over a PostgreSQL server through a `pg` connection pool.
 *
 * Every operation reports a refused, lost or timed-out connection as `StoreUnavailableError`
 * ({@link classifyStoreError}), so callers and the HTTP layer see one typed error (503) rather
 * than a driver error (500).
 *
 * @module
 */
import pg from 'pg';
import { mustPrepareAgain, StatementNames } from './prepared.js';
import { classifyStoreError, retryConflicts, StoreUnavailable, withTimeout, type Queryable, type QueryOptions, type Store, type TransactionOptions } from './store.js';

export interface PostgresStoreOptions {
  connectionString: string;
  /** Connections in the pool (default 10). */
  poolSize?: number;
}

/**
 * A {@link Store} over a `pg` pool: queries on any pooled connection, each transaction on one
 * connection of its own (BEGIN … COMMIT, ROLLBACK on any error).
 *
 * @throws StoreUnavailableError (from every operation) for a refused, lost or timed-out
 *   connection, and StoreUnavailable after {@link Store.close}.
 */
export function createPostgresStore(options: PostgresStoreOptions): Store {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client losing its connection must not crash the process; the next query reports it.
  pool.on('error', () => {});
  let closed = false;
  // Like the PGlite store: use after close() is StoreUnavailable, not pg's "Cannot use a pool after calling end".
  const assertOpen = () => {
    if (closed) throw new StoreUnavailable('store is closed');
  };
  const names = new StatementNames();
  const onPool = queryable(pool, names);
  return {
    kind: 'postgres',
    async query<R extends object>(sql: string, params?: readonly unknown[], opts?: QueryOptions): Promise<R[]> {
      assertOpen();
      return onPool.query<R>(sql, params, opts);
    },
    async exec(sql: string) {
      assertOpen();
      await onPool.exec(sql);
    },
    async transaction<T>(fn: (tx: Queryable) => Promise<T>, options?: TransactionOptions): Promise<T> {
      assertOpen();
      if (!options?.retryConflicts) return inTransaction(pool, names, fn);
      return retryConflicts(() => {
        assertOpen();
        return inTransaction(pool, names, fn);
      });
    },
    async ping(timeoutMs = 2_000) {
      assertOpen();
      await ping(pool, timeoutMs);
    },
    async close() {
      if (closed) return;
      closed = true;
      await pool.end();
    },
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
  };
}

/**
 * {@link Queryable} over a pool or one client, with driver errors classified. A statement to
 * prepare goes as a named query config: node-postgres parses it on each connection the first
 * time that connection runs it, and only binds and executes it after that.
 */
function queryable(db: pg.Pool | pg.PoolClient, names: StatementNames, assertOpen: () => void = () => {}): Queryable {
  const inTransaction = !(db instanceof pg.Pool);
  const run = async <R>(sql: string, values: unknown[] | undefined, name: string | undefined): Promise<R[]> =>
    (await (name === undefined ? db.query(sql, values) : db.query({ name, text: sql, values }))).rows as R[];
  return {
    async query<R extends object>(sql: string, params?: readonly unknown[], opts?: QueryOptions): Promise<R[]> {
      assertOpen();
      const name = opts?.prepare ? names.nameOf(sql, opts.prepare === 'shape') : undefined;
      const values = params as unknown[] | undefined;
      try {
        return await run<R>(sql, values, name).catch((err: unknown) => {
          if (name === undefined || !mustPrepareAgain(err)) throw err;
          // Prepared before another instance changed the schema, or lost by the session (a pooler's
          // DISCARD ALL) while pg still counts it as prepared: name it afresh (./prepared.ts).
          names.invalidate();
          if (inTransaction) throw err;
          return run<R>(sql, values, names.nameOf(sql, opts?.prepare === 'shape'));
        });
      } catch (err) {
        throw classifyStoreError(err);
      }
    },
    async exec(sql: string) {
      assertOpen();
      await db.query(sql).catch((err: unknown) => {
        throw classifyStoreError(err);
      });
      names.invalidate();
    },
  };
}

/** Runs `fn` in a transaction on a connection of its own, released (or destroyed) afterwards. */
async function inTransaction<T>(pool: pg.Pool, names: StatementNames, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  const client = await pool.connect().catch((err: unknown) => {
    throw classifyStoreError(err);
  });
  // A connection whose ROLLBACK failed is in an unknown state: destroy it rather than pool it.
  let broken = false;
  // Once released, the connection is the pool's: a statement through a `tx` kept past the
  // transaction would run outside it, or inside another caller's transaction (as PGlite refuses).
  let ended = false;
  const assertOpen = () => {
    if (ended) throw new Error('Transaction is closed');
  };
  try {
    await client.query('BEGIN');
    const result = await fn(queryable(client, names, assertOpen));
    await client.query('COMMIT');
    return result;
  } catch (err) {
    broken = await client.query('ROLLBACK').then(
      () => false,
      () => true,
    );
    throw classifyStoreError(err);
  } finally {
    ended = true;
    client.release(broken);
  }
}

/** `SELECT 1` within `timeoutMs`; anything else is StoreUnavailable. */
async function ping(pool: pg.Pool, timeoutMs: number): Promise<void> {
  try {
    await withTimeout(pool.query('SELECT 1'), timeoutMs, 'store ping');
  } catch (err) {
    throw err instanceof StoreUnavailable ? err : new StoreUnavailable('database unreachable', { cause: err });
  }
}
