/**
 * Lock-order tests on PostgreSQL (two or more connections racing on rows): a fresh database and
 * a pooled store for the test file, the server's deadlock count (`pg_stat_database.deadlocks`:
 * what a lock-order defect leaves behind even when the victim's retry hides it), and a wait for
 * statements blocked on a lock.
 */
import { afterAll, beforeAll } from 'vitest';
import { migrate, type Store } from '../../src/store/index.js';
import { createPostgresStore } from '../../src/store/postgres.js';
import { createTestDatabase, usingPostgres, type TestDatabase } from './database.js';

/** A migrated PostgreSQL store of `poolSize` connections for this file (nothing without `DATABASE_URL`); read `.store` inside tests. */
export function postgresStoreForFile(poolSize = 4): { readonly store: Store } {
  let db: TestDatabase | undefined;
  let store: Store | undefined;
  beforeAll(async () => {
    if (!usingPostgres) return;
    db = await createTestDatabase();
    store = await createPostgresStore({ connectionString: db.url!, poolSize });
    await migrate(store);
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    await db?.drop();
  });
  return {
    get store(): Store {
      return store!;
    },
  };
}

/** Deadlocks the server has detected in the current database since its statistics were reset. */
export async function deadlocks(store: Store): Promise<number> {
  const rows = await store.query<{ n: number }>('SELECT deadlocks::int AS n FROM pg_stat_database WHERE datname = current_database()');
  return rows[0]!.n;
}

/** Resolves once at least `n` statements of the current database wait for a lock. */
export async function lockWaits(store: Store, n = 1): Promise<void> {
  for (;;) {
    const rows = await store.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
    if (rows[0]!.n >= n) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}
