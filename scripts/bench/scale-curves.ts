/**
 * The scale curves themselves (run by scale.ts, one curve per child process): how cost grows with
 * what grows in a deployment. Each curve returns its points (median ms per operation, and the RSS
 * of the process that did the work at that size); scale.ts fits and labels them.
 *
 * Big states are built by bulk SQL (`generate_series`), never by N calls of the code under test:
 * 10⁵ agents, a 10⁶-receipt chain (only its head has to be right: an append reads nothing else).
 * Exports to verify are built honestly (signed receipts appended by the receipt service), since
 * verification checks every signature and link.
 *
 * Each child process opens at most one PGlite database of its own (or starts Deputy processes
 * that open one each): creating and freeing many WebAssembly instances in one process is what
 * nodejs/node#64500 crashes on.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { cedar, type EntityJson, type StatefulAuthorizationCall } from '../../src/pdp/cedar.js';
import { ReceiptService } from '../../src/audit/receipts.js';
import type { ReceiptInput } from '../../src/audit/receipt.js';
import { formatLine } from '../../src/audit/jsonl.js';
import { verifyReceipts } from '../../src/audit/verify.js';
import { generateSigningKey, toPublicJwk } from '../../src/keys/keystore.js';
import { AgentRegistry } from '../../src/agents/registry.js';
import { createPGliteStore } from '../../src/store/pglite.js';
import { createPostgresStore } from '../../src/store/postgres.js';
import { migrate, type Store } from '../../src/store/index.js';
import { createTestDatabase } from '../../test/support/database.js';
import { agentConfig, exchange, testAgent } from '../../test/support/agents.js';
import { clientCredentialsToken, clientKeys, oauthClient } from '../../test/support/clients.js';
import { startMockIdp, type MockIdp } from '../../test/support/mock-idp.js';
import type { CounterSnapshot } from './counters.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '../..');

/** One measured size: median ms per operation, and the RSS (MiB) of the process doing the work. */
export interface Point {
  n: number;
  ms: number;
  rssMiB: number;
  /**
   * Curves timed against a Deputy process: its CPU time (ms) and store statements per operation
   * over the timed samples (bench counters) — what the server did, whatever the machine's load.
   */
  serverCpuMs?: number;
  statements?: number;
}

/** Where a store-bound curve runs: in-memory PGlite, or a fresh database on `DATABASE_URL`. */
export type StoreKind = 'pglite' | 'postgres';
/** Issue 16's sizes, smaller ones with the same shapes, or a smoke test's. */
export type SizeMode = 'full' | 'quick' | 'tiny';

/** The sizes of every curve, per mode. `samples`: timed operations per point (fewer for very slow points). */
export interface Sizes {
  policies: number[];
  slice: number[];
  pdpEntities: number[];
  agents: number[];
  chain: number[];
  exports: number[];
  depth: number;
  samples: number;
}

/**
 * Issue 16's sizes (`full`), smaller ones with the same shapes (`quick`), and a smoke test's
 * (`tiny`). The request slice stops at 10⁴ entities: Deputy's ancestor walk does
 * (src/pdp/entity-data.ts), so no decision carries more.
 */
export const SIZES: Record<SizeMode, Sizes> = {
  full: { policies: [10, 100, 1000], slice: [100, 1000, 10_000], pdpEntities: [100, 10_000, 100_000], agents: [10, 10_000, 100_000], chain: [1, 10_000, 1_000_000], exports: [100, 1000, 10_000], depth: 5, samples: 200 },
  quick: { policies: [10, 100, 1000], slice: [100, 1000, 10_000], pdpEntities: [100, 1000, 10_000], agents: [10, 1000, 10_000], chain: [1, 1000, 10_000], exports: [50, 200, 800], depth: 5, samples: 30 },
  tiny: { policies: [8, 20], slice: [10, 100], pdpEntities: [10, 100], agents: [2, 20], chain: [1, 100], exports: [5, 20], depth: 2, samples: 3 },
};

/** A curve: what it measures, and how to measure it at the given sizes on the given store. */
export interface CurveDef {
  id: string;
  name: string;
  unit: string;
  /** Store-bound: run once per store (PGlite, and PostgreSQL when `DATABASE_URL` is set). */
  perStore: boolean;
  run(sizes: Sizes, store: StoreKind): Promise<Point[]>;
}

const rss = () => Math.round(process.memoryUsage().rss / 2 ** 20);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const log = (line: string) => process.stderr.write(`[scale ${new Date().toISOString().slice(11, 19)}] ${line}\n`);

/**
 * Median ms of `n` sequential calls, after `n / 5` warm-up calls (JIT, caches, pages). `prepare`
 * runs untimed just before each call (signing a request: fresh, and outside the figure).
 */
async function timeEach<T = undefined>(n: number, fn: (i: number, prepared: T) => unknown, prepare?: (i: number) => Promise<T>, onMeasure?: () => Promise<void>): Promise<number> {
  const call = async (i: number) => {
    const prepared = (prepare ? await prepare(i) : undefined) as T;
    const t = performance.now();
    await fn(i, prepared);
    return performance.now() - t;
  };
  for (let i = 0; i < Math.ceil(n / 5); i++) await call(n + i);
  await onMeasure?.();
  const samples: number[] = [];
  for (let i = 0; i < n; i++) samples.push(await call(i));
  return Math.round(median(samples) * 1000) / 1000;
}

async function eachSize(sizes: number[], point: (n: number) => Promise<Omit<Point, 'n'>>): Promise<Point[]> {
  const points: Point[] = [];
  for (const n of sizes) {
    const started = performance.now();
    points.push({ n, ...(await point(n)) });
    log(`n=${n}: ${JSON.stringify(points.at(-1))} in ${Math.round(performance.now() - started)} ms`);
  }
  return points;
}

// --- Cedar in-process ------------------------------------------------------------------------

/** A Cedar decision against `policies` policies and a request slice of `entities` entities. */
function cedarPoint(policies: number, entities: number, samples: number): Promise<number> {
  const texts: Record<string, string> = {};
  for (let i = 0; i < policies - 1; i++) {
    texts[`p${i}`] = `permit (principal == User::"user-${i}", action == Action::"read", resource) when { resource.owner == "owner-${i}" };`;
  }
  texts.match = 'permit (principal, action == Action::"read", resource) when { principal.email == resource.owner && context.chain.scopes.contains(resource.scope) };';
  const slot = `scale-${policies}-${entities}`;
  const parsed = cedar.preparsePolicySet(slot, { staticPolicies: texts });
  if (parsed.type !== 'success') throw new Error(`scale: policy set did not parse: ${JSON.stringify(parsed)}`);
  const slice: EntityJson[] = [
    { uid: { type: 'User', id: 'u' }, attrs: { id: 'u', email: 'alice@example.com', groups: [], roles: [] }, parents: [] },
    { uid: { type: 'Resource', id: 'r' }, attrs: { id: 'r', owner: 'alice@example.com', scope: 'docs.read' }, parents: [] },
    { uid: { type: 'Action', id: 'read' }, attrs: {}, parents: [] },
  ];
  for (let i = slice.length; i < entities; i++) slice.push({ uid: { type: 'Resource', id: `r${i}` }, attrs: { id: `r${i}`, owner: `o${i}`, scope: 'docs.read' }, parents: [] });
  const call: StatefulAuthorizationCall = {
    principal: { type: 'User', id: 'u' }, action: { type: 'Action', id: 'read' }, resource: { type: 'Resource', id: 'r' },
    context: { chain: { position: 0, depth: 1, current: false, delegated: true, scopes: ['docs.read'] } },
    entities: slice, preparsedPolicySetId: slot,
  };
  const answer = cedar.statefulIsAuthorized(call);
  if (answer.type !== 'success' || answer.response.decision !== 'allow') throw new Error(`scale: the probe decision is not allow: ${JSON.stringify(answer).slice(0, 500)}`);
  return timeEach(samples, () => cedar.statefulIsAuthorized(call));
}

// --- Deputy in a child process ----------------------------------------------------------------

interface DeputyChild {
  url: string;
  issuer: string;
  /** Deputy's RSS now (MiB), from the bench counters of its process. */
  rssMiB(): Promise<number>;
  /** Resets Deputy's counters (call when the timed samples start). */
  resetCounters(): Promise<void>;
  /** Deputy's CPU ms and statements per operation since the reset, and its RSS. */
  measured(operations: number): Promise<Omit<Point, 'n' | 'ms'>>;
  stop(): Promise<void>;
}

/** The V8 flags scale.ts started this process with (`BENCH_V8_FLAGS`): Deputy processes get them too. */
const v8Flags = () => (process.env.BENCH_V8_FLAGS ?? '').split(/\s+/).filter(Boolean);

/**
 * Starts Deputy (deputy-process.ts) on `store` with `config`; `setupSql` runs on its store before
 * it reports ready (bulk rows: agents). Its keys folder is removed on stop.
 */
async function startDeputy(config: Record<string, unknown>, store: Record<string, unknown>, setupSql: Array<{ text: string; params: unknown[] }> = []): Promise<DeputyChild> {
  const keysDir = mkdtempSync(join(tmpdir(), 'deputy-bench-scale-keys-'));
  const full = { ...config, server: { port: 0, host: '127.0.0.1' }, store, keys: { dir: keysDir, generate: true }, log: { level: 'warn' } };
  const child = spawn(process.execPath, [...v8Flags(), '--import', 'tsx', join(HERE, 'deputy-process.ts')], {
    env: { ...process.env, NODE_ENV: 'production', BENCH_DEPUTY_CONFIG: JSON.stringify(full), BENCH_SETUP_SQL: JSON.stringify(setupSql) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const stop = () => stopChild(child).finally(() => rmSync(keysDir, { recursive: true, force: true }));
  try {
    const [url, issuer, counters] = await readyLine(child);
    const snapshot = async (path = '') => (await (await fetch(`${counters!}${path}`, { method: path ? 'POST' : 'GET' })).json()) as CounterSnapshot;
    const measured = async (operations: number) => {
      const c = await snapshot();
      const per = (x: number) => Math.round((x / Math.max(1, operations)) * 1000) / 1000;
      return { rssMiB: c.memory.rssMiB, serverCpuMs: per(c.cpuMs), statements: per(c.statementTotal) };
    };
    return { url: url!, issuer: issuer!, rssMiB: async () => (await snapshot()).memory.rssMiB, resetCounters: async () => void (await snapshot('/reset')), measured, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

function readyLine(child: ChildProcess): Promise<string[]> {
  return new Promise<string[]>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('READY '));
      if (line) resolve(line.split(' ').slice(1));
    });
    child.once('exit', (code, signal) => reject(new Error(`deputy exited with ${code ?? signal} before it was ready`)));
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** Where a Deputy process keeps its data for a curve: a new in-memory PGlite, or `databaseUrl`. */
function deputyStore(store: StoreKind, databaseUrl: string | undefined): Record<string, unknown> {
  return store === 'postgres' ? { databaseUrl, poolSize: 10 } : { dataDir: 'memory://' };
}

/** A PEP's access token for the PDP (client_credentials with private_key_jwt). */
async function pepToken(issuer: string, keys: Awaited<ReturnType<typeof clientKeys>>): Promise<string> {
  return clientCredentialsToken(await oauthClient(issuer, 'bench-pep', keys), 'authzen:evaluate');
}

async function evaluate(url: string, token: string, body: string): Promise<void> {
  const res = await fetch(`${url}/access/v1/evaluation`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body });
  const verdict = (await res.json()) as { decision?: boolean };
  if (verdict.decision !== true) throw new Error(`scale: evaluation is not a permit: ${JSON.stringify(verdict).slice(0, 300)}`);
}

// --- PDP over HTTP: policies and entities held by the PDP --------------------------------------

const DEFAULT_POLICIES = 7; // @id'd policies in config/policies/default.cedar

/**
 * A policy folder: Deputy's default schema and policies, `policies - 7` more that never match,
 * and an `entities.json` of `entities` entities: users, each in one of `entities / 100` groups.
 */
function policyFolder(policies: number, entities: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'deputy-bench-scale-policies-'));
  copyFileSync(join(ROOT, 'config/policies/schema.cedarschema'), join(dir, 'schema.cedarschema'));
  copyFileSync(join(ROOT, 'config/policies/default.cedar'), join(dir, 'default.cedar'));
  const extra = Array.from({ length: Math.max(0, policies - DEFAULT_POLICIES) }, (_, i) =>
    `@id("scale-${i}")\npermit (principal == User::"user-${i}", action == Action::"read", resource is Resource) when { resource has owner && resource.owner == "owner-${i}" };`);
  writeFileSync(join(dir, 'scale.cedar'), `${extra.join('\n')}\n`);
  const groups = Math.max(1, Math.floor(entities / 100));
  const json: EntityJson[] = Array.from({ length: groups }, (_, g) => ({ uid: { type: 'Group', id: `g-${g}` }, attrs: {}, parents: [] }));
  for (let i = 0; i < entities - groups; i++) json.push({ uid: { type: 'User', id: `u-${i}` }, attrs: { id: `u-${i}` }, parents: [{ type: 'Group', id: `g-${i % groups}` }] });
  writeFileSync(join(dir, 'entities.json'), JSON.stringify(json));
  return dir;
}

/**
 * One AuthZEN evaluation over HTTP (decision cache off, concurrency 1) for a plain subject held in
 * the PDP's `entities.json` (a different user each call), with `policies` policies and `entities`
 * entities in the set. Deputy's start-up (policy load, entity validation) is logged.
 */
async function pdpPoint(policies: number, entities: number, samples: number): Promise<Omit<Point, 'n'>> {
  const dir = policyFolder(policies, entities);
  const pepKeys = await clientKeys();
  const started = performance.now();
  const deputy = await startDeputy({
    pdp: { policies: dir, watch: false, decisionCacheSize: 0 },
    admin: { clients: [{ client_id: 'bench-pep', scopes: ['authzen:evaluate'], jwks: pepKeys.jwks }] },
  }, { dataDir: 'memory://' });
  try {
    log(`deputy with ${policies} policies, ${entities} entities ready in ${Math.round(performance.now() - started)} ms`);
    const token = await pepToken(deputy.issuer, pepKeys);
    const users = Math.max(1, entities - Math.max(1, Math.floor(entities / 100)));
    const body = (i: number) => {
      const id = `u-${(i * 7919) % users}`;
      return JSON.stringify({ subject: { type: 'User', id }, action: { name: 'read' }, resource: { type: 'Resource', id: `doc-${i}`, properties: { owner: id } } });
    };
    const ms = await timeEach(samples, (i) => evaluate(deputy.url, token, body(i)), undefined, deputy.resetCounters);
    return { ms, ...(await deputy.measured(samples)) };
  } finally {
    await deputy.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

// --- Delegation depth -------------------------------------------------------------------------

const API = 'https://docs.example.com';
const handoff = (id: string) => `urn:deputy:agent:${id}`;

/** PDP evaluation latency for subjects at the end of chains of 1 … `maxDepth` agents (HTTP, cache off, c1). */
async function depthCurve(maxDepth: number, samples: number): Promise<Point[]> {
  const idp = await startMockIdp();
  const pepKeys = await clientKeys();
  const ids = Array.from({ length: maxDepth }, (_, i) => `depth-agent-${i + 1}`);
  const keys = await Promise.all(ids.map(() => clientKeys()));
  const deputy = await startDeputy({
    pdp: { watch: false, decisionCacheSize: 0 },
    trustedIssuers: [idp.issuerConfig('okta')],
    admin: { clients: [{ client_id: 'bench-pep', scopes: ['authzen:evaluate'], jwks: pepKeys.jwks }] },
    agents: ids.map((id, i) => agentConfig(id, keys[i]!, { scopes: ['docs.read'], audiences: [API, ...(ids[i + 1] ? [handoff(ids[i + 1]!)] : [])], maxDelegationDepth: maxDepth })),
  }, { dataDir: 'memory://' });
  try {
    const pep = await pepToken(deputy.issuer, pepKeys);
    const agents = await Promise.all(ids.map((id, i) => testAgent(deputy.issuer, id, keys[i]!)));
    const user = await idp.oktaAccessToken({ email: 'alice@example.com', scp: ['docs.read'] });
    return await eachSize(Array.from({ length: maxDepth }, (_, i) => i + 1), async (depth) => {
      let token = user;
      for (let i = 0; i < depth - 1; i++) {
        token = (await exchange(agents[i]!, { subject_token: token, audience: handoff(ids[i + 1]!), ...(i === 0 ? { scope: 'docs.read' } : {}) })).access_token;
      }
      token = (await exchange(agents[depth - 1]!, { subject_token: token, resource: API, ...(depth === 1 ? { scope: 'docs.read' } : {}) })).access_token;
      const sub = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sub as string;
      const body = (n: number) => JSON.stringify({ subject: { type: 'User', id: sub, properties: { token } }, action: { name: 'read' }, resource: { type: 'Resource', id: `doc-${n}`, properties: { owner: 'alice@example.com', scope: 'docs.read', audience: API } } });
      const ms = await timeEach(samples, (n) => evaluate(deputy.url, pep, body(n)), undefined, deputy.resetCounters);
      return { ms, ...(await deputy.measured(samples)) };
    });
  } finally {
    await deputy.stop();
    await idp.close();
  }
}

// --- Registered agents ----------------------------------------------------------------------------

/** Bulk-inserts agents `scale-agent-1 … -count` (those not there yet), all with `jwks` and `audiences`. */
function agentRows(count: number, jwks: { keys: JWK[] }, audiences: string[]): { text: string; params: unknown[] } {
  return {
    text: `INSERT INTO agents (id, name, owner, scopes, audiences, jwks, source)
           SELECT 'scale-agent-' || g, 'Scale agent', 'owner@example.com', '["docs.read"]', $2::jsonb, $3::jsonb, 'api'
           FROM generate_series(1, $1::int) g
           ON CONFLICT (id) DO NOTHING`,
    params: [count, JSON.stringify(audiences), JSON.stringify(jwks)],
  };
}

/** The statements an exchange keys by agent: the registry read (cache off) and the `FOR SHARE` status check. */
async function agentStatementsPoint(store: Store, count: number, samples: number): Promise<Omit<Point, 'n'>> {
  const rows = agentRows(count, { keys: [] }, []);
  await store.query(rows.text, rows.params);
  const registry = new AgentRegistry(store, { cacheTtlMs: 0 }); // every read reaches the store
  const ms = await timeEach(samples, async (i) => {
    const id = `scale-agent-${1 + ((i * 7919) % count)}`;
    if (!(await registry.get(id))) throw new Error(`scale: agent ${id} missing`);
    await store.transaction((tx) => tx.query('SELECT status FROM agents WHERE id = $1 FOR SHARE', [id]));
  });
  return { ms, rssMiB: rss() };
}

interface Signer {
  privateKey: CryptoKey;
  jwk: JWK;
}

async function signer(): Promise<Signer> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), alg: 'ES256', use: 'sig' } };
}

/** One token exchange request by agent `agent` (fresh client assertion and DPoP proof). */
async function exchangeRequest(issuer: string, agent: string, client: Signer, dpop: Signer, subject: string): Promise<RequestInit> {
  const assertion = await new SignJWT({ jti: randomUUID() }).setProtectedHeader({ alg: 'ES256' }).setIssuer(agent).setSubject(agent)
    .setAudience(issuer).setIssuedAt().setExpirationTime('300s').sign(client.privateKey);
  const proof = await new SignJWT({ htm: 'POST', htu: `${issuer}/token`, jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: { kty: dpop.jwk.kty, crv: dpop.jwk.crv, x: dpop.jwk.x, y: dpop.jwk.y } }).setIssuedAt().sign(dpop.privateKey);
  const body = new URLSearchParams({
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: subject,
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', resource: API, scope: 'docs.read', client_id: agent,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion,
  }).toString();
  return { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: proof }, body };
}

/**
 * End-to-end token exchanges over HTTP (concurrency 1) against a Deputy whose store holds `count`
 * registered agents (bulk-inserted before it reports ready), each sample by a different agent
 * (registry and client caches miss as they would with that many agents). Each request is signed
 * just before its call, outside the timing; the RSS is Deputy's after the samples.
 */
async function exchangePoint(idp: MockIdp, keys: { client: Signer; dpop: Signer }, store: Record<string, unknown>, count: number, samples: number): Promise<Omit<Point, 'n'>> {
  const { client, dpop } = keys;
  const deputy = await startDeputy({ trustedIssuers: [idp.issuerConfig('okta')] }, store, [agentRows(count, { keys: [client.jwk] }, [API])]);
  try {
    const subject = await idp.oktaAccessToken({ email: 'alice@example.com', scp: ['docs.read'], expiresIn: 3600 });
    const ms = await timeEach(samples, async (_, request: RequestInit) => {
      const res = await fetch(`${deputy.url}/token`, request);
      const json = (await res.json()) as { access_token?: string };
      if (!json.access_token) throw new Error(`scale: exchange failed (${res.status}): ${JSON.stringify(json).slice(0, 300)}`);
    }, (i) => exchangeRequest(deputy.issuer, `scale-agent-${1 + ((i * 7919) % count)}`, client, dpop, subject), deputy.resetCounters);
    return { ms, ...(await deputy.measured(samples)) };
  } finally {
    await deputy.stop();
  }
}

// --- Receipts ------------------------------------------------------------------------------------

const input = (agent: string, n: number): ReceiptInput => ({
  agent, user: 'okta:acme.okta.com:00u1', chain: [agent], event: 'access_evaluation', action: 'read', resource: `doc:${n}`,
  decision: 'permit', policies: ['policy0'], requestId: `req-${n}`, requestDigest: 'sha-256:47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU',
});

/** Append latency for an agent whose chain already holds `length` receipts (bulk-inserted; only the head is real). */
async function appendPoint(store: Store, service: ReceiptService, length: number, samples: number): Promise<Omit<Point, 'n'>> {
  const agent = `scale-chain-${length}`;
  if (length > 0) {
    const started = performance.now();
    await store.query(
      `INSERT INTO receipts (agent_id, seq, id, hash, prev, jws)
       SELECT $1, g, $1 || '-' || g, 'sha-256:bulk-' || g, 'sha-256:bulk-' || (g - 1), 'x' FROM generate_series(1, $2::int) g`,
      [agent, length],
    );
    await store.query(`INSERT INTO receipt_chains (agent_id, seq, head) VALUES ($1, $2::bigint, 'sha-256:bulk-' || $2)`, [agent, length]);
    log(`${length} receipts inserted in ${Math.round(performance.now() - started)} ms`);
  }
  const ms = await timeEach(samples, (i) => service.append(input(agent, i)));
  return { ms, rssMiB: rss() };
}

/** Verification time of an export of `size` receipts, built by real appends (signed, linked). */
async function verifyPoint(service: ReceiptService, jwks: { keys: object[] }, size: number): Promise<Omit<Point, 'n'>> {
  const agent = `scale-verify-${size}`;
  await Promise.all(Array.from({ length: size }, (_, i) => service.append(input(agent, i))));
  let text = '';
  for await (const r of service.range(agent, 1, size)) text += formatLine(r);
  const ms = await timeEach(3, async () => {
    if (!(await verifyReceipts(text, jwks as never)).ok) throw new Error('scale: export did not verify');
  });
  return { ms, rssMiB: rss() };
}

// --- Stores ----------------------------------------------------------------------------------------

/**
 * Runs `fn` with one migrated store for the whole curve: an in-memory PGlite (one per process) or
 * a fresh PostgreSQL database on `DATABASE_URL`, dropped afterwards.
 */
async function withStore<T>(kind: StoreKind, fn: (store: Store) => Promise<T>): Promise<T> {
  const database = kind === 'postgres' ? await createTestDatabase() : undefined;
  const store = database?.url ? createPostgresStore({ connectionString: database.url, poolSize: 4 }) : await createPGliteStore({ dataDir: 'memory://' });
  try {
    await migrate(store);
    return await fn(store);
  } finally {
    await store.close();
    await database?.drop();
  }
}

/** A fresh PostgreSQL database for a Deputy process (or none on PGlite), dropped afterwards. */
async function withDeputyDatabase<T>(kind: StoreKind, fn: (store: Record<string, unknown>) => Promise<T>): Promise<T> {
  const database = kind === 'postgres' ? await createTestDatabase() : undefined;
  try {
    return await fn(deputyStore(kind, database?.url));
  } finally {
    await database?.drop();
  }
}

async function withReceipts<T>(store: Store, fn: (service: ReceiptService, jwks: { keys: object[] }) => Promise<T>): Promise<T> {
  const key = await generateSigningKey('ES256');
  return fn(new ReceiptService({ store, issuer: 'https://deputy.example.com', key }), { keys: [toPublicJwk(key.jwk)] });
}

const slow = (s: Sizes, n: number) => (n >= 10_000 ? Math.max(3, s.samples / 20) : n >= 1000 ? Math.max(3, s.samples / 4) : s.samples);

/** Every curve, in the order scale.ts runs them. */
export const CURVES: CurveDef[] = [
  {
    id: 'cedar-policies', name: 'PDP: one Cedar decision vs policies (in-process)', unit: 'policies', perStore: false,
    run: (s) => eachSize(s.policies, async (n) => ({ ms: await cedarPoint(n, 3, s.samples), rssMiB: rss() })),
  },
  {
    id: 'cedar-slice', name: 'PDP: one Cedar decision vs entities in the request slice (in-process)', unit: 'entities', perStore: false,
    run: (s) => eachSize(s.slice, async (n) => ({ ms: await cedarPoint(10, n, slow(s, n)), rssMiB: rss() })),
  },
  {
    id: 'pdp-policies', name: 'PDP: one evaluation vs policies in the set (HTTP, cache off, c1)', unit: 'policies', perStore: false,
    run: (s) => eachSize(s.policies, (n) => pdpPoint(n, 100, s.samples)),
  },
  {
    id: 'pdp-entities', name: 'PDP: one evaluation vs entities the PDP holds (entities.json; HTTP, cache off, c1)', unit: 'entities', perStore: false,
    run: (s) => eachSize(s.pdpEntities, (n) => pdpPoint(DEFAULT_POLICIES, n, s.samples)),
  },
  {
    id: 'depth', name: 'PDP: one evaluation vs delegation depth (HTTP, cache off, c1)', unit: 'agents in the chain', perStore: false,
    run: (s) => depthCurve(s.depth, s.samples),
  },
  {
    id: 'exchange-agents', name: 'token exchange end to end vs registered agents (HTTP, c1, a different agent each call)', unit: 'agents', perStore: true,
    run: async (s, kind) => {
      const idp = await startMockIdp();
      const keys = { client: await signer(), dpop: await signer() }; // one key for every agent, every point (rows persist on PostgreSQL)
      try {
        return await withDeputyDatabase(kind, (store) => eachSize(s.agents, (n) => exchangePoint(idp, keys, store, n, s.samples)));
      } finally {
        await idp.close();
      }
    },
  },
  {
    id: 'agent-statements', name: 'exchange: agent-keyed statements vs registered agents', unit: 'agents', perStore: true,
    run: (s, kind) => withStore(kind, (store) => eachSize(s.agents, (n) => agentStatementsPoint(store, n, s.samples))),
  },
  {
    id: 'receipt-append', name: 'receipts: one append vs chain length', unit: 'receipts in the chain', perStore: true,
    run: (s, kind) => withStore(kind, (store) => withReceipts(store, (service) => eachSize(s.chain, (n) => appendPoint(store, service, n, s.samples)))),
  },
  {
    id: 'receipt-verify', name: 'receipts: verify an export vs its size', unit: 'receipts exported', perStore: false,
    run: (s) => withStore('pglite', (store) => withReceipts(store, (service, jwks) => eachSize(s.exports, (n) => verifyPoint(service, jwks, n)))),
  },
];
