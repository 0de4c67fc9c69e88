/**
 * The PDP's memo of the token exchange's `delegate` decisions (issue 16, fifth round): the same
 * user attributes, chain, scopes and audience get the same decision without Cedar being asked;
 * another user attribute, a re-read agent (a new registry object) or a new policy generation
 * decides again, so the memo never answers with a decision Cedar would no longer give; with the
 * decision cache off (`cacheSize: 0`) every exchange is decided.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent, AgentRegistry } from '../../src/agents/registry.js';
import { RegistryAuthorizer, type DelegatingUser, type DelegationRequest, type SubjectResolver } from '../../src/delegation/index.js';
import { createLogger } from '../../src/log.js';
import { CedarEngine } from '../../src/pdp/engine.js';
import { AgentCache } from '../../src/pdp/entities.js';
import { PolicyDecisionPoint } from '../../src/pdp/pdp.js';
import { PolicyStore } from '../../src/pdp/policy-store.js';
import { REPO } from '../support/authzen.js';

const API = 'https://docs.example.com';
const dir = mkdtempSync(join(tmpdir(), 'deputy-delegate-verdicts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const agent = (owner: string): Agent => ({
  id: 'researcher', name: 'Researcher', owner, scopes: ['docs.read'], audiences: [API], maxDelegationDepth: 3, status: 'active',
  source: 'config', createdAt: '2026-01-01T00:00:00Z', updatedAt: '2026-01-01T00:00:00Z',
});
const alice = (groups: string[] = []): DelegatingUser => ({ id: 'alice', issuerId: 'okta', email: 'alice@example.com', groups, roles: [] });
const request = (a: Agent, user = alice()): DelegationRequest => ({ user, agent: a, chain: ['researcher'], audience: API, scopes: ['docs.read'] });

let store: PolicyStore;
const logger = createLogger('silent');

function pdpWith(cacheSize: number): { pdp: PolicyDecisionPoint; engine: CedarEngine } {
  const registry = { onChange: () => {}, get: async () => undefined, list: async () => ({ agents: [] }) } as unknown as AgentRegistry;
  const subjects: SubjectResolver = { resolve: async () => ({ kind: 'invalid', reason: 'unused' }) as never };
  const engine = new CedarEngine({ cacheSize });
  return { engine, pdp: new PolicyDecisionPoint({ store, engine, subjects, registry: new RegistryAuthorizer(3), agents: new AgentCache(registry, 5), logger }) };
}

beforeAll(async () => {
  cpSync(`${REPO}config/policies`, dir, { recursive: true });
  // Refusals to tell a stale answer from a fresh one: by the agent's owner, and by a user group.
  writeFileSync(join(dir, 'blocked.cedar'), [
    'forbid (principal is Agent, action == Action::"delegate", resource) when { principal.owner == "blocked@example.com" };',
    'forbid (principal is User, action == Action::"delegate", resource) when { principal has groups && principal.groups.contains("suspended") };',
    '',
  ].join('\n'));
  store = new PolicyStore({ dir, logger });
  await store.load();
});

describe('delegate decisions of the token exchange', () => {
  it('are remembered while user, agents and policies are unchanged, and decided again when one changes', async () => {
    const { pdp, engine } = pdpWith(1000);
    const ops = agent('ops@example.com');
    const first = await pdp.decideDelegation(request(ops));
    expect(first).toMatchObject({ decision: true });
    const calls = engine.calls;
    engine.clearCache();
    // The engine's own cache is empty: only the memo can answer without a Cedar call.
    expect(await pdp.decideDelegation(request(ops))).toEqual(first);
    expect(engine.calls).toBe(calls);

    // Another user attribute: decided, and refused.
    expect(await pdp.decideDelegation(request(ops, alice(['suspended'])))).toMatchObject({ decision: false });
    // The registry re-read the agent (a new object, a blocked owner): decided, and refused.
    expect(await pdp.decideDelegation(request(agent('blocked@example.com')))).toMatchObject({ decision: false });
    expect(await pdp.decideDelegation(request(ops))).toMatchObject({ decision: true });

    // A new policy generation: the same agent object, now refused.
    writeFileSync(join(dir, 'blocked.cedar'), 'forbid (principal is Agent, action == Action::"delegate", resource) when { principal.owner == "ops@example.com" };\n');
    await store.reload('admin');
    expect(await pdp.decideDelegation(request(ops))).toMatchObject({ decision: false });
  });

  it('are no more than the decision cache holds (pdp.decisionCacheSize), the oldest dropped', async () => {
    const { pdp, engine } = pdpWith(2);
    const ops = agent('bounded@example.com');
    for (const group of ['g1', 'g2', 'g3']) await pdp.decideDelegation(request(ops, alice([group])));
    engine.clearCache();
    const calls = engine.calls;
    // The newest is remembered; the oldest was dropped at the third: Cedar decides it again.
    await pdp.decideDelegation(request(ops, alice(['g3'])));
    expect(engine.calls).toBe(calls);
    await pdp.decideDelegation(request(ops, alice(['g1'])));
    expect(engine.calls).toBeGreaterThan(calls);
  });

  it('are not remembered when the decision cache is off', async () => {
    const { pdp, engine } = pdpWith(0);
    const ops = agent('someone@example.com');
    await pdp.decideDelegation(request(ops));
    const calls = engine.calls;
    await pdp.decideDelegation(request(ops));
    expect(engine.calls).toBeGreaterThan(calls);
  });
});
