/**
 * `npx tsx scripts/bench/scale.ts [--quick] [--out FILE]` (also `npm run bench -- --scale`):
 * how cost grows with what grows in a deployment, in-process on PGlite, one point at a time.
 *
 * - PDP: one Cedar decision (`statefulIsAuthorized` on a pre-parsed set, as src/pdp/engine.ts
 *   calls it) against the number of policies, and against the number of entities in the
 *   request's slice (Deputy builds a slice per request: principal, chain, resource).
 * - Exchange: the agent-keyed statements an exchange runs (the registry read on a cache miss and
 *   the `FOR SHARE` status check) against the number of registered agents.
 * - Receipts: one append against the agent's chain length (the long chains are bulk-inserted by
 *   SQL: append reads only the head), and verification against the export's size.
 * - Delegation depth 1 → 5: one AuthZEN evaluation over HTTP (decision cache off, concurrency 1)
 *   for a subject token at the end of a chain of that many agents; Deputy runs in a child
 *   process (deputy-process.ts), every link's token is verified and every member evaluated.
 *
 * Each curve is labelled by its fitted log-log slope: flat (cost within 20 % across the range,
 * or slope < 0.15), linear (slope ≥ 0.6) or logarithmic (in between). Figures are medians on this machine; under
 * load, compare shapes, not absolute values.
 *
 * @module
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cedar, type EntityJson, type StatefulAuthorizationCall } from '../../src/pdp/cedar.js';
import { ReceiptService } from '../../src/audit/receipts.js';
import type { ReceiptInput } from '../../src/audit/receipt.js';
import { formatLine } from '../../src/audit/jsonl.js';
import { verifyReceipts } from '../../src/audit/verify.js';
import { generateSigningKey, toPublicJwk } from '../../src/keys/keystore.js';
import { AgentRegistry } from '../../src/agents/registry.js';
import { createPGliteStore } from '../../src/store/pglite.js';
import { migrate, type Store } from '../../src/store/index.js';
import { agentConfig, exchange, testAgent } from '../../test/support/agents.js';
import { clientCredentialsToken, clientKeys, oauthClient } from '../../test/support/clients.js';
import { startMockIdp } from '../../test/support/mock-idp.js';

const HERE = dirname(fileURLToPath(import.meta.url));

/** One curve: cost (ms, median) at each size, and its shape. */
export interface Curve {
  name: string;
  unit: string;
  points: Array<{ n: number; ms: number }>;
  slope: number;
  shape: 'flat' | 'logarithmic' | 'linear';
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

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timeEach(n: number, fn: (i: number) => unknown): Promise<number> {
  for (let i = 0; i < Math.ceil(n / 5); i++) await fn(n + i); // warm-up: JIT, caches, pages
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn(i);
    samples.push(performance.now() - t);
  }
  return Math.round(median(samples) * 1000) / 1000;
}

function curve(name: string, unit: string, points: Array<{ n: number; ms: number }>): Curve {
  return { name, unit, points, ...fit(points) };
}

/** A Cedar decision against `policies` policies and a slice of `entities` entities. */
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

async function agentsPoint(store: Store, count: number, samples: number): Promise<number> {
  await store.query(
    `INSERT INTO agents (id, name, owner, scopes, audiences, jwks, source)
     SELECT 'scale-agent-' || g, 'Scale agent', 'owner@example.com', '["docs.read"]', '[]', '{"keys":[]}', 'api'
     FROM generate_series((SELECT count(*) FROM agents WHERE id LIKE 'scale-agent-%') + 1, $1::int) g
     ON CONFLICT (id) DO NOTHING`,
    [count],
  );
  const registry = new AgentRegistry(store, { cacheTtlMs: 0 }); // every read reaches the store
  return timeEach(samples, async (i) => {
    const id = `scale-agent-${1 + ((i * 7919) % count)}`;
    if (!(await registry.get(id))) throw new Error(`scale: agent ${id} missing`);
    await store.transaction((tx) => tx.query('SELECT status FROM agents WHERE id = $1 FOR SHARE', [id]));
  });
}

const input = (agent: string, n: number): ReceiptInput => ({
  agent, user: 'okta:acme.okta.com:00u1', chain: [agent], event: 'access_evaluation', action: 'read', resource: `doc:${n}`,
  decision: 'permit', policies: ['policy0'], requestId: `req-${n}`, requestDigest: 'sha-256:47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU',
});

/** Append latency for an agent whose chain already holds `length` receipts (bulk-inserted). */
async function appendPoint(store: Store, service: ReceiptService, length: number, samples: number): Promise<number> {
  const agent = `scale-chain-${length}`;
  if (length > 0) {
    await store.query(
      `INSERT INTO receipts (agent_id, seq, id, hash, prev, jws)
       SELECT $1, g, $1 || '-' || g, 'sha-256:' || md5(g::text), 'sha-256:' || md5((g - 1)::text), 'x' FROM generate_series(1, $2::int) g`,
      [agent, length],
    );
    await store.query(`INSERT INTO receipt_chains (agent_id, seq, head) VALUES ($1, $2::bigint, 'sha-256:' || md5($3))`, [agent, length, String(length)]);
  }
  return timeEach(samples, (i) => service.append(input(agent, i)));
}

async function verifyPoint(service: ReceiptService, jwks: { keys: object[] }, size: number): Promise<number> {
  const agent = `scale-verify-${size}`;
  await Promise.all(Array.from({ length: size }, (_, i) => service.append(input(agent, i))));
  let text = '';
  for await (const r of service.range(agent, 1, size)) text += formatLine(r);
  return timeEach(3, async () => {
    if (!(await verifyReceipts(text, jwks as never)).ok) throw new Error('scale: export did not verify');
  });
}

const API = 'https://docs.example.com';
const handoff = (id: string) => `urn:deputy:agent:${id}`;

/** PDP evaluation latency (median, ms) for subjects at the end of chains of 1 … `maxDepth` agents. */
async function depthCurve(maxDepth: number, samples: number): Promise<Curve['points']> {
  const idp = await startMockIdp();
  const dir = mkdtempSync(join(tmpdir(), 'deputy-bench-depth-'));
  const pepKeys = await clientKeys();
  const ids = Array.from({ length: maxDepth }, (_, i) => `depth-agent-${i + 1}`);
  const keys = await Promise.all(ids.map(() => clientKeys()));
  const config = {
    server: { port: 0, host: '127.0.0.1' }, store: { dataDir: 'memory://' }, keys: { dir, generate: true }, log: { level: 'warn' },
    pdp: { watch: false, decisionCacheSize: 0 },
    trustedIssuers: [idp.issuerConfig('okta')],
    admin: { clients: [{ client_id: 'bench-pep', scopes: ['authzen:evaluate'], jwks: pepKeys.jwks }] },
    agents: ids.map((id, i) => agentConfig(id, keys[i]!, { scopes: ['docs.read'], audiences: [API, ...(ids[i + 1] ? [handoff(ids[i + 1]!)] : [])], maxDelegationDepth: maxDepth })),
  };
  const child = spawn(process.execPath, ['--import', 'tsx', join(HERE, 'deputy-process.ts')], {
    env: { ...process.env, BENCH_DEPUTY_CONFIG: JSON.stringify(config), NODE_ENV: 'production' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const [url, issuer] = await new Promise<string[]>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const line = out.split('\n').find((l) => l.startsWith('READY '));
        if (line) resolve(line.split(' ').slice(1));
      });
      child.once('exit', (code) => reject(new Error(`deputy exited with ${code}`)));
    });
    const pep = await clientCredentialsToken(await oauthClient(issuer!, 'bench-pep', pepKeys), 'authzen:evaluate');
    const agents = await Promise.all(ids.map((id, i) => testAgent(issuer!, id, keys[i]!)));
    const user = await idp.oktaAccessToken({ email: 'alice@example.com', scp: ['docs.read'] });
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${pep}` };
    const points: Curve['points'] = [];
    for (let depth = 1; depth <= maxDepth; depth++) {
      let token = user;
      for (let i = 0; i < depth - 1; i++) {
        token = (await exchange(agents[i]!, { subject_token: token, audience: handoff(ids[i + 1]!), ...(i === 0 ? { scope: 'docs.read' } : {}) })).access_token;
      }
      token = (await exchange(agents[depth - 1]!, { subject_token: token, resource: API, ...(depth === 1 ? { scope: 'docs.read' } : {}) })).access_token;
      const sub = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sub as string;
      const body = (n: number) => JSON.stringify({ subject: { type: 'User', id: sub, properties: { token } }, action: { name: 'read' }, resource: { type: 'Resource', id: `doc-${n}`, properties: { owner: 'alice@example.com', scope: 'docs.read', audience: API } } });
      const ms = await timeEach(samples, async (n) => {
        const res = await fetch(`${url}/access/v1/evaluation`, { method: 'POST', headers, body: body(n) });
        const verdict = (await res.json()) as { decision?: boolean };
        if (verdict.decision !== true) throw new Error(`scale: depth ${depth} is not a permit: ${JSON.stringify(verdict)}`);
      });
      points.push({ n: depth, ms });
    }
    return points;
  } finally {
    child.kill('SIGTERM');
    await idp.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs every curve; `quick` uses smaller sizes (same shapes, seconds instead of minutes). */
export async function scaleCurves(quick: boolean): Promise<Curve[]> {
  const curves: Curve[] = [];
  const s = quick ? 30 : 200;
  const policies = [10, 100, 1000];
  const pPoints: Curve['points'] = [];
  for (const n of policies) pPoints.push({ n, ms: await cedarPoint(n, 3, s) });
  curves.push(curve('PDP: one Cedar decision vs policies', 'policies', pPoints));
  const entities = quick ? [100, 1000, 10_000] : [100, 10_000, 100_000];
  const ePoints: Curve['points'] = [];
  for (const n of entities) ePoints.push({ n, ms: await cedarPoint(10, n, n >= 10_000 ? Math.max(3, s / 20) : s) });
  curves.push(curve('PDP: one Cedar decision vs entities in the request slice', 'entities', ePoints));

  curves.push(curve('PDP: one evaluation vs delegation depth (HTTP, cache off, c1)', 'agents in the chain', await depthCurve(5, quick ? 20 : 200)));

  const store = await createPGliteStore({ dataDir: 'memory://' });
  try {
    await migrate(store);
    const agents = quick ? [10, 1000, 10_000] : [10, 10_000, 100_000];
    const aPoints: Curve['points'] = [];
    for (const n of agents) aPoints.push({ n, ms: await agentsPoint(store, n, s) });
    curves.push(curve('exchange: agent-keyed statements vs registered agents', 'agents', aPoints));

    const key = await generateSigningKey('ES256');
    const service = new ReceiptService({ store, issuer: 'https://deputy.example.com', key });
    const lengths = quick ? [1, 1000, 10_000] : [1, 10_000, 1_000_000];
    const rPoints: Curve['points'] = [];
    for (const n of lengths) rPoints.push({ n, ms: await appendPoint(store, service, n, s) });
    curves.push(curve('receipts: one append vs chain length', 'receipts in the chain', rPoints));
    const sizes = quick ? [50, 200, 800] : [100, 1000, 10_000];
    const vPoints: Curve['points'] = [];
    for (const n of sizes) vPoints.push({ n, ms: await verifyPoint(service, { keys: [toPublicJwk(key.jwk)] }, n) });
    curves.push(curve('receipts: verify an export vs its size', 'receipts exported', vPoints));
  } finally {
    await store.close();
  }
  return curves;
}

/** The curves as a Markdown table. */
export function scaleMarkdown(curves: Curve[]): string {
  return [
    '| curve | sizes | median ms at each | fitted log-log slope | shape |',
    '| --- | --- | --- | --- | --- |',
    ...curves.map((c) => `| ${c.name} | ${c.points.map((p) => p.n.toLocaleString('en')).join(' / ')} ${c.unit} | ${c.points.map((p) => p.ms).join(' / ')} | ${c.slope} | ${c.shape} |`),
  ].join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, out: { type: 'string', default: join(HERE, '../../bench-results/scale.json') } } });
  const curves = await scaleCurves(values.quick ?? false);
  mkdirSync(dirname(values.out!), { recursive: true });
  writeFileSync(values.out!, `${JSON.stringify({ date: new Date().toISOString(), quick: values.quick, curves }, null, 2)}\n`);
  process.stdout.write(`${scaleMarkdown(curves)}\n`);
}
