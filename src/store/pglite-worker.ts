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
import { toWire, type Reply, type Request, type WorkerStart } from './pglite-wire.js';
import { StoreUnavailableError, type Queryable, type Store } from './store.js';

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

function serve(store: Store): void {
  const open = new Map<number, OpenTransaction>();
  let closing = false;

  const begin = (id: number, txNumber: number): void => {
    let begun = false;
    store
      .transaction(
        (tx) =>
          new Promise<void>((resolve, reject) => {
            begun = true;
            // Closing began while this one waited on the mutex: refuse it before it runs anything.
            if (closing) return reject(new StoreUnavailableError('store is closed'));
            open.set(txNumber, { tx, commit: resolve, rollback: reject });
            post({ id, ok: true });
          }),
      )
      .then(
        () => {
          const t = open.get(txNumber);
          open.delete(txNumber);
          if (t?.endId !== undefined) post({ id: t.endId, ok: true });
        },
        (err: unknown) => {
          const t = open.get(txNumber);
          open.delete(txNumber);
          if (!begun || t === undefined) return fail(id, err);
          if (t.endId === undefined) return; // rolled back by close: the main thread fails it itself
          if (err instanceof Rollback) post({ id: t.endId, ok: true });
          else fail(t.endId, err);
        },
      );
  };

  const inTransaction = (id: number, txNumber: number, run: (tx: Queryable) => Promise<unknown>): void => {
    const t = open.get(txNumber);
    if (t === undefined || t.endId !== undefined) return fail(id, new Error('Transaction is closed'));
    run(t.tx).then(
      (rows) => post({ id, ok: true, ...(Array.isArray(rows) ? { rows } : {}) }),
      (err: unknown) => fail(id, err),
    );
  };

  const answer = (id: number, p: Promise<unknown>): void => {
    p.then(
      (rows) => post({ id, ok: true, ...(Array.isArray(rows) ? { rows } : {}) }),
      (err: unknown) => fail(id, err),
    );
  };

  parentPort!.on('message', (m: Request) => {
    switch (m.op) {
      case 'query':
        return answer(m.id, store.query(m.sql, m.params, m.prepare === undefined ? undefined : { prepare: m.prepare }));
      case 'exec':
        return answer(m.id, store.exec(m.sql));
      case 'begin':
        return begin(m.id, m.tx);
      case 'txquery':
        return inTransaction(m.id, m.tx, (tx) => tx.query(m.sql, m.params, m.prepare === undefined ? undefined : { prepare: m.prepare }));
      case 'txexec':
        return inTransaction(m.id, m.tx, (tx) => tx.exec(m.sql));
      case 'end': {
        const t = open.get(m.tx);
        if (t === undefined || t.endId !== undefined) return fail(m.id, new Error('Transaction is closed'));
        t.endId = m.id;
        return m.commit ? t.commit() : t.rollback(new Rollback('rolled back'));
      }
      case 'ping':
        return answer(m.id, store.ping());
      case 'close': {
        closing = true;
        // Open transactions roll back (their callers are told by the main thread), so close never waits on them.
        for (const t of open.values()) if (t.endId === undefined) t.rollback(new StoreUnavailableError('store is closed'));
        return answer(m.id, store.close());
      }
    }
  });
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
