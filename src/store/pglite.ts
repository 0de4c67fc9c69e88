/**
 * {@link Store} over embedded PGlite (PostgreSQL compiled to WebAssembly), the zero-setup default.
 *
 * PGlite is a single connection inside this process: it serialises statements and a transaction
 * holds it exclusively, so one data folder serves exactly one Deputy process — enforced by the
 * folder lock of `./lock.ts`, taken before the database is opened and released after it is
 * closed (a second server or an operator script fails at once with {@link DataDirLocked}).
 * In-memory databases (`memory://`) belong to their process by construction: no lock.
 *
 * @module
 */
import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { lockDataDir, type DataDirLock } from './lock.js';
import { StoreUnavailable, withTimeout, type Queryable, type Store } from './store.js';

export interface PGliteStoreOptions {
  /** A folder path, or `memory://` for a database that keeps nothing. */
  dataDir: string;
}

/**
 * A freshly initialised cluster, dumped once per process. Creating a PGlite database runs
 * `initdb` (seconds); restoring this dump takes a fraction of that, so every further in-memory
 * database (tests, benchmarks, several instances in one process) starts from a copy of it.
 */
let emptyCluster: Promise<File | Blob> | undefined;

function emptyClusterDump(): Promise<File | Blob> {
  emptyCluster ??= (async () => {
    const db = await PGlite.create();
    try {
      return await db.dumpDataDir('none');
    } finally {
      await db.close();
    }
  })();
  emptyCluster.catch(() => {
    emptyCluster = undefined;
  });
  return emptyCluster;
}

async function openPGlite(dataDir: string): Promise<{ db: PGlite; lock?: DataDirLock }> {
  if (!dataDir.startsWith('memory://')) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const lock = lockDataDir(dataDir);
    try {
      return { db: await PGlite.create(dataDir), lock };
    } catch (err) {
      lock.release();
      throw err;
    }
  }
  // An in-memory database keeps nothing across a crash anyway: skip waiting for WAL flushes
  // (about a quarter of each write's cost in PGlite).
  const db = await PGlite.create({ loadDataDir: await emptyClusterDump(), relaxedDurability: true });
  await db.exec('SET synchronous_commit = off');
  return { db };
}

export async function createPGliteStore(options: PGliteStoreOptions): Promise<Store> {
  const { db, lock } = await openPGlite(options.dataDir);

  const query = async <R extends object>(sql: string, params?: readonly unknown[]): Promise<R[]> => {
    if (db.closed) throw new StoreUnavailable('store is closed');
    const res = await db.query<R>(sql, params as unknown[] | undefined);
    return res.rows;
  };

  return {
    kind: 'pglite',
    query,
    async exec(sql: string) {
      if (db.closed) throw new StoreUnavailable('store is closed');
      await db.exec(sql);
    },
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      if (db.closed) throw new StoreUnavailable('store is closed');
      return db.transaction(async (t) =>
        fn({
          async query<R extends object>(sql: string, params?: readonly unknown[]) {
            return (await t.query<R>(sql, params as unknown[] | undefined)).rows;
          },
          async exec(sql: string) {
            await t.exec(sql);
          },
        }),
      );
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
        if (!db.closed) await db.close();
      } finally {
        lock?.release();
      }
    },
  };
}
