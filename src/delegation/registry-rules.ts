/**
 * The one question every token exchange asks before issuing: may this agent act for this user,
 * through this chain, with these scopes, at this audience? (DESIGN: action `delegate`.)
 *
 * {@link RegistryAuthorizer} answers from the agent registry (allowed scopes, audiences, depth).
 * The PDP wraps it with Cedar policies; the grant only ever sees {@link DelegationAuthorizer}.
 *
 * @module
 */
import type { Agent } from '../agents/registry.js';
import { AGENT_AUDIENCE_PREFIX, handoffTarget, type DelegationChain } from './delegation-chain.js';

/** The user on whose behalf the chain acts. */
export interface DelegatingUser {
  /** Stable id (`entra:{tid}:{oid}`, `okta:{host}:{uid}`, `{iss}#{sub}`). */
  id: string;
  /** The trusted issuer (config id) that authenticated the user. */
  issuerId: string;
  email?: string;
  tenant?: string;
  groups: readonly string[];
  roles: readonly string[];
}

export interface DelegationRequest {
  user: DelegatingUser;
  /** The agent that will hold the token (the authenticated client). */
  agent: Agent;
  /** The chain after this exchange, first agent first; its last element is `agent.id`. */
  chain: DelegationChain;
  audience: string;
  scopes: readonly string[];
}

/** Which check refused, as an OAuth error code (RFC 6749 §5.2, RFC 8693 §2.2.2). */
export type DenialCode = 'invalid_scope' | 'invalid_target' | 'invalid_grant' | 'unauthorized_client';

/**
 * A refused delegation. `description` names the failed check; it becomes `error_description`.
 * `policies` are the ids of the policies that refused (recorded in the exchange's receipt).
 */
export class DelegationDenied extends Error {
  constructor(
    readonly error: DenialCode,
    readonly description: string,
    readonly policies: readonly string[] = [],
  ) {
    super(description);
    this.name = 'DelegationDenied';
  }
}

/** What a permit may report: the ids of the policies that decided (recorded in the receipt). */
export interface DelegationPermit {
  policies: readonly string[];
}

export interface DelegationAuthorizer {
  /** Resolves when allowed (with the deciding policies, if any); rejects with {@link DelegationDenied} otherwise. */
  authorize(request: DelegationRequest): Promise<void | DelegationPermit>;
}

/** Whether `agent` may target `audience`: listed, or a handoff covered by `urn:deputy:agent:*`. */
export function agentMayTarget(agent: Agent, audience: string): boolean {
  if (agent.audiences.includes(audience)) return true;
  return handoffTarget(audience) !== undefined && agent.audiences.includes(`${AGENT_AUDIENCE_PREFIX}*`);
}

/** The registry's rules: the agent's allowed scopes, audiences and maximum depth. */
export class RegistryAuthorizer implements DelegationAuthorizer {
  constructor(readonly maxChainDepth: number) {}

  async authorize({ agent, chain, audience, scopes }: DelegationRequest): Promise<void> {
    if (agent.status !== 'active') throw new DelegationDenied('unauthorized_client', `agent "${agent.id}" is disabled`);
    if (!agentMayTarget(agent, audience)) {
      throw new DelegationDenied('invalid_target', `agent "${agent.id}" is not allowed the audience "${audience}"`);
    }
    const denied = scopes.filter((s) => !agent.scopes.includes(s));
    if (denied.length > 0) throw new DelegationDenied('invalid_scope', `agent "${agent.id}" is not allowed the scope "${denied.join(' ')}"`);
    const limit = Math.min(agent.maxDelegationDepth, this.maxChainDepth);
    if (chain.length > limit) {
      throw new DelegationDenied('invalid_grant', `delegation depth ${chain.length} exceeds the limit of ${limit} for agent "${agent.id}"`);
    }
  }
}
