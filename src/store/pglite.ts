/**
 * {@link Store} over embedded PGlite (PostgreSQL compiled to WebAssembly), the zero-setup default.
 *
 * PGlite is a single connection inside this process: it serialises statements and a transaction
 * holds it exclusively, so one data folder serves exactly one Deputy process — enforced by the
 * folder lock of `./lock.ts`, taken before the database is opened and released after it is
 * closed (a second server or an operator script fails at once with {@link DataDirLocked}).
 * In-memory databases (`memory://`) belong to their process by construction: no lock.
 * This store runs PGlite in the calling thread; ./pglite-thread.ts runs this same store in a
 * worker thread (`store.pglite.thread: worker`).
 *
 * @module
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import { DEFAULT_CHECKPOINT_POLICY, startCheckpointer, type CheckpointClock, type CheckpointEvents, type Checkpointer, type CheckpointPolicy, type CheckpointTarget } from './checkpointer.js';
import { lockDataDir, type DataDirLock } from './lock.js';
import { mustPrepareAgain, runNamedOnPGlite, StatementNames, type PreparedShape } from './prepared.js';
import { classifyStoreError, retryConflicts, StoreUnavailable, withTimeout, type Queryable, type QueryOptions, type Store, type TransactionOptions } from './store.js';

export interface PGliteStoreOptions {
  /** A folder path, or `memory://` for a database that keeps nothing. */
  dataDir: string;
  /** When the store checkpoints (./checkpointer.ts); {@link DEFAULT_CHECKPOINT_POLICY} when absent. */
  checkpoint?: CheckpointPolicy;
  /** Checkpoints and their failures, for metrics and the log. */
  checkpointEvents?: CheckpointEvents;
  /** Tests only: the checkpointer's clock and timer. */
  checkpointClock?: CheckpointClock;
  /**
   * Whether this call locks the data folder (./lock.ts); default true. False only where the
   * caller holds the lock already: the worker-thread store (./pglite-thread.ts) locks it on the
   * main thread, which outlives the worker.
   */
  lockDataDir?: boolean;
}

/**
 * A freshly initialised cluster, dumped once per process that opens several in-memory
 * databases. Creating a PGlite database runs `initdb` (seconds); restoring this dump takes a
 * fraction of that, so every in-memory database after the second (tests, benchmarks, several
 * instances in one process) starts from a copy of it. The first in-memory database of a process
 * is `initdb`'s own and is not dumped: most processes (a server on `memory://`) open exactly one,
 * and the dump (~40 MB, ~110 MB more while it is made) would only sit in memory. The second is
 * `initdb`'s own too, dumped before first use for the ones after it.
 */
let emptyCluster: Promise<File | Blob> | undefined;
/** In-memory databases this process made with `initdb` (the first is never dumped). */
let initdbRuns = 0;
/** Set by {@link provideEmptyCluster}: a dump handed in, so no database here needs `initdb`. */
let providedCluster: File | Blob | undefined;

/**
 * Hands this process a dump of a freshly initialised cluster (`dumpDataDir('none')` of a new
 * `PGlite.create()`, same PGlite version) made elsewhere — the test suite makes one per run — so
 * every database opened here afterwards, in memory or in a new data folder, starts from a copy of
 * it instead of running `initdb` (seconds each). The resulting databases are the same as ones
 * `initdb` would have made; an existing data folder is opened as it is.
 *
 * @param dump the tarball (uncompressed) of an empty cluster's data directory
 */
export function provideEmptyCluster(dump: File | Blob): void {
  providedCluster = dump;
  emptyCluster = Promise.resolve(dump);
}

/** The dump handed to {@link provideEmptyCluster}, if any: the worker-thread store hands it on to its worker. */
export function providedEmptyCluster(): File | Blob | undefined {
  return providedCluster;
}

/**
 * An empty in-memory database: restored from the dump when there is one; otherwise made by
 * `initdb` — from the second on, its pristine state dumped for the next ones. Concurrent calls
 * after the first share that one dump (the dump promise is set synchronously).
 */
async function createInMemory(): Promise<PGlite> {
  // An in-memory database keeps nothing across a crash anyway: skip waiting for WAL flushes
  // (about a quarter of each write's cost in PGlite).
  if (emptyCluster) return PGlite.create({ loadDataDir: await emptyCluster, relaxedDurability: true });
  if (initdbRuns++ === 0) return PGlite.create({ relaxedDurability: true });
  const first = PGlite.create({ relaxedDurability: true });
  const dump = first.then((db) => db.dumpDataDir('none'));
  emptyCluster = dump;
  dump.catch(() => {
    if (emptyCluster === dump) emptyCluster = undefined;
  });
  try {
    await dump;
    return await first;
  } catch (err) {
    await first.then((db) => db.close()).catch(() => {});
    throw err;
  }
}

async function openPGlite(dataDir: string, locking = true): Promise<{ db: PGlite; lock?: DataDirLock }> {
  if (!dataDir.startsWith('memory://')) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const lock = locking ? lockDataDir(dataDir) : { path: '', release() {} };
    try {
      // A new folder starts from the provided empty cluster when there is one (PGlite would run
      // initdb there otherwise: it does so exactly when PG_VERSION is absent).
      const fresh = providedCluster && !existsSync(join(dataDir, 'PG_VERSION'));
      return { db: await (fresh ? PGlite.create({ dataDir, loadDataDir: providedCluster }) : PGlite.create(dataDir)), lock };
    } catch (err) {
      lock.release();
      throw err;
    }
  }
  const db = await createInMemory();
  await db.exec('SET synchronous_commit = off');
  return { db };
}

/**
 * Named statements on one PGlite session (./prepared.ts): their names, the parameter types and row
 * shape PGlite described when each was prepared, and running one outside or inside a transaction.
 */
function pgliteStatements(db: PGlite) {
  const names = new StatementNames();
  // Parameter types and row shape of the statements prepared in this session (PGlite is one session).
  const described = new Map<string, PreparedShape>();
  const schemaChanged = (): void => {
    names.invalidate();
    described.clear();
  };
  /** A named statement under PGlite's query mutex (the caller holds the transaction mutex, or is in a transaction). */
  const named = <R>(name: string, sql: string, params: readonly unknown[]) => db._runExclusiveQuery(() => runNamedOnPGlite<R>(db, described, name, sql, params));

  /** Outside a transaction: as PGlite's `query`, one statement at a time, never inside another caller's transaction, the data folder synced after it (a no-op in memory). */
  const run = <R>(name: string, sql: string, params: readonly unknown[]): Promise<R[]> =>
    db._runExclusiveTransaction(async () => {
      const rows = await named<R>(name, sql, params).catch((err: unknown) => {
        if (!mustPrepareAgain(err)) throw err;
        // The schema changed by a statement other than `exec`, or the session lost the statement: name it afresh (./prepared.ts).
        schemaChanged();
        return named<R>(names.nameOf(sql) ?? name, sql, params);
      });
      await db.syncToFs();
      return rows;
    });

  /** Inside the transaction `t`: as PGlite's own `t.query`, refused once `t` has ended. */
  const runIn = <R>(t: Transaction, name: string, sql: string, params: readonly unknown[]): Promise<R[]> => {
    // Holding only the query mutex, a statement after the end would run outside the transaction, or inside another caller's.
    if (t.closed) return Promise.reject(new Error('Transaction is closed'));
    return named<R>(name, sql, params).catch((err: unknown) => {
      if (mustPrepareAgain(err)) schemaChanged();
      throw err;
    });
  };
  return { names, schemaChanged, run, runIn };
}

/** The {@link Queryable} a PGlite transaction hands its callback. */
function transactionQueryable(t: Transaction, statements: ReturnType<typeof pgliteStatements>): Queryable {
  return {
    async query<R extends object>(sql: string, params?: readonly unknown[], opts?: QueryOptions) {
      const name = opts?.prepare ? statements.names.nameOf(sql, opts.prepare === 'shape') : undefined;
      if (name === undefined) return (await t.query<R>(sql, params as unknown[] | undefined)).rows;
      return statements.runIn<R>(t, name, sql, params ?? []);
    },
    async exec(sql: string) {
      await t.exec(sql);
      statements.schemaChanged();
    },
  };
}

/** The WAL position and `CHECKPOINT` on a PGlite session, each under its transaction mutex (never inside a caller's transaction). */
function checkpointTarget(db: PGlite): CheckpointTarget {
  return {
    async walPosition() {
      const { rows } = await db.query<{ lsn: string; since: string }>(
        'SELECT pg_current_wal_insert_lsn()::text AS lsn, (pg_current_wal_insert_lsn() - (pg_control_checkpoint()).redo_lsn)::text AS since',
      );
      return { lsn: rows[0]!.lsn, sinceRedo: Number(rows[0]!.since) };
    },
    async checkpoint() {
      await db.exec('CHECKPOINT');
    },
  };
}

/** Starts the store's checkpointer; closes the database (and releases the folder) if it cannot start. */
async function checkpointerFor(db: PGlite, lock: DataDirLock | undefined, options: PGliteStoreOptions): Promise<Checkpointer> {
  try {
    return await startCheckpointer(checkpointTarget(db), options.checkpoint ?? DEFAULT_CHECKPOINT_POLICY, options.checkpointEvents, options.checkpointClock);
  } catch (err) {
    await db.close().catch(() => {});
    lock?.release();
    throw err;
  }
}

/**
 * Opens embedded PGlite in `options.dataDir` (locked for this process) or in memory, and starts
 * its checkpointer (./checkpointer.ts), which `close` stops before the database closes.
 *
 * @throws DataDirLocked when another process holds the data folder
 */
export async function createPGliteStore(options: PGliteStoreOptions): Promise<Store> {
  const { db, lock } = await openPGlite(options.dataDir, options.lockDataDir ?? true);
  const statements = pgliteStatements(db);
  const checkpointer = await checkpointerFor(db, lock, options);

  const query = async <R extends object>(sql: string, params?: readonly unknown[], opts?: QueryOptions): Promise<R[]> => {
    if (db.closed) throw new StoreUnavailable('store is closed');
    const name = opts?.prepare ? statements.names.nameOf(sql, opts.prepare === 'shape') : undefined;
    // A full disk (53100) or exhausted memory (53200) is the store's, as on PostgreSQL (./store.ts).
    try {
      if (name === undefined) return (await db.query<R>(sql, params as unknown[] | undefined)).rows;
      return await statements.run<R>(name, sql, params ?? []);
    } catch (err) {
      throw classifyStoreError(err);
    }
  };

  return {
    kind: 'pglite',
    query,
    async exec(sql: string) {
      if (db.closed) throw new StoreUnavailable('store is closed');
      await db.exec(sql).catch((err: unknown) => {
        throw classifyStoreError(err);
      });
      statements.schemaChanged();
    },
    async transaction<T>(fn: (tx: Queryable) => Promise<T>, options?: TransactionOptions): Promise<T> {
      const once = (): Promise<T> => {
        if (db.closed) throw new StoreUnavailable('store is closed');
        return db.transaction(async (t) => fn(transactionQueryable(t, statements))).catch((err: unknown) => {
          throw classifyStoreError(err);
        });
      };
      // One session: a conflict here is a statement's own (a trigger, a function raising it), still worth the bounded retry.
      return options?.retryConflicts ? retryConflicts(once) : once();
    },
    async ping(timeoutMs = 2_000) {
      if (db.closed) throw new StoreUnavailable('store is closed');
      try {
        await withTimeout(db.query('SELECT 1'), timeoutMs, 'store ping');
      } catch (err) {
        throw err instanceof StoreUnavailable ? err : new StoreUnavailable('embedded database failed', { cause: err });
      }
    },
    async close() {
      try {
        await checkpointer.stop();
        if (!db.closed) await db.close();
      } finally {
        lock?.release();
      }
    },
  };
}
