/**
 * Interleaved pairs (issue 16, fourteenth round): the pure parts of measuring a ratio's two (or
 * more) sides in alternating slices of one point rather than one window after the other, and of
 * reading the VM's speed around each point.
 *
 * Why: on a shared 2-vCPU VM the machine's speed moves within minutes (the 06:40 run measured
 * the same exchange at 295/s and at 452/s in two points, the load generator's own CPU per request
 * doubled in the slow one). A ratio of A's window to B's window taken one after the other carries
 * that drift whole; slices in the order A B B A A B B A … put both sides at the same mean time,
 * so a linear drift cancels, and the per-slice-pair ratios show a disturbed slice as an outlier.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { LoadResult } from './load.js';
import type { CounterSnapshot } from './counters.js';

/**
 * The order of `rounds` rounds over `sides` sides: round r runs the sides forward when r is even
 * and backward when odd (2 sides: 0 1 1 0 0 1 1 0 …; 3 sides: 0 1 2 2 1 0 …). Over each two
 * rounds every side's mean position is the same, so a drift linear in time cancels from every
 * pair's ratio. Each side gets `rounds` slices; the i-th slice of side a is paired with the i-th
 * of side b (adjacent or nearly so in time). Throws on fewer than 1 side or round.
 */
export function slicePlan(sides: number, rounds: number): number[] {
  if (!Number.isInteger(sides) || sides < 1 || !Number.isInteger(rounds) || rounds < 1) throw new RangeError(`slicePlan: sides ${sides}, rounds ${rounds}`);
  const forward = Array.from({ length: sides }, (_, i) => i);
  const backward = [...forward].reverse();
  return Array.from({ length: rounds }, (_, r) => (r % 2 === 0 ? forward : backward)).flat();
}

/** A statistic over slice pairs: the median (the figure reported and judged), min and max (a disturbed pair shows here), and the pair count. */
export interface PairStatistic {
  median: number;
  min: number;
  max: number;
  pairs: number;
  /**
   * Failed requests on both sides of the ratio together (set by the caller, index.ts `pairValue`):
   * only successes count in a rate, so a failing yardstick would raise the ratio; targets.ts fails a
   * value that has any.
   */
  errors?: number;
}

/** The median of `values` (mean of the middle two when even); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * `f(a[i], b[i])` for every slice pair i (up to the shorter side), skipping non-finite results (a
 * slice with no successful request), summarised as {@link PairStatistic} rounded to `digits`
 * decimals; `undefined` when no pair gives a finite value. The median, not the mean: one slice
 * that lost its core to another process moves it by one rank, not by its size.
 */
export function pairStatistic(a: readonly number[], b: readonly number[], f: (a: number, b: number) => number, digits = 2): PairStatistic | undefined {
  const values: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const v = f(a[i]!, b[i]!);
    if (Number.isFinite(v)) values.push(v);
  }
  if (values.length === 0) return undefined;
  const r = (n: number) => Math.round(n * 10 ** digits) / 10 ** digits;
  return { median: r(median(values)), min: r(Math.min(...values)), max: r(Math.max(...values)), pairs: values.length };
}

/** One slice's load result with its successful requests' latencies (ms, unsorted). */
export type SliceLoad = LoadResult & { latencies: Float64Array };

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/**
 * One side's slices as one point: requests, errors and time summed, the rate over the slices'
 * summed time, percentiles over all their latencies together (the per-scenario row, as one
 * window gave it before). Throws on no slices.
 */
export function mergeSlices(slices: readonly SliceLoad[]): LoadResult {
  if (slices.length === 0) throw new RangeError('mergeSlices: no slices');
  const all = new Float64Array(slices.reduce((n, s) => n + s.latencies.length, 0));
  let at = 0;
  for (const s of slices) {
    all.set(s.latencies, at);
    at += s.latencies.length;
  }
  all.sort();
  const elapsed = slices.reduce((n, s) => n + s.durationMs, 0);
  const unexpected: Record<string, number> = {};
  for (const s of slices) for (const [k, v] of Object.entries(s.unexpected)) unexpected[k] = (unexpected[k] ?? 0) + v;
  const round = (n: number) => Math.round(n * 1000) / 1000;
  const sample = slices.find((s) => s.sample !== undefined)?.sample;
  return {
    concurrency: slices[0]!.concurrency,
    requests: slices.reduce((n, s) => n + s.requests, 0),
    errors: slices.reduce((n, s) => n + s.errors, 0),
    unexpected,
    durationMs: elapsed,
    rps: Math.round((all.length / Math.max(1, elapsed)) * 1000),
    latencyMs: {
      p50: round(percentile(all, 0.5)),
      p90: round(percentile(all, 0.9)),
      p99: round(percentile(all, 0.99)),
      max: round(all.at(-1) ?? 0),
      mean: round(all.length ? all.reduce((a, b) => a + b, 0) / all.length : 0),
    },
    ...(sample === undefined ? {} : { sample }),
    sent: slices.reduce((n, s) => n + s.sent, 0),
    exhausted: slices.some((s) => s.exhausted),
  };
}

function addInto(into: Record<string, number>, from: Record<string, number>): Record<string, number> {
  const out = { ...into };
  for (const [k, v] of Object.entries(from)) out[k] = (out[k] ?? 0) + v;
  return out;
}

/**
 * Two counter windows of one server process added (the slices of one side): counts, CPU, GC,
 * allocation and chain time summed; memory is the later window's; the chain's `shapes` (since
 * the process started) the larger.
 */
export function addSnapshots(a: CounterSnapshot, b: CounterSnapshot): CounterSnapshot {
  const gc = a.gc && b.gc
    ? { count: a.gc.count + b.gc.count, totalMs: a.gc.totalMs + b.gc.totalMs, maxMs: Math.max(a.gc.maxMs, b.gc.maxMs), byKind: addInto(a.gc.byKind, b.gc.byKind) }
    : a.gc ?? b.gc;
  const allocated = a.allocated && b.allocated
    ? { total: a.allocated.total + b.allocated.total, young: a.allocated.young + b.allocated.young, semiSpaceMiB: b.allocated.semiSpaceMiB }
    : a.allocated ?? b.allocated;
  const chain = a.chain && b.chain
    ? {
        appends: a.chain.appends + b.chain.appends, totalMs: a.chain.totalMs + b.chain.totalMs, statements: a.chain.statements + b.chain.statements,
        statementMs: a.chain.statementMs + b.chain.statementMs, windowMs: a.chain.windowMs + b.chain.windowMs,
        unnamed: (a.chain.unnamed ?? 0) + (b.chain.unnamed ?? 0), shapes: Math.max(a.chain.shapes ?? 0, b.chain.shapes ?? 0),
      }
    : a.chain ?? b.chain;
  return {
    statements: Object.fromEntries(Object.entries(addInto(a.statements, b.statements)).sort((x, y) => y[1] - x[1])),
    statementTotal: a.statementTotal + b.statementTotal,
    crypto: Object.fromEntries(Object.entries(addInto(a.crypto, b.crypto)).sort((x, y) => y[1] - x[1])),
    memory: b.memory,
    cpuMs: Math.round((a.cpuMs + b.cpuMs) * 100) / 100,
    ...(gc ? { gc } : {}),
    ...(allocated ? { allocated } : {}),
    ...(chain ? { chain } : {}),
    ...(a.promises !== undefined || b.promises !== undefined ? { promises: (a.promises ?? 0) + (b.promises ?? 0) } : {}),
  };
}

/** One calibration: its wall-clock and CPU milliseconds, and whose CPU clock it read ({@link cpuClock}). */
export interface Calibration {
  wallMs: number;
  cpuMs: number;
  clock?: 'thread' | 'process';
}

/**
 * The fixed CPU-bound calibration: `digests` SHA-256 digests of a 1 KiB buffer, chained, run in
 * this process (~25 ms on the bench VM at 12,000, once its JIT has compiled the loop: discard a
 * first reading). Both clocks: the **CPU** time of this thread alone is the VM's speed — it rises
 * when the host runs this vCPU slower (a busy neighbour, a slower core), as the 06:40 run's load
 * generator's CPU per request did — while the wall time also counts the time other processes on
 * the same cores held them (local contention, which the load average shows anyway).
 *
 * This thread's, not the process's (`process.threadCpuUsage`: Node 22.23 has it, 20 does not): right after a point,
 * V8's concurrent GC threads are still marking and sweeping the load's garbage, and the process's
 * clock booked their work to the calibration — the 08:04 full run read 1.1–2.4× the CPU after a
 * point as before it, once more CPU than wall time (78.7 vs 44.0 ms), and flagged nearly every
 * point. Where Node has no per-thread clock (20), the process's is used and says so (`clock`).
 */
export function calibrate(digests = 12_000): Calibration {
  const data = Buffer.alloc(1024, 7);
  const clock = cpuClock();
  const cpu = clock.read();
  const start = performance.now();
  for (let i = 0; i < digests; i++) {
    const d = createHash('sha256').update(data).digest();
    d.copy(data, i % 992);
  }
  const wallMs = performance.now() - start;
  const usedUs = clock.read() - cpu;
  const r = (n: number) => Math.round(n * 100) / 100;
  return { wallMs: r(wallMs), cpuMs: r(usedUs / 1000), clock: clock.kind };
}

/** The CPU clock {@link calibrate} reads: this thread's where Node has one, else the whole process's. */
export function cpuClock(): { kind: 'thread' | 'process'; read: () => number } {
  const threadCpuUsage = (process as { threadCpuUsage?: () => NodeJS.CpuUsage }).threadCpuUsage;
  if (typeof threadCpuUsage === 'function') {
    return { kind: 'thread', read: () => { const u = threadCpuUsage.call(process); return u.user + u.system; } };
  }
  return { kind: 'process', read: () => { const u = process.cpuUsage(); return u.user + u.system; } };
}

/** The aggregate `cpu` line of `/proc/stat`: total jiffies and steal jiffies (the 8th value). */
export interface CpuTimes {
  total: number;
  steal: number;
}

/** Parses the first (`cpu `) line of `/proc/stat` text; `undefined` when it is not there. */
export function parseProcStat(text: string): CpuTimes | undefined {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) return undefined;
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  if (values.length < 8 || values.some((v) => !Number.isFinite(v))) return undefined;
  // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already in user.
  return { total: values.slice(0, 8).reduce((a, b) => a + b, 0), steal: values[7]! };
}

/** `/proc/stat`'s cpu times now; `undefined` off Linux. */
export function readCpuTimes(): CpuTimes | undefined {
  try {
    return parseProcStat(readFileSync('/proc/stat', 'utf8'));
  } catch {
    return undefined;
  }
}

/** The share (0–1) of all CPU time between two readings that the hypervisor stole; `undefined` without both readings or with no time passed. */
export function stealShare(before: CpuTimes | undefined, after: CpuTimes | undefined): number | undefined {
  if (!before || !after || after.total <= before.total) return undefined;
  return Math.round(((after.steal - before.steal) / (after.total - before.total)) * 1000) / 1000;
}

/** Calibration moved more than this share between a point's two readings, or from the run's first: the point is flagged disturbed. */
export const DISTURBED_THRESHOLD = 0.15;

/** The VM's speed around one point. */
export interface PointSpeed {
  /** The calibration's CPU milliseconds before and after the point (what the speed is computed from). */
  calibrationMs: [number, number];
  /** The same calibrations' wall-clock milliseconds: with other processes on the cores, more than the CPU time. */
  wallMs?: [number, number];
  /** The run's first calibration ÷ the mean of this point's two: 1 = as fast as at the start, 0.5 = half as fast; NaN (null in the JSON, flagged) when a calibration read no CPU time. */
  speed: number;
  /** Share of all CPU time stolen by the hypervisor during the point (`/proc/stat`), when readable. */
  steal?: number;
  /** Why the point is flagged: the calibration moved more than {@link DISTURBED_THRESHOLD} within the point or against the run's first reading. */
  disturbed?: string;
}

/**
 * The speed figures of a point from its two calibrations' CPU ms and the run's first (`reference`,
 * CPU ms). Pure: the caller reads the clocks and `/proc/stat`.
 */
export function pointSpeed(reference: number, before: number, after: number, steal?: number, threshold = DISTURBED_THRESHOLD): PointSpeed {
  const mean = (before + after) / 2;
  const optional = steal === undefined ? {} : { steal };
  if (!(reference > 0 && before > 0 && after > 0)) {
    // A calibration that read no CPU time gives no speed: flagged, never a speed of Infinity or 0.
    return { calibrationMs: [before, after], speed: Number.NaN, ...optional, disturbed: 'a calibration read no CPU time' };
  }
  const speed = Math.round((reference / mean) * 100) / 100;
  const within = moved(before, after);
  const against = moved(reference, mean);
  const reasons: string[] = [];
  if (within > threshold) reasons.push(`calibration moved ${Math.round(within * 100)} % within the point`);
  if (against > threshold) reasons.push(`calibration moved ${Math.round(against * 100)} % against the run's first reading (speed ${speed})`);
  return { calibrationMs: [before, after], speed, ...optional, ...(reasons.length ? { disturbed: reasons.join('; ') } : {}) };
}

/**
 * How far two calibrations' CPU times are apart, as a share of the smaller: the one measure the
 * {@link DISTURBED_THRESHOLD} applies to, within a point and against the run's first reading alike
 * (a check on |speed − 1| let a point 16 % slower pass while one 16 % faster was flagged).
 */
function moved(a: number, b: number): number {
  return Math.abs(a - b) / Math.min(a, b);
}

/** One speed reading before or after a point: a calibration and `/proc/stat`'s cpu times. */
export interface SpeedReading {
  calibration: Calibration;
  cpu: CpuTimes | undefined;
}

/**
 * The VM's speed reading before or after a point: of three calibrations, the one with the median
 * CPU time (one disturbed reading moves the median by one rank, not by its size), and
 * `/proc/stat`'s cpu times. Shared by index.ts and pdp.ts (its own process: the reference, the
 * run's first reading, is passed to it), so every point's speed is read the same way.
 */
export function speedReading(): SpeedReading {
  return { calibration: [calibrate(), calibrate(), calibrate()].sort((a, b) => a.cpuMs - b.cpuMs)[1]!, cpu: readCpuTimes() };
}

/** The point's {@link PointSpeed} from its two readings against the run's first calibration (`reference`, CPU ms). */
export function speedBetween(reference: number, before: SpeedReading, after: SpeedReading): PointSpeed {
  return {
    ...pointSpeed(reference, before.calibration.cpuMs, after.calibration.cpuMs, stealShare(before.cpu, after.cpu)),
    wallMs: [before.calibration.wallMs, after.calibration.wallMs],
  };
}
