/**
 * Runs the store contract (./contract.ts) against the configured store: embedded PGlite by
 * default, PostgreSQL with `DATABASE_URL` (a fresh database for this file, two pools over it as
 * two Deputy instances would have).
 */
import { migrate, openStore, type Store } from '../../src/store/index.js';
import { createTestDatabase, usingPostgres } from '../support/database.js';
import { storeContract } from './contract.js';

storeContract({
  kind: usingPostgres ? 'postgres' : 'pglite',
  async open() {
    const db = await createTestDatabase();
    const open = (): Promise<Store> => openStore({ databaseUrl: db.url, dataDir: 'memory://', poolSize: 6 });
    const first = await open();
    await migrate(first);
    const instances = usingPostgres ? [first, await open()] : [first];
    return {
      instances,
      async close() {
        for (const store of instances) await store.close();
        await db.drop();
      },
    };
  },
});
