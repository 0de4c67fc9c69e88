/**
 * Counters for the server under test, installed by the bench in its child process only (never in
 * production code): store statements (each one a round trip on PostgreSQL, a serialised call into
 * the single PGlite connection), transactions, and WebCrypto operations (jose signs, verifies and
 * decrypts through `crypto.subtle`). Patched at the driver / WebCrypto prototypes so that Deputy's
 * own code runs unchanged. {@link serveCounters} exposes them with RSS and the process's CPU time
 * (`process.cpuUsage()` since the last reset: far less sensitive to a loaded machine than latency,
 * since it counts what this process ran, not how long it waited for a core) over a side HTTP port.
 *
 * @module
 */
import { createHook } from 'node:async_hooks';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { GCProfiler, getHeapSpaceStatistics, getHeapStatistics, promiseHooks } from 'node:v8';
import pg from 'pg';
import { PGlite } from '@electric-sql/pglite';
import { ReceiptService } from '../../src/audit/receipts.js';
import { gcKindOf, scavengeNow } from './gc.js';

/** What the server did since the last reset. */
export interface CounterSnapshot {
  /** Statements by their normalised text (first words, literals elided), with counts. */
  statements: Record<string, number>;
  /** All statements, BEGIN/COMMIT included (one round trip each on PostgreSQL). */
  statementTotal: number;
  crypto: Record<string, number>;
  memory: { rssMiB: number; heapUsedMiB: number };
  /** CPU time this process used since the last reset (user + system), in milliseconds. */
  cpuMs: number;
  /** Garbage collections since the last reset: how many, their pauses summed and the longest (ms), by kind. */
  gc?: { count: number; totalMs: number; maxMs: number; byKind: Record<string, number> };
  /**
   * Heap bytes allocated since the last reset (issue 16, eighth round): `total` in every V8 space,
   * `young` in the young generation (new space + new large-object space) — what scavenges collect.
   * `semiSpaceMiB` is the new space's current size: both semi-spaces, up to 2 × `--max-semi-space-size`.
   */
  allocated?: { total: number; young: number; semiSpaceMiB: number };
  /**
   * The receipt chain writer (issue 16, eighth round): appends settled since the last reset, the
   * milliseconds they spent from the call to their settling (queued behind the agent's in-flight
   * statement, signed, written), the chain statements (`WITH moved AS …`, PostgreSQL only) and
   * the milliseconds they were in flight, and the window's length: `totalMs ÷ windowMs` is the
   * mean number of appends inside the writer (Little's law), `statementMs ÷ windowMs` the share
   * of the window one agent's statement was in flight (≤ 1 for one agent: one at a time).
   */
  chain?: { appends: number; totalMs: number; statements: number; statementMs: number; windowMs: number; unnamed?: number; shapes?: number };
  /**
   * Promises created since the last reset (`BENCH_COUNT_PROMISES=1` only: an `async_hooks` init
   * hook, which adds its own cost to every promise — CPU figures of such a run are not comparable;
   * issue 16, tenth round). Each is one allocation and, under Node 22's `AsyncLocalStorage`
   * (oidc-provider's), one promise-hook call.
   */
  promises?: number;
}

const statements = new Map<string, number>();
const crypto = new Map<string, number>();
let cpuAtReset = process.cpuUsage();
const gcPauses = { count: 0, totalMs: 0, maxMs: 0, byKind: {} as Record<string, number> };
const chain = { appends: 0, totalMs: 0, statements: 0, statementMs: 0, unnamed: 0 };
/**
 * Distinct texts of the chain statements (`WITH moved AS …`) this process sent, since it started
 * (not reset: the store names a text once per process): with `chain.unnamed` — those sent without
 * a prepared name, planned every time — whether the receipt writer's shapes outran the store's
 * bound on named shapes (src/store/prepared.ts `MAX_SHAPES_NAMED`; issue 16, eleventh round).
 */
const chainTexts = new Set<string>();
/** Promises created since the last reset; `undefined` unless `BENCH_COUNT_PROMISES=1`. */
let promises: number | undefined;
if (process.env.BENCH_COUNT_PROMISES === '1') {
  promises = 0;
  createHook({
    init(_id, type) {
      if (type === 'PROMISE') promises! += 1;
    },
  }).enable();
}
let resetAt = performance.now();

/**
 * `BENCH_GC_TIMELINE=1` (gateway-tail.ts): every GC event since the last reset as
 * `[start, duration ms, kind]`, `start` in CLOCK_MONOTONIC milliseconds (`process.hrtime`'s clock,
 * the one `perf sched -k mono` and the tail probe's per-call times use), so pauses and the start
 * of incremental marking (the `incremental` entry: marking then runs on V8's helper threads until
 * the `mark-compact` entry finalises it) can be lined up with slow calls.
 */
const gcTimeline: Array<[number, number, string]> | undefined = process.env.BENCH_GC_TIMELINE === '1' ? [] : undefined;
/** performance.now() → CLOCK_MONOTONIC ms: both read uv_hrtime, so the offset is constant. */
const MONO_OFFSET_MS = Number(process.hrtime.bigint()) / 1e6 - performance.now();

/** Heap used in every space and in the young generation, in bytes, from V8 statistics (one shape for both sources). */
interface HeapUse { total: number; young: number }

const YOUNG_SPACES = new Set(['new_space', 'new_large_object_space']);

function youngOf(spaces: ReadonlyArray<{ spaceName?: string; space_name?: string; spaceUsedSize?: number; space_used_size?: number }>): number {
  let young = 0;
  for (const s of spaces) if (YOUNG_SPACES.has(s.spaceName ?? s.space_name ?? '')) young += s.spaceUsedSize ?? s.space_used_size ?? 0;
  return young;
}

function heapNow(): HeapUse {
  return { total: getHeapStatistics().used_heap_size, young: youngOf(getHeapSpaceStatistics()) };
}

/**
 * Bytes allocated between two moments = heap used at the end − heap used at the start + what each
 * GC in between freed (its heap before − after, from `v8.GCProfiler`'s per-GC statistics). V8 keeps
 * no running allocation total that Node exposes; this is exact up to concurrent sweeping's timing.
 */
class AllocationMeter {
  private profiler = new GCProfiler();
  private start: HeapUse = heapNow();
  /** What the GCs since the last reset freed, summed. */
  private freed: HeapUse = { total: 0, young: 0 };

  constructor() {
    this.profiler.start();
  }

  reset(): void {
    this.collect();
    this.start = heapNow();
    this.freed = { total: 0, young: 0 };
  }

  /** Allocated since the last reset. */
  read(): HeapUse {
    this.collect();
    const now = heapNow();
    return { total: now.total - this.start.total + this.freed.total, young: now.young - this.start.young + this.freed.young };
  }

  /** Adds the GCs recorded so far to `freed`; restarts the GC profiler so its list stays short. */
  private collect(): void {
    for (const gc of this.profiler.stop()?.statistics ?? []) {
      this.freed.total += gc.beforeGC.heapStatistics.usedHeapSize - gc.afterGC.heapStatistics.usedHeapSize;
      this.freed.young += youngOf(gc.beforeGC.heapSpaceStatistics) - youngOf(gc.afterGC.heapSpaceStatistics);
    }
    this.profiler = new GCProfiler();
    this.profiler.start();
  }
}

let meter: AllocationMeter | undefined;

/**
 * `BENCH_HEAP_PROF=<dir>`: a sampling heap profile (inspector `HeapProfiler.startSampling`, one
 * sample per 32 KiB allocated on average) that also keeps objects scavenges and mark-compacts
 * collected, so garbage counts as much as what survives. One profile per counters window: started
 * at each `/reset`, written to `<dir>/heap.<pid>.<n>.heapprofile` at the next `/reset` and at exit.
 * Read it with `scripts/bench/heap-summary.ts`. `BENCH_HEAP_PROF_SURVIVORS=1` keeps, one sample per
 * 4 KiB, only what no GC collected by the time the profile is written, and runs a scavenge just
 * before: in a window without a mark-compact (`counters.gc.byKind`), that is everything a scavenge
 * promoted (alive or dead in old space) plus the young generation's survivors — the bytes the
 * window's scavenges copied, by allocation site.
 */
class HeapSampler {
  private readonly session = new Session();
  private written = 0;
  private running = false;

  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
    this.session.connect();
  }

  async restart(): Promise<void> {
    await this.write();
    const survivors = process.env.BENCH_HEAP_PROF_SURVIVORS === '1';
    await this.session.post('HeapProfiler.startSampling', { samplingInterval: survivors ? 4096 : 32768, includeObjectsCollectedByMajorGC: !survivors, includeObjectsCollectedByMinorGC: !survivors });
    this.running = true;
  }

  async write(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (process.env.BENCH_HEAP_PROF_SURVIVORS === '1') scavengeNow();
    const { profile } = await this.session.post('HeapProfiler.stopSampling');
    writeFileSync(join(this.dir, `heap.${process.pid}.${++this.written}.heapprofile`), JSON.stringify(profile));
  }
}

let heapSampler: HeapSampler | undefined;

/** Writes the open heap profile, if `BENCH_HEAP_PROF` asked for one (the bench child calls it before exiting). */
export async function writeHeapProfile(): Promise<void> {
  await heapSampler?.write();
}

/**
 * Statement texts already shaped, at most {@link MAX_SHAPED} (then shaped anew each time). Deputy's
 * statement texts are constants (src/audit/chain.ts builds each once), so one look-up per statement
 * replaces a regular expression over the whole text: over the gateway receipt's ~880-character
 * statement that cost ~6 µs and ~7 KiB per call in the server under test against ~2 µs for the
 * receipts-off `jti` upsert — the bench's own work, booked to the receipt (issue 16, twelfth round).
 */
const shaped = new Map<string, string>();
const MAX_SHAPED = 1_000;

/** A statement's shape: whitespace collapsed, cut at 90 characters. */
function shape(sql: unknown): string {
  const text = typeof sql === 'string' ? sql : (sql as { text?: string } | null)?.text ?? '?';
  const known = shaped.get(text);
  if (known !== undefined) return known;
  const s = text.replace(/\s+/g, ' ').trim().slice(0, 90);
  if (shaped.size < MAX_SHAPED) shaped.set(text, s);
  return s;
}

/**
 * The statement a protocol buffer starting with `Bind` names ('B', int32 length, portal name and
 * statement name as C strings; PostgreSQL §55.7), or undefined for another message or the unnamed one.
 */
function boundStatement(message: unknown): string | undefined {
  if (!(message instanceof Uint8Array) || message[0] !== 0x42) return undefined;
  const portalEnd = message.indexOf(0, 5);
  const nameEnd = portalEnd < 0 ? -1 : message.indexOf(0, portalEnd + 1);
  if (nameEnd <= portalEnd + 1) return undefined;
  return Buffer.from(message.subarray(portalEnd + 1, nameEnd)).toString('utf8');
}

function bump(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

let installed = false;

/** Wraps pg's `Client#query`, PGlite's `query` / `exec` / `transaction` and `SubtleCrypto` methods. */
export function installCounters(): void {
  if (installed) return;
  installed = true;
  meter = new AllocationMeter();
  if (process.env.BENCH_PROMISE_SITES) recordPromiseSites(process.env.BENCH_PROMISE_SITES);
  if (process.env.BENCH_HEAP_PROF) {
    heapSampler = new HeapSampler(process.env.BENCH_HEAP_PROF);
    void heapSampler.restart();
  }
  // Every GC pause (a main-thread stop: scavenges and mark-compact finalisation), for the tail (issue 16, sixth round).
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gcPauses.count += 1;
      gcPauses.totalMs += e.duration;
      gcPauses.maxMs = Math.max(gcPauses.maxMs, e.duration);
      const kind = gcKindOf(e);
      gcPauses.byKind[kind] = (gcPauses.byKind[kind] ?? 0) + 1;
      gcTimeline?.push([e.startTime + MONO_OFFSET_MS, e.duration, kind]);
    }
  }).observe({ entryTypes: ['gc'] });
  const pgQuery = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const text = shape(args[0]);
    bump(statements, text);
    if (text.startsWith('WITH moved AS')) {
      const named = typeof args[0] === 'object' && args[0] !== null && typeof (args[0] as { name?: unknown }).name === 'string';
      if (!named) chain.unnamed += 1;
      chainTexts.add(typeof args[0] === 'string' ? args[0] : ((args[0] as { text?: string } | null)?.text ?? '?'));
      // pg-pool's `query` passes a callback (and gets no promise back): time that.
      const last = args.length - 1;
      if (typeof args[last] === 'function') {
        const callback = args[last] as (...a: unknown[]) => unknown;
        const done = statementTimer();
        args[last] = (...a: unknown[]) => (done(), callback(...a));
      } else {
        const out = (pgQuery as (...a: unknown[]) => unknown).apply(this, args);
        if (out instanceof Promise) out.then(statementTimer(), statementTimer());
        return out;
      }
    }
    return (pgQuery as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof pgQuery;
  const receipts = ReceiptService.prototype as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  for (const method of ['append', 'appendOnce', 'appendWith'] as const) {
    const original = receipts[method]!;
    receipts[method] = function (this: unknown, ...args: unknown[]) {
      const out = original.apply(this, args);
      // An append inside the caller's transaction (`append(input, tx)`) does not go through the writer.
      if (!(method === 'append' && args[1])) timeInto(out);
      return out;
    };
  }
  const proto = PGlite.prototype as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  for (const method of ['query', 'exec'] as const) {
    const original = proto[method]!;
    proto[method] = function (this: unknown, ...args: unknown[]) {
      bump(statements, shape(args[0]));
      return original.apply(this, args);
    };
  }
  // Named statements (src/store/prepared.ts) bypass `query`: count each `Bind` to a named
  // statement (PGlite's own `query` binds the unnamed one, and is counted above).
  const execProtocolStream = proto.execProtocolStream!;
  proto.execProtocolStream = function (this: unknown, ...args: unknown[]) {
    const name = boundStatement(args[0]);
    if (name) bump(statements, `prepared ${name}`);
    return execProtocolStream.apply(this, args);
  };
  const transaction = proto.transaction!;
  proto.transaction = function (this: unknown, fn: unknown) {
    bump(statements, 'BEGIN … COMMIT (PGlite transaction)');
    return transaction.call(this, async (t: Record<string, (...a: unknown[]) => Promise<unknown>>) => {
      for (const method of ['query', 'exec'] as const) {
        const original = t[method]!.bind(t);
        t[method] = (...args: unknown[]) => {
          bump(statements, shape(args[0]));
          return original(...args);
        };
      }
      return (fn as (t: unknown) => Promise<unknown>)(t);
    });
  };
  const subtle = Object.getPrototypeOf(globalThis.crypto.subtle) as Record<string, (...a: unknown[]) => Promise<unknown>>;
  for (const method of ['sign', 'verify', 'encrypt', 'decrypt', 'importKey', 'digest', 'deriveBits']) {
    const original = subtle[method]!;
    subtle[method] = function (this: unknown, ...args: unknown[]) {
      const alg = args[0] as { name?: string } | string;
      bump(crypto, `${method} ${typeof alg === 'string' ? alg : alg?.name ?? '?'}`);
      return original.apply(this, args);
    };
  }
}

/**
 * `BENCH_PROMISE_SITES=<file>` (diagnosis, issue 16, tenth round): every 16th promise's creation
 * stack, counted by stack, written to `<file>.<n>` at each reset (the window that ended).
 */
const promiseSites = new Map<string, number>();
let promiseSeq = 0;
let promiseSitesFile: string | undefined;
let promiseSitesWritten = 0;
function recordPromiseSites(file: string): void {
  promiseSitesFile = file;
  promiseHooks.onInit(() => {
    if ((promiseSeq += 1) % 16 !== 0) return;
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 14;
    const stack = (new Error().stack ?? '').split('\n').slice(2).map((l) => l.trim().replace(/^at /, '').replace(/\(.*node_modules\//, '(')).join(' < ');
    Error.stackTraceLimit = limit;
    promiseSites.set(stack, (promiseSites.get(stack) ?? 0) + 1);
  });
}
function writePromiseSites(): void {
  if (!promiseSitesFile) return;
  writeFileSync(`${promiseSitesFile}.${++promiseSitesWritten}`, JSON.stringify([...promiseSites].sort((a, b) => b[1] - a[1])));
  promiseSites.clear();
}

/** Adds how long the append `p` took to settle to the chain counters (a rejection is the caller's to see). */
function timeInto(p: Promise<unknown>): void {
  const start = performance.now();
  const done = () => {
    chain.appends += 1;
    chain.totalMs += performance.now() - start;
  };
  p.then(done, done);
}

/** Starts timing one chain statement; the function returned (called once) adds it to the chain counters. */
function statementTimer(): () => void {
  const start = performance.now();
  return () => {
    chain.statements += 1;
    chain.statementMs += performance.now() - start;
  };
}

/** The counters so far, and RSS / heap now. */
export function snapshot(): CounterSnapshot {
  const total = [...statements.values()].reduce((a, b) => a + b, 0);
  const mem = process.memoryUsage();
  const cpu = process.cpuUsage(cpuAtReset);
  return {
    statements: Object.fromEntries([...statements].sort((a, b) => b[1] - a[1])),
    statementTotal: total,
    crypto: Object.fromEntries([...crypto].sort((a, b) => b[1] - a[1])),
    memory: { rssMiB: Math.round(mem.rss / 2 ** 20), heapUsedMiB: Math.round(mem.heapUsed / 2 ** 20) },
    cpuMs: Math.round((cpu.user + cpu.system) / 10) / 100,
    gc: { ...gcPauses, totalMs: Math.round(gcPauses.totalMs * 100) / 100, maxMs: Math.round(gcPauses.maxMs * 100) / 100, byKind: { ...gcPauses.byKind } },
    ...(meter ? { allocated: { ...meter.read(), semiSpaceMiB: Math.round((getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0) / 2 ** 10 / 2 ** 10 * 10) / 10 } } : {}),
    chain: { ...chain, windowMs: performance.now() - resetAt, shapes: chainTexts.size },
    ...(promises !== undefined ? { promises } : {}),
  };
}

/**
 * Serves `GET /` (a {@link CounterSnapshot}), `POST /reset` and `GET /gc-timeline` (`BENCH_GC_TIMELINE`)
 * on a loopback port; resolves to its URL. `POST /gc` runs a full collection first when Node was started with `--expose-gc`.
 */
export function serveCounters(): Promise<string> {
  const server = createServer(async (req, res) => {
    if (req.method === 'POST' && req.url === '/reset') {
      await heapSampler?.restart();
      meter?.reset();
      statements.clear();
      crypto.clear();
      cpuAtReset = process.cpuUsage();
      Object.assign(gcPauses, { count: 0, totalMs: 0, maxMs: 0, byKind: {} });
      Object.assign(chain, { appends: 0, totalMs: 0, statements: 0, statementMs: 0, unnamed: 0 });
      if (promises !== undefined) promises = 0;
      writePromiseSites();
      gcTimeline?.splice(0);
      resetAt = performance.now();
    }
    if (req.url === '/gc-timeline') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(gcTimeline ?? []));
      return;
    }
    if (req.method === 'POST' && req.url === '/gc') (globalThis as { gc?: () => void }).gc?.();
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(snapshot()));
  });
  server.unref();
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}
