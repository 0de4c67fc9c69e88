/**
 * A small closed-loop HTTP load generator over undici: `concurrency` workers each send a request,
 * wait for the whole response, record the latency, and send the next, for `durationMs`.
 *
 * It runs in the bench process, never in the server's: the server under test is a child process.
 * Requests may be built per call (`next`), so every request can carry fresh DPoP proofs and
 * client assertions, as real agents' requests do. With `prebuild`, each phase's requests (each
 * still unique and valid) are all built before its window opens: the load generator shares the
 * machine's cores with the server, and signing proofs inside the window would take CPU from the
 * server under test and understate it. A phase that uses up its prebuilt requests ends early.
 *
 * @module
 */
import { Pool } from 'undici';
import { settleHeap } from './gc.js';

export interface RequestSpec {
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface LoadOptions {
  origin: string;
  concurrency: number;
  durationMs: number;
  /** Builds the next request. */
  next: () => RequestSpec | Promise<RequestSpec>;
  /** Status that counts as success (default 200). */
  expectStatus?: number;
  /** Warm-up before measuring (JIT, caches, connection setup). */
  warmupMs?: number;
  /**
   * Requests per second of phase to build before each phase's window (warm-up and measured),
   * so no signing happens inside it. Unset: built per call, inside the window.
   */
  prebuild?: number;
  /**
   * Called when the measured window is about to open (after warm-up and after its requests are
   * built): the bench resets the server's counters here, so they count the timed window only.
   */
  onMeasure?: () => Promise<void>;
  /** Also return the measured phase's successful latencies (ms, unsorted): the bench merges slices (pairs.ts). */
  keepLatencies?: boolean;
}

export interface LoadResult {
  concurrency: number;
  requests: number;
  errors: number;
  /** Status codes other than the expected one, with counts. */
  unexpected: Record<string, number>;
  durationMs: number;
  /** Successful requests per second. */
  rps: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  /** The first unexpected response body, to diagnose a broken scenario. */
  sample?: string;
  /** Requests sent in warm-up and measured phases together. */
  sent: number;
  /** Whether the measured phase used up its prebuilt requests before its deadline. */
  exhausted: boolean;
  /** With {@link LoadOptions.keepLatencies}: the measured phase's successful latencies, ms, unsorted. */
  latencies?: Float64Array;
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[index]!;
}

const round = (n: number) => Math.round(n * 1000) / 1000;

async function prebuilt(options: LoadOptions, durationMs: number): Promise<(() => RequestSpec | Promise<RequestSpec>) & { exhausted: () => boolean }> {
  if (!options.prebuild) return Object.assign(() => options.next(), { exhausted: () => false });
  const count = Math.max(options.concurrency * 4, Math.ceil((options.prebuild * durationMs) / 1000));
  const specs: RequestSpec[] = [];
  for (let i = 0; i < count; i++) specs.push(await options.next());
  let i = 0;
  const next = () => {
    const spec = specs[i];
    if (spec === undefined) throw new Exhausted();
    specs[i] = undefined as unknown as RequestSpec; // released once sent
    i += 1;
    return spec;
  };
  return Object.assign(next, { exhausted: () => i >= count });
}

class Exhausted extends Error {}

async function phase(pool: Pool, options: LoadOptions, durationMs: number, onStart?: () => Promise<void>): Promise<{ latencies: number[]; errors: number; unexpected: Record<string, number>; sample?: string; elapsed: number; exhausted: boolean }> {
  const expect = options.expectStatus ?? 200;
  const next = await prebuilt(options, durationMs);
  const latencies: number[] = [];
  const unexpected: Record<string, number> = {};
  let errors = 0;
  let sample: string | undefined;
  settleHeap(); // the requests just built leave the young generation before the window (gc.ts)
  await onStart?.();
  const start = performance.now();
  const deadline = start + durationMs;
  const worker = async () => {
    while (performance.now() < deadline && !next.exhausted()) {
      const spec = await next();
      const t0 = performance.now();
      try {
        const res = await pool.request({ method: spec.method, path: spec.path, headers: spec.headers, body: spec.body });
        const text = await res.body.text();
        const t1 = performance.now();
        if (res.statusCode === expect) latencies.push(t1 - t0);
        else {
          errors += 1;
          unexpected[res.statusCode] = (unexpected[res.statusCode] ?? 0) + 1;
          sample ??= text.slice(0, 300);
        }
      } catch (err) {
        errors += 1;
        unexpected.network = (unexpected.network ?? 0) + 1;
        sample ??= String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return { latencies, errors, unexpected, ...(sample === undefined ? {} : { sample }), elapsed: performance.now() - start, exhausted: next.exhausted() };
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const pool = new Pool(options.origin, { connections: options.concurrency, pipelining: 1 });
  try {
    const warm = options.warmupMs ? await phase(pool, options, options.warmupMs) : undefined;
    const run = await phase(pool, options, options.durationMs, options.onMeasure);
    const kept = options.keepLatencies ? Float64Array.from(run.latencies) : undefined;
    const sorted = Float64Array.from(run.latencies).sort();
    const mean = sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : 0;
    return {
      concurrency: options.concurrency,
      requests: run.latencies.length + run.errors,
      errors: run.errors,
      unexpected: run.unexpected,
      durationMs: Math.round(run.elapsed),
      rps: Math.round((run.latencies.length / run.elapsed) * 1000),
      latencyMs: {
        p50: round(percentile(sorted, 0.5)),
        p90: round(percentile(sorted, 0.9)),
        p99: round(percentile(sorted, 0.99)),
        max: round(sorted.at(-1) ?? 0),
        mean: round(mean),
      },
      ...(run.sample === undefined ? {} : { sample: run.sample }),
      sent: run.latencies.length + run.errors + (warm ? warm.latencies.length + warm.errors : 0),
      exhausted: run.exhausted,
      ...(kept ? { latencies: kept } : {}),
    };
  } finally {
    await pool.close();
  }
}
