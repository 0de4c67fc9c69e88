/**
 * `npx tsx scripts/bench/gateway-tail.ts [--store pglite|postgres] [--seconds 10] [--receipts on|off]
 *   [--deputy-flags=--single-threaded-gc] [--out DIR] [--perf-sched|--perf-record] [--pin] [--warm 3]`
 *
 * The gateway's tail at concurrency 1 (issue 16, ninth round), call by call: one Deputy child
 * process (deputy-process.ts, the product's Node flags plus `--deputy-flags`), one upstream
 * (floor-process.ts), a closed loop of one connection from this process. Writes `DIR/run.json`:
 * - `calls`: each call's `[start, end]` in CLOCK_MONOTONIC milliseconds;
 * - `deputyGc` / `probeGc`: every GC event of Deputy's process and of this load generator as
 *   `[start, duration ms, kind]` on the same clock (counters.ts `BENCH_GC_TIMELINE`);
 * - `pids`: Deputy, the upstream, this process and (PostgreSQL) every server process by its
 *   `backend_type` (walwriter, checkpointer, autovacuum, the backends).
 * `--perf-record` samples Deputy's threads' CPU (`perf record -g`, `DIR/perf.data`; start Deputy with
 * `--deputy-flags=--perf-basic-prof-only-functions` for JIT frames); `--perf-sched` records the scheduler's switches and wake-ups
 * system-wide (`perf sched record -k mono`, `DIR/perf.sched`; read with `perf sched timehist`).
 * `--pin`: Deputy on CPU 1, everything else of this run (this process, the upstream) on CPU 0.
 * `DIR/deputy.out`: Deputy's stdout (V8's `--trace-opt` / `--trace-deopt` with `--deputy-flags`).
 * Every DPoP proof is built before the timed phase. Linux only. Line the slow calls up with
 * `perf sched timehist -i DIR/perf.sched` (BENCHMARKS.md, ninth round, "the gateway's c1 tail").
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { parseArgs } from './options.js';
import pg from 'pg';
import { Pool } from 'undici';
import { gcKindOf, settleHeap } from './gc.js';
import { startProcess } from './process.js';
import { gatewayProbeSetup, exchange, proof } from './probe-support.js';

const monoMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** This process's own GC events, on the monotonic clock. */
function observeOwnGc(): Array<[number, number, string]> {
  const offset = monoMs() - performance.now();
  const out: Array<[number, number, string]> = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) out.push([e.startTime + offset, e.duration, gcKindOf(e)]);
  }).observe({ entryTypes: ['gc'] });
  return out;
}

/** PostgreSQL's server processes (background workers and backends) by pid. */
async function postgresPids(url: string): Promise<Record<string, string>> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query<{ pid: number; backend_type: string; datname: string | null }>('SELECT pid, backend_type, datname FROM pg_stat_activity');
    return Object.fromEntries(rows.map((r) => [String(r.pid), `pg ${r.backend_type}${r.datname ? ` ${r.datname}` : ''}`]));
  } finally {
    await c.end();
  }
}

function pin(pid: number, cpu: number): void {
  spawn('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
}

async function stopChild(child: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  // A child killed by a signal has `signalCode` set and `exitCode` null: waiting for its 'exit' again never returns.
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
}

async function main(): Promise<void> {
  const { values } = parseArgs(import.meta.url, { options: { store: { type: 'string', default: 'pglite' }, seconds: { type: 'string', default: '10', value: 'positive integer' }, receipts: { type: 'string', default: 'on', value: ['on', 'off'] }, 'deputy-flags': { type: 'string', default: '' }, out: { type: 'string', default: '/tmp/gateway-tail' }, 'perf-sched': { type: 'boolean', default: false }, 'perf-record': { type: 'boolean', default: false }, warm: { type: 'string', default: '3', value: 'non-negative integer' }, pin: { type: 'boolean', default: false } } });
  const seconds = Number(values.seconds);
  mkdirSync(values.out!, { recursive: true });
  const probeGc = observeOwnGc();
  const { idp, upstream, database, agent, issuer, gw, keysDir, config } = await gatewayProbeSetup(values.store!);
  const flags = values['deputy-flags']!.trim();
  const deputy = await startProcess('deputy-process.ts', { BENCH_GC_TIMELINE: '1', BENCH_DEPUTY_CONFIG: JSON.stringify(config), BENCH_ECHO_KEY: 'bench-secret-value', ...(values.receipts === 'off' ? { BENCH_NO_RECEIPTS: '1' } : {}) }, flags ? flags.split(/\s+/) : []);
  const [url, , countersUrl] = deputy.ready as [string, string, string];
  // Deputy's stdout from here on (V8's --trace-* output), for the reader of this run.
  const traceOut = createWriteStream(join(values.out!, 'deputy.out'));
  deputy.child.stdout!.pipe(traceOut);
  let perf: ChildProcess | undefined;
  try {
    if (values.pin) {
      pin(deputy.child.pid!, 1);
      pin(upstream.child.pid!, 0);
      pin(process.pid, 0);
    }
    const subject = await idp.oktaAccessToken({ expiresIn: 3600, scp: ['deputy.read'] });
    const token = await exchange(url, issuer, agent, subject, gw);
    const pool = new Pool(url, { connections: 8, pipelining: 1 });
    const build = async (n: number) => Promise.all(Array.from({ length: n }, async () => ({ authorization: `DPoP ${token}`, dpop: await proof(agent, 'GET', `${gw}/items`, token) })));
    const send = async (h: Record<string, string>) => {
      const res = await pool.request({ method: 'GET', path: '/gw/echo/items', headers: h });
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
    };
    // Warm-up: `--warm` s at c8 (3 s: the bench's jitWarmupMs), then 1 s at c1; proofs built in
    // batches of 3 s, so none is older than the freshness window when it is sent.
    const warmEnd = performance.now() + 1000 * Number(values.warm);
    while (performance.now() < warmEnd) {
      const batch = await build(6000);
      const batchEnd = Math.min(warmEnd, performance.now() + 3000);
      await Promise.all(Array.from({ length: 8 }, async () => {
        while (performance.now() < batchEnd && batch.length) await send(batch.pop()!);
      }));
    }
    const warm = await build(1500);
    const c1End = performance.now() + 1000;
    while (performance.now() < c1End && warm.length) await send(warm.pop()!);
    const headers = await build(Math.ceil(1500 * seconds));
    const pids: Record<string, string> = { [deputy.child.pid!]: 'deputy', [upstream.child.pid!]: 'upstream', [process.pid]: 'probe', ...(database.url ? await postgresPids(database.url) : {}) };
    if (values['perf-sched']) perf = spawn('perf', ['sched', 'record', '-k', 'mono', '-o', join(values.out!, 'perf.sched')], { stdio: 'ignore' });
    else if (values['perf-record']) perf = spawn('perf', ['record', '-q', '-k', 'mono', '-e', 'cpu-clock', '-F', '4000', '-g', '-p', String(deputy.child.pid), '-o', join(values.out!, 'perf.data')], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 300));
    settleHeap(); // the headers just built leave the young generation before the window (gc.ts)
    await fetch(`${countersUrl}/reset`, { method: 'POST' });
    probeGc.splice(0);
    const calls: Array<[number, number]> = [];
    const end = performance.now() + seconds * 1000;
    for (let i = 0; i < headers.length && performance.now() < end; i += 1) {
      const start = monoMs();
      await send(headers[i]!);
      calls.push([start, monoMs()]);
    }
    await stopChild(perf, 'SIGINT');
    const deputyGc = (await (await fetch(`${countersUrl}/gc-timeline`)).json()) as Array<[number, number, string]>;
    const snap = (await (await fetch(countersUrl)).json()) as Record<string, unknown>;
    // BENCH_HEAP_PROF: a reset writes the window's heap profile now, before shutdown allocates.
    if (process.env.BENCH_HEAP_PROF) await fetch(`${countersUrl}/reset`, { method: 'POST' });
    writeFileSync(join(values.out!, 'run.json'), JSON.stringify({ store: values.store, receipts: values.receipts, flags, pin: values.pin, pids, calls, deputyGc, probeGc: [...probeGc], counters: snap }));
    const lat = calls.map(([s, e]) => e - s).sort((a, b) => a - b);
    const p = (q: number) => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))]!.toFixed(2);
    const slow = lat.filter((l) => l > lat[Math.floor(lat.length / 2)]! + 3).length;
    process.stdout.write(`${values.store} receipts ${values.receipts} flags "${flags}"${values.pin ? ' pinned' : ''}: ${calls.length} calls, p50 ${p(0.5)} p90 ${p(0.9)} p99 ${p(0.99)} max ${p(1)} ms; slow (> p50 + 3 ms) ${slow} = ${((100 * slow) / calls.length).toFixed(2)} %; Deputy GC ${JSON.stringify((snap.gc as { byKind: unknown }).byKind)}; probe GC ${probeGc.length}; CPU ${(Number(snap.cpuMs) / calls.length).toFixed(3)} ms/call\n`);
    await pool.close();
  } finally {
    await stopChild(perf, 'SIGINT');
    await stopChild(deputy.child);
    upstream.child.kill('SIGTERM');
    await database.drop();
    await idp.close();
    rmSync(keysDir, { recursive: true, force: true });
  }
}

await main();
// The run is written: if a handle still holds the loop (a keep-alive socket of the mock IdP, a child
// that has not exited), name it and leave rather than hang (the lead's runs had to be killed).
setTimeout(() => {
  process.stderr.write(`gateway-tail: still holding the loop after the run: ${JSON.stringify(process.getActiveResourcesInfo())}; exiting\n`);
  process.exit(0);
}, 3000).unref();
