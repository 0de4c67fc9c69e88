/**
 * Two Deputy instances on one test database, for the receipt chain's cross-instance tests.
 */
import { migrate, type Store } from '../../src/store/index.js';
import { createPGliteStore } from '../../src/store/pglite.js';
import { createPostgresStore } from '../../src/store/postgres.js';
import { afterAll, beforeAll } from 'vitest';
import { createTestDatabase, type TestDatabase } from './database.js';

/**
 * Two Deputy instances' stores on one migrated database: two pools on PostgreSQL (`db.url`), one
 * embedded store twice on PGlite (one process owns its folder). Close each distinct store once.
 */
export async function twoInstanceStores(db: TestDatabase): Promise<[Store, Store]> {
  const open = async (): Promise<Store> => (db.url ? createPostgresStore({ connectionString: db.url, poolSize: 4 }) : createPGliteStore({ dataDir: 'memory://' }));
  const first = await open();
  await migrate(first);
  return db.url ? [first, await open()] : [first, first];
}

/**
 * Opens a test database and {@link twoInstanceStores} on it before the file's tests, and closes
 * each distinct store and drops the database after them. Returns the two stores' accessor (valid
 * once `beforeAll` ran).
 */
export function useTwoInstanceStores(): () => [Store, Store] {
  let db: TestDatabase | undefined;
  let stores: [Store, Store] | undefined;
  beforeAll(async () => {
    db = await createTestDatabase();
    stores = await twoInstanceStores(db);
  }, 60_000);
  afterAll(async () => {
    for (const s of new Set(stores ?? [])) await s.close();
    await db?.drop();
  });
  return () => {
    if (!stores) throw new Error('useTwoInstanceStores: the stores open in beforeAll');
    return stores;
  };
}
