/**
 * `npx tsx scripts/bench/pdp-hit-probe.ts [--rounds 5] [--ms 2000] [--concurrency 8] [--base DIR]`
 *
 * The PDP's cached decision against the HTTP floors, each server in its own process as in
 * `npm run bench`, in **alternating rounds**: per round, the bare Koa floor's `GET` and AuthZEN-sized
 * `POST` (floor-process.ts) and a repeated one-link evaluation with the decision cache on (every
 * request a hit, Deputy started as bench:pdp starts it: deputy-process.ts, the product's Node flags),
 * each for `--ms` at `--concurrency`, after one untimed round. Per request: the **server process's CPU** (`/proc/<pid>/stat`,
 * utime + stime: what the server ran, not how long it waited for a core) and the load generator's
 * (this process). Medians over the rounds, and each server's CPU per request ÷ the floors' in the same
 * round — usable on a shared machine where requests per second are not. `--base DIR` also starts
 * Deputy from another checkout (`DIR/scripts/bench/deputy-process.ts`, e.g. a `git archive` of the
 * base commit with `node_modules` linked) and measures it in the same rounds: a before/after pair
 * under the same load. Issue 16, ninth round.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from './options.js';
import { agentConfig, exchange, testAgent } from '../../test/support/agents.js';
import { clientCredentialsToken, clientKeys, oauthClient, type ClientKeys } from '../../test/support/clients.js';
import { startMockIdp } from '../../test/support/mock-idp.js';
import { runLoad, type RequestSpec } from './load.js';
import { productNodeFlags, startProcess } from './process.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const API = 'https://docs.example.com';
const { values } = parseArgs(import.meta.url, { options: { rounds: { type: 'string', default: '5', value: 'positive integer' }, ms: { type: 'string', default: '2000', value: 'positive integer' }, concurrency: { type: 'string', default: '8', value: 'positive integer' }, base: { type: 'string' } } });
const ROUNDS = Number(values.rounds);
const MS = Number(values.ms);
const CONCURRENCY = Number(values.concurrency);
/** Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux). */
const TICKS_PER_S = 100;

/** CPU µs a process has used (user + system), from `/proc/<pid>/stat`. */
function processCpuUs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / TICKS_PER_S;
}

/** A server under test: its process, where to send its requests, and the requests (cycled). */
interface Target {
  name: string;
  child: ChildProcess;
  origin: string;
  requests: RequestSpec[];
}

/** Starts Deputy (deputy-process.ts of `tree`) with the bench's PDP configuration and the product's Node flags. */
async function startDeputyFrom(tree: string, config: object): Promise<{ child: ChildProcess; url: string; issuer: string }> {
  const child = spawn(process.execPath, [...productNodeFlags(), '--import', 'tsx', join(tree, 'scripts/bench/deputy-process.ts')], {
    cwd: tree,
    env: { ...process.env, BENCH_DEPUTY_CONFIG: JSON.stringify(config), NODE_ENV: 'production' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [url, issuer] = await new Promise<string[]>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('READY '));
      if (line) resolve(line.split(' ').slice(1));
    });
    child.once('exit', (code) => reject(new Error(`deputy (${tree}) exited with ${code}`)));
  });
  return { child, url: url!, issuer: issuer! };
}

/** One-link evaluation requests (100 documents) for a Deputy: a PEP token, an agent token exchanged for a user. */
async function hitRequests(deputy: { issuer: string }, idp: Awaited<ReturnType<typeof startMockIdp>>, pepKeys: ClientKeys, agentKeys: ClientKeys): Promise<RequestSpec[]> {
  const pep = await clientCredentialsToken(await oauthClient(deputy.issuer, 'bench-pep', pepKeys), 'authzen:evaluate');
  const agent = await testAgent(deputy.issuer, 'agent-a', agentKeys);
  const user = await idp.oktaAccessToken({ email: 'alice@example.com', scp: ['docs.read'] });
  const token = (await exchange(agent, { subject_token: user, resource: API, scope: 'docs.read' })).access_token;
  const sub = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sub as string;
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${pep}` };
  return Array.from({ length: 100 }, (_, i) => ({
    method: 'POST',
    path: '/access/v1/evaluation',
    headers,
    body: JSON.stringify({ subject: { type: 'User', id: sub, properties: { token } }, action: { name: 'read' }, resource: { type: 'Resource', id: `doc-${i}`, properties: { owner: 'alice@example.com', scope: 'docs.read', audience: API } } }),
  }));
}

/** The floor's requests, as index.ts sends them: a `GET`, and a `POST` of an AuthZEN-sized body. */
function floorRequests(): { get: RequestSpec[]; post: RequestSpec[] } {
  const body = JSON.stringify({ subject: { type: 'agent', id: 'researcher', properties: { token: `eyJ${'x'.repeat(700)}` } }, action: { name: 'read' }, resource: { type: 'document', id: 'doc-1', properties: { owner: 'alice@example.com' } } });
  return { get: [{ method: 'GET', path: '/' }], post: [{ method: 'POST', path: '/evaluation', headers: { 'content-type': 'application/json' }, body }] };
}

/** One window on `target`: requests per second, server and load generator CPU µs per request. */
async function measure(target: Target): Promise<{ rps: number; serverUs: number; loadUs: number; errors: number }> {
  let sent = 0;
  let server0 = 0;
  let load0 = process.cpuUsage();
  const result = await runLoad({
    origin: target.origin,
    concurrency: CONCURRENCY,
    durationMs: MS,
    warmupMs: 500,
    next: () => target.requests[sent++ % target.requests.length]!,
    onMeasure: async () => {
      server0 = processCpuUs(target.child.pid!);
      load0 = process.cpuUsage();
    },
  });
  const load = process.cpuUsage(load0);
  const n = Math.max(1, result.requests);
  return { rps: result.rps, serverUs: (processCpuUs(target.child.pid!) - server0) / n, loadUs: (load.user + load.system) / n, errors: result.errors };
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? NaN;

async function main(): Promise<void> {
  const idp = await startMockIdp();
  const dir = mkdtempSync(join(tmpdir(), 'deputy-pdp-hit-probe-'));
  const pepKeys = await clientKeys();
  const agentKeys = await clientKeys();
  const config = (name: string) => ({
    server: { port: 0, host: '127.0.0.1', bodyLimitBytes: 1024 * 1024 },
    store: { dataDir: 'memory://' },
    keys: { dir: join(dir, `keys-${name}`), generate: true },
    log: { level: 'warn' },
    pdp: { watch: false, decisionCacheSize: 50_000, maxBatch: 1000 },
    trustedIssuers: [idp.issuerConfig('okta')],
    admin: { clients: [{ client_id: 'bench-pep', scopes: ['authzen:evaluate'], jwks: pepKeys.jwks }] },
    agents: [agentConfig('agent-a', agentKeys, { scopes: ['docs.read'], audiences: [API], maxDelegationDepth: 3 })],
  });
  const floor = await startProcess('floor-process.ts', {});
  const trees: Array<[string, string]> = [['PDP hit (this tree)', join(HERE, '../..')], ...(values.base ? [['PDP hit (--base)', values.base] as [string, string]] : [])];
  const targets: Target[] = [];
  try {
    const floors = floorRequests();
    targets.push({ name: 'GET floor', child: floor.child, origin: floor.ready[0]!, requests: floors.get }, { name: 'POST floor', child: floor.child, origin: floor.ready[0]!, requests: floors.post });
    for (const [name, tree] of trees) {
      const deputy = await startDeputyFrom(tree, config(name.replace(/\W/g, '')));
      targets.push({ name, child: deputy.child, origin: deputy.url, requests: await hitRequests(deputy, idp, pepKeys, agentKeys) });
    }
    await report(targets);
  } finally {
    for (const t of targets) t.child.kill('SIGTERM');
    floor.child.kill('SIGTERM');
    await idp.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * One untimed round (a long-running server's JIT has compiled its hot paths, and every answer is
 * remembered), then alternating rounds over `targets` (order reversed every other round), then the medians.
 */
async function report(targets: readonly Target[]): Promise<void> {
  for (const t of targets) await measure(t);
  const rows = new Map(targets.map((t) => [t.name, [] as Array<Awaited<ReturnType<typeof measure>>>]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const t of round % 2 ? [...targets].reverse() : targets) rows.get(t.name)!.push(await measure(t));
    process.stderr.write(`round ${round + 1}: ${targets.map((t) => `${t.name} ${rows.get(t.name)!.at(-1)!.serverUs.toFixed(1)} µs`).join(', ')}\n`);
  }
  const floorOf = (name: string, i: number) => rows.get(name)![i]!.serverUs;
  const lines = [
    `c${CONCURRENCY}, ${ROUNDS} rounds of ${MS} ms, medians (per round: server CPU per request ÷ the floor's in that round)`,
    '',
    '| server | req/s | server CPU µs / request | ÷ GET floor\'s | ÷ POST floor\'s | load generator CPU µs / request | errors |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...targets.map((t) => {
      const r = rows.get(t.name)!;
      return `| ${t.name} | ${median(r.map((x) => x.rps))} | ${median(r.map((x) => x.serverUs)).toFixed(1)} | ${median(r.map((x, i) => x.serverUs / floorOf('GET floor', i))).toFixed(2)} | ${median(r.map((x, i) => x.serverUs / floorOf('POST floor', i))).toFixed(2)} | ${median(r.map((x) => x.loadUs)).toFixed(1)} | ${r.reduce((a, x) => a + x.errors, 0)} |`;
    }),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
