/**
 * The token exchange's authorizer (DESIGN: "the token exchange itself is a PDP decision",
 * action `delegate`). It keeps every check of the registry's rules (agent active, allowed
 * audience and scopes, depth limits) and adds the Cedar `delegate` decision over the whole new
 * chain (chain-evaluation.ts): the user and every agent must be permitted to delegate to the audience.
 *
 * A Cedar refusal about the user is `invalid_grant` (the grant — the user's token — may not be
 * delegated this way); about an agent it is `unauthorized_client` (RFC 6749 §5.2). The
 * description names the link and the policies, so the agent's developer can see which rule
 * applied; it carries no token data.
 *
 * @module
 */
import { DelegationDenied, type DelegationAuthorizer, type DelegationPermit, type DelegationRequest, type RegistryAuthorizer } from '../delegation/index.js';
import type { PolicyDecisionPoint } from './pdp.js';

/**
 * {@link DelegationAuthorizer} for the token exchange: the registry's rules first, then the
 * Cedar `delegate` decision of the PDP.
 */
export class PdpDelegationAuthorizer implements DelegationAuthorizer {
  readonly #registry: RegistryAuthorizer;
  readonly #pdp: PolicyDecisionPoint;

  constructor(registry: RegistryAuthorizer, pdp: PolicyDecisionPoint) {
    this.#registry = registry;
    this.#pdp = pdp;
  }

  async authorize(request: DelegationRequest): Promise<DelegationPermit> {
    await this.#registry.authorize(request);
    const decision = await this.#pdp.decideDelegation(request);
    if (decision.decision) return { policies: decision.policies };
    const { denial } = decision;
    const code = denial.link?.type === 'Agent' ? 'unauthorized_client' : 'invalid_grant';
    const policies = denial.policies.length > 0 ? ` (policy ${denial.policies.map((p) => `"${p}"`).join(', ')})` : '';
    throw new DelegationDenied(code, `delegation denied by the PDP: ${denial.admin}${policies && !denial.admin.includes('policy') ? policies : ''}`, denial.policies);
  }
}
