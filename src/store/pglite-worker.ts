/**
 * The worker thread of the worker-thread PGlite store (./pglite-thread.ts): it opens the embedded
 * database with ./pglite.ts — the same statements, named statements, transaction mutex and
 * checkpointer as on the main thread — and answers the main thread's requests (./pglite-wire.ts).
 * The data folder is locked by the main thread, which outlives this worker.
 *
 * An interactive transaction: `begin` runs the store's `transaction` with a callback that
 * answers `begin` once PGlite has opened the transaction, then runs the statements sent with that
 * transaction's number until `end` commits (the callback resolves) or rolls back (it throws).
 * While it is open, other statements wait on PGlite's transaction mutex, as on the main thread.
 *
 * @module
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createPGliteStore, provideEmptyCluster } from './pglite.js';
import { restoreBuffers, toWire, type Reply, type Request, type WorkerStart } from './pglite-wire.js';
import { StoreUnavailableError, type Queryable, type QueryOptions, type Store } from './store.js';

/** Thrown into a transaction's callback to roll it back on `end` without commit. */
class Rollback extends Error {}

/** An open interactive transaction: its queryable, and how to end its callback. */
interface OpenTransaction {
  tx: Queryable;
  commit(): void;
  rollback(err: Error): void;
  /** The `end` request's id, once sent. */
  endId?: number;
}

function post(reply: Reply): void {
  parentPort!.postMessage(reply);
}

function fail(id: number, err: unknown): void {
  post({ id, ok: false, error: toWire(err, err instanceof StoreUnavailableError) });
}

/** What the worker serves: its store, the interactive transactions open on it, whether it is closing. */
interface Served {
  store: Store;
  open: Map<number, OpenTransaction>;
  closing: boolean;
}

/** Answers `id` with the rows (or the success) of `p`, or its error. */
function answer(id: number, p: Promise<unknown>): void {
  p.then(
    (rows) => post({ id, ok: true, ...(Array.isArray(rows) ? { rows } : {}) }),
    (err: unknown) => fail(id, err),
  );
}

/** Opens transaction `txNumber`: answers `id` once PGlite holds it, and `end` once it has committed or rolled back. */
function begin(served: Served, id: number, txNumber: number): void {
  let begun = false;
  const body = (tx: Queryable) =>
    new Promise<void>((resolve, reject) => {
      begun = true;
      // Closing began while this one waited on the mutex: refuse it before it runs anything.
      if (served.closing) return reject(new StoreUnavailableError('store is closed'));
      served.open.set(txNumber, { tx, commit: resolve, rollback: reject });
      post({ id, ok: true });
    });
  const ended = (err: unknown): void => {
    const t = served.open.get(txNumber);
    served.open.delete(txNumber);
    if (!begun || t === undefined) return err === undefined ? undefined : fail(id, err);
    if (t.endId === undefined) return; // rolled back by close: the main thread fails it itself
    if (err === undefined || err instanceof Rollback) post({ id: t.endId, ok: true });
    else fail(t.endId, err);
  };
  served.store.transaction(body).then(() => ended(undefined), ended);
}

/** Runs a statement of the open transaction `txNumber`; refused once it has ended or is ending. */
function inTransaction(served: Served, id: number, txNumber: number, run: (tx: Queryable) => Promise<unknown>): void {
  const t = served.open.get(txNumber);
  if (t === undefined || t.endId !== undefined) return fail(id, new Error('Transaction is closed'));
  answer(id, run(t.tx));
}

/** Ends transaction `txNumber`: its callback resolves (commit) or throws {@link Rollback}; `begin` answers `id`. */
function end(served: Served, id: number, txNumber: number, commit: boolean): void {
  const t = served.open.get(txNumber);
  if (t === undefined || t.endId !== undefined) return fail(id, new Error('Transaction is closed'));
  t.endId = id;
  if (commit) t.commit();
  else t.rollback(new Rollback('rolled back'));
}

/** Closes the store; open transactions roll back first (their callers are told by the main thread), so close never waits on them. */
function close(served: Served, id: number): void {
  served.closing = true;
  for (const t of served.open.values()) if (t.endId === undefined) t.rollback(new StoreUnavailableError('store is closed'));
  answer(id, served.store.close());
}

/** Runs one request from the main thread. */
function handle(served: Served, m: Request): void {
  const { store } = served;
  const options = (prepare: QueryOptions['prepare']): QueryOptions | undefined => (prepare === undefined ? undefined : { prepare });
  switch (m.op) {
    case 'query':
      return answer(m.id, store.query(m.sql, restoreBuffers(m.params as unknown[] | undefined, m.buffers), options(m.prepare)));
    case 'exec':
      return answer(m.id, store.exec(m.sql));
    case 'begin':
      return begin(served, m.id, m.tx);
    case 'txquery':
      return inTransaction(served, m.id, m.tx, (tx) => tx.query(m.sql, restoreBuffers(m.params as unknown[] | undefined, m.buffers), options(m.prepare)));
    case 'txexec':
      return inTransaction(served, m.id, m.tx, (tx) => tx.exec(m.sql));
    case 'end':
      return end(served, m.id, m.tx, m.commit);
    case 'ping':
      return answer(m.id, store.ping());
    case 'close':
      return close(served, m.id);
  }
}

function serve(store: Store): void {
  const served: Served = { store, open: new Map(), closing: false };
  parentPort!.on('message', (m: Request) => handle(served, m));
}

async function start(): Promise<void> {
  const data = workerData as WorkerStart;
  if (data.emptyCluster) provideEmptyCluster(new Blob([data.emptyCluster]));
  try {
    const store = await createPGliteStore({
      dataDir: data.dataDir,
      ...(data.checkpoint ? { checkpoint: data.checkpoint } : {}),
      lockDataDir: false,
      checkpointEvents: {
        checkpointed: (reason, seconds) => post({ event: 'checkpointed', reason, seconds }),
        failed: (err) => post({ event: 'checkpoint-failed', error: toWire(err, err instanceof StoreUnavailableError) }),
      },
    });
    serve(store);
    post({ event: 'ready' });
  } catch (err) {
    post({ event: 'failed-start', error: toWire(err, err instanceof StoreUnavailableError) });
  }
}

if (parentPort) void start();
