/**
 * What the targeted probes (gateway-probe.ts, mcp-llm-probe.ts) share: the server's CPU by thread
 * and its context switches from procfs, `perf record`, the bench counters (counters.ts), an
 * agent's keys and DPoP proofs (RFC 9449 §4.2, built before a phase starts), latency percentiles.
 * Linux only (procfs).
 *
 * @module
 */
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { createTestDatabase } from '../../test/support/database.js';
import { startMockIdp } from '../../test/support/mock-idp.js';
import { freePort } from '../../test/support/net.js';
import type { CounterSnapshot } from './counters.js';
import { startProcess } from './process.js';

export const TICK_MS = 10; // procfs clock ticks (USER_HZ = 100 on Linux)


/** CPU ticks per thread name (threads of the same name summed). */
export function threadTicks(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // A JS worker thread (the PGlite worker, store.pglite.thread: worker) is named as the main thread: told apart by its tid.
      const key = tid === String(pid) ? 'main' : /^\d+$/.test(name) || name === 'node' ? 'js-worker' : name.replace(/\d+$/, '#');
      out.set(key, (out.get(key) ?? 0) + Number(fields[11]) + Number(fields[12])); // utime + stime
      out.set('(system)', (out.get('(system)') ?? 0) + Number(fields[12]));
      // Context switches: voluntary ones are the thread going to sleep (waiting for a socket, a lock).
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      for (const [field, label] of [['voluntary_ctxt_switches', '(sleeps)'], ['nonvoluntary_ctxt_switches', '(preempted)']] as const) {
        const n = Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0) / TICK_MS;
        out.set(label, (out.get(label) ?? 0) + n);
        out.set(`${label} ${key}`, (out.get(`${label} ${key}`) ?? 0) + n); // by thread kind: whose sleeps they are
      }
    } catch {
      // the thread ended between readdir and read
    }
  }
  return out;
}

/**
 * `perf record` of the server's on-CPU time (cpu-clock: sampled only while a thread runs, unlike
 * the V8 profile, which on a loaded machine also books the time a preempted thread waited);
 * resolves to a function that stops it.
 */
export function perfRecord(pid: number, out: string): () => Promise<void> {
  const perf = spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '2000', '-g', '-p', String(pid), '-o', out], { stdio: 'ignore' });
  return async () => {
    const exited = new Promise((r) => perf.once('exit', r));
    perf.kill('SIGINT');
    await exited;
  };
}

/**
 * `perf stat` of the server's syscalls by kind (the `syscalls:sys_enter_*` tracepoints, every
 * thread that exists when it attaches), written as CSV (`count,,event,…`) to `out`; resolves to a
 * function that stops it. Cheaper than `strace -f -c` (which stops the thread at every syscall, so
 * that its c1 and c8 fold events into loop turns unlike the untraced server's) but not free: read
 * the counts of a counted phase, its CPU from an uncounted one. Attaching and detaching every
 * `sys_enter` tracepoint of every thread takes seconds on a loaded machine.
 */
export function syscallCount(pid: number, out: string): () => Promise<void> {
  const perf = spawn('perf', ['stat', '-x', ',', '-e', 'syscalls:sys_enter_*', '-p', String(pid), '-o', out], { stdio: 'ignore' });
  return async () => {
    const exited = new Promise((r) => perf.once('exit', r));
    perf.kill('SIGINT');
    await exited;
  };
}

/** What the gateway probes start before Deputy (see {@link gatewayProbeSetup}). */
export interface GatewayProbeSetup {
  idp: Awaited<ReturnType<typeof startMockIdp>>;
  upstream: Awaited<ReturnType<typeof startProcess>>;
  database: { url: string | undefined; drop(): Promise<void> };
  agent: Client;
  /** Deputy's issuer, and its gateway URL for the `echo` connection (the token's audience). */
  issuer: string;
  gw: string;
  keysDir: string;
  /** Deputy's configuration (deputy-process.ts `BENCH_DEPUTY_CONFIG`). */
  config: Record<string, unknown>;
}

/**
 * What the gateway probes (gateway-probe.ts, gateway-tail.ts) start before Deputy: the mock IdP,
 * the upstream (floor-process.ts), a PostgreSQL database (`store` `postgres`, from `DATABASE_URL`)
 * or in-memory PGlite, the agent's keys, and Deputy's configuration: `probe-agent` allowed at
 * `{issuer}/gw/echo`, the `echo` API-key connection (its secret from `BENCH_ECHO_KEY`), logs at `warn`.
 */
export async function gatewayProbeSetup(store: string): Promise<GatewayProbeSetup> {
  const idp = await startMockIdp({ alg: 'RS256' });
  const upstream = await startProcess('floor-process.ts', {});
  const database = store === 'postgres' ? await createTestDatabase() : { url: undefined, drop: async () => {} };
  const agent = await client();
  const port = await freePort();
  const issuer = `http://localhost:${port}`;
  const gw = `${issuer}/gw/echo`;
  const keysDir = mkdtempSync(join(tmpdir(), 'deputy-probe-keys-'));
  const config = {
    trustedIssuers: [idp.issuerConfig('okta')],
    agents: [{ id: 'probe-agent', name: 'Probe agent', owner: 'bench@example.com', scopes: ['deputy.read'], audiences: [gw], jwks: agent.jwks }],
    connections: [{ id: 'echo', kind: 'api_key', baseUrl: upstream.ready[0], allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'BENCH_ECHO_KEY' }, requiredScopes: ['deputy.read'] }],
    server: { port, host: '127.0.0.1' },
    store: database.url ? { databaseUrl: database.url, poolSize: 10 } : { dataDir: 'memory://' },
    keys: { dir: keysDir, generate: true },
    log: { level: 'warn' },
  };
  return { idp, upstream, database, agent, issuer, gw, keysDir, config };
}

export async function counters(url: string, path = ''): Promise<CounterSnapshot> {
  return (await (await fetch(`${url}${path}`, { method: path ? 'POST' : 'GET' })).json()) as CounterSnapshot;
}

export interface Client { privateKey: CryptoKey; jwks: { keys: JWK[] }; dpop: { privateKey: CryptoKey; jwk: JWK } }

export async function client(): Promise<Client> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const dpop = await generateKeyPair('ES256', { extractable: true });
  return { privateKey, jwks: { keys: [{ ...(await exportJWK(publicKey)), alg: 'ES256', use: 'sig' }] }, dpop: { privateKey: dpop.privateKey, jwk: await exportJWK(dpop.publicKey) } };
}

export async function proof(c: Client, htm: string, htu: string, token?: string): Promise<string> {
  const ath = token ? { ath: createHash('sha256').update(token).digest('base64url') } : {};
  return new SignJWT({ htm, htu, jti: randomUUID(), ...ath }).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: c.dpop.jwk }).setIssuedAt().sign(c.dpop.privateKey);
}

/** p50 / p90 / p99 / max of `ms`, as text. */
export function percentiles(ms: number[]): string {
  if (ms.length === 0) return '-';
  const sorted = [...ms].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(2);
  return `p50 ${at(0.5)} p90 ${at(0.9)} p99 ${at(0.99)} max ${sorted[sorted.length - 1]!.toFixed(2)} ms`;
}

/** What a probe's phase saw: requests sent, errors (with the first one's status and text), each request's latency (ms). */
export interface Tally { requests: number; errors: number; sample?: string; latencies: number[] }

/** A fresh {@link Tally}. */
export function tally(): Tally {
  return { requests: 0, errors: 0, latencies: [] };
}

/** Sends one request through `send`, timing it into `t`; `failed` tells an error from its status and body. */
export async function timed(t: Tally, send: () => Promise<{ statusCode: number; body: { text(): Promise<string> } }>, failed: (status: number, text: string) => boolean = (status) => status !== 200): Promise<void> {
  const start = performance.now();
  const res = await send();
  const text = await res.body.text();
  t.latencies.push(performance.now() - start);
  if (failed(res.statusCode, text)) {
    t.errors += 1;
    t.sample ??= `${res.statusCode} ${text.slice(0, 200)}`;
  }
}

/** RFC 8693: exchanges the IdP's `subject` for `probe-agent`'s DPoP-bound token for `resource` (client assertion and proof made here). */
export async function exchange(url: string, issuer: string, agent: Client, subject: string, resource: string): Promise<string> {
  const assertion = await new SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: 'ES256' }).setIssuer('probe-agent').setSubject('probe-agent').setAudience(issuer).setIssuedAt().setExpirationTime('60s').sign(agent.privateKey);
  const res = await fetch(`${url}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await proof(agent, 'POST', `${issuer}/token`) },
    body: new URLSearchParams({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: subject, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      resource, scope: 'deputy.read', client_id: 'probe-agent', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion,
    }).toString(),
  });
  const token = ((await res.json()) as { access_token?: string }).access_token;
  if (!token) throw new Error('exchange failed');
  return token;
}
