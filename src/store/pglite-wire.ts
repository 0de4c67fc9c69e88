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
  | { id: number; op: 'query'; sql: string; params: readonly unknown[] | undefined; buffers?: Path[]; prepare: QueryOptions['prepare'] }
  | { id: number; op: 'exec'; sql: string }
  | { id: number; op: 'begin'; tx: number }
  | { id: number; op: 'txquery'; tx: number; sql: string; params: readonly unknown[] | undefined; buffers?: Path[]; prepare: QueryOptions['prepare'] }
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

/** Where a value sits in a statement's parameters: array indexes and object member names from the top. */
export type Path = ReadonlyArray<number | string>;

/**
 * A statement parameter that would not reach the worker's PGlite as the same value (structured
 * clone keeps own data only: a class instance arrives a plain object without its `toString` /
 * `toJSON`, a `URL`, function or symbol cannot cross). Refused on the calling thread, nothing sent,
 * so the worker store never stores other text than the main-thread store would.
 */
export class ParameterNotTransferable extends TypeError {
  readonly code = 'ERR_STORE_PARAMETER_NOT_TRANSFERABLE';
  constructor(readonly path: string) {
    super(`statement parameter ${path} cannot cross to the embedded database's worker as the same value`);
    this.name = 'ParameterNotTransferable';
  }
}

/** Built-in prototypes whose instances structured clone rebuilds as the same kind, own data and all. */
const CLONED_AS_THEY_ARE: ReadonlySet<object | null> = new Set<object | null>([
  null,
  Object.prototype,
  Array.prototype,
  Date.prototype,
  Map.prototype,
  Set.prototype,
  RegExp.prototype,
  ArrayBuffer.prototype,
  DataView.prototype,
  ...[Uint8Array, Uint8ClampedArray, Int8Array, Uint16Array, Int16Array, Uint32Array, Int32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array].map((t) => t.prototype),
]);

/**
 * Statement parameters as they cross to the worker, and the paths of their Buffers. A Buffer
 * arrives as a plain Uint8Array (whose `toString` is `"97,98,99"`, not the Buffer's UTF-8, and
 * whose JSON differs), so the worker rebuilds each one at its path ({@link restoreBuffers}).
 * Structured clone copies a byte view's whole backing store — a pooled Buffer's 8 KiB slab with
 * other Buffers' bytes in it, a 32-byte `subarray` of a 50 MB body all 50 MB — so a view that
 * does not span its store crosses as a copy of its own bytes (the containers on its path copied,
 * the caller's values untouched). Anything else structured clone would change is refused.
 *
 * @throws ParameterNotTransferable naming the first parameter that would not arrive as it is
 */
export function wireParams(params: readonly unknown[] | undefined): { params: readonly unknown[] | undefined; buffers: Path[] } {
  const buffers: Path[] = [];
  // The objects being walked: one met again inside itself is a cycle (no statement's value; JSON refuses it too).
  const within = new Set<object>();
  /** `value` as it crosses: itself, or a copy when a view in it had to be compacted. */
  const walk = (value: unknown, path: Array<number | string>): unknown => {
    if (typeof value === 'function' || typeof value === 'symbol') throw new ParameterNotTransferable(describePath(path));
    if (typeof value !== 'object' || value === null) return value;
    if (within.has(value)) throw new ParameterNotTransferable(describePath(path));
    if (Buffer.isBuffer(value)) {
      buffers.push([...path]);
      return compact(value);
    }
    const proto = Object.getPrototypeOf(value) as object | null;
    if (!CLONED_AS_THEY_ARE.has(proto)) throw new ParameterNotTransferable(describePath(path));
    if (ArrayBuffer.isView(value)) return compact(value);
    if (value instanceof ArrayBuffer || value instanceof Date || value instanceof RegExp) return value;
    within.add(value);
    let out: unknown = value;
    if (value instanceof Map || value instanceof Set) {
      // Their entries do not reach JSON or text; only what cannot be cloned matters.
      for (const entry of value instanceof Map ? [...value.keys(), ...value.values()] : value) walk(entry, path);
    } else {
      let copy: Record<string, unknown> | unknown[] | undefined;
      for (const key of Object.keys(value)) {
        const member = (value as Record<string, unknown>)[key];
        path.push(Array.isArray(value) ? Number(key) : key);
        const crossing = walk(member, path);
        path.pop();
        if (crossing !== member) {
          copy ??= Array.isArray(value) ? [...value] : (Object.assign(Object.create(proto) as object, value) as Record<string, unknown>);
          (copy as Record<string, unknown>)[key] = crossing;
        }
      }
      out = copy ?? value;
    }
    within.delete(value);
    return out;
  };
  if (params === undefined) return { params, buffers };
  let copy: unknown[] | undefined;
  params.forEach((p, i) => {
    const crossing = walk(p, [i]);
    if (crossing !== p) (copy ??= [...params])[i] = crossing;
  });
  return { params: copy ?? params, buffers };
}

/** A byte view that spans its whole backing store, as it is; otherwise a copy of its own bytes (a Buffer's as a Uint8Array). */
function compact(view: ArrayBufferView): ArrayBufferView {
  if (view.byteOffset === 0 && view.byteLength === view.buffer.byteLength) return view;
  if (view instanceof DataView) return new DataView(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
  return Buffer.isBuffer(view) ? new Uint8Array(view) : (view as Uint8Array).slice();
}

/** In the worker: the Buffers {@link wireParams} found, rebuilt over the Uint8Arrays that arrived. */
export function restoreBuffers(params: unknown[] | undefined, paths: readonly Path[] | undefined): unknown[] | undefined {
  if (params === undefined || paths === undefined) return params;
  for (const path of paths) {
    let holder = params as unknown as Record<string | number, unknown>;
    for (const key of path.slice(0, -1)) holder = holder[key] as Record<string | number, unknown>;
    const last = path[path.length - 1]!;
    const bytes = holder[last] as Uint8Array;
    holder[last] = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  return params;
}

function describePath(path: readonly (number | string)[]): string {
  return `$${(path[0] as number) + 1}${path
    .slice(1)
    .map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`))
    .join('')}`;
}
