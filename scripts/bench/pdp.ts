/**
 * `npm run bench:pdp [-- --quick] [--out FILE] [--duration-ms N] [--concurrency 1,8,32]`
 *
 * The PDP over HTTP: decisions per second and latency (p50/p99) for single evaluations and
 * batches of 10 and 100, with a plain subject, a one-link delegated subject (user → agent, the
 * token verified and the chain evaluated) and a three-link chain; with the decision cache on
 * and off. Yardstick: the raw Cedar `statefulIsAuthorized` rate in this process (the policy
 * engine's floor) on the same policy set. Deputy runs in a child process (deputy-process.ts),
 * started with the product's Node flags as the rest of the bench starts it (process.ts
 * `productNodeFlags`); load comes from this one (load.ts), every point's request bodies built
 * before its window (the bodies cycle over 100 documents, so one cycle is built and replayed).
 * Per request, besides the server's CPU, statements and WebCrypto operations: the load
 * generator's CPU (this process), and the server's heap allocated and GC pauses — the PDP's
 * cached decisions cost the server about what one request costs the load generator, so the
 * ratio to the HTTP floor measures both (issue 16, ninth round). Loopback only.
 *
 * Issue 16's two PDP ratios are measured as interleaved pairs (fourteenth round; pairs.ts): the
 * cached one-link point at c8 runs in slices alternating (A B B A …) with the GET HTTP floor
 * (floor-process.ts, up beside Deputy), the uncached one-link points at c1 and c8 with slices of
 * in-process Cedar floor calls; each such row carries `pair` (the median of the per-slice-pair
 * ratios, min–max). Every point carries the VM's speed (`--speed-reference`: index.ts's first
 * calibration). The other points run one window each, as before.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from './options.js';
import { createLogger } from '../../src/log.js';
import { PolicyStore } from '../../src/pdp/policy-store.js';
import { checkedFloorCall } from './cedar-floor.js';
import type { Cedar, StatefulAuthorizationCall } from '../../src/pdp/cedar.js';
import { agentConfig, exchange, testAgent } from '../../test/support/agents.js';
import { clientCredentialsToken, clientKeys, oauthClient } from '../../test/support/clients.js';
import { startMockIdp } from '../../test/support/mock-idp.js';
import { runLoad, type LoadResult, type RequestSpec } from './load.js';
import { addSnapshots, calibrate, median, mergeSlices, pairStatistic, slicePlan, speedBetween, speedReading, type PairStatistic, type PointSpeed, type SliceLoad } from './pairs.js';
import type { CounterSnapshot } from './counters.js';
import { productNodeFlags, startProcess } from './process.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, '../..');
const API = 'https://docs.example.com';
const handoff = (id: string) => `urn:deputy:agent:${id}`;

const { values } = parseArgs(import.meta.url, {
  options: {
    quick: { type: 'boolean', default: false, description: 'short runs (1.5 s a point, concurrency 8)' },
    out: { type: 'string', default: 'bench-results/pdp.json', description: 'where the JSON results go' },
    'duration-ms': { type: 'string', value: 'positive integer', description: 'measured time per point, ms (default 4000; 1500 with --quick)' },
    concurrency: { type: 'string', value: 'positive integers', description: 'concurrency levels (default 1,8,32; 8 with --quick)' },
    slices: { type: 'string', value: 'positive even integer', description: 'slices per side in a point paired with its floor, even: a drift cancels over whole A B B A rounds (default 4; 2 with --quick)' },
    'speed-reference': { type: 'string', value: 'non-negative number', description: "the run's first calibration, CPU ms (index.ts passes its own; default: this process's first)" },
  },
  usage: 'The PDP benchmark: AuthZEN evaluations over HTTP, decision cache on and off (env BENCH_PDP_ONLY, BENCH_PDP_CACHE narrow it).',
});
const quick = values.quick ?? false;
const durationMs = values['duration-ms'] ? Number(values['duration-ms']) : quick ? 1500 : 4000;
const concurrency = values.concurrency ? values.concurrency.split(',').map(Number) : quick ? [8] : [1, 8, 32];
const sliceRounds = Math.max(1, values.slices ? Number(values.slices) : quick ? 2 : 4);
/** The reference of every point's speed factor: index.ts's first calibration, so the PDP's points read on the run's scale. */
let speedReference = values['speed-reference'] ? Number(values['speed-reference']) : undefined;
/** BENCH_PDP_ONLY=<substring>[,<substring>…]: run only the scenarios whose name contains one of them (profiling). */
const only = process.env.BENCH_PDP_ONLY?.split(',');
/** BENCH_PDP_CACHE=on|off: run only that half (profiling one path); default both. */
const cacheModes = process.env.BENCH_PDP_CACHE === 'on' ? [true] : process.env.BENCH_PDP_CACHE === 'off' ? [false] : [true, false];

async function startDeputy(config: object): Promise<{ child: ChildProcess; url: string; issuer: string; counters: string }> {
  // BENCH_CPU_PROF=<dir>: write a V8 CPU profile of the server process there (`--cpu-prof`).
  const profile = process.env.BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_CPU_PROF] : [];
  const child = spawn(process.execPath, [...productNodeFlags(), ...profile, '--import', 'tsx', join(HERE, 'deputy-process.ts')], {
    env: { ...process.env, BENCH_DEPUTY_CONFIG: JSON.stringify(config), NODE_ENV: 'production' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [url, issuer, counters] = await new Promise<string[]>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('READY '));
      if (line) resolve(line.split(' ').slice(1));
    });
    child.once('exit', (code) => reject(new Error(`deputy exited with ${code}`)));
  });
  return { child, url: url!, issuer: issuer!, counters: counters! };
}

/** The policy engine's floor call: raw pre-parsed Cedar, in this process, on the default policy set. */
interface CedarFloor {
  cedar: Cedar;
  call: StatefulAuthorizationCall;
}

async function cedarFloorCall(): Promise<CedarFloor> {
  const store = new PolicyStore({ dir: join(REPO, 'config/policies'), logger: createLogger('silent') });
  return checkedFloorCall(await store.load()); // as src/pdp/engine.ts calls it: the set's own instance
}

/** The floor's one-off rate (the report's yardstick line): calls/s over a fixed count after a warm-up. */
function cedarFloorRate({ cedar, call }: CedarFloor): number {
  const n = quick ? 3000 : 20000;
  for (let i = 0; i < 1000; i++) cedar.statefulIsAuthorized(call);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) cedar.statefulIsAuthorized(call);
  return Math.round(n / ((performance.now() - t0) / 1000));
}

/** One Cedar floor slice: calls for `ms` of wall time (checked every 64 calls), calls/s. */
function cedarFloorSlice({ cedar, call }: CedarFloor, ms: number): number {
  let n = 0;
  const t0 = performance.now();
  let elapsed = 0;
  while (elapsed < ms) {
    for (let i = 0; i < 64; i++) cedar.statefulIsAuthorized(call);
    n += 64;
    elapsed = performance.now() - t0;
  }
  return Math.round(n / (elapsed / 1000));
}

/** The VM's speed reading before or after a point; the first one in this process sets the reference when index.ts passed none. */
let calibrated = false;
function readSpeed(): ReturnType<typeof speedReading> {
  if (!calibrated) {
    calibrate(); // this process's first call pays the JIT's compile of the loop, reference or not
    calibrated = true;
  }
  speedReference ??= speedReading().calibration.cpuMs;
  return speedReading();
}

interface Row {
  scenario: string;
  cache: boolean;
  batch: number;
  result: LoadResult;
  decisionsPerSecond: number;
  /**
   * Per request: store statements and WebCrypto operations, the server's CPU ms, heap KiB
   * allocated (all spaces, young generation) and GC pause ms, from the server's counters
   * (counters.ts); the load generator's CPU ms (this process, the same window).
   */
  perRequest: { statements: number; crypto: Record<string, number>; cpuMs: number; loadGeneratorCpuMs: number; heap?: { allocatedKiB: number; youngKiB: number; gcMs: number } };
  /** The VM's speed around the point (pairs.ts). */
  speed: PointSpeed;
  /** The point's floor, interleaved with it (issue 16's PDP ratios): see {@link PdpPair}. */
  pair?: PdpPair;
}

/**
 * A PDP point measured in slices alternating with its floor's (pairs.ts `slicePlan`: A B B A …):
 * `floor` names it (the GET HTTP floor, its own process; or the Cedar floor ÷ 2 principals, in
 * this process), `floorPerSecond` is the median of its slices' rates (÷ 2 for Cedar), and `ratio`
 * the median with min–max of the per-slice-pair decisions/s ÷ that floor slice's rate.
 */
interface PdpPair {
  floor: 'GET HTTP floor' | 'Cedar floor ÷ 2 principals';
  floorPerSecond: number;
  ratio: PairStatistic;
}

/** What a point is paired with: issue 16's two PDP ratios, at the concurrencies the issue names. */
function floorOf(scenario: string, cache: boolean, c: number): PdpPair['floor'] | undefined {
  if (scenario !== 'single one-link') return undefined;
  if (cache) return c === 8 ? 'GET HTTP floor' : undefined;
  return c === 1 || c === 8 ? 'Cedar floor ÷ 2 principals' : undefined;
}

async function counters(url: string, reset: boolean): Promise<CounterSnapshot> {
  return (await (await fetch(`${url}${reset ? '/reset' : ''}`, { method: reset ? 'POST' : 'GET' })).json()) as CounterSnapshot;
}

/** CPU µs of this process (user + system) since `from`. */
function cpuSince(from: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(from);
  return used.user + used.system;
}

/** {@link Row.perRequest} from the server's counters over the window and the load generator's CPU µs in it. */
/** The pair of a PDP point and its floor from their slices (in slice order): Cedar's rate per principal is half its calls/s. */
function pdpPair(floor: PdpPair['floor'], decisions: number[], floorRates: number[]): PdpPair | undefined {
  const per = floor === 'GET HTTP floor' ? 1 : 2;
  const ratio = pairStatistic(decisions, floorRates, (d, f) => d / (f / per));
  return ratio ? { floor, floorPerSecond: Math.round(median(floorRates) / per), ratio } : undefined;
}

function perRequestOf(after: CounterSnapshot, loadCpuUs: number, requests: number): Row['perRequest'] {
  const per = (n: number, digits = 2) => Math.round((n / requests) * 10 ** digits) / 10 ** digits;
  return {
    statements: per(after.statementTotal),
    cpuMs: per(after.cpuMs, 3),
    loadGeneratorCpuMs: per(loadCpuUs / 1000, 3),
    crypto: Object.fromEntries(Object.entries(after.crypto).map(([k, v]) => [k, per(v)])),
    ...(after.allocated ? { heap: { allocatedKiB: per(after.allocated.total / 1024), youngKiB: per(after.allocated.young / 1024), gcMs: per(after.gc?.totalMs ?? 0, 4) } } : {}),
  };
}

async function main(): Promise<void> {
  const idp = await startMockIdp();
  const dataDir = mkdtempSync(join(tmpdir(), 'deputy-bench-pdp-'));
  const pepKeys = await clientKeys();
  const keys = { a: await clientKeys(), b: await clientKeys(), c: await clientKeys() };
  const rows: Row[] = [];
  const cedarCall = await cedarFloorCall();
  const floor = cedarFloorRate(cedarCall);
  // The GET HTTP floor (floor-process.ts) up beside each Deputy, so the cached path's ratio to it is interleaved.
  const httpFloor = await startProcess('floor-process.ts', {});
  const httpFloorUrl = httpFloor.ready[0]!;
  try {
    for (const cache of cacheModes) {
      const config = {
        server: { port: 0, host: '127.0.0.1', bodyLimitBytes: 1024 * 1024 },
        store: { dataDir: 'memory://' },
        keys: { dir: join(dataDir, `keys-${cache}`), generate: true },
        log: { level: 'warn' },
        pdp: { watch: false, decisionCacheSize: cache ? 50_000 : 0, maxBatch: 1000 },
        trustedIssuers: [idp.issuerConfig('okta')],
        admin: { clients: [{ client_id: 'bench-pep', scopes: ['authzen:evaluate'], jwks: pepKeys.jwks }] },
        agents: [
          agentConfig('agent-a', keys.a, { scopes: ['docs.read'], audiences: [API, handoff('agent-b')], maxDelegationDepth: 3 }),
          agentConfig('agent-b', keys.b, { scopes: ['docs.read'], audiences: [API, handoff('agent-c')], maxDelegationDepth: 3 }),
          agentConfig('agent-c', keys.c, { scopes: ['docs.read'], audiences: [API], maxDelegationDepth: 3 }),
        ],
      };
      const deputy = await startDeputy(config);
      try {
        const pep = await clientCredentialsToken(await oauthClient(deputy.issuer, 'bench-pep', pepKeys), 'authzen:evaluate');
        const [a, b, c] = await Promise.all([testAgent(deputy.issuer, 'agent-a', keys.a), testAgent(deputy.issuer, 'agent-b', keys.b), testAgent(deputy.issuer, 'agent-c', keys.c)]);
        const user = await idp.oktaAccessToken({ email: 'alice@example.com', scp: ['docs.read'] });
        const one = (await exchange(a, { subject_token: user, resource: API, scope: 'docs.read' })).access_token;
        const toB = (await exchange(a, { subject_token: user, audience: handoff('agent-b'), scope: 'docs.read' })).access_token;
        const toC = (await exchange(b, { subject_token: toB, audience: handoff('agent-c') })).access_token;
        const three = (await exchange(c, { subject_token: toC, resource: API })).access_token;
        const sub = (t: string) => JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString()).sub as string;

        const subjects = {
          plain: { type: 'User', id: 'alice', properties: { email: 'alice@example.com' } },
          'one-link': { type: 'User', id: sub(one), properties: { token: one } },
          'three-link': { type: 'User', id: sub(three), properties: { token: three } },
        };
        let n = 0;
        // 100 documents: with the cache on, the warm-up sees each one, so the window measures what a
        // repeated decision costs (with 1,000, a 4-second window at concurrency 1 was nearly all misses).
        const resource = () => ({ type: 'Resource', id: `doc-${n++ % 100}`, properties: { owner: 'alice@example.com', scope: 'docs.read', audience: API } });
        const headers = { 'content-type': 'application/json', authorization: `Bearer ${pep}` };
        const scenarios: Array<[string, keyof typeof subjects, number]> = [
          ['single', 'plain', 1],
          ['single', 'one-link', 1],
          ['single', 'three-link', 1],
          ['batch 10', 'one-link', 10],
          ['batch 100', 'one-link', 100],
          ['batch 100', 'three-link', 100],
        ];
        for (const [name, subject, batch] of scenarios.filter(([n, sub]) => !only || only.some((o) => `${n} ${sub}`.includes(o)))) {
          const probe = await fetch(`${deputy.url}/access/v1/evaluation`, { method: 'POST', headers, body: JSON.stringify({ subject: subjects[subject], action: { name: 'read' }, resource: resource() }) });
          const verdict = (await probe.json()) as { decision?: boolean };
          if (verdict.decision !== true) throw new Error(`scenario ${name}/${subject} is not a permit: ${JSON.stringify(verdict)}`);
          // The requests of one cycle over the 100 documents, built before any window and replayed.
          const cycle = Array.from({ length: 100 }, () =>
            batch === 1
              ? { method: 'POST' as const, path: '/access/v1/evaluation', headers, body: JSON.stringify({ subject: subjects[subject], action: { name: 'read' }, resource: resource() }) }
              : { method: 'POST' as const, path: '/access/v1/evaluations', headers, body: JSON.stringify({ subject: subjects[subject], action: { name: 'read' }, evaluations: Array.from({ length: batch }, () => ({ resource: resource() })) }) });
          let sent = 0;
          const next = (): RequestSpec => cycle[sent++ % cycle.length]!;
          for (const c of concurrency) {
            const floor = floorOf(`${name} ${subject}`, cache, c);
            const rounds = floor ? sliceRounds : 1;
            const sliceMs = Math.max(1, Math.round(durationMs / rounds));
            const warmupMs = Math.min(1000, durationMs / 3);
            const settleMs = Math.max(50, Math.round(warmupMs / 8));
            const loads: SliceLoad[] = [];
            const floorRates: number[] = [];
            let served: CounterSnapshot | undefined;
            let loadCpuUs = 0;
            const before = readSpeed();
            for (const side of slicePlan(floor ? 2 : 1, rounds)) {
              if (side === 0) {
                let loadCpu = process.cpuUsage();
                const result = await runLoad({
                  onMeasure: async () => {
                    await counters(deputy.counters, true);
                    loadCpu = process.cpuUsage();
                  },
                  origin: deputy.url, concurrency: c, durationMs: sliceMs, warmupMs: loads.length === 0 ? warmupMs : settleMs, keepLatencies: true, next,
                });
                loadCpuUs += cpuSince(loadCpu);
                const after = await counters(deputy.counters, false);
                served = served ? addSnapshots(served, after) : after;
                loads.push(result as SliceLoad);
              } else if (floor === 'GET HTTP floor') {
                const first = floorRates.length === 0;
                const result = await runLoad({ origin: httpFloorUrl, concurrency: c, durationMs: sliceMs, warmupMs: first ? warmupMs : settleMs, next: () => ({ method: 'GET', path: '/' }) });
                floorRates.push(result.rps);
              } else {
                if (floorRates.length === 0) cedarFloorSlice(cedarCall, Math.min(200, warmupMs)); // untimed: the call's JIT
                floorRates.push(cedarFloorSlice(cedarCall, sliceMs));
              }
            }
            const speed = speedBetween(speedReference!, before, readSpeed());
            const result = mergeSlices(loads);
            const perRequest = perRequestOf(served!, loadCpuUs, Math.max(1, result.requests));
            const pair = floor ? pdpPair(floor, loads.map((l) => l.rps * batch), floorRates) : undefined;
            rows.push({ scenario: `${name}, ${subject} subject`, cache, batch, result, decisionsPerSecond: result.rps * batch, perRequest, speed, ...(pair ? { pair } : {}) });
            process.stderr.write(`${cache ? 'cache' : 'no cache'} | ${name} ${subject} c=${c}: ${result.rps * batch} decisions/s, p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms${pair ? `, ÷ ${pair.floor} ${pair.ratio.median} (${pair.ratio.min}–${pair.ratio.max})` : ''}, speed ${speed.speed}${result.errors ? `, ${result.errors} errors ${JSON.stringify(result.unexpected)}` : ''}\n`);
          }
        }
      } finally {
        deputy.child.kill('SIGTERM');
      }
    }
  } finally {
    httpFloor.child.kill('SIGTERM');
    await idp.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
  const report = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
    durationMs,
    yardstick: { cedarStatefulIsAuthorizedPerSecond: floor },
    rows: rows.map((r) => ({ scenario: r.scenario, decisionCache: r.cache, batch: r.batch, concurrency: r.result.concurrency, decisionsPerSecond: r.decisionsPerSecond, requestsPerSecond: r.result.rps, latencyMs: r.result.latencyMs, errors: r.result.errors, perRequest: r.perRequest, speed: r.speed, ...(r.pair ? { pair: r.pair } : {}) })),
    speedReferenceMs: speedReference,
  };
  mkdirSync(dirname(values.out!), { recursive: true });
  writeFileSync(values.out!, `${JSON.stringify(report, null, 2)}\n`);
  const lines = [
    `Cedar floor (statefulIsAuthorized, in-process): ${floor} calls/s`,
    '',
    '| scenario | decision cache | concurrency | decisions/s | p50 ms | p99 ms | vs Cedar floor | server CPU ms / request | load generator CPU ms / request | server heap KiB / request (young) · GC ms / request | statements / request | WebCrypto / request |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...report.rows.map((r) => `| ${r.scenario} | ${r.decisionCache ? 'on' : 'off'} | ${r.concurrency} | ${r.decisionsPerSecond} | ${r.latencyMs.p50} | ${r.latencyMs.p99} | ${(r.decisionsPerSecond / floor).toFixed(2)} | ${r.perRequest.cpuMs} | ${r.perRequest.loadGeneratorCpuMs} | ${r.perRequest.heap ? `${r.perRequest.heap.allocatedKiB} (${r.perRequest.heap.youngKiB}) · ${r.perRequest.heap.gcMs}` : '—'} | ${r.perRequest.statements} | ${Object.entries(r.perRequest.crypto).filter(([k]) => !k.startsWith('digest')).map(([k, v]) => `${k} ${v}`).join(', ')} |`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
