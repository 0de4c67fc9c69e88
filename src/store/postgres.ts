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
import { classifyStoreError, StoreUnavailable, withTimeout, type Queryable, type Store } from './store.js';

export interface PostgresStoreOptions {
  connectionString: string;
  poolSize?: number;
}

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

  const query = async <R extends object>(sql: string, params?: readonly unknown[]): Promise<R[]> => {
    assertOpen();
    try {
      const res = await pool.query(sql, params as unknown[] | undefined);
      return res.rows as R[];
    } catch (err) {
      throw classifyStoreError(err);
    }
  };

  return {
    kind: 'postgres',
    query,
    async exec(sql: string) {
      assertOpen();
      await pool.query(sql).catch((err: unknown) => {
        throw classifyStoreError(err);
      });
    },
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      assertOpen();
      const client = await pool.connect().catch((err: unknown) => {
        throw classifyStoreError(err);
      });
      const tx: Queryable = {
        async query<R extends object>(sql: string, params?: readonly unknown[]) {
          try {
            return (await client.query(sql, params as unknown[] | undefined)).rows as R[];
          } catch (err) {
            throw classifyStoreError(err);
          }
        },
        async exec(sql: string) {
          await client.query(sql).catch((err: unknown) => {
            throw classifyStoreError(err);
          });
        },
      };
      // A connection whose ROLLBACK failed is in an unknown state: destroy it rather than pool it.
      let broken = false;
      try {
        await client.query('BEGIN');
        const result = await fn(tx);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        broken = await client.query('ROLLBACK').then(
          () => false,
          () => true,
        );
        throw classifyStoreError(err);
      } finally {
        client.release(broken);
      }
    },
    async ping(timeoutMs = 2_000) {
      assertOpen();
      try {
        await withTimeout(pool.query('SELECT 1'), timeoutMs, 'store ping');
      } catch (err) {
        throw err instanceof StoreUnavailable ? err : new StoreUnavailable('database unreachable', { cause: err });
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await pool.end();
    },
  };
}
