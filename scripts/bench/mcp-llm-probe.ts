/**
 * `npx tsx scripts/bench/mcp-llm-probe.ts --target mcp|llm [--store pglite|postgres] [--seconds N] [--phases c1,c8,c1,c8]`
 *
 * A targeted probe of the MCP gateway's `tools/call` and the LLM gateway's streamed call (issue
 * 16, eighth round), not a bench: one Deputy child process with the bench's counters
 * (deputy-process.ts) and the bench's configuration of that gateway (scripts/bench/index.ts
 * `mcpScenarios`: the SDK echo server in its own process, pinning off, an API key injected;
 * `llmScenarios`: the mock provider, two budgets, a streamed Chat Completions call), and a closed
 * load loop in this process running phases back to back against the same server. Each phase
 * reports server CPU per call, statements per call (and the statements by shape), WebCrypto
 * operations per call, GC, context switches per call and the CPU of each server thread. Every
 * DPoP proof is built before its phase starts. `BENCH_CPU_PROF=<dir>` profiles the server
 * process; `DATABASE_URL` is needed for `--store postgres`. Linux only (procfs).
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from './options.js';
import { Pool } from 'undici';
import { createTestDatabase } from '../../test/support/database.js';
import { startMockLlm } from '../../test/support/llm-upstream.js';
import { startMockIdp } from '../../test/support/mock-idp.js';
import { freePort } from '../../test/support/net.js';
import { startProcess } from './process.js';
import { client, counters, exchange, percentiles, proof, tally, threadTicks, timed, TICK_MS, type Client, type Tally } from './probe-support.js';

const MCP_ACCEPT = 'application/json, text/event-stream';
const MCP_VERSION = '2025-06-18';
const LLM_BODY = JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 8, stream: true });

/** One request of a phase, its proof already signed. */
interface Call { path: string; headers: Record<string, string>; body: string }

/** The gateway under probe: its Deputy configuration, and how one call and its setup look. */
interface Target {
  config: (issuer: string, agent: Client) => Record<string, unknown>;
  env: Record<string, string>;
  /** `{issuer}/…`: the token's audience. */
  resource: (issuer: string) => string;
  /** The proof's `htu` and the request path. */
  htu: (issuer: string) => string;
  /** Setup once the token is issued (MCP: open the session); returns the extra headers of every call. */
  setup: (url: string, issuer: string, signed: () => Promise<Record<string, string>>) => Promise<Record<string, string>>;
  body: () => string;
}

let rpcId = 0;

function mcpTarget(upstream: string): Target {
  return {
    config: (issuer, agent) => ({
      agents: [{ id: 'probe-agent', name: 'Probe agent', owner: 'bench@example.com', scopes: ['deputy.read'], audiences: [`${issuer}/mcp/echo`], jwks: agent.jwks }],
      connections: [{ id: 'mcpkey', kind: 'api_key', baseUrl: upstream, allowInsecureHttp: true, header: 'Authorization', scheme: 'Bearer', secret: { env: 'BENCH_MCP_KEY' } }],
      mcpServers: [{ id: 'echo', url: upstream, allowInsecureHttp: true, connection: 'mcpkey', requiredScopes: ['deputy.read'], pinning: 'off', limits: { sessionsPerAgent: 1000 } }],
    }),
    env: { BENCH_MCP_KEY: 'bench-mcp-secret' },
    resource: (issuer) => `${issuer}/mcp/echo`,
    htu: (issuer) => `${issuer}/mcp/echo`,
    setup: async (url, _issuer, signed) => {
      const init = await fetch(`${url}/mcp/echo`, {
        method: 'POST',
        headers: { ...(await signed()), 'content-type': 'application/json', accept: MCP_ACCEPT },
        body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: MCP_VERSION, capabilities: {}, clientInfo: { name: 'probe', version: '1' } } }),
      });
      const session = init.headers.get('mcp-session-id');
      await init.arrayBuffer();
      if (!session) throw new Error(`MCP initialize failed (${init.status})`);
      const headers = { 'content-type': 'application/json', accept: MCP_ACCEPT, 'mcp-session-id': session, 'mcp-protocol-version': MCP_VERSION };
      await (await fetch(`${url}/mcp/echo`, { method: 'POST', headers: { ...(await signed()), ...headers }, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) })).arrayBuffer();
      return headers;
    },
    body: () => JSON.stringify({ jsonrpc: '2.0', id: (rpcId += 1), method: 'tools/call', params: { name: 'echo', arguments: { text: 'bench' } } }),
  };
}

function llmTarget(provider: string): Target {
  return {
    config: (issuer, agent) => ({
      agents: [{ id: 'probe-agent', name: 'Probe agent', owner: 'bench@example.com', scopes: ['deputy.read'], audiences: [`${issuer}/llm/mock`], jwks: agent.jwks }],
      connections: [{ id: 'mock', kind: 'llm', provider: 'openai', baseUrl: provider, allowInsecureHttp: true, secret: { env: 'BENCH_LLM_KEY' }, requiredScopes: ['deputy.read'] }],
      budgets: {
        prices: { 'gpt-test': { input: 150_000, output: 600_000 } },
        limits: [
          { id: 'bench-cost', connection: 'mock', unit: 'cost', window: 'day', limit: 1_000_000_000_000 },
          { id: 'bench-tokens', agent: 'probe-agent', unit: 'output_tokens', window: 'month', limit: 1_000_000_000_000 },
        ],
      },
    }),
    env: { BENCH_LLM_KEY: 'bench-llm-key' },
    resource: (issuer) => `${issuer}/llm/mock`,
    htu: (issuer) => `${issuer}/llm/mock/v1/chat/completions`,
    setup: async () => ({ 'content-type': 'application/json' }),
    body: () => LLM_BODY,
  };
}

/** Runs one closed-loop phase of `connections` connections; returns requests, errors and latencies (ms). */
async function drive(pool: Pool, connections: number, seconds: number, calls: Call[]): Promise<Tally> {
  const deadline = performance.now() + seconds * 1000;
  const t = tally();
  // An MCP refusal inside a 200 SSE stream is a JSON-RPC error: counted as one.
  const failed = (status: number, text: string) => status !== 200 || text.includes('"error":{');
  const one = async () => {
    const c = calls[t.requests++];
    if (!c) return false;
    await timed(t, () => pool.request({ method: 'POST', path: c.path, headers: c.headers, body: c.body }), failed);
    return true;
  };
  await Promise.all(Array.from({ length: connections }, async () => {
    while (performance.now() < deadline && (await one()));
  }));
  return t;
}

/** One phase's line: per-call counters, statements by shape, latency, GC, context switches, CPU by thread. */
function report(name: string, done: Awaited<ReturnType<typeof drive>>, elapsed: number, snap: Awaited<ReturnType<typeof counters>>, threads: Array<readonly [string, number]>): string {
  const per = (n: number) => (done.requests ? (n / done.requests).toFixed(3) : '-');
  const shapes = Object.entries(snap.statements).sort((a, b) => b[1] - a[1]).map(([s, n]) => `${per(n)} × ${s.slice(0, 60)}`).join(' | ');
  const crypto = Object.entries(snap.crypto).map(([op, n]) => `${op} ${per(n)}`).join(', ');
  return [
    `${name.padEnd(4)} ${done.requests} calls in ${elapsed.toFixed(1)} s (${(done.requests / elapsed).toFixed(0)}/s, ${done.errors} errors${done.sample ? `: ${done.sample}` : ''})`,
    `  CPU ${per(snap.cpuMs)} ms/call; heap ${snap.allocated ? per(snap.allocated.total / 1024) : '-'} KiB/call${snap.promises !== undefined ? `; promises ${per(snap.promises)}/call` : ''}; statements ${per(snap.statementTotal)}/call; WebCrypto/call: ${crypto}`,
    `  latency ${percentiles(done.latencies)}; GC ${snap.gc ? `${per(snap.gc.count * 1000)} per 1,000 calls, ${snap.gc.totalMs.toFixed(1)} ms ${JSON.stringify(snap.gc.byKind)}` : '-'}; ${threads.filter(([k]) => k === '(sleeps)' || k === '(preempted)').map(([k, v]) => `${k} ${per(v)}/call`).join(' ')}`,
    `  CPU by thread (ms): ${threads.filter(([k]) => !/^\((sleeps|preempted)\)/.test(k)).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `  statements: ${shapes}`,
  ].join('\n') + '\n';
}

async function main(): Promise<void> {
  const { values } = parseArgs(import.meta.url, { options: { target: { type: 'string', default: 'mcp' }, store: { type: 'string', default: 'pglite' }, seconds: { type: 'string', default: '5', value: 'positive integer' }, phases: { type: 'string', default: 'c1,c8,c1,c8' } } });
  const seconds = Number(values.seconds);
  const phases = values.phases!.split(',').map((p) => Number(p.slice(1)));
  const idp = await startMockIdp({ alg: 'RS256' });
  const mcpUpstream = values.target === 'mcp' ? await startProcess('mcp-upstream-process.ts', {}) : undefined;
  const provider = values.target === 'llm' ? await startMockLlm() : undefined;
  const target = mcpUpstream ? mcpTarget(mcpUpstream.ready[0]!) : llmTarget(provider!.base);
  const database = values.store === 'postgres' ? await createTestDatabase() : { url: undefined, drop: async () => {} };
  const agent = await client();
  const port = await freePort();
  const issuer = `http://localhost:${port}`;
  const keysDir = mkdtempSync(join(tmpdir(), 'deputy-probe-keys-'));
  const config = {
    trustedIssuers: [idp.issuerConfig('okta')],
    ...target.config(issuer, agent),
    server: { port, host: '127.0.0.1' },
    store: database.url ? { databaseUrl: database.url, poolSize: 10 } : { dataDir: 'memory://' },
    keys: { dir: keysDir, generate: true },
    log: { level: 'warn' },
  };
  const deputy = await startProcess('deputy-process.ts', { BENCH_DEPUTY_CONFIG: JSON.stringify(config), ...target.env });
  const [url, , countersUrl] = deputy.ready as [string, string, string];
  try {
    const subject = await idp.oktaAccessToken({ expiresIn: 3600, scp: ['deputy.read'] });
    const token = await exchange(url, issuer, agent, subject, target.resource(issuer));
    const htu = target.htu(issuer);
    const signed = async () => ({ authorization: `DPoP ${token}`, dpop: await proof(agent, 'POST', htu, token) });
    const extra = await target.setup(url, issuer, signed);
    const path = new URL(htu).pathname;
    const build = async (n: number): Promise<Call[]> => Promise.all(Array.from({ length: n }, async () => ({ path, headers: { ...(await signed()), ...extra }, body: target.body() })));
    const pool = new Pool(url, { connections: 16, pipelining: 1 });
    await drive(pool, 8, 2, await build(2000));
    for (const connections of phases) {
      const calls = await build(Math.ceil(connections === 1 ? 300 * seconds : 500 * seconds));
      await counters(countersUrl, '/reset');
      const before = threadTicks(deputy.child.pid!);
      const t0 = performance.now();
      const done = await drive(pool, connections, seconds, calls);
      const elapsed = (performance.now() - t0) / 1000;
      const after = threadTicks(deputy.child.pid!);
      const snap = await counters(countersUrl);
      const threads = [...after].map(([k, v]) => [k, (v - (before.get(k) ?? 0)) * TICK_MS] as const).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]);
      process.stdout.write(report(`c${connections}`, done, elapsed, snap, threads));
    }
    await pool.close();
  } finally {
    const exited = new Promise((r) => deputy.child.once('exit', r));
    deputy.child.kill('SIGTERM');
    await exited;
    mcpUpstream?.child.kill('SIGTERM');
    await provider?.close();
    await database.drop();
    await idp.close();
    rmSync(keysDir, { recursive: true, force: true });
  }
}

await main();
