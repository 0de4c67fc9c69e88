/**
 * Step 4 of subject resolution (subject-resolution.ts), the registry check: a verified chain
 * stands only while every agent in it is registered and active and each of its links still
 * passes the registry's rules as they are now — so disabling an agent, or narrowing its scopes
 * or audiences, takes effect on tokens already issued, at the next decision.
 *
 * @module
 */
import type { Agent } from '../agents/index.js';
import type { DelegationChain } from './act-claim.js';
import { DelegationDenied } from './denial.js';
import type { RegistryAuthorizer } from './registry-rules.js';
import { scopesOf, type DelegatedSubject, type DelegationLink, type InvalidSubject, type VerifiedChain } from './subject-resolution.js';

/** Reads registry agents (the PDP passes its entity cache). */
export interface AgentLookup {
  /** The agent, or undefined when none is registered under `id`. */
  get(id: string): Promise<Agent | undefined>;
}

/**
 * Step 4 over a verified chain.
 *
 * @param rules The registry's rules with the deployment's depth limit.
 * @returns The delegated subject with its agents link by link, or the first link that fails.
 * @throws only what `agents.get` throws (store failure); a refusal is a returned InvalidSubject.
 */
export async function checkAgainstRegistry(verified: VerifiedChain, agents: AgentLookup, rules: RegistryAuthorizer): Promise<DelegatedSubject | InvalidSubject> {
  const registered = await activeAgents(verified.chain, agents);
  if (!(registered instanceof Map)) return registered;
  const refused = await refusedLink(verified, registered, rules);
  if (refused) return refused;
  const { user, chain, grants, scopes } = verified;
  return { kind: 'delegated', user, chain, grants, scopes, links: linksOf(verified, registered) };
}

/** Every agent of the chain, registered and active; or the first that is not. */
async function activeAgents(chain: DelegationChain, agents: AgentLookup): Promise<Map<string, Agent> | InvalidSubject> {
  const found = new Map<string, Agent>();
  for (const id of new Set(chain)) {
    const agent = await agents.get(id);
    const position = chain.indexOf(id) + 1;
    const problem = !agent ? 'is not registered' : agent.status !== 'active' ? 'is disabled' : undefined;
    if (problem) return { kind: 'invalid', reason: 'invalid_chain', message: `agent "${id}" at link ${position} ${problem}`, position, depth: chain.length, agentId: id };
    found.set(id, agent!);
  }
  return found;
}

/** The first grant that the registry's rules, as they are now, refuse. */
async function refusedLink(verified: VerifiedChain, agents: ReadonlyMap<string, Agent>, rules: RegistryAuthorizer): Promise<InvalidSubject | undefined> {
  for (const g of verified.grants) {
    try {
      await rules.authorize({ user: verified.user, agent: agents.get(g.agentId)!, chain: g.chain, audience: g.audience, scopes: scopesOf(g) });
    } catch (err) {
      if (!(err instanceof DelegationDenied)) throw err;
      return { kind: 'invalid', reason: 'invalid_chain', message: `link ${g.chain.length}: ${err.description}`, position: g.chain.length, depth: verified.chain.length, agentId: g.agentId };
    }
  }
  return undefined;
}

/** Each agent with the latest grant it held at its position. */
function linksOf(verified: VerifiedChain, agents: ReadonlyMap<string, Agent>): DelegationLink[] {
  const latestFirst = [...verified.grants].reverse();
  return verified.chain.map((id, i) => ({
    position: i + 1,
    agent: agents.get(id)!,
    grant: latestFirst.find((g) => g.chain.length === i + 1)!,
  }));
}
