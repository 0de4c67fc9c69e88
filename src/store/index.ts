/**
 * Opens the configured store: PostgreSQL when a URL is given, embedded PGlite otherwise.
 *
 * @module
 */
import type { DeputyConfig } from '../config/schema.js';
import type { CheckpointEvents } from './checkpointer.js';
import { createPGliteStore } from './pglite.js';
import { createPGliteWorkerStore } from './pglite-thread.js';
import { createPostgresStore } from './postgres.js';
import type { Store, StoreUnavailableError } from './store.js';

export type { Queryable, QueryOptions, PartRow, StatementCondition, StatementPart, Store, TransactionOptions } from './store.js';
export { classifyStoreError, CONFLICT_ATTEMPTS, findStoreUnavailable, isConnectionFailure, isTransactionConflict, retryConflicts, StoreUnavailable, StoreUnavailableError, transactionConflict, unavailableReason } from './store.js';
export { DataDirLocked, lockDataDir, type DataDirLock, type LockHolder } from './lock.js';
export { migrate } from './migrate.js';
export type { CheckpointEvents, CheckpointReason } from './checkpointer.js';

/** What {@link openStore} reports: PGlite's checkpoints, and a store lost for good (the worker-thread store's worker died: `Store.lost`). */
export interface StoreEvents extends CheckpointEvents {
  lost?(err: StoreUnavailableError): void;
}

/** The store settings ({@link DeputyConfig} `store`); `checkpoint` defaults as the config schema's. */
export type StoreSettings = Omit<DeputyConfig['store'], 'checkpoint' | 'pglite'> & { checkpoint?: DeputyConfig['store']['checkpoint']; pglite?: DeputyConfig['store']['pglite'] };

/**
 * Opens the configured store: PostgreSQL when `databaseUrl` is set, embedded PGlite (its data folder
 * or `memory://`) otherwise. Connection failures surface as `StoreUnavailableError` on first use.
 * PGlite checkpoints by `cfg.checkpoint` (./checkpointer.ts) and reports each checkpoint and
 * failure to `events`; it runs on this thread, or in a worker thread with `cfg.pglite.thread:
 * 'worker'` (./pglite-thread.ts), whose death is reported once to `events.lost`.
 */
export async function openStore(cfg: StoreSettings, events?: StoreEvents): Promise<Store> {
  if (cfg.databaseUrl) return createPostgresStore({ connectionString: cfg.databaseUrl, poolSize: cfg.poolSize });
  const checkpoint = cfg.checkpoint && { maxWalBytes: cfg.checkpoint.maxWalMegabytes * 1024 * 1024, timeoutMs: cfg.checkpoint.timeoutSeconds * 1000, intervalMs: 1_000 };
  const options = { dataDir: cfg.dataDir, ...(checkpoint ? { checkpoint } : {}), ...(events ? { checkpointEvents: events } : {}) };
  return cfg.pglite?.thread === 'worker' ? createPGliteWorkerStore({ ...options, ...(events?.lost ? { onLost: events.lost } : {}) }) : createPGliteStore(options);
}
