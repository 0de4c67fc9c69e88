/**
 * `npm run bench [-- --quick] [--scale] [--exchange-only] [--out FILE] [--markdown FILE] [--duration-ms N] [--slices N]`
 *
 * Measures Deputy against yardsticks started in the same run, so the figures that matter are
 * ratios that survive a noisy machine:
 * - crypto floor: jose sign / verify rates in-process for the algorithms on the exchange path;
 * - HTTP floor: a bare Koa JSON endpoint in its own process (a GET, and a POST of an AuthZEN-sized
 *   JSON body read and parsed: the PDP's like-for-like floor);
 * - client_credentials: oidc-provider's own grant with private_key_jwt + DPoP on Deputy;
 * - bare oidc-provider: the same grant on oidc-provider in its default configuration, same kind
 *   of store (bare-oidc-process.ts), the yardstick's own yardstick;
 * - token exchange: the full exchange (IdP token, private_key_jwt, DPoP, policy, vault, sign);
 * - gateways: a call through `/gw`, `/llm` and `/mcp/{server}` (`tools/call`) against the same
 *   upstream called directly.
 * Each server-side scenario runs on PGlite, and on PostgreSQL when `DATABASE_URL` is set.
 * Load comes from this process; servers run in child processes. Loopback only. Requests that
 * carry signatures (client assertions, DPoP proofs) are all built before each timed window
 * (load.ts `prebuild`), so the figures measure the server, not the load generator's signing.
 * Each server-side figure also carries what the server did per request (store statements,
 * WebCrypto operations; counters.ts) and its RSS; `--scale` adds the scale curves (scale.ts).
 *
 * Each ratio's sides run **interleaved** in one point ({@link interleaved}; pairs.ts): the point's
 * time split into slices in the order A B B A …, both servers up at once, the ratio the median of
 * the per-slice-pair ratios with their min–max. Around each point the load generator times a fixed
 * calibration and reads the host's steal time: every figure carries the VM's speed, and a point
 * whose calibration moved more than 15 % is flagged disturbed. The Markdown opens with issue 16's
 * table of targets evaluated from the run (targets.ts).
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from './options.js';
import { SignJWT, exportJWK, generateKeyPair, jwtVerify, type CryptoKey, type JWK } from 'jose';
import { createHash, randomUUID } from 'node:crypto';
import { createTestDatabase, type TestDatabase } from '../../test/support/database.js';
import { HostCpuSampler, type HostCpu } from './host-cpu.js';
import { startMockIdp, type MockIdp } from '../../test/support/mock-idp.js';
import { startMockLlm } from '../../test/support/llm-upstream.js';
import { runLoad, type LoadOptions, type LoadResult, type RequestSpec } from './load.js';
import type { CounterSnapshot } from './counters.js';
import { addSnapshots, calibrate, mergeSlices, pairStatistic, slicePlan, speedBetween, speedReading as sharedSpeedReading, DISTURBED_THRESHOLD, type PairStatistic, type PointSpeed, type SliceLoad, type SpeedReading } from './pairs.js';
import { evaluateTargets, targetsMarkdown, type TargetRow } from './targets.js';
import type { ScaleReport } from './scale.js';
import { freePort } from '../../test/support/net.js';
import { startProcess } from './process.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const AUDIENCE = 'https://api.example.com';

interface Options {
  quick: boolean;
  durationMs: number;
  warmupMs: number;
  concurrency: number[];
  out: string;
  markdown: string | undefined;
  skipPdp: boolean;
  scale: boolean;
  /** Only the grants (client_credentials, token exchange) and the exchange with receipts on / off: no gateways, no bare provider. */
  exchangeOnly: boolean;
  /**
   * With N > 1, a second exchange scenario after each `token exchange` point: the same exchange
   * spread round-robin over N agents (N receipt chains, so N group writers), information beside
   * the target's one-agent scenario (issue 16, eighth round). 0: none.
   */
  exchangeAgents: number;
  /**
   * Untimed load (concurrency 8, then the point's own concurrency when it is lower) before a
   * scenario's first point in its server process, ms each: a long-running server's JIT has
   * compiled its hot paths; a process's first seconds have not (the c1 point, measured first,
   * paid ~1 ms per call for it), and a lone call runs paths a call at c8 does not. 0 in quick runs.
   */
  jitWarmupMs: number;
  /** Slices per side in a point whose sides are interleaved (pairs.ts): 4 (2 with --quick). */
  slices: number;
}

function options(): Options {
  const { values } = parseArgs(import.meta.url, {
    options: {
      quick: { type: 'boolean', default: false, description: 'short runs (0.6 s a point, concurrency 8, no JIT warm-up)' },
      out: { type: 'string', default: 'bench-results/latest.json', description: 'where the JSON results go' },
      markdown: { type: 'string', description: 'also write a Markdown table to this file' },
      'duration-ms': { type: 'string', value: 'positive integer', description: 'measured time per point, ms (default 4000; 600 with --quick)' },
      concurrency: { type: 'string', value: 'positive integers', description: 'concurrency levels (default 1,8,32; 8 with --quick)' },
      'skip-pdp': { type: 'boolean', default: false, description: 'leave out the PDP scenarios' },
      scale: { type: 'boolean', default: false, description: 'also run the scale curves' },
      'exchange-only': { type: 'boolean', default: false, description: 'run the token exchange scenarios only' },
      'exchange-agents': { type: 'string', default: '0', value: 'non-negative integer', description: 'registered agents beside the bench ones (registry size)' },
      slices: { type: 'string', value: 'positive even integer', description: 'slices per side when a point interleaves a ratio\'s sides, even: a drift cancels over whole A B B A rounds (default 4; 2 with --quick)' },
    },
    usage: 'Deputy\'s benchmark: token exchange, gateway, PDP and receipts over HTTP against a Deputy process (see BENCHMARKS.md).',
  });
  const quick = values.quick ?? false;
  const durationMs = values['duration-ms'] ? Number(values['duration-ms']) : quick ? 600 : 4000;
  return {
    quick,
    durationMs,
    warmupMs: Math.min(1000, Math.round(durationMs / 3)),
    jitWarmupMs: quick ? 0 : 8000,
    concurrency: values.concurrency ? values.concurrency.split(',').map(Number) : quick ? [8] : [1, 8, 32],
    out: values.out!,
    markdown: values.markdown,
    skipPdp: values['skip-pdp'] ?? false,
    scale: values.scale ?? false,
    exchangeOnly: values['exchange-only'] ?? false,
    exchangeAgents: Number(values['exchange-agents'] ?? 0),
    slices: Math.max(1, values.slices ? Number(values.slices) : quick ? 2 : 4),
  };
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** Operations per second of `fn` over about `ms` milliseconds. */
async function rate(ms: number, fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 50; i += 1) await fn();
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < ms) {
    await fn();
    n += 1;
  }
  return Math.round((n / (performance.now() - start)) * 1000);
}

async function cryptoFloor(ms: number): Promise<Record<string, number>> {
  const es = await generateKeyPair('ES256');
  const rs = await generateKeyPair('RS256');
  const claims = { sub: 'u', aud: 'a', scope: 'x', act: { sub: 'agent' } };
  const esToken = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256' }).setIssuedAt().setExpirationTime('5m').sign(es.privateKey);
  const rsToken = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256' }).setIssuedAt().setExpirationTime('5m').sign(rs.privateKey);
  return {
    es256_sign_per_s: await rate(ms, () => new SignJWT(claims).setProtectedHeader({ alg: 'ES256' }).sign(es.privateKey)),
    es256_verify_per_s: await rate(ms, () => jwtVerify(esToken, es.publicKey)),
    rs256_verify_per_s: await rate(ms, () => jwtVerify(rsToken, rs.publicKey)),
  };
}

interface ClientIdentity {
  id: string;
  privateKey: CryptoKey;
  jwks: { keys: JWK[] };
  dpop: { privateKey: CryptoKey; jwk: JWK };
}

async function clientIdentity(id: string): Promise<ClientIdentity> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const dpop = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), alg: 'ES256', use: 'sig' };
  return { id, privateKey, jwks: { keys: [jwk] }, dpop: { privateKey: dpop.privateKey, jwk: await exportJWK(dpop.publicKey) } };
}

async function assertion(client: ClientIdentity, issuer: string): Promise<string> {
  return new SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: 'ES256' }).setIssuer(client.id).setSubject(client.id)
    .setAudience(issuer).setIssuedAt().setExpirationTime('60s').sign(client.privateKey);
}

async function proof(client: ClientIdentity, htu: string): Promise<string> {
  return new SignJWT({ htm: 'POST', htu, jti: randomUUID() }).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: client.dpop.jwk })
    .setIssuedAt().sign(client.dpop.privateKey);
}

function form(values: Record<string, string>): string {
  return new URLSearchParams(values).toString();
}

interface Figure {
  name: string;
  store?: string;
  /** A yardstick without a store: the store of the Deputy scenario it was interleaved with. */
  pairedStore?: string;
  /** The point this figure was measured in (its sides interleaved: {@link interleaved}), e.g. `exchange postgres c1`. */
  point?: string;
  result: LoadResult;
  /** The VM's speed around the point (pairs.ts {@link PointSpeed}). */
  speed?: PointSpeed;
  /** Each slice's req/s, p50 and p99 (ms), in the side's slice order: the pair ratios' inputs. */
  slices?: { rps: number[]; p50: number[]; p99: number[] };
  /**
   * Server-side work per request in the timed window, from the bench's counters: store statements,
   * WebCrypto operations, and the server process's CPU time in milliseconds (`cpuMs`).
   */
  perRequest?: { statements: number; crypto: Record<string, number>; topStatements: Record<string, number>; cpuMs: number; host?: HostCpu; chain?: ChainFigures; /** Heap KiB allocated, all spaces and young generation; scavenges per 1,000; GC pause ms. */ heap?: { allocatedKiB: number; youngKiB: number; scavengesPer1000: number; gcMs: number } };
  /** Server RSS in MiB: before the load, and the highest seen while it ran. */
  rssMiB?: { idle: number; underLoad: number };
}

/**
 * The receipt chain writer in the timed window (issue 16, eighth round; counters.ts `chain`):
 * appends per request, the mean milliseconds from an append's call to its settling (queued behind
 * the in-flight statement, signed, written), the mean number of appends inside the writer (Little's
 * law), and the share of the window a chain statement was in flight (PostgreSQL; summed over agents).
 */
interface ChainFigures {
  appendsPerRequest: number;
  msPerAppend: number;
  meanInWriter: number;
  statementInFlight?: number;
  /** Chain statements sent without a prepared name (planned every time), per chain statement; PostgreSQL. */
  unnamedShare?: number;
  /** Distinct chain statement texts the server process sent since it started (PostgreSQL). */
  shapes?: number;
}

function chainFigures(chain: CounterSnapshot['chain'], requests: number): ChainFigures | undefined {
  if (!chain || chain.appends === 0) return undefined;
  const r = (n: number, d = 100) => Math.round(n * d) / d;
  return {
    appendsPerRequest: r(chain.appends / Math.max(1, requests)),
    msPerAppend: r(chain.totalMs / chain.appends),
    meanInWriter: r(chain.totalMs / chain.windowMs),
    ...(chain.statements > 0 ? { statementInFlight: r(chain.statementMs / chain.windowMs), unnamedShare: r((chain.unnamed ?? 0) / chain.statements), shapes: chain.shapes ?? 0 } : {}),
  };
}

/** Requests prebuilt per second of phase: above any rate these signed scenarios reach here. */
const PREBUILD_PER_S = 1500;

/** The heap cell of the per-request table: KiB allocated (young), scavenges per 1,000 requests, GC pause ms per request. */
function heapCell(heap: NonNullable<Figure['perRequest']>['heap']): string {
  return heap ? `${heap.allocatedKiB} (${heap.youngKiB}) · ${heap.scavengesPer1000} · ${heap.gcMs}` : '—';
}

async function counters(url: string, path = ''): Promise<CounterSnapshot> {
  const res = await fetch(`${url}${path}`, { method: path ? 'POST' : 'GET' });
  return (await res.json()) as CounterSnapshot;
}

/** Scenario × server process pairs that have had their JIT warm-up ({@link Options.jitWarmupMs}). */
const jitWarmed = new Set<string>();
let jitWarmupMs = 0;

async function jitWarmup(name: string, countersUrl: string, load: LoadOptions): Promise<void> {
  const key = `${countersUrl} ${name}`;
  if (jitWarmupMs === 0 || jitWarmed.has(key)) return;
  jitWarmed.add(key);
  await runLoad({ prebuild: PREBUILD_PER_S, ...load, concurrency: Math.max(8, load.concurrency), durationMs: jitWarmupMs, warmupMs: 0 });
  // A lone call runs code a call among others does not (the receipt writer's lone append, one
  // statement per call): the c1 point, measured first, also gets its own untimed load (ninth round).
  if (load.concurrency < 8) await runLoad({ prebuild: PREBUILD_PER_S, ...load, durationMs: jitWarmupMs, warmupMs: 0 });
}

/**
 * One side of a point: a scenario's load, and — for a server with bench counters — where to read
 * them. `databaseUrl`: the PostgreSQL database the server uses, for the CPU its backends spend in
 * the window (`perRequest.host`, {@link HostCpuSampler}); the load generator's CPU is sampled always.
 * `prebuild` (default: when the side has counters, i.e. is a signed Deputy or bare-provider
 * scenario): build each slice's requests before its window (load.ts); the unsigned yardsticks
 * run faster than {@link PREBUILD_PER_S} and build theirs per call, as before.
 */
interface Side {
  name: string;
  store?: string;
  /** For a yardstick without a store, the store of the Deputy side it is paired with (Markdown only). */
  pairedStore?: string;
  countersUrl?: string;
  databaseUrl?: string;
  prebuild?: boolean;
  load: LoadOptions;
}

/** Pair slices per side in a point ({@link Options.slices}); the point's time is split among them. */
let sliceRounds = 4;
/** The run's first calibration (CPU ms), the reference of every point's speed factor. */
let speedReference: number | undefined;

/** The VM's speed reading before or after a point (pairs.ts); the run's first one is the reference. */
function speedReading(): SpeedReading {
  if (speedReference === undefined) {
    calibrate(); // the first call pays the JIT's compile of the loop
    speedReference = sharedSpeedReading().calibration.cpuMs;
  }
  return sharedSpeedReading();
}

function speedOf(before: SpeedReading, after: SpeedReading): PointSpeed {
  return speedBetween(speedReference!, before, after);
}

/** One side's state through a point's slices. */
interface SideRun {
  side: Side;
  host?: HostCpuSampler;
  loads: SliceLoad[];
  counters?: CounterSnapshot;
  hostSpent?: HostCpu;
  idle: number;
  peak: number;
}

/**
 * One point measured as interleaved slices (pairs.ts, issue 16 fourteenth round): every side's
 * JIT warm-up, the VM's speed read, then {@link sliceRounds} rounds over the sides in the order of
 * {@link slicePlan} (A B B A …), each slice `durationMs ÷ rounds` long after its own warm-up (the
 * full `warmupMs` before a side's first slice, a short settle — new connections, the switch —
 * before the others), its requests built before it (load.ts `prebuild`), the server's counters
 * reset as its window opens and read as it closes. Each side's figure is its slices together
 * (req/s over their summed time, percentiles over all their latencies, counters summed) with the
 * per-slice rates and percentiles in `slices` for the pair ratios. One side: one window, as before.
 */
async function interleaved(point: string, sides: Side[], opts: Options): Promise<Figure[]> {
  for (const s of sides) if (s.countersUrl) await jitWarmup(s.name, s.countersUrl, s.load);
  const rounds = sides.length > 1 ? sliceRounds : 1;
  const sliceMs = Math.max(1, Math.round(opts.durationMs / rounds));
  const settleMs = Math.max(50, Math.round(opts.warmupMs / 8));
  const runs: SideRun[] = [];
  let sampling = true;
  let sampler: Promise<void> | undefined;
  try {
    for (const side of sides) {
      const host = side.countersUrl ? await HostCpuSampler.open(side.databaseUrl) : undefined;
      const idle = side.countersUrl ? (await counters(side.countersUrl, '/gc')).memory.rssMiB : 0;
      runs.push({ side, ...(host ? { host } : {}), loads: [], idle, peak: idle });
    }
    sampler = (async () => {
      while (sampling) {
        for (const run of runs) if (run.side.countersUrl) run.peak = Math.max(run.peak, (await counters(run.side.countersUrl).catch(() => undefined))?.memory.rssMiB ?? 0);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const before = speedReading();
    for (const i of slicePlan(sides.length, rounds)) await slice(runs[i]!, sliceMs, runs[i]!.loads.length === 0 ? opts.warmupMs : settleMs);
    const speed = speedOf(before, speedReading());
    return runs.map((run) => figureOf(point, run, speed, rounds > 1));
  } finally {
    // A failed point must not leave the RSS sampler or the samplers' connections running.
    sampling = false;
    await sampler;
    for (const run of runs) await run.host?.close();
  }
}

/** One slice of one side: its load, then its counters and host CPU added to the side's. */
async function slice(run: SideRun, durationMs: number, warmupMs: number): Promise<void> {
  const { side } = run;
  let hostBefore: Awaited<ReturnType<HostCpuSampler['snapshot']>> | undefined;
  const result = await runLoad({
    ...((side.prebuild ?? side.countersUrl !== undefined) ? { prebuild: PREBUILD_PER_S } : {}),
    ...side.load,
    durationMs,
    warmupMs,
    keepLatencies: true,
    onMeasure: async () => {
      if (side.countersUrl) await counters(side.countersUrl, '/reset');
      hostBefore = await run.host?.snapshot();
    },
  });
  run.loads.push(result as SliceLoad);
  if (!side.countersUrl) return;
  const after = await counters(side.countersUrl);
  run.peak = Math.max(run.peak, after.memory.rssMiB);
  run.counters = run.counters ? addSnapshots(run.counters, after) : after;
  const spent = hostBefore && run.host ? await run.host.since(hostBefore) : undefined;
  if (spent) run.hostSpent = addHostCpu(run.hostSpent, spent);
}

function addHostCpu(a: HostCpu | undefined, b: HostCpu): HostCpu {
  if (!a) return b;
  const add = (x?: number, y?: number) => (x === undefined && y === undefined ? undefined : (x ?? 0) + (y ?? 0));
  const backends = add(a.pgBackendsMs, b.pgBackendsMs);
  const background = add(a.pgBackgroundMs, b.pgBackgroundMs);
  return { loadGeneratorMs: a.loadGeneratorMs + b.loadGeneratorMs, ...(backends === undefined ? {} : { pgBackendsMs: backends }), ...(background === undefined ? {} : { pgBackgroundMs: background }) };
}

/** A side's figure from its slices: the merged load, per-request counters, RSS, the point's speed and the per-slice figures. */
function figureOf(point: string, run: SideRun, speed: PointSpeed, sliced: boolean): Figure {
  const { side } = run;
  const result = mergeSlices(run.loads);
  const base: Figure = {
    name: side.name,
    ...(side.store ? { store: side.store } : {}),
    ...(side.pairedStore ? { pairedStore: side.pairedStore } : {}),
    point,
    result,
    speed,
    ...(sliced ? { slices: { rps: run.loads.map((l) => l.rps), p50: run.loads.map((l) => l.latencyMs.p50), p99: run.loads.map((l) => l.latencyMs.p99) } } : {}),
  };
  if (!run.counters) return base;
  const after = run.counters;
  const per = (n: number) => Math.round((n / Math.max(1, result.requests)) * 100) / 100;
  const perRequest: NonNullable<Figure['perRequest']> = {
    statements: per(after.statementTotal),
    cpuMs: Math.round((after.cpuMs / Math.max(1, result.requests)) * 1000) / 1000,
    crypto: Object.fromEntries(Object.entries(after.crypto).map(([k, v]) => [k, per(v)])),
    topStatements: Object.fromEntries(Object.entries(after.statements).slice(0, 12).map(([k, v]) => [k, per(v)])),
    ...(after.allocated ? { heap: { allocatedKiB: per(after.allocated.total / 1024), youngKiB: per(after.allocated.young / 1024), scavengesPer1000: per((after.gc?.byKind.scavenge ?? 0) * 1000), gcMs: Math.round(((after.gc?.totalMs ?? 0) / Math.max(1, result.requests)) * 1000) / 1000 } } : {}),
    ...(run.hostSpent ? { host: perRequestHost(run.hostSpent, result.requests) } : {}),
  };
  const chain = chainFigures(after.chain, result.requests);
  if (chain) perRequest.chain = chain;
  return { ...base, perRequest, rssMiB: { idle: run.idle, underLoad: run.peak } };
}

async function withDeputy<T>(
  config: Record<string, unknown>,
  database: TestDatabase,
  fn: (url: string, issuer: string, countersUrl: string) => Promise<T>,
  extra: { env?: Record<string, string>; port?: number } = {},
): Promise<T> {
  const keysDir = mkdtempSync(join(tmpdir(), 'deputy-bench-keys-'));
  const full = {
    ...config,
    server: { port: extra.port ?? 0, host: '127.0.0.1' },
    store: database.url ? { databaseUrl: database.url, poolSize: 10 } : { dataDir: 'memory://' },
    keys: { dir: keysDir, generate: true },
    log: { level: 'warn' },
  };
  const { child, ready } = await startProcess('deputy-process.ts', { ...extra.env, BENCH_DEPUTY_CONFIG: JSON.stringify(full) });
  try {
    return await fn(ready[0]!, ready[1]!, ready[2]!);
  } finally {
    await stopProcess(child);
    rmSync(keysDir, { recursive: true, force: true });
  }
}

/** A token exchange request of `agent` for `subject` (a fresh client assertion and DPoP proof). */
async function exchangeRequest(agent: ClientIdentity, issuer: string, subject: string): Promise<RequestSpec> {
  return {
    method: 'POST',
    path: '/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await proof(agent, `${issuer}/token`) },
    body: form({
      grant_type: TOKEN_EXCHANGE, subject_token: subject, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      resource: AUDIENCE, scope: 'deputy.read', client_id: agent.id,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await assertion(agent, issuer),
    }),
  };
}

/** The bench's agent registration for `agent`. */
function benchAgent(agent: ClientIdentity, name: string): Record<string, unknown> {
  return { id: agent.id, name, owner: 'bench@example.com', scopes: ['deputy.read'], audiences: [AUDIENCE], jwks: agent.jwks };
}

/** The bare oidc-provider's process for the yardstick's own yardstick (bare-oidc-process.ts). */
interface BareProvider {
  client: ClientIdentity;
  url: string;
  issuer: string;
  countersUrl: string;
}

/**
 * Runs `fn` with a bare oidc-provider (default configuration, same kind of store at `database`)
 * up beside the caller's Deputy, so the two are measured in the same interleaved points;
 * `database` undefined: `fn(undefined)` (no bare provider: `--exchange-only`).
 */
async function withBareProvider<T>(database: TestDatabase | undefined, fn: (bare: BareProvider | undefined) => Promise<T>): Promise<T> {
  if (!database) return fn(undefined);
  const client = await clientIdentity('bench-bare');
  const store = database.url ? { databaseUrl: database.url } : { dataDir: 'memory://' };
  const { child, ready } = await startProcess('bare-oidc-process.ts', { BENCH_CLIENT: JSON.stringify({ client_id: client.id, jwks: client.jwks }), BENCH_STORE: JSON.stringify(store) });
  try {
    const [url, issuer, countersUrl] = ready as [string, string, string];
    return await fn({ client, url, issuer, countersUrl });
  } finally {
    await stopProcess(child);
  }
}

/** A client_credentials grant request of `client` (private_key_jwt + DPoP) at `issuer`. */
async function clientCredentialsRequest(client: ClientIdentity, issuer: string): Promise<RequestSpec> {
  return {
    method: 'POST',
    path: '/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await proof(client, `${issuer}/token`) },
    body: form({
      grant_type: 'client_credentials', scope: 'authzen:evaluate', client_id: client.id,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await assertion(client, issuer),
    }),
  };
}

/**
 * The grants on one Deputy, each point interleaving (issue 16, fourteenth round) the
 * client_credentials yardstick, the token exchange, the same client_credentials grant on a bare
 * oidc-provider (`bareDatabase`: its store; undefined with `--exchange-only`) and, with
 * `--exchange-agents`, the exchange spread over N agents — so exchange ÷ client_credentials and
 * client_credentials ÷ bare provider are ratios of slices taken side by side in time.
 */
async function deputyScenarios(opts: Options, idp: MockIdp, storeName: string, database: TestDatabase, bareDatabase: TestDatabase | undefined): Promise<Figure[]> {
  const agent = await clientIdentity('bench-agent');
  const admin = await clientIdentity('bench-admin');
  const more = opts.exchangeAgents > 1 ? await Promise.all(Array.from({ length: opts.exchangeAgents }, (_, i) => clientIdentity(`bench-agent-${i + 1}`))) : [];
  const config = {
    trustedIssuers: [idp.issuerConfig('okta')],
    admin: { clients: [{ client_id: admin.id, scopes: ['authzen:evaluate'], jwks: admin.jwks }] },
    agents: [benchAgent(agent, 'Bench agent'), ...more.map((a, i) => benchAgent(a, `Bench agent ${i + 1}`))],
  };
  const subject = await idp.oktaAccessToken({ expiresIn: 3600 });
  return withDeputy(config, database, (url, issuer, countersUrl) => withBareProvider(bareDatabase, async (bare) => {
    const figures: Figure[] = [];
    for (const concurrency of opts.concurrency) {
      const load = { origin: url, concurrency, durationMs: opts.durationMs, warmupMs: opts.warmupMs };
      const deputy = { store: storeName, countersUrl, ...(database.url ? { databaseUrl: database.url } : {}) };
      let turn = 0;
      const spread = () => exchangeRequest(more[turn++ % more.length]!, issuer, subject);
      const sides: Side[] = [
        { name: 'client_credentials (yardstick)', ...deputy, load: { ...load, next: () => clientCredentialsRequest(admin, issuer) } },
        { name: 'token exchange', ...deputy, load: { ...load, next: () => exchangeRequest(agent, issuer, subject) } },
        ...(bare ? [{
          name: 'client_credentials on bare oidc-provider (yardstick)', store: storeName, countersUrl: bare.countersUrl, ...(bareDatabase?.url ? { databaseUrl: bareDatabase.url } : {}),
          load: { ...load, origin: bare.url, next: () => clientCredentialsRequest(bare.client, bare.issuer) },
        }] : []),
        ...(more.length > 0 ? [{ name: `token exchange (${more.length} agents)`, ...deputy, load: { ...load, next: spread } }] : []),
      ];
      figures.push(...(await interleaved(`grants ${storeName} c${concurrency}`, sides, opts)));
    }
    return figures;
  }));
}

async function tokenExchange(url: string, issuer: string, agent: ClientIdentity, subject: string, resource: string): Promise<string> {
  const res = await fetch(`${url}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await proof(agent, `${issuer}/token`) },
    body: form({
      grant_type: TOKEN_EXCHANGE, subject_token: subject, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      resource, scope: 'deputy.read', client_id: agent.id,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await assertion(agent, issuer),
    }),
  });
  const body = (await res.json()) as { access_token?: string };
  if (!body.access_token) throw new Error(`bench setup: exchange failed: ${JSON.stringify(body)}`);
  return body.access_token;
}

/** A DPoP proof for a resource request (RFC 9449 §4.2: `ath` binds it to the token). */
async function resourceProof(client: ClientIdentity, htm: string, htu: string, token: string): Promise<string> {
  const ath = createHash('sha256').update(token).digest('base64url');
  return new SignJWT({ htm, htu, jti: randomUUID(), ath }).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: client.dpop.jwk })
    .setIssuedAt().sign(client.dpop.privateKey);
}

/** One of the gateway bench's two Deputy processes (receipts on / off): where it listens, its issuer, the agent's token for `/gw/echo`. */
interface GatewayDeputy {
  url: string;
  issuer: string;
  countersUrl: string;
  token: string;
  database: TestDatabase;
}

/** Runs `fn` with a gateway bench Deputy (receipts on or off) on `database`, its agent's gateway token obtained. */
async function withGatewayDeputy<T>(idp: MockIdp, agent: ClientIdentity, upstream: string, database: TestDatabase, receipts: boolean, fn: (d: GatewayDeputy) => Promise<T>): Promise<T> {
  const port = await freePort();
  const issuer = `http://localhost:${port}`;
  const gw = `${issuer}/gw/echo`;
  const config = {
    trustedIssuers: [idp.issuerConfig('okta')],
    agents: [{ id: agent.id, name: 'Bench gateway agent', owner: 'bench@example.com', scopes: ['deputy.read'], audiences: [gw, AUDIENCE], jwks: agent.jwks }],
    connections: [{ id: 'echo', kind: 'api_key', baseUrl: upstream, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'BENCH_ECHO_KEY' }, requiredScopes: ['deputy.read'] }],
  };
  const subject = await idp.oktaAccessToken({ expiresIn: 3600, scp: ['deputy.read'] });
  const env = { BENCH_ECHO_KEY: 'bench-secret-value', ...(receipts ? {} : { BENCH_NO_RECEIPTS: '1' }) };
  return withDeputy(config, database, async (url, _issuer, countersUrl) => fn({ url, issuer, countersUrl, token: await tokenExchange(url, issuer, agent, subject, gw), database }), { env, port });
}

/**
 * Gateway: a proxied call (token + DPoP proof verified, revocation, PDP, receipt, credential
 * injected, forwarded) with receipts on, the same with receipts off, and the upstream called
 * directly, interleaved in one point; then the exchange with receipts on and off, interleaved.
 * Both Deputy processes (receipts on: `dbOn`, off: `dbOff`) are up at once (issue 16, fourteenth round).
 */
async function gatewayScenarios(opts: Options, idp: MockIdp, upstream: string, storeName: string, dbOn: TestDatabase, dbOff: TestDatabase): Promise<Figure[]> {
  const agent = await clientIdentity('bench-gw-agent');
  const subject = await idp.oktaAccessToken({ expiresIn: 3600, scp: ['deputy.read'] });
  const upstreamOrigin = new URL(upstream).origin;
  return withGatewayDeputy(idp, agent, upstream, dbOn, true, (on) => withGatewayDeputy(idp, agent, upstream, dbOff, false, async (off) => {
    const figures: Figure[] = [];
    const both: Array<[string, GatewayDeputy]> = [['receipts on', on], ['receipts off', off]];
    for (const concurrency of opts.concurrency) {
      const load = { concurrency, durationMs: opts.durationMs, warmupMs: opts.warmupMs };
      const side = (name: string, d: GatewayDeputy, next: LoadOptions['next']): Side =>
        ({ name, store: storeName, countersUrl: d.countersUrl, ...(d.database.url ? { databaseUrl: d.database.url } : {}), load: { ...load, origin: d.url, next } });
      const call = (d: GatewayDeputy) => async (): Promise<RequestSpec> => ({
        method: 'GET',
        path: '/gw/echo/items',
        headers: { authorization: `DPoP ${d.token}`, dpop: await resourceProof(agent, 'GET', `${d.issuer}/gw/echo/items`, d.token) },
      });
      if (!opts.exchangeOnly) {
        const direct: Side = { name: 'upstream called directly (yardstick)', pairedStore: storeName, load: { ...load, origin: upstreamOrigin, next: () => ({ method: 'GET', path: '/items', headers: { 'x-api-key': 'bench-secret-value' } }) } };
        figures.push(...(await interleaved(`gateway ${storeName} c${concurrency}`, [...both.map(([label, d]) => side(`gateway call (${label})`, d, call(d))), direct], opts)));
      }
      const exchanges = both.map(([label, d]) => side(`token exchange (${label})`, d, () => exchangeRequest(agent, d.issuer, subject)));
      figures.push(...(await interleaved(`receipts exchange ${storeName} c${concurrency}`, exchanges, opts)));
    }
    return figures;
  }));
}

const LLM_BODY = JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 8, stream: true });

/**
 * LLM gateway: a streamed Chat Completions call through Deputy (token + DPoP, PDP with the
 * model in context, budgets reserved on two budgets and settled from the metered stream, key
 * injected) against the same call straight to the mock provider (served by this process),
 * interleaved in one point. The Deputy side has no counters (as before: no JIT warm-up either).
 */
async function llmScenarios(opts: Options, idp: MockIdp, provider: string, storeName: string, database: TestDatabase): Promise<Figure[]> {
  const agent = await clientIdentity('bench-llm-agent');
  const port = await freePort();
  const issuer = `http://localhost:${port}`;
  const llm = `${issuer}/llm/mock`;
  const config = {
    trustedIssuers: [idp.issuerConfig('okta')],
    agents: [{ id: agent.id, name: 'Bench LLM agent', owner: 'bench@example.com', scopes: ['deputy.read'], audiences: [llm], jwks: agent.jwks }],
    connections: [{ id: 'mock', kind: 'llm', provider: 'openai', baseUrl: provider, allowInsecureHttp: true, secret: { env: 'BENCH_LLM_KEY' }, requiredScopes: ['deputy.read'] }],
    budgets: {
      prices: { 'gpt-test': { input: 150_000, output: 600_000 } },
      limits: [
        { id: 'bench-cost', connection: 'mock', unit: 'cost', window: 'day', limit: 1_000_000_000_000 },
        { id: 'bench-tokens', agent: agent.id, unit: 'output_tokens', window: 'month', limit: 1_000_000_000_000 },
      ],
    },
  };
  const subject = await idp.oktaAccessToken({ expiresIn: 3600, scp: ['deputy.read'] });
  return withDeputy(config, database, async (url) => {
    const figures: Figure[] = [];
    const token = await tokenExchange(url, issuer, agent, subject, llm);
    for (const concurrency of opts.concurrency) {
      const call = async (): Promise<RequestSpec> => ({
        method: 'POST',
        path: '/llm/mock/v1/chat/completions',
        headers: { authorization: `DPoP ${token}`, dpop: await resourceProof(agent, 'POST', `${llm}/v1/chat/completions`, token), 'content-type': 'application/json' },
        body: LLM_BODY,
      });
      const load = { concurrency, durationMs: opts.durationMs, warmupMs: opts.warmupMs };
      const direct = (): RequestSpec => ({ method: 'POST', path: '/v1/chat/completions', headers: { authorization: 'Bearer bench-llm-key', 'content-type': 'application/json' }, body: LLM_BODY });
      figures.push(...(await interleaved(`llm ${storeName} c${concurrency}`, [
        { name: 'llm stream (budgets on)', store: storeName, prebuild: true, load: { ...load, origin: url, next: call } },
        { name: 'llm stream called directly (yardstick)', pairedStore: storeName, load: { ...load, origin: new URL(provider).origin, next: direct } },
      ], opts)));
    }
    return figures;
  }, { env: { BENCH_LLM_KEY: 'bench-llm-key' }, port });
}

const MCP_ACCEPT = 'application/json, text/event-stream';
const MCP_VERSION = '2025-06-18';

/** Opens an MCP session at `url` (initialize + initialized, MCP Streamable HTTP) and returns its id. */
async function mcpSession(url: string, headers: () => Promise<Record<string, string>>): Promise<string> {
  const init = await fetch(url, {
    method: 'POST',
    headers: { ...(await headers()), 'content-type': 'application/json', accept: MCP_ACCEPT },
    body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: MCP_VERSION, capabilities: {}, clientInfo: { name: 'bench', version: '1' } } }),
  });
  const session = init.headers.get('mcp-session-id');
  await init.arrayBuffer();
  if (!session) throw new Error(`bench setup: MCP initialize failed (${init.status})`);
  const initialized = await fetch(url, {
    method: 'POST',
    headers: { ...(await headers()), 'content-type': 'application/json', accept: MCP_ACCEPT, 'mcp-session-id': session, 'mcp-protocol-version': MCP_VERSION },
    body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
  });
  await initialized.arrayBuffer();
  return session;
}

let mcpRequestId = 0;

/** One `tools/call` of the upstream's `echo` tool in `session`. */
function mcpCall(path: string, session: string, headers: Record<string, string>): RequestSpec {
  mcpRequestId += 1;
  return {
    method: 'POST',
    path,
    headers: { ...headers, 'content-type': 'application/json', accept: MCP_ACCEPT, 'mcp-session-id': session, 'mcp-protocol-version': MCP_VERSION },
    body: JSON.stringify({ jsonrpc: '2.0', id: mcpRequestId, method: 'tools/call', params: { name: 'echo', arguments: { text: 'bench' } } }),
  };
}

/**
 * MCP: `tools/call` through Deputy's MCP gateway (`/mcp/{server}`: DPoP token and proof, live
 * chain, PDP with the tool and arguments, receipt, credential injected, upstream session) against
 * the same SDK server called directly (mcp-upstream-process.ts). Pinning is off: a call's pin
 * check is the session's cached verdict either way, so it costs the same in both. The two are
 * interleaved in one point.
 */
async function mcpScenarios(opts: Options, idp: MockIdp, upstream: string, storeName: string, database: TestDatabase): Promise<Figure[]> {
  const agent = await clientIdentity('bench-mcp-agent');
  const port = await freePort();
  const issuer = `http://localhost:${port}`;
  const resource = `${issuer}/mcp/echo`;
  const config = {
    trustedIssuers: [idp.issuerConfig('okta')],
    agents: [{ id: agent.id, name: 'Bench MCP agent', owner: 'bench@example.com', scopes: ['deputy.read'], audiences: [resource], jwks: agent.jwks }],
    connections: [{ id: 'mcpkey', kind: 'api_key', baseUrl: upstream, allowInsecureHttp: true, header: 'Authorization', scheme: 'Bearer', secret: { env: 'BENCH_MCP_KEY' } }],
    mcpServers: [{ id: 'echo', url: upstream, allowInsecureHttp: true, connection: 'mcpkey', requiredScopes: ['deputy.read'], pinning: 'off', limits: { sessionsPerAgent: 1000 } }],
  };
  const subject = await idp.oktaAccessToken({ expiresIn: 3600, scp: ['deputy.read'] });
  return withDeputy(config, database, async (url, _issuer, countersUrl) => {
    const figures: Figure[] = [];
    const token = await tokenExchange(url, issuer, agent, subject, resource);
    const auth = async () => ({ authorization: `DPoP ${token}`, dpop: await resourceProof(agent, 'POST', resource, token) });
    const session = await mcpSession(`${url}/mcp/echo`, auth);
    const u = new URL(upstream);
    const directSession = await mcpSession(upstream, async () => ({ authorization: 'Bearer bench-mcp-secret' }));
    for (const concurrency of opts.concurrency) {
      const next = async () => mcpCall('/mcp/echo', session, await auth());
      const load = { concurrency, durationMs: opts.durationMs, warmupMs: opts.warmupMs };
      figures.push(...(await interleaved(`mcp ${storeName} c${concurrency}`, [
        { name: 'MCP tools/call through Deputy', store: storeName, countersUrl, ...(database.url ? { databaseUrl: database.url } : {}), load: { ...load, origin: url, next } },
        { name: 'MCP tools/call directly (yardstick)', pairedStore: storeName, load: { ...load, origin: u.origin, next: () => mcpCall(u.pathname, directSession, { authorization: 'Bearer bench-mcp-secret' }) } },
      ], opts)));
    }
    return figures;
  }, { env: { BENCH_MCP_KEY: 'bench-mcp-secret' }, port });
}

/** The PDP figures come from `pdp.ts`, run as its own process with the same load settings. */
/**
 * Runs a part of the bench in its own process and returns its JSON report. Its own process, so
 * that a crash there (V8 has aborted long in-process runs with "Fatal error … unreachable code"
 * in its deoptimizer, on Node 20 and 22 alike) loses that part only: the caller records the error.
 */
async function childReport(entry: string, args: string[]): Promise<unknown> {
  const out = join(mkdtempSync(join(tmpdir(), 'deputy-bench-part-')), 'part.json');
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(HERE, entry), '--out', out, ...args], { stdio: ['ignore', 'ignore', 'inherit'], env: process.env });
    child.once('exit', (code, signal) => (code === 0 ? resolve() : reject(new Error(`${entry} exited with ${code ?? signal}`))));
  });
  return JSON.parse(readFileSync(out, 'utf8')) as unknown;
}

/** The PDP part (pdp.ts); `{ error }` when its process failed. */
async function pdpBench(opts: Options): Promise<PdpReport | { error: string }> {
  const args = ['--duration-ms', String(opts.durationMs), '--concurrency', opts.concurrency.join(','), '--slices', String(sliceRounds), '--speed-reference', String(speedReference), ...(opts.quick ? ['--quick'] : [])];
  return (childReport('pdp.ts', args) as Promise<PdpReport>).catch((err: Error) => ({ error: err.message }));
}

/**
 * The scale curves (scale.ts, which runs each curve in a process of its own and reports the ones
 * that failed); `{ error }` when scale.ts itself failed.
 */
async function scaleBench(opts: Options): Promise<ScaleReport | { error: string }> {
  return (childReport('scale.ts', opts.quick ? ['--quick'] : []) as Promise<ScaleReport>).catch((err: Error) => ({ error: err.message }));
}

/**
 * A body the size and shape of the PDP bench's one-link evaluation (a subject carrying an ES256
 * agent token of ~700 characters, an action, a resource): ~0.9 KiB of JSON.
 */
const AUTHZEN_SIZED_BODY = JSON.stringify({
  subject: { type: 'agent', id: 'researcher', properties: { token: `eyJ${'x'.repeat(700)}` } },
  action: { name: 'read' },
  resource: { type: 'document', id: 'doc-1', properties: { owner: 'alice@example.com' } },
});

async function httpFloor(opts: Options): Promise<Figure[]> {
  const { child, ready } = await startProcess('floor-process.ts', {});
  try {
    const figures: Figure[] = [];
    for (const concurrency of opts.concurrency) {
      const load = { origin: ready[0]!, concurrency, durationMs: opts.durationMs, warmupMs: opts.warmupMs, next: (): RequestSpec => ({ method: 'GET', path: '/' }) };
      figures.push(...(await interleaved(`HTTP floor c${concurrency}`, [{ name: 'HTTP floor (bare Koa)', load }], opts)));
    }
    // The same floor receiving what a PEP sends: a POST of an AuthZEN-sized JSON body, read and
    // parsed (a like-for-like yardstick for the PDP's cached path; the GET floor stays the issue's).
    const body = AUTHZEN_SIZED_BODY;
    for (const concurrency of opts.concurrency) {
      const load = { origin: ready[0]!, concurrency, durationMs: opts.durationMs, warmupMs: opts.warmupMs, next: (): RequestSpec => ({ method: 'POST', path: '/evaluation', headers: { 'content-type': 'application/json' }, body }) };
      figures.push(...(await interleaved(`HTTP floor (POST) c${concurrency}`, [{ name: 'HTTP floor (bare Koa, AuthZEN-sized POST)', load }], opts)));
    }
    return figures;
  } finally {
    await stopProcess(child);
  }
}

/**
 * A ratio of two figures of one point: with both sides sliced ({@link interleaved}), the median of
 * the per-slice-pair values `f(a_i, b_i)` with their min–max; otherwise (a side measured alone)
 * `f` of the two whole figures, min = max = that value.
 */
function pairValue(a: Figure, b: Figure, f: (x: number, y: number) => number, key: 'rps' | 'p50' | 'p99', digits: number): PairStatistic | undefined {
  const whole = (x: Figure) => ({ rps: [x.result.rps], p50: [x.result.latencyMs.p50], p99: [x.result.latencyMs.p99] });
  const stat = a.slices && b.slices && a.point === b.point ? pairStatistic(a.slices[key], b.slices[key], f, digits) : pairStatistic(whole(a)[key], whole(b)[key], f, digits);
  // Errors on either side travel with the ratio (a failing yardstick would otherwise flatter Deputy).
  const errors = a.result.errors + b.result.errors;
  return stat && errors > 0 ? { ...stat, errors } : stat;
}

/**
 * The run's ratios (rates A ÷ B) and added latencies (A − B, ms), keyed `<name>.<store>.c<n>`:
 * `ratios` holds each one's median over its slice pairs (the figure reported and judged), `slices`
 * the median, min, max and pair count. B is looked up in A's point, so A and B were interleaved.
 */
function ratios(figures: Figure[]): { ratios: Record<string, number>; slices: Record<string, PairStatistic> } {
  const out: Record<string, number> = {};
  const slices: Record<string, PairStatistic> = {};
  const rate = (x: number, y: number) => (y > 0 ? x / y : Number.NaN);
  const added = (x: number, y: number) => x - y;
  const put = (key: string, stat: PairStatistic | undefined) => {
    if (!stat) return;
    out[key] = stat.median;
    slices[key] = stat;
  };
  const samePoint = (f: Figure, y: Figure) => (f.point !== undefined && f.point === y.point) || (f.point === undefined && y.store === f.store && y.result.concurrency === f.result.concurrency);
  const at = (f: Figure) => `${f.store}.c${f.result.concurrency}`;
  for (const f of figures.filter((x) => x.name === 'token exchange' || /^token exchange \(\d+ agents\)$/.test(x.name))) {
    const yard = figures.find((y) => y.name === 'client_credentials (yardstick)' && samePoint(f, y));
    // The N-agent scenario (information, not the target's): `exchange_N_agents_vs_client_credentials`.
    const key = f.name === 'token exchange' ? 'exchange' : `exchange_${f.name.replace(/\D/g, '')}_agents`;
    if (yard) put(`${key}_vs_client_credentials.${at(f)}`, pairValue(f, yard, rate, 'rps', 2));
  }
  for (const f of figures.filter((x) => x.name === 'client_credentials (yardstick)')) {
    const bare = figures.find((y) => y.name.startsWith('client_credentials on bare') && samePoint(f, y));
    if (bare) put(`client_credentials_vs_bare_oidc_provider.${at(f)}`, pairValue(f, bare, rate, 'rps', 2));
  }
  const throughVsDirect: Array<[string, string, string]> = [
    ['gateway call (receipts on)', 'upstream called directly (yardstick)', 'gateway'],
    ['llm stream (budgets on)', 'llm stream called directly (yardstick)', 'llm'],
    ['MCP tools/call through Deputy', 'MCP tools/call directly (yardstick)', 'mcp'],
  ];
  for (const [through, directName, key] of throughVsDirect) {
    for (const f of figures.filter((x) => x.name === through)) {
      const direct = figures.find((y) => y.name === directName && (f.point === undefined ? y.result.concurrency === f.result.concurrency : y.point === f.point));
      if (!direct) continue;
      put(`${key}_vs_direct.${at(f)}`, pairValue(f, direct, rate, 'rps', 2));
      put(`${key}_added_p50_ms.${at(f)}`, pairValue(f, direct, added, 'p50', 3));
      put(`${key}_added_p99_ms.${at(f)}`, pairValue(f, direct, added, 'p99', 3));
    }
  }
  for (const kind of ['gateway call', 'token exchange']) {
    for (const on of figures.filter((x) => x.name === `${kind} (receipts on)`)) {
      const off = figures.find((y) => y.name === `${kind} (receipts off)` && samePoint(on, y));
      if (off) put(`${kind.replace(' ', '_')}_receipts_on_vs_off.${at(on)}`, pairValue(on, off, rate, 'rps', 2));
    }
  }
  return { ratios: out, slices };
}

interface PdpReport {
  yardstick: { cedarStatefulIsAuthorizedPerSecond: number };
  rows: Array<{
    scenario: string; decisionCache: boolean; concurrency: number; decisionsPerSecond: number; latencyMs: { p50: number; p99: number }; errors: number;
    /** The VM's speed around the point, against this run's first calibration. */
    speed?: PointSpeed;
    /** The point's floor interleaved with it (pdp.ts `PdpPair`). */
    pair?: { floor: string; floorPerSecond: number; ratio: PairStatistic };
  }>;
}

function perRequestHost(spent: HostCpu, requests: number): HostCpu {
  const per = (ms: number) => Math.round((ms / Math.max(1, requests)) * 1000) / 1000;
  return {
    loadGeneratorMs: per(spent.loadGeneratorMs),
    ...(spent.pgBackendsMs === undefined ? {} : { pgBackendsMs: per(spent.pgBackendsMs) }),
    ...(spent.pgBackgroundMs === undefined ? {} : { pgBackgroundMs: per(spent.pgBackgroundMs) }),
  };
}

function hostCell(host: HostCpu | undefined): string {
  if (!host) return '—';
  return [host.loadGeneratorMs, host.pgBackendsMs ?? '—', host.pgBackgroundMs ?? '—'].join(' / ');
}

/** The VM speed cell of a scenario row: the point's speed factor, bold and flagged when disturbed. */
function speedCell(speed: PointSpeed | undefined): string {
  if (!speed) return '—';
  return speed.disturbed ? `**${speed.speed} disturbed**` : String(speed.speed);
}

/** One row per point: its calibration before → after, speed factor, steal share, and why it is flagged. */
function speedRows(figures: Figure[], pdp: PdpReport | { error: string } | undefined): string[] {
  const points = new Map<string, PointSpeed>();
  for (const f of figures) if (f.point && f.speed && !points.has(f.point)) points.set(f.point, f.speed);
  // The PDP part's points (pdp.ts, its own process, read against this run's first calibration).
  if (pdp && !('error' in pdp)) for (const r of pdp.rows) if (r.speed) points.set(`PDP ${r.scenario}, cache ${r.decisionCache ? 'on' : 'off'} c${r.concurrency}`, r.speed);
  const pct = (n: number | undefined) => (n === undefined ? '—' : `${Math.round(n * 1000) / 10} %`);
  return [...points].map(([point, s]) => `| ${point} | ${s.calibrationMs[0]} → ${s.calibrationMs[1]} | ${s.wallMs ? `${s.wallMs[0]} → ${s.wallMs[1]}` : '—'} | ${s.speed} | ${pct(s.steal)} | ${s.disturbed ?? ''} |`);
}

function markdown(results: { machine: Record<string, unknown>; crypto: Record<string, number>; figures: Figure[]; ratios: Record<string, number>; ratioSlices: Record<string, PairStatistic>; targets: TargetRow[]; speedReferenceMs?: number; pdp?: PdpReport | { error: string } }): string {
  const pdp = results.pdp && 'error' in results.pdp
    ? ['', `PDP part failed: ${results.pdp.error}`]
    : results.pdp
    ? [
        '',
        `PDP (AuthZEN over HTTP, PGlite). Cedar floor (statefulIsAuthorized in-process): ${results.pdp.yardstick.cedarStatefulIsAuthorizedPerSecond} calls/s.`,
        '',
        '| PDP scenario | decision cache | concurrency | decisions/s | p50 ms | p99 ms | errors | ÷ floor interleaved: median (slice pairs min–max) | VM speed |',
        '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
        ...results.pdp.rows.map((r) => `| ${r.scenario} | ${r.decisionCache ? 'on' : 'off'} | ${r.concurrency} | ${r.decisionsPerSecond} | ${r.latencyMs.p50} | ${r.latencyMs.p99} | ${r.errors} | ${r.pair ? `÷ ${r.pair.floor} (${r.pair.floorPerSecond}/s): ${r.pair.ratio.median} (${r.pair.ratio.min}–${r.pair.ratio.max})` : '—'} | ${speedCell(r.speed)} |`),
      ]
    : [];
  const rows = results.figures.map((f) =>
    `| ${f.name} | ${f.store ?? (f.pairedStore ? `— (beside ${f.pairedStore})` : '—')} | ${f.result.concurrency} | ${f.result.rps} | ${f.result.latencyMs.p50} | ${f.result.latencyMs.p90} | ${f.result.latencyMs.p99} | ${f.result.errors} | ${speedCell(f.speed)} |`);
  const spread = (key: string) => {
    const st = results.ratioSlices[key];
    return st ? `${st.min}–${st.max} | ${st.pairs} | ${st.errors ?? 0}` : '— | — | —';
  };
  return [
    `Machine: ${results.machine.cpus} × ${results.machine.cpuModel}, ${results.machine.memoryGiB} GiB, Node ${results.machine.node}. Run: ${results.machine.date}.`,
    '',
    "Issue 16's targets (generated from this run: ratios are the medians of interleaved slice pairs, robust to the VM's speed; absolute figures move with it — read them beside the speed factors below):",
    '',
    targetsMarkdown(results.targets),
    '',
    '| scenario | store | concurrency | req/s | p50 ms | p90 ms | p99 ms | errors | VM speed |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
    `VM speed per point: a fixed calibration (SHA-256 digests in the load generator's process) before → after each point, its CPU ms (the VM's speed: other processes on the cores lengthen its wall time, not its CPU time) and wall ms; speed = the run's first reading (${results.speedReferenceMs ?? '—'} CPU ms) ÷ the point's mean (1 = as fast as at the start); steal = the hypervisor's share of all CPU time during the point (/proc/stat). Disturbed: the calibration's CPU time moved more than ${Math.round(DISTURBED_THRESHOLD * 100)} % within the point or against the first reading.`,
    '',
    '| point | calibration CPU ms before → after | its wall ms | speed | steal | disturbed |',
    '| --- | --- | --- | --- | --- | --- |',
    ...speedRows(results.figures, results.pdp),
    '',
    '| scenario | store | c | server CPU ms / request | load generator / PostgreSQL backends / PG background CPU ms / request | statements / request | WebCrypto ops / request | heap KiB / request (young) · scavenges / 1,000 · GC ms / request | RSS idle → under load (MiB) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...results.figures.filter((f) => f.perRequest).map((f) =>
      `| ${f.name} | ${f.store ?? '—'} | ${f.result.concurrency} | ${f.perRequest!.cpuMs} | ${hostCell(f.perRequest!.host)} | ${f.perRequest!.statements} | ${Object.entries(f.perRequest!.crypto).filter(([k]) => !k.startsWith('digest')).map(([k, v]) => `${k} ${v}`).join(', ')} | ${heapCell(f.perRequest!.heap)} | ${f.rssMiB!.idle} → ${f.rssMiB!.underLoad} |`),
    '',
    '| receipt chain writer (timed window) | store | c | appends / request | ms per append (call → settled) | appends inside the writer (mean) | chain statement in flight (share of window) |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...results.figures.filter((f) => f.perRequest?.chain).map((f) => {
      const c = f.perRequest!.chain!;
      return `| ${f.name} | ${f.store ?? '—'} | ${f.result.concurrency} | ${c.appendsPerRequest} | ${c.msPerAppend} | ${c.meanInWriter} | ${c.statementInFlight ?? '—'} |`;
    }),
    '',
    '| crypto floor (in-process, one core) | ops/s |',
    '| --- | --- |',
    ...Object.entries(results.crypto).map(([k, v]) => `| ${k} | ${v} |`),
    '',
    '| ratio (A ÷ B) or added ms (A − B) | value: median of slice pairs | slice pairs min–max | pairs | errors (A + B) |',
    '| --- | --- | --- | --- | --- |',
    ...Object.entries(results.ratios).map(([k, v]) => `| ${k} | ${v} | ${spread(k)} |`),
    ...pdp,
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const opts = options();
  jitWarmupMs = opts.jitWarmupMs;
  sliceRounds = opts.slices;
  const startedAt = Date.now();
  const idp = await startMockIdp({ alg: 'RS256' });
  const figures: Figure[] = [];
  try {
    const crypto = await cryptoFloor(opts.quick ? 300 : 1000);
    figures.push(...(await httpFloor(opts)));
    const upstream = await startProcess('floor-process.ts', {});
    const upstreamUrl = upstream.ready[0]!;
    const provider = await startMockLlm();
    const mcpUpstream = await startProcess('mcp-upstream-process.ts', {});
    const mcpUrl = mcpUpstream.ready[0]!;
    const stores: Array<[string, TestDatabase]> = [['pglite', { url: undefined, drop: async () => {} }]];
    if (process.env.DATABASE_URL) stores.push(['postgres', await createTestDatabase()]);
    // Each scenario's processes on a database of their own (PostgreSQL; PGlite: each in memory).
    const own = async (name: string, database: TestDatabase) => (name === 'postgres' ? createTestDatabase() : database);
    const drop = async (db: TestDatabase | undefined, database: TestDatabase) => { if (db && db !== database) await db.drop(); };
    for (const [name, database] of stores) {
      const bareDb = opts.exchangeOnly ? undefined : await own(name, database);
      try {
        figures.push(...(await deputyScenarios(opts, idp, name, database, bareDb)));
      } finally {
        await drop(bareDb, database);
        await database.drop();
      }
      const dbOn = await own(name, database);
      const dbOff = await own(name, database);
      try {
        figures.push(...(await gatewayScenarios(opts, idp, upstreamUrl, name, dbOn, dbOff)));
      } finally {
        await drop(dbOn, database);
        await drop(dbOff, database);
      }
      if (opts.exchangeOnly) continue;
      const db = await own(name, database);
      try {
        figures.push(...(await llmScenarios(opts, idp, provider.base, name, db)));
      } finally {
        await drop(db, database);
      }
      const mcpDb = await own(name, database);
      try {
        figures.push(...(await mcpScenarios(opts, idp, mcpUrl, name, mcpDb)));
      } finally {
        await drop(mcpDb, database);
      }
    }
    await stopProcess(mcpUpstream.child);
    await provider.close();
    await stopProcess(upstream.child);
    // The PDP part runs in its own process, after everything else; each of its points reads the
    // VM's speed against this run's first calibration, passed to it.
    if (speedReference === undefined) speedReading();
    const pdp = opts.skipPdp ? undefined : await pdpBench(opts);
    const scaleRun = opts.scale ? await scaleBench(opts) : undefined;
    const scale = scaleRun && 'curves' in scaleRun ? scaleRun : undefined;
    const pairs = ratios(figures);
    const httpFloorC8Figure = figures.find((f) => f.name === 'HTTP floor (bare Koa)' && f.result.concurrency === 8);
    const httpFloorC8 = httpFloorC8Figure?.result.rps;
    const results = {
      machine: {
        cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30),
        node: process.version, date: new Date().toISOString(), quick: opts.quick, durationMs: opts.durationMs,
      },
      crypto,
      figures,
      ratios: pairs.ratios,
      ratioSlices: pairs.slices,
      targets: evaluateTargets({ ratios: pairs.ratios, spreads: pairs.slices, ...(pdp && !('error' in pdp) ? { pdp } : {}), ...(httpFloorC8 ? { httpFloorC8, httpFloorC8Errors: httpFloorC8Figure!.result.errors } : {}) }),
      speedReferenceMs: speedReference,
      ...(pdp ? { pdp } : {}),
      ...(scale ? { scale: scale.curves, scaleFailures: scale.failures, scaleV8Flags: scale.v8Flags, scaleSeconds: scale.seconds } : {}),
      ...(scaleRun && 'error' in scaleRun ? { scaleError: scaleRun.error } : {}),
      elapsedMs: Date.now() - startedAt,
    };
    mkdirSync(dirname(opts.out), { recursive: true });
    writeFileSync(opts.out, `${JSON.stringify(results, null, 2)}\n`);
    const scaleSummary = scale
      ? `\n${(await import('./scale.js')).scaleMarkdown(scale.curves, scale.failures)}\n\nScale curves: V8 flags ${scale.v8Flags.join(' ') || 'none'}, ${scale.seconds} s.\n`
      : results.scaleError ? `\nScale curves failed: ${results.scaleError}\n` : '';
    const summary = `${markdown(results)}${scaleSummary}`;
    if (opts.markdown) writeFileSync(opts.markdown, summary);
    process.stdout.write(`${summary}\nresults written to ${opts.out}\n`);
  } finally {
    await idp.close();
  }
}

await main();
