/**
 * {@link Store} over a PostgreSQL server through a `pg` connection pool.
 *
 * @module
 */
import pg from 'pg';
import { StoreUnavailable, withTimeout, type Queryable, type Store } from './store.js';

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

  const query = async <R extends object>(sql: string, params?: readonly unknown[]): Promise<R[]> => {
    const res = await pool.query(sql, params as unknown[] | undefined);
    return res.rows as R[];
  };

  return {
    kind: 'postgres',
    query,
    async exec(sql: string) {
      await pool.query(sql);
    },
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      const client = await pool.connect();
      const tx: Queryable = {
        async query<R extends object>(sql: string, params?: readonly unknown[]) {
          return (await client.query(sql, params as unknown[] | undefined)).rows as R[];
        },
        async exec(sql: string) {
          await client.query(sql);
        },
      };
      try {
        await client.query('BEGIN');
        const result = await fn(tx);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      } finally {
        client.release();
      }
    },
    async ping(timeoutMs = 2_000) {
      if (closed) throw new StoreUnavailable('store is closed');
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
