/**
 * Opens the configured store: PostgreSQL when a URL is given, embedded PGlite otherwise.
 *
 * @module
 */
import type { DeputyConfig } from '../config/schema.js';
import { createPGliteStore } from './pglite.js';
import { createPostgresStore } from './postgres.js';
import type { Store } from './store.js';

export type { Queryable, QueryOptions, StatementCondition, StatementPart, Store } from './store.js';
export { classifyStoreError, findStoreUnavailable, isConnectionFailure, StoreUnavailable, StoreUnavailableError } from './store.js';
export { DataDirLocked, lockDataDir, type DataDirLock, type LockHolder } from './lock.js';
export { migrate } from './migrate.js';

/**
 * Opens the configured store: PostgreSQL when `databaseUrl` is set, embedded PGlite (its data folder
 * or `memory://`) otherwise. Connection failures surface as `StoreUnavailableError` on first use.
 */
export async function openStore(cfg: DeputyConfig['store']): Promise<Store> {
  if (cfg.databaseUrl) return createPostgresStore({ connectionString: cfg.databaseUrl, poolSize: cfg.poolSize });
  return createPGliteStore({ dataDir: cfg.dataDir });
}
