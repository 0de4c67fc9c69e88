/**
 * {@link Store} over embedded PGlite running in a `node:worker_threads` worker
 * (`store.pglite.thread: worker`), so that PostgreSQL's work — every statement, and the
 * checkpoints — runs on another core than HTTP, JOSE and Cedar (issue 16, twelfth round).
 *
 * The worker (./pglite-worker.ts) opens the database with ./pglite.ts exactly as the main-thread
 * store does; this side only carries requests and replies (./pglite-wire.ts). What stays here:
 *
 * - the data-folder lock (./lock.ts), taken before the worker starts and released after it has
 *   exited, so a second process is refused as with the main-thread store;
 * - error classification: the worker sends an error's message and driver fields (SQLSTATE…),
 *   rebuilt here and classified by {@link classifyStoreError}, so callers see what they see on
 *   the main-thread store;
 * - fail closed: when the worker dies or the store closes, every pending and later call rejects
 *   with {@link StoreUnavailableError} (503), none waits forever;
 * - `retryConflicts`, as the main-thread store (a conflict on one session is a statement's own).
 *
 * @module
 */
import { mkdirSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { CheckpointEvents, CheckpointPolicy } from './checkpointer.js';
import { lockDataDir, type DataDirLock } from './lock.js';
import { providedEmptyCluster } from './pglite.js';
import { driverError, type Reply, type Request, type WireError, type WorkerStart, wireParams } from './pglite-wire.js';
import { classifyStoreError, retryConflicts, StoreUnavailableError, withTimeout, type Queryable, type QueryOptions, type Store, type TransactionOptions } from './store.js';

/** Options of {@link createPGliteWorkerStore}: those of the main-thread store that cross to a worker. */
export interface PGliteWorkerStoreOptions {
  /** A folder path, or `memory://` for a database that keeps nothing. */
  dataDir: string;
  /** When the worker's store checkpoints (./checkpointer.ts); its default when absent. */
  checkpoint?: CheckpointPolicy;
  /** Checkpoints and their failures, reported on this thread (metrics, the log). */
  checkpointEvents?: CheckpointEvents;
  /** Tests only: the worker once it serves (to stop it as a crash would). */
  onWorker?: (worker: Worker) => void;
  /**
   * The worker died while the store was open (not closed by `close`): called once, on this thread,
   * with the store's error (its cause: the worker's error name and code, or its exit code — never
   * its message, which may quote a statement's values). Every call fails from then on, and
   * `lost()` says so.
   */
  onLost?: (err: StoreUnavailableError) => void;
}

/** How long `close` waits for the worker to close the database before it stops the worker. */
const CLOSE_TIMEOUT_MS = 10_000;

/** The error a reply carries, as the main-thread store would have thrown it. */
function fromWire(wire: WireError): unknown {
  const driver = driverError(wire);
  if (wire.unavailable) return new StoreUnavailableError(wire.message, driver ? { cause: driver } : undefined);
  return classifyStoreError(driver ?? new Error(wire.message));
}

/** The worker's module: its compiled `.js` beside this file, or the `.ts` source through a tsx bootstrap. */
function workerEntry(): URL {
  return new URL(import.meta.url.endsWith('.ts') ? './pglite-worker-source.mjs' : './pglite-worker.js', import.meta.url);
}

/**
 * Opens embedded PGlite in a worker thread: `options.dataDir` locked by this thread, or
 * `memory://`. A dump handed to `provideEmptyCluster` is copied to the worker.
 *
 * @throws DataDirLocked when another process holds the data folder
 * @throws the worker's error (as the main-thread store would throw it) when the database cannot open
 */
export async function createPGliteWorkerStore(options: PGliteWorkerStoreOptions): Promise<Store> {
  let lock: DataDirLock | undefined;
  if (!options.dataDir.startsWith('memory://')) {
    mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
    lock = lockDataDir(options.dataDir);
  }
  try {
    return await startWorker(options, lock);
  } catch (err) {
    lock?.release();
    throw err;
  }
}

/** A request without its `id` (the channel numbers it). */
type Outgoing = DistributiveOmit<Request, 'id'>;

/**
 * The requests in flight to one worker: numbered, answered by its replies, all failed at once
 * when the store closes or the worker goes. The worker keeps the process alive only while a call
 * is pending (an idle database does not, as the main-thread store's does not).
 */
class Channel {
  readonly #pending = new Map<number, { resolve(rows: unknown[] | undefined): void; reject(err: unknown): void }>();
  #nextId = 1;
  /** Why every call fails now (closed, or the worker gone); undefined while the worker serves. */
  down: string | undefined;
  /** The worker has exited. */
  exited = false;
  /** The worker died while serving (not stopped by close): why, for `lost()`. */
  lost: StoreUnavailableError | undefined;
  /** Told once when {@link lost} is set. */
  onLost: ((err: StoreUnavailableError) => void) | undefined;

  constructor(readonly worker: Worker) {}

  /** Sends `request` and resolves with the reply's rows; rejects at once when the channel is down. */
  call(request: Outgoing): Promise<unknown[] | undefined> {
    if (this.down !== undefined) return Promise.reject(new StoreUnavailableError(this.down));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      // Parameters cross by structured clone: primitives, Date, Uint8Array, arrays and plain objects
      // arrive as they are, Buffers are rebuilt there, views cross as their own bytes only
      // (pglite-wire.ts `wireParams`); one that would arrive as another value (a class instance, a
      // URL, a function) rejects here, with nothing sent.
      const { params, buffers } = 'params' in request ? wireParams(request.params) : { params: undefined, buffers: [] };
      this.worker.postMessage({ ...request, ...(params ? { params } : {}), ...(buffers.length ? { buffers } : {}), id } as Request);
      if (this.#pending.size === 0) this.worker.ref();
      this.#pending.set(id, { resolve, reject });
    });
  }

  /** Settles the call a reply answers (a reply after the channel went down is the store's error). */
  settle(m: Extract<Reply, { id: number }>): void {
    const p = this.#pending.get(m.id);
    if (p === undefined) return;
    this.#pending.delete(m.id);
    if (this.#pending.size === 0) this.worker.unref();
    if (m.ok) p.resolve(m.rows);
    else p.reject(this.down === undefined ? fromWire(m.error) : new StoreUnavailableError(this.down));
  }

  /**
   * The worker went without being asked to (`down` unset: `close` sets it before it stops the
   * worker): the store is lost for good. `cause` is the worker's error, reduced to its name and
   * code, or its exit code.
   */
  died(reason: string, cause: { name?: string; code?: unknown; exitCode?: number }): void {
    if (this.down === undefined && this.lost === undefined) {
      this.lost = new StoreUnavailableError(reason, { cause });
      this.onLost?.(this.lost);
    }
    this.failAll(reason);
  }

  /** Marks the channel down (the first reason stays) and fails every pending call with it. */
  failAll(reason: string): void {
    this.down ??= reason;
    for (const p of this.#pending.values()) p.reject(new StoreUnavailableError(this.down));
    this.#pending.clear();
  }
}

/** Routes the worker's replies and events; resolves once its database is open, rejects if it cannot open. */
function listen(channel: Channel, events: CheckpointEvents | undefined): Promise<void> {
  const { worker } = channel;
  return new Promise<void>((resolve, reject) => {
    worker.on('message', (m: Reply) => {
      if ('id' in m) return channel.settle(m);
      if (m.event === 'ready') resolve();
      else if (m.event === 'failed-start') reject(fromWire(m.error));
      else if (m.event === 'checkpointed') events?.checkpointed?.(m.reason, m.seconds);
      else events?.failed?.(fromWire(m.error));
    });
    worker.on('error', (err) => {
      // The worker's uncaught error: its message is not a store's to show; only that the store is gone.
      channel.died('the embedded database worker failed', { name: err.name, code: (err as { code?: unknown }).code });
      reject(new StoreUnavailableError('the embedded database worker failed', { cause: err }));
    });
    worker.on('exit', (exitCode) => {
      channel.exited = true;
      channel.died('the embedded database worker stopped', { exitCode });
      reject(new StoreUnavailableError('the embedded database worker stopped'));
    });
  });
}

async function startWorker(options: PGliteWorkerStoreOptions, lock: DataDirLock | undefined): Promise<Store> {
  const cluster = providedEmptyCluster();
  const emptyCluster = cluster ? await cluster.arrayBuffer() : undefined;
  const start: WorkerStart = { dataDir: options.dataDir, ...(options.checkpoint ? { checkpoint: options.checkpoint } : {}), ...(emptyCluster ? { emptyCluster } : {}) };
  // Copied, not transferred: `arrayBuffer()` of the provider's blob may hand out memory it keeps using (a Buffer's pool).
  const worker = new Worker(workerEntry(), { workerData: start });
  const channel = new Channel(worker);
  try {
    await listen(channel, options.checkpointEvents);
  } catch (err) {
    await worker.terminate();
    throw err;
  }
  options.onWorker?.(worker);
  channel.onLost = options.onLost;
  worker.unref();
  return storeOver(channel, lock);
}

/** One interactive transaction: `begin`, `fn`'s statements under its number, `end` with commit or rollback. */
async function transactionOnce<T>(channel: Channel, tx: number, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  await channel.call({ op: 'begin', tx });
  const queryable: Queryable = {
    async query<R extends object>(sql: string, params?: readonly unknown[], opts?: QueryOptions): Promise<R[]> {
      return ((await channel.call({ op: 'txquery', tx, sql, params, prepare: opts?.prepare })) ?? []) as R[];
    },
    async exec(sql: string) {
      await channel.call({ op: 'txexec', tx, sql });
    },
  };
  let result: T;
  try {
    result = await fn(queryable);
  } catch (err) {
    // Rolled back; the caller sees its own error (or the store's, if the store went away meanwhile).
    await channel.call({ op: 'end', tx, commit: false }).catch(() => {});
    throw err;
  }
  await channel.call({ op: 'end', tx, commit: true });
  return result;
}

/** Asks the worker to close the database (bounded wait), stops it, fails what is left, releases the folder. */
async function closeWorker(channel: Channel, lock: DataDirLock | undefined): Promise<void> {
  try {
    if (!channel.exited) {
      const closing = channel.call({ op: 'close' });
      channel.down ??= 'store is closed';
      await withTimeout(closing, CLOSE_TIMEOUT_MS, 'closing the embedded database').catch(() => {});
      await channel.worker.terminate();
    }
  } finally {
    channel.failAll('store is closed');
    lock?.release();
  }
}

/** The {@link Store} over a serving worker. */
function storeOver(channel: Channel, lock: DataDirLock | undefined): Store {
  let nextTx = 1;
  let closed: Promise<void> | undefined;
  return {
    kind: 'pglite',
    async query<R extends object>(sql: string, params?: readonly unknown[], opts?: QueryOptions): Promise<R[]> {
      return ((await channel.call({ op: 'query', sql, params, prepare: opts?.prepare })) ?? []) as R[];
    },
    async exec(sql: string) {
      await channel.call({ op: 'exec', sql });
    },
    transaction<T>(fn: (tx: Queryable) => Promise<T>, txOptions?: TransactionOptions): Promise<T> {
      const once = (): Promise<T> => transactionOnce(channel, nextTx++, fn);
      return txOptions?.retryConflicts ? retryConflicts(once) : once();
    },
    async ping(timeoutMs = 2_000) {
      await withTimeout(channel.call({ op: 'ping' }), timeoutMs, 'store ping');
    },
    close() {
      closed ??= closeWorker(channel, lock);
      return closed;
    },
    lost: () => channel.lost,
  };
}

/** `Omit` over each member of a union. */
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
