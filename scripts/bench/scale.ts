/**
 * `npx tsx scripts/bench/scale.ts [--quick | --sizes full|quick|tiny] [--only id,…] [--out FILE]`
 * (also `npm run bench -- --scale`): how cost grows with what grows in a deployment.
 *
 * The curves (scale-curves.ts):
 * - PDP: one Cedar decision in-process against the number of policies and the entities in the
 *   request's slice; one AuthZEN evaluation over HTTP (decision cache off, concurrency 1) against
 *   the policies in the set and the entities the PDP holds (`entities.json`), and against the
 *   delegation depth 1 → 5 (every link's token verified, every member evaluated);
 * - exchange: the end-to-end token exchange over HTTP against the registered agents (10⁵ rows
 *   bulk-inserted, a different agent each call), and the statements it keys by agent;
 * - receipts: one append against the chain's length (10⁶ receipts bulk-inserted: an append reads
 *   only the head), and the verification of an honestly built export against its size.
 * Store-bound curves run on PGlite, and on PostgreSQL too when `DATABASE_URL` is set.
 *
 * **Each curve runs in its own process**, started with the V8 flags in `BENCH_SCALE_V8_FLAGS`
 * (default `--no-turbo-inline-js-wasm-calls`; the Deputy processes a curve starts get the same):
 * on Node 20 and 22, V8 aborts ("Fatal error … unreachable code" in
 * `Deoptimizer::DoComputeBuiltinContinuation`, SIGTRAP) when TurboFan code that inlined a call
 * into a WebAssembly export returning `externref` (Cedar's `statefulIsAuthorized`) is
 * deoptimized while that call runs; the flag stops TurboFan inlining such calls (BENCHMARKS.md,
 * "Issue 16, fourth round: scale curves"). A curve whose process dies by a signal is run once
 * more; a curve that fails twice (or otherwise) is reported in `failures`, and the others stand.
 *
 * Each curve is labelled by its fitted log-log slope: flat (cost within 20 % across the range,
 * or slope < 0.15), linear (slope ≥ 0.6) or logarithmic (in between). Figures are medians on
 * this machine; under load, compare shapes, not absolute values. Curves timed against a Deputy
 * process also carry its CPU ms and store statements per operation (bench counters) and a fit of
 * the CPU figures (`cpu`), which a loaded machine does not blur.
 *
 * @module
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from './options.js';

const HERE = dirname(fileURLToPath(import.meta.url));

/** One measured size: median ms per operation and the RSS (MiB) of the process that did the work. */
export interface ScalePoint {
  n: number;
  ms: number;
  rssMiB?: number;
  /** Curves against a Deputy process: its CPU ms and store statements per operation (bench counters). */
  serverCpuMs?: number;
  statements?: number;
}

/** One curve: cost (ms, median) at each size, and its shape. */
export interface Curve {
  id?: string;
  name: string;
  unit: string;
  store?: string;
  points: ScalePoint[];
  slope: number;
  shape: 'flat' | 'logarithmic' | 'linear';
  /** The same fit over the server's CPU ms per operation, when the points have it: the shape a loaded machine does not blur. */
  cpu?: Pick<Curve, 'slope' | 'shape'>;
  /** Wall-clock seconds the curve took, building its state included. */
  seconds?: number;
  /** Processes started for it: 2 when the first died by a signal. */
  attempts?: number;
}

/** A curve that did not finish: why, after how many processes. */
export interface CurveFailure {
  id: string;
  name: string;
  store?: string;
  error: string;
  attempts: number;
}

/** What scale.ts writes (`--out`). */
export interface ScaleReport {
  date: string;
  node: string;
  sizes: string;
  /** V8 flags every curve process (and the Deputy processes they started) ran with. */
  v8Flags: string[];
  curves: Curve[];
  failures: CurveFailure[];
  seconds: number;
}

/** Least-squares slope of ln(ms) on ln(n), and the label it earns. */
export function fit(points: Array<{ n: number; ms: number }>): Pick<Curve, 'slope' | 'shape'> {
  const xs = points.map((p) => Math.log(Math.max(1, p.n)));
  const ys = points.map((p) => Math.log(Math.max(1e-6, p.ms)));
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  const slope = xs.reduce((a, x, i) => a + (x - mx) * (ys[i]! - my), 0) / Math.max(1e-9, xs.reduce((a, x) => a + (x - mx) ** 2, 0));
  const ms = points.map((p) => p.ms);
  const spread = Math.max(...ms) / Math.max(1e-9, Math.min(...ms));
  const shape = spread < 1.2 || slope < 0.15 ? 'flat' : slope >= 0.6 ? 'linear' : 'logarithmic';
  return { slope: Math.round(slope * 100) / 100, shape };
}

/** The curves as a Markdown table, then one line per failed curve. */
export function scaleMarkdown(curves: Curve[], failures: CurveFailure[] = []): string {
  return [
    '| curve | store | sizes | median ms at each | fitted log-log slope | shape | server CPU ms / op at each (slope, shape) | statements / op | RSS MiB at the largest | s |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...curves.map((c) => `| ${c.name}${c.attempts && c.attempts > 1 ? ' (second attempt)' : ''} | ${c.store ?? '—'} | ${c.points.map((p) => p.n.toLocaleString('en')).join(' / ')} ${c.unit} | ${c.points.map((p) => p.ms).join(' / ')} | ${c.slope} | ${c.shape} | ${c.cpu ? `${c.points.map((p) => p.serverCpuMs).join(' / ')} (${c.cpu.slope}, ${c.cpu.shape})` : '—'} | ${c.cpu ? c.points.map((p) => p.statements).join(' / ') : '—'} | ${c.points.at(-1)?.rssMiB ?? '—'} | ${c.seconds ?? '—'} |`),
    ...failures.map((f) => `\nScale curve failed: ${f.name}${f.store ? ` (${f.store})` : ''}, ${f.attempts} attempt(s): ${f.error}`),
  ].join('\n');
}

/** `BENCH_SCALE_V8_FLAGS` (space-separated; empty for none), or the flag that stops the crash. */
export function scaleV8Flags(): string[] {
  return (process.env.BENCH_SCALE_V8_FLAGS ?? '--no-turbo-inline-js-wasm-calls').split(/\s+/).filter(Boolean);
}

interface Job {
  id: string;
  name: string;
  unit: string;
  store?: 'pglite' | 'postgres';
}

type Outcome = { points: ScalePoint[] } | { error: string; signal: boolean };

/** Runs one curve in a child process (this file with `--curve`); a signal death is reported as such. */
function runChild(job: Job, sizes: string, flags: string[], timeoutMs: number, attempt: number): Promise<Outcome> {
  const dir = mkdtempSync(join(tmpdir(), 'deputy-bench-scale-'));
  const out = join(dir, 'curve.json');
  const args = [...flags, '--import', 'tsx', fileURLToPath(import.meta.url), '--curve', job.id, '--sizes', sizes, '--out', out, ...(job.store ? ['--store', job.store] : [])];
  return new Promise<Outcome>((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, BENCH_V8_FLAGS: flags.join(' '), BENCH_SCALE_ATTEMPT: String(attempt) } });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      try {
        if (code === 0) return resolve(JSON.parse(readFileSync(out, 'utf8')) as { points: ScalePoint[] });
        if (timedOut) return resolve({ error: `timed out after ${Math.round(timeoutMs / 1000)} s`, signal: false });
        // 128 + n: a shell reporting a signal death (e.g. 133 = SIGTRAP, V8's fatal error).
        resolve({ error: `exited with ${code ?? signal}`, signal: signal !== null || (code ?? 0) >= 128 });
      } catch (err) {
        resolve({ error: `exited with 0 but wrote no report: ${(err as Error).message}`, signal: false });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}

async function runJob(job: Job, sizes: string, flags: string[], timeoutMs: number): Promise<Curve | CurveFailure> {
  const started = performance.now();
  const where = job.store ? { store: job.store } : {};
  for (let attempt = 1; ; attempt++) {
    const outcome = await runChild(job, sizes, flags, timeoutMs, attempt);
    if ('points' in outcome) {
      const seconds = Math.round((performance.now() - started) / 100) / 10;
      const cpu = outcome.points.every((p) => p.serverCpuMs !== undefined) ? { cpu: fit(outcome.points.map((p) => ({ n: p.n, ms: p.serverCpuMs! }))) } : {};
      return { id: job.id, name: job.name, unit: job.unit, ...where, points: outcome.points, ...fit(outcome.points), ...cpu, seconds, attempts: attempt };
    }
    process.stderr.write(`[scale] ${job.id}${job.store ? ` (${job.store})` : ''}: ${outcome.error}${outcome.signal && attempt === 1 ? ', running it once more' : ''}\n`);
    if (!outcome.signal || attempt >= 2) return { id: job.id, name: job.name, ...where, error: outcome.error, attempts: attempt };
  }
}

/** Every curve of `only` (all when empty), each in its own process, one after another. */
export async function runScale(options: { sizes: string; only?: string[] }): Promise<ScaleReport> {
  const { CURVES } = await import('./scale-curves.js');
  const started = performance.now();
  const flags = scaleV8Flags();
  const stores: Array<'pglite' | 'postgres'> = process.env.DATABASE_URL ? ['pglite', 'postgres'] : ['pglite'];
  const jobs: Job[] = CURVES.filter((c) => !options.only?.length || options.only.includes(c.id))
    .flatMap((c) => (c.perStore ? stores.map((store) => ({ id: c.id, name: c.name, unit: c.unit, store })) : [{ id: c.id, name: c.name, unit: c.unit }]));
  const timeoutMs = Number(process.env.BENCH_SCALE_CURVE_TIMEOUT_MS ?? (options.sizes === 'full' ? 20 * 60_000 : 5 * 60_000));
  const curves: Curve[] = [];
  const failures: CurveFailure[] = [];
  for (const job of jobs) {
    const result = await runJob(job, options.sizes, flags, timeoutMs);
    if ('error' in result) failures.push(result);
    else curves.push(result);
  }
  return { date: new Date().toISOString(), node: process.version, sizes: options.sizes, v8Flags: flags, curves, failures, seconds: Math.round((performance.now() - started) / 1000) };
}

/**
 * `BENCH_SCALE_FAULT=id,…` (the smoke test): the curve's first process dies by SIGTRAP, as V8's
 * fatal error ends it; `id!`: every process of that curve does.
 */
function injectFault(id: string): void {
  const faults = (process.env.BENCH_SCALE_FAULT ?? '').split(',');
  if (faults.includes(`${id}!`) || (faults.includes(id) && process.env.BENCH_SCALE_ATTEMPT === '1')) process.kill(process.pid, 'SIGTRAP');
}

/** Child mode (`--curve id`): measures that one curve and writes its points to `--out`. */
async function runOneCurve(id: string, sizes: string, store: string | undefined, out: string): Promise<void> {
  const { CURVES, SIZES } = await import('./scale-curves.js');
  injectFault(id);
  const def = CURVES.find((c) => c.id === id);
  const s = SIZES[sizes as keyof typeof SIZES];
  if (!def || !s) throw new Error(`scale: unknown curve ${id} or sizes ${sizes}`);
  const points = await def.run(s, store === 'postgres' ? 'postgres' : 'pglite');
  writeFileSync(out, JSON.stringify({ points }));
}

async function main(): Promise<void> {
  const { values } = parseArgs(import.meta.url, {
    options: {
      quick: { type: 'boolean', default: false },
      sizes: { type: 'string' },
      only: { type: 'string' },
      curve: { type: 'string' },
      store: { type: 'string' },
      out: { type: 'string', default: join(HERE, '../../bench-results/scale.json') },
    },
  });
  const sizes = values.sizes ?? (values.quick ? 'quick' : 'full');
  if (values.curve) {
    await runOneCurve(values.curve, sizes, values.store, values.out!);
    process.exit(0); // a Deputy child's or driver's handles must not keep the curve's process alive
  }
  const report = await runScale({ sizes, only: values.only?.split(',').filter(Boolean) });
  mkdirSync(dirname(values.out!), { recursive: true });
  writeFileSync(values.out!, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`${scaleMarkdown(report.curves, report.failures)}\n\nV8 flags: ${report.v8Flags.join(' ') || 'none'}; ${report.seconds} s.\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
