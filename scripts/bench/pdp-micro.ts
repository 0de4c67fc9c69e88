/**
 * `npx tsx scripts/bench/pdp-micro.ts [--n 2000]` — the PDP's uncached decision in-process, no
 * HTTP: CPU microseconds per `PolicyDecisionPoint.evaluate` for a one-link and a three-link
 * delegated subject on the default policy set (decision cache off, subject resolution stubbed
 * with fixed issuance records as the token resolver's cache returns them), split into Cedar's
 * share and the rest; with the entity slices on and off (engine.ts `slice`), and the raw Cedar
 * floor call of bench:pdp. CPU time (`process.cpuUsage`), not wall time: usable on a loaded
 * machine. Issue 16, fourth round.
 *
 * @module
 */
import { join } from 'node:path';
import { parseArgs } from './options.js';
import type { Agent, AgentRegistry } from '../../src/agents/registry.js';
import { RegistryAuthorizer, type DelegationGrant, type SubjectResolver, type VerifiedChain } from '../../src/delegation/index.js';
import { createLogger } from '../../src/log.js';
import { cedarFloorCpuUs, cpuUs } from './cedar-floor.js';
import { CedarEngine } from '../../src/pdp/engine.js';
import { AgentCache } from '../../src/pdp/entities.js';
import { PolicyDecisionPoint } from '../../src/pdp/pdp.js';
import { PolicyStore } from '../../src/pdp/policy-store.js';

const REPO = join(import.meta.dirname, '../..');
const API = 'https://docs.example.com';
const { values } = parseArgs(import.meta.url, { options: { n: { type: 'string', default: '2000', value: 'positive integer' } } });
const N = Number(values.n);

const agent = (id: string, next?: string): Agent => ({
  id, name: `Agent ${id}`, owner: 'owner@example.com', scopes: ['docs.read'], audiences: [API, ...(next ? [`urn:deputy:agent:${next}`] : [])],
  maxDelegationDepth: 3, status: 'active', source: 'config', createdAt: '2026-01-01T00:00:00Z', updatedAt: '2026-01-01T00:00:00Z',
});
const agents = new Map([agent('agent-a', 'agent-b'), agent('agent-b', 'agent-c'), agent('agent-c')].map((a) => [a.id, a]));
const user = { id: 'okta:00u1a2b3c4d5e6f7g8h9', issuerId: 'okta', email: 'alice@example.com', groups: [], roles: [] };
const grant = (chain: string[], audience: string): DelegationGrant => ({ jti: chain.join('>'), agentId: chain.at(-1)!, userId: user.id, chain, audience, scope: 'docs.read', expiresAt: 4_000_000_000 });
const chains: Record<string, VerifiedChain> = {
  'one-link': { kind: 'verified', user, chain: ['agent-a'], grants: [grant(['agent-a'], API)], scopes: ['docs.read'] },
  'three-link': {
    kind: 'verified', user, chain: ['agent-a', 'agent-b', 'agent-c'], scopes: ['docs.read'],
    grants: [grant(['agent-a'], 'urn:deputy:agent:agent-b'), grant(['agent-a', 'agent-b'], 'urn:deputy:agent:agent-c'), grant(['agent-a', 'agent-b', 'agent-c'], API)],
  },
};


async function run(store: PolicyStore, slice: boolean, kind: string): Promise<string> {
  const logger = createLogger('silent');
  const registry = { onChange: () => {}, get: async (id: string) => agents.get(id), list: async () => ({ agents: [...agents.values()] }) } as unknown as AgentRegistry;
  const subjects: SubjectResolver = { resolve: async () => chains[kind]! };
  const engine = new CedarEngine({ cacheSize: 0, slice });
  const pdp = new PolicyDecisionPoint({ store, engine, subjects, registry: new RegistryAuthorizer(3), agents: new AgentCache(registry, 5), logger });
  let cedarUs = 0;
  // The set's own Cedar instance (policy-store.ts): the one the engine calls.
  const cedar = store.current.cedar;
  const original = cedar.statefulIsAuthorized;
  const timed = (call: Parameters<typeof original>[0]) => {
    const t = cpuUs();
    const answer = original(call);
    cedarUs += cpuUs() - t;
    return answer;
  };
  const evaluate = (i: number) =>
    pdp.evaluate({
      subject: { type: 'User', id: user.id, properties: { token: 'the-token' } },
      action: { name: 'read', properties: {} },
      resource: { type: 'Resource', id: `doc-${i % 100}`, properties: { owner: 'alice@example.com', scope: 'docs.read', audience: API } },
      context: {},
    });
  for (let i = 0; i < 300; i++) if (!(await evaluate(i)).decision) throw new Error(`${kind}: not a permit`);
  (cedar as { statefulIsAuthorized: typeof original }).statefulIsAuthorized = timed;
  const calls0 = engine.calls;
  const t0 = cpuUs();
  try {
    for (let i = 0; i < N; i++) await evaluate(i);
  } finally {
    (cedar as { statefulIsAuthorized: typeof original }).statefulIsAuthorized = original;
  }
  const total = (cpuUs() - t0) / N;
  const calls = (engine.calls - calls0) / N;
  return `| ${kind} | ${slice ? 'on' : 'off'} | ${calls} | ${Math.round(total)} | ${Math.round(cedarUs / N)} | ${Math.round(cedarUs / N / calls)} | ${Math.round(total - cedarUs / N)} |`;
}

function floor(store: PolicyStore): number {
  return Math.round(cedarFloorCpuUs(store.current, N));
}

const store = new PolicyStore({ dir: join(REPO, 'config/policies'), logger: createLogger('silent') });
await store.load();
const rows: string[] = [];
for (const kind of ['one-link', 'three-link']) for (const slice of [false, true]) rows.push(await run(store, slice, kind));
process.stdout.write(
  [
    `Cedar floor call (bench:pdp's): ${floor(store)} µs CPU`,
    '',
    '| subject | entity slices | Cedar calls / decision | µs CPU / decision | of which Cedar | µs / Cedar call | rest (PDP JS) |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n') + '\n',
);
