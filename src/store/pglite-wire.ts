/**
 * The messages between the worker-thread PGlite store (./pglite-thread.ts, main thread) and its
 * worker (./pglite-worker.ts), and how a store error crosses between them.
 *
 * An error crosses as data — its message, whether the worker's store classified it unavailable,
 * and the driver's fields (SQLSTATE `code`, `constraint`, `detail`, …) — never as an `Error` with
 * its stack: the main thread rebuilds it and classifies it as ./store.ts does for every store.
 *
 * @module
 */
import type { CheckpointPolicy, CheckpointReason } from './checkpointer.js';
import type { QueryOptions } from './store.js';

/** What the worker is started with (`workerData`). */
export interface WorkerStart {
  dataDir: string;
  checkpoint?: CheckpointPolicy;
  /** A dump of an empty cluster (./pglite.ts `provideEmptyCluster`), copied, or absent. */
  emptyCluster?: ArrayBuffer;
}

/** A request from the main thread; `id` pairs it with its {@link Reply}. `tx` names an interactive transaction. */
export type Request =
  | { id: number; op: 'query'; sql: string; params: readonly unknown[] | undefined; prepare: QueryOptions['prepare'] }
  | { id: number; op: 'exec'; sql: string }
  | { id: number; op: 'begin'; tx: number }
  | { id: number; op: 'txquery'; tx: number; sql: string; params: readonly unknown[] | undefined; prepare: QueryOptions['prepare'] }
  | { id: number; op: 'txexec'; tx: number; sql: string }
  | { id: number; op: 'end'; tx: number; commit: boolean }
  | { id: number; op: 'ping' }
  | { id: number; op: 'close' };

/** The driver fields copied from an error (PostgreSQL's ErrorResponse fields as pg / PGlite name them). */
const DRIVER_FIELDS = ['name', 'code', 'severity', 'detail', 'hint', 'position', 'where', 'schema', 'table', 'column', 'dataType', 'constraint', 'routine'] as const;

/** An error as it crosses the thread boundary. */
export interface WireError {
  /** The worker's store classified it as {@link StoreUnavailableError} (./store.ts). */
  unavailable: boolean;
  message: string;
  /** The driver's error (the cause of an unavailable one): its message and {@link DRIVER_FIELDS}. */
  driver?: Record<string, string | number>;
}

/** A reply or an event from the worker. */
export type Reply =
  | { id: number; ok: true; rows?: unknown[] }
  | { id: number; ok: false; error: WireError }
  | { event: 'ready' }
  | { event: 'failed-start'; error: WireError }
  | { event: 'checkpointed'; reason: CheckpointReason; seconds: number }
  | { event: 'checkpoint-failed'; error: WireError };

function driverFields(err: unknown): Record<string, string | number> | undefined {
  if (err === null || typeof err !== 'object') return undefined;
  const out: Record<string, string | number> = {};
  const message = (err as { message?: unknown }).message;
  if (typeof message === 'string') out.message = message;
  for (const field of DRIVER_FIELDS) {
    const value = (err as Record<string, unknown>)[field];
    if (typeof value === 'string' || typeof value === 'number') out[field] = value;
  }
  return out;
}

/** `err` as data for the main thread (no stack, no other properties). */
export function toWire(err: unknown, unavailable: boolean): WireError {
  const message = typeof (err as { message?: unknown } | null)?.message === 'string' ? (err as Error).message : String(err);
  const driver = driverFields(unavailable ? ((err as { cause?: unknown }).cause ?? undefined) : err);
  return { unavailable, message, ...(driver ? { driver } : {}) };
}

/** The driver's error rebuilt on the main thread: an `Error` carrying the copied fields. */
export function driverError(wire: WireError): Error | undefined {
  if (!wire.driver) return undefined;
  const { message, ...fields } = wire.driver;
  const err = new Error(typeof message === 'string' ? message : wire.message);
  Object.assign(err, fields);
  return err;
}
