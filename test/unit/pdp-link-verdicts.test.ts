/**
 * The PDP's memo of a presented token's link verdicts (one `delegate` decision per link, reused
 * across requests for the same token): a changed agent (a new object from the registry's read
 * cache) or a new policy generation decides again, so the memo never answers with a verdict
 * Cedar would no longer give. The token resolver is a stub that returns the same issuance
 * records for the token, as the real one does from its cache.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent, AgentRegistry } from '../../src/agents/registry.js';
import { RegistryAuthorizer, type DelegationGrant, type SubjectResolver, type VerifiedChain } from '../../src/delegation/index.js';
import { createLogger } from '../../src/log.js';
import { CedarEngine } from '../../src/pdp/engine.js';
import { AgentCache } from '../../src/pdp/entities.js';
import { PolicyDecisionPoint } from '../../src/pdp/pdp.js';
import { PolicyStore } from '../../src/pdp/policy-store.js';
import { REPO } from '../support/authzen.js';

const API = 'https://docs.example.com';
const dir = mkdtempSync(join(tmpdir(), 'deputy-link-verdicts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const agent = (owner: string): Agent => ({
  id: 'researcher', name: 'Researcher', owner, scopes: ['docs.read'], audiences: [API], maxDelegationDepth: 3, status: 'active',
  source: 'config', createdAt: '2026-01-01T00:00:00Z', updatedAt: '2026-01-01T00:00:00Z',
});
const grants: readonly DelegationGrant[] = [{ jti: 't1', agentId: 'researcher', userId: 'alice', chain: ['researcher'], audience: API, scope: 'docs.read', expiresAt: 4_000_000_000 }];
const verified: VerifiedChain = {
  kind: 'verified', user: { id: 'alice', issuerId: 'okta', email: 'alice@example.com', groups: [], roles: [] }, chain: ['researcher'], grants, scopes: ['docs.read'],
};

let current = agent('ops@example.com');
let engine: CedarEngine;
let pdp: PolicyDecisionPoint;
let store: PolicyStore;

beforeAll(async () => {
  cpSync(`${REPO}config/policies`, dir, { recursive: true });
  // A link is no longer authorized once its agent's owner is "blocked@example.com".
  writeFileSync(join(dir, 'blocked.cedar'), 'forbid (principal is Agent, action == Action::"delegate", resource) when { principal.owner == "blocked@example.com" };\n');
  const logger = createLogger('silent');
  store = new PolicyStore({ dir, logger });
  await store.load();
  const registry = { onChange: () => {}, get: async () => current, list: async () => ({ agents: [current] }) } as unknown as AgentRegistry;
  const subjects: SubjectResolver = { resolve: async () => verified };
  engine = new CedarEngine({ cacheSize: 0 });
  pdp = new PolicyDecisionPoint({ store, engine, subjects, registry: new RegistryAuthorizer(3), agents: new AgentCache(registry, 5), logger });
});

const evaluate = () =>
  pdp.evaluate({
    subject: { type: 'User', id: 'alice', properties: { token: 'the-token' } },
    action: { name: 'read', properties: {} },
    resource: { type: 'Resource', id: 'doc-1', properties: { owner: 'alice@example.com', scope: 'docs.read', audience: API } },
    context: {},
  });

describe('link verdicts across requests', () => {
  it('are decided once per token while agents and policies are unchanged, and again when either changes', async () => {
    expect(await evaluate()).toMatchObject({ decision: true });
    const first = engine.calls;
    expect(await evaluate()).toMatchObject({ decision: true });
    // The decision cache is off: the two members are evaluated again, the link is not.
    const perRequest = engine.calls - first;
    expect(perRequest).toBe(2);

    // The registry re-read the agent (a new object): its link is decided again, and now refused.
    current = agent('blocked@example.com');
    expect(await evaluate()).toMatchObject({ decision: false, denial: { kind: 'invalid_chain' } });
    current = agent('ops@example.com');
    expect(await evaluate()).toMatchObject({ decision: true });

    // A new policy generation decides again too: the same agent object, a policy that now blocks its owner.
    writeFileSync(join(dir, 'blocked.cedar'), 'forbid (principal is Agent, action == Action::"delegate", resource) when { principal.owner == "ops@example.com" };\n');
    await store.reload('admin');
    expect(await evaluate()).toMatchObject({ decision: false, denial: { kind: 'invalid_chain' } });
  });
});
