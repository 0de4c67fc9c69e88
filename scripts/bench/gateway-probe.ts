/**
 * `npx tsx scripts/bench/gateway-probe.ts [--store pglite|postgres] [--seconds N] [--phases idle,c1,c8,r10,r50]`
 *
 * A targeted probe of the HTTP gateway's per-call cost (issue 16, fourth round), not a bench:
 * one Deputy child process with the bench's counters and gateway configuration
 * (deputy-process.ts), one upstream (floor-process.ts), and a load driver in this process that
 * runs phases back to back against the same server:
 * - `idle` — no requests: what the process burns on its own;
 * - `cN` — closed loop, N connections (as the bench);
 * - `rN` — open loop at N requests per second on one connection (a light load: if nothing
 *   else runs, CPU per request equals the closed loop's at high concurrency).
 * Each phase reports requests, server CPU per request and per second, and the CPU of each of
 * the server's threads (`/proc/<pid>/task/<tid>/stat`, by thread name: main, libuv worker, V8
 * workers…), so per-request work can be told from per-wake-up and background work. Every DPoP
 * proof is built before its phase starts. `BENCH_CPU_PROF=<dir>` profiles the server process's CPU,
 * `BENCH_HEAP_PROF=<dir>` its allocations (one profile per phase: heap-summary.ts); each phase also
 * reports heap bytes allocated per request, scavenges per 1,000 requests and GC pause ms per request;
 * `BENCH_COUNT_PROMISES=1` also counts promises created per request (CPU then not comparable);
 * `DATABASE_URL` is needed for `--store postgres`. Linux only (procfs).
 * `--warm N`: N seconds at c8 before the first phase (default 2: too short for V8 to finish tiering
 * up under load; the fourteenth round measured its c1-vs-c8 figures after 12 s).
 * `--syscalls <prefix>`: the server's syscalls by kind per phase (`perf stat`, tracepoints) in
 * `<prefix>.<n>.<phase>` (n: the phase's index). `--perf <prefix>`: `perf record` of each phase (JIT symbols on).
 *
 * @module
 */
import { rmSync } from 'node:fs';
import { parseArgs } from './options.js';
import { Pool } from 'undici';
import { startProcess } from './process.js';
import { gatewayProbeSetup, counters, exchange, percentiles, perfRecord, proof, syscallCount, tally, threadTicks, timed, TICK_MS, type Tally } from './probe-support.js';

interface Phase { name: string; connections: number; rate?: number; seconds: number; /** `dN`: the upstream called directly (the yardstick of the added latency). */ direct?: boolean }

function phaseOf(spec: string, seconds: number): Phase {
  if (spec === 'idle') return { name: spec, connections: 0, seconds };
  if (spec.startsWith('c')) return { name: spec, connections: Number(spec.slice(1)), seconds };
  if (spec.startsWith('d')) return { name: spec, connections: Number(spec.slice(1)), seconds, direct: true };
  if (spec.startsWith('r')) return { name: spec, connections: 1, rate: Number(spec.slice(1)), seconds };
  throw new TypeError(`unknown phase ${spec}`);
}

/** Runs one phase; returns requests sent, the errors seen and each request's latency (ms). */
async function drive(pool: Pool, phase: Phase, headers: Array<Record<string, string>>, path: string): Promise<Tally> {
  const deadline = performance.now() + phase.seconds * 1000;
  const t = tally();
  const one = async () => {
    const h = headers[t.requests++];
    if (!h) return false;
    await timed(t, () => pool.request({ method: 'GET', path, headers: h }));
    return true;
  };
  if (phase.connections === 0) await new Promise((r) => setTimeout(r, phase.seconds * 1000));
  else if (phase.rate) {
    const gap = 1000 / phase.rate;
    let next = performance.now();
    while (performance.now() < deadline) {
      if (!(await one())) break;
      next += gap;
      const wait = next - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  } else {
    await Promise.all(Array.from({ length: phase.connections }, async () => {
      while (performance.now() < deadline && (await one()));
    }));
  }
  return t;
}

async function main(): Promise<void> {
  const { values } = parseArgs(import.meta.url, { options: { store: { type: 'string', default: 'pglite' }, seconds: { type: 'string', default: '3', value: 'positive integer' }, phases: { type: 'string', default: 'idle,c1,c8,r10,r50,c1' }, receipts: { type: 'string', default: 'on', value: ['on', 'off'] }, perf: { type: 'string' }, syscalls: { type: 'string' }, warm: { type: 'string', default: '2', value: 'non-negative integer' } } });
  const seconds = Number(values.seconds);
  const phases = values.phases!.split(',').map((p) => phaseOf(p, seconds));
  const { idp, upstream, database, agent, issuer, gw, keysDir, config } = await gatewayProbeSetup(values.store!);
  // --perf: JIT symbols for perf (V8 writes /tmp/perf-<pid>.map).
  const deputy = await startProcess('deputy-process.ts', { ...(values.perf ? { NODE_OPTIONS: '--perf-basic-prof-only-functions' } : {}), BENCH_DEPUTY_CONFIG: JSON.stringify(config), BENCH_ECHO_KEY: 'bench-secret-value', ...(values.receipts === 'off' ? { BENCH_NO_RECEIPTS: '1' } : {}) });
  const [url, , countersUrl] = deputy.ready as [string, string, string];
  try {
    const subject = await idp.oktaAccessToken({ expiresIn: 3600, scp: ['deputy.read'] });
    const token = await exchange(url, issuer, agent, subject, gw);
    const pool = new Pool(url, { connections: 32, pipelining: 1 });
    const direct = new Pool(upstream.ready[0]!, { connections: 32, pipelining: 1 });
    const build = async (n: number) => Promise.all(Array.from({ length: n }, async () => ({ authorization: `DPoP ${token}`, dpop: await proof(agent, 'GET', `${gw}/items`, token) })));
    // JIT warm-up at c8 (--warm seconds): a phase measured before V8 optimized the call's code books
    // its tiering (baseline code, IC misses, lazy compiles) to the call (fourteenth round).
    await drive(pool, { name: 'warm', connections: 8, seconds: Number(values.warm) }, await build(1500 * Number(values.warm)), '/gw/echo/items');
    for (const [i, phase] of phases.entries()) {
      const headers = phase.connections === 0 || phase.direct ? [] : await build(Math.ceil((phase.rate ?? 1500) * phase.seconds));
      // perf attaches (and later detaches) outside the counted window: under load either takes seconds.
      const perf = values.perf ? perfRecord(deputy.child.pid!, `${values.perf}.${phase.name}`) : undefined;
      const syscalls = values.syscalls ? syscallCount(deputy.child.pid!, `${values.syscalls}.${i}.${phase.name}`) : undefined;
      if (perf || syscalls) await new Promise((r) => setTimeout(r, 1000));
      await counters(countersUrl, '/reset');
      const before = threadTicks(deputy.child.pid!);
      const t0 = performance.now();
      const done = phase.direct ? await drive(direct, phase, Array.from({ length: 100_000 }, () => ({ 'x-api-key': 'bench-secret-value' })), '/items') : await drive(pool, phase, headers, '/gw/echo/items');
      const elapsed = (performance.now() - t0) / 1000;
      const after = threadTicks(deputy.child.pid!);
      const snap = await counters(countersUrl);
      await perf?.();
      await syscalls?.();
      const threads = [...after].map(([k, v]) => [k, (v - (before.get(k) ?? 0)) * TICK_MS] as const).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]);
      const per = (n: number) => (done.requests ? (n / done.requests).toFixed(3) : '-');
      process.stdout.write(`${phase.name.padEnd(5)} ${done.requests} req in ${elapsed.toFixed(1)} s (${(done.requests / elapsed).toFixed(0)}/s, ${done.errors} errors${done.sample ? `: ${done.sample}` : ''}); CPU ${snap.cpuMs.toFixed(0)} ms = ${(snap.cpuMs / elapsed / 10).toFixed(1)} % of a core, ${per(snap.cpuMs)} ms/req; statements ${per(snap.statementTotal)}/req; ${snap.promises !== undefined ? `promises ${per(snap.promises)}/req; ` : ''}latency ${percentiles(done.latencies)}; GC ${snap.gc ? `${snap.gc.count} pauses, ${snap.gc.totalMs.toFixed(1)} ms (max ${snap.gc.maxMs.toFixed(1)}) ${JSON.stringify(snap.gc.byKind)}` : '-'}; allocated ${snap.allocated ? `${per(snap.allocated.total / 1024)} KiB/req (young ${per(snap.allocated.young / 1024)}), semi-space ${snap.allocated.semiSpaceMiB} MiB, ${per(((snap.gc?.byKind.scavenge ?? 0) * 1000))} scavenges per 1,000 req, GC ${per(snap.gc?.totalMs ?? 0)} ms/req` : '-'}; RSS ${snap.memory.rssMiB} MiB; context switches ${threads.filter(([k]) => /^\((sleeps|preempted)\)/.test(k)).map(([k, v]) => `${k} ${per(v)}/req`).join(' ')}; CPU by thread (ms): ${threads.filter(([k]) => !/^\((sleeps|preempted)\)/.test(k)).map(([k, v]) => `${k} ${v}`).join(', ')}\n`);
    }
    await pool.close();
    await direct.close();
  } finally {
    const exited = new Promise((r) => deputy.child.once('exit', r));
    deputy.child.kill('SIGTERM');
    await exited;
    upstream.child.kill('SIGTERM');
    await database.drop();
    await idp.close();
    rmSync(keysDir, { recursive: true, force: true });
  }
}

await main();
