/**
 * `npx tsx scripts/bench/pdp-http-micro.ts [--n 3000] [--rounds 3] [--cache off|on] [--miss]` — one
 * PDP evaluation over HTTP, **in one process**: Deputy (PGlite in memory, or PostgreSQL at
 * `DATABASE_URL` when set; the bench's PDP
 * configuration) and a raw keep-alive HTTP/1.1 client on a TCP socket, one request at a time,
 * every request's bytes built before the timed loop. CPU microseconds per request
 * (`process.cpuUsage`, server and client together: the client is a socket write and a header
 * scan), for a one-link delegated subject, with the same loop against a bare Node `http` server
 * that reads and parses an AuthZEN-sized JSON body and answers a small JSON object (the like-for-
 * like HTTP floor of bench:pdp, without Koa) and the raw Cedar floor call, all in the same run.
 * CPU time, not wall time: usable on a loaded machine; compare rows of one run. Issue 16, sixth round.
 *
 * `--miss` (with `--cache on`): every request over HTTP is one not seen before (its own resource
 * id), so each is a miss of the cached path — the decision cache's misses (issue 16, seventh round).
 *
 * For a profile without a load generator in it, run it under
 * `node --import tsx --cpu-prof --cpu-prof-dir DIR scripts/bench/pdp-http-micro.ts …`.
 *
 * @module
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { observeAnswering } from '../../src/http/metrics.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from './options.js';
import { validateConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { startDeputy } from '../../src/main.js';
import type { Cedar } from '../../src/pdp/cedar.js';
import { cedarFloorCpuUs, cpuUs } from './cedar-floor.js';
import { parseEvaluation, type EvaluationInput, type PolicyDecisionPoint } from '../../src/pdp/index.js';
import { agentConfig, exchange, testAgent } from '../../test/support/agents.js';
import { clientCredentialsToken, clientKeys, oauthClient } from '../../test/support/clients.js';
import { startMockIdp } from '../../test/support/mock-idp.js';

const REPO = join(import.meta.dirname, '../..');
const API = 'https://docs.example.com';
const { values } = parseArgs(import.meta.url, { options: { n: { type: 'string', default: '3000', value: 'positive integer' }, rounds: { type: 'string', default: '3', value: 'positive integer' }, cache: { type: 'string', default: 'off', value: ['on', 'off'] }, miss: { type: 'boolean', default: false } } });
const N = Number(values.n);
const ROUNDS = Number(values.rounds);


/** A keep-alive client sending prebuilt requests one at a time and waiting for each whole response. */
class RawClient {
  readonly #socket: Socket;
  #buffer: Buffer = Buffer.alloc(0);
  #waiting: ((status: number) => void) | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
  }

  static async open(port: number): Promise<RawClient> {
    const socket = connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new RawClient(socket);
  }

  /** Sends one request's bytes; resolves with the status once the whole response arrived. */
  send(request: Buffer): Promise<number> {
    return new Promise((resolve) => {
      this.#waiting = resolve;
      this.#socket.write(request);
    });
  }

  #onData(chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    const end = this.#buffer.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.#buffer.subarray(0, end).toString('latin1');
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    if (this.#buffer.length < end + 4 + length) return;
    this.#buffer = this.#buffer.subarray(end + 4 + length);
    const resolve = this.#waiting!;
    this.#waiting = undefined;
    resolve(Number(head.slice(9, 12)));
  }

  close(): void {
    this.#socket.destroy();
  }
}

function requestBytes(port: number, path: string, headers: Record<string, string>, body: string): Buffer {
  const lines = [`POST ${path} HTTP/1.1`, `Host: 127.0.0.1:${port}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), `Content-Length: ${Buffer.byteLength(body)}`, '', body];
  return Buffer.from(lines.join('\r\n'));
}

/** CPU µs per request of `requests` sent one at a time over one connection (after 300 untimed). */
async function measure(port: number, requests: Buffer[]): Promise<number> {
  const client = await RawClient.open(port);
  try {
    for (let i = 0; i < 300; i++) {
      const status = await client.send(requests[i % requests.length]!);
      if (status !== 200) throw new Error(`status ${status}`);
    }
    const t0 = cpuUs();
    for (let i = 0; i < N; i++) await client.send(requests[i % requests.length]!);
    return (cpuUs() - t0) / N;
  } finally {
    client.close();
  }
}

/** The HTTP floor without Koa: read the body, `JSON.parse` it, answer a small JSON object. */
async function bareServer(): Promise<Server> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { resource?: { id?: string } };
      const out = Buffer.from(JSON.stringify({ decision: true, id: body.resource?.id }));
      res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': out.length });
      res.end(out);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/** CPU µs per `pdp.evaluate` of `inputs` in turn, awaited one at a time (after 300 untimed). */
async function evaluateInProcess(pdp: PolicyDecisionPoint, inputs: readonly EvaluationInput[]): Promise<number> {
  return perCall((i) => pdp.evaluate(inputs[i % inputs.length]!));
}

/** CPU µs per awaited `call(i)`, one at a time (after 300 untimed). */
async function perCall(call: (i: number) => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 300; i++) await call(i);
  const t0 = cpuUs();
  for (let i = 0; i < N; i++) await call(i);
  return (cpuUs() - t0) / N;
}

/**
 * What the lean path adds around `pdp.evaluate` besides HTTP, one part at a time: inputs parsed
 * afresh per call (`JSON.parse` + `parseEvaluation`, as each request's), and the evaluation run
 * inside a server span as the lean path runs it (`observeAnswering`, ./src/http/metrics.ts).
 */
async function aroundEvaluate(pdp: PolicyDecisionPoint, bodies: readonly string[]): Promise<string> {
  const req = { method: 'POST', headers: {} } as IncomingMessage;
  const fresh = await perCall((i) => pdp.evaluate(parseEvaluation(JSON.parse(bodies[i % bodies.length]!))));
  const inSpan = await perCall(async (i) => {
    const observed = observeAnswering(req, '/access/v1/evaluation');
    await observed.run(() => pdp.evaluate(parseEvaluation(JSON.parse(bodies[i % bodies.length]!))));
    observed.answered(200);
  });
  return `pdp.evaluate on inputs parsed afresh: ${fresh.toFixed(0)} µs; the same inside a server span: ${inSpan.toFixed(0)} µs`;
}


/** CPU µs spent inside `statefulIsAuthorized` (each call timed; ~4 µs of timing per call included). */
const cedarTimer = { us: 0 };

/** Times every call of `cedar` (the serving set's own instance, policy-store.ts) into {@link cedarTimer}. */
function timeCedarCalls(cedar: Cedar): void {
  const original = cedar.statefulIsAuthorized;
  (cedar as { statefulIsAuthorized: typeof original }).statefulIsAuthorized = (call) => {
    const t = cpuUs();
    try {
      return original(call);
    } finally {
      cedarTimer.us += cpuUs() - t;
    }
  };
}

async function main(): Promise<void> {
  const idp = await startMockIdp();
  const dataDir = mkdtempSync(join(tmpdir(), 'deputy-pdp-http-micro-'));
  const pepKeys = await clientKeys();
  const keyA = await clientKeys();
  const config = validateConfig(
    {
      server: { port: 0, host: '127.0.0.1', bodyLimitBytes: 1024 * 1024 },
      // PostgreSQL when DATABASE_URL is set (no PGlite wasm instance in the process), else PGlite in memory.
      store: process.env.DATABASE_URL ? { databaseUrl: process.env.DATABASE_URL } : { dataDir: 'memory://' },
      keys: { dir: join(dataDir, 'keys'), generate: true },
      log: { level: 'warn' },
      pdp: { watch: false, decisionCacheSize: values.cache === 'on' ? 50_000 : 0, maxBatch: 1000, policies: join(REPO, 'config/policies') },
      trustedIssuers: [idp.issuerConfig('okta')],
      admin: { clients: [{ client_id: 'bench-pep', scopes: ['authzen:evaluate'], jwks: pepKeys.jwks }] },
      agents: [agentConfig('agent-a', keyA, { scopes: ['docs.read'], audiences: [API], maxDelegationDepth: 3 })],
    },
    'pdp-http-micro',
    {},
  );
  const deputy = await startDeputy({ config, logger: createLogger('warn'), env: process.env });
  timeCedarCalls(deputy.pdp.pdp.store.current.cedar);
  const bare = await bareServer();
  try {
    const port = Number(new URL(deputy.url).port);
    const barePort = (bare.address() as { port: number }).port;
    const pep = await clientCredentialsToken(await oauthClient(deputy.issuer, 'bench-pep', pepKeys), 'authzen:evaluate');
    const a = await testAgent(deputy.issuer, 'agent-a', keyA);
    const user = await idp.oktaAccessToken({ email: 'alice@example.com', scp: ['docs.read'] });
    const one = (await exchange(a, { subject_token: user, resource: API, scope: 'docs.read' })).access_token;
    const sub = JSON.parse(Buffer.from(one.split('.')[1]!, 'base64url').toString()).sub as string;
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${pep}` };
    const bodyOf = (i: number) =>
      JSON.stringify({ subject: { type: 'User', id: sub, properties: { token: one } }, action: { name: 'read' }, resource: { type: 'Resource', id: `doc-${i}`, properties: { owner: 'alice@example.com', scope: 'docs.read', audience: API } } });
    const bodies = Array.from({ length: 100 }, (_, i) => bodyOf(i));
    let fresh = bodies.length;
    // With --miss, requests never sent before (a measure sends N + 300); otherwise the same 100 in turn.
    const deputyRequestsOf = () => (values.miss ? Array.from({ length: N + 300 }, () => requestBytes(port, '/access/v1/evaluation', headers, bodyOf(fresh++))) : deputyRequests);
    const deputyRequests = bodies.map((b) => requestBytes(port, '/access/v1/evaluation', headers, b));
    const bareRequests = bodies.map((b) => requestBytes(barePort, '/access/v1/evaluation', headers, b));
    const inputs = bodies.map((b) => parseEvaluation(JSON.parse(b)));
    const rows: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const floorCall = cedarFloorCpuUs(deputy.pdp.pdp.store.current, N);
      const calls0 = deputy.pdp.pdp.engine.calls;
      const cedar0 = cedarTimer.us;
      const evaluation = await measure(port, deputyRequestsOf());
      const cedarPer = (cedarTimer.us - cedar0) / (N + 300);
      const callsPer = (deputy.pdp.pdp.engine.calls - calls0) / (N + 300);
      const floorHttp = await measure(barePort, bareRequests);
      const inProcess = await evaluateInProcess(deputy.pdp.pdp, inputs);
      process.stderr.write(`round ${round + 1}: pdp.evaluate on 100 reused inputs: ${inProcess.toFixed(0)} µs; ${await aroundEvaluate(deputy.pdp.pdp, bodies)}\n`);
      // The lean path's own cost: the same requests with the PDP's evaluation replaced by a fixed permit.
      const pdp = deputy.pdp.pdp as { evaluate: PolicyDecisionPoint['evaluate'] };
      const evaluate = pdp.evaluate;
      const permit = { decision: true as const, policies: ['owner'] };
      pdp.evaluate = async () => permit;
      const glue = await measure(port, deputyRequestsOf()).finally(() => (pdp.evaluate = evaluate));
      process.stderr.write(`round ${round + 1}: lean path with a fixed-permit PDP: ${glue.toFixed(0)} µs CPU / request (HTTP floor ${floorHttp.toFixed(0)})\n`);
      rows.push(`| ${round + 1} | ${evaluation.toFixed(0)} | ${callsPer.toFixed(2)} | ${floorHttp.toFixed(0)} | ${floorCall.toFixed(0)} | ${inProcess.toFixed(0)} | ${(evaluation - floorHttp - callsPer * floorCall).toFixed(0)} | ${(evaluation - floorHttp - inProcess).toFixed(0)} | ${cedarPer.toFixed(0)} |`);
    }
    process.stdout.write(
      [
        `decision cache ${values.cache}${values.miss ? ' (every request a miss)' : ''}, ${N} requests per row, one connection, one request at a time`,
        '',
        '| round | one-link evaluation over HTTP, µs CPU / request | Cedar calls / request | bare HTTP floor (node:http, JSON body parsed), µs | Cedar floor call, µs | `pdp.evaluate` in-process, µs | rest: HTTP − HTTP floor − calls × floor call, µs | of which outside `pdp.evaluate`, µs | Cedar CPU per HTTP request, µs (timed around each call) |',
        '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
        ...rows,
      ].join('\n') + '\n',
    );
  } finally {
    bare.close();
    await deputy.close(100);
    await idp.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
