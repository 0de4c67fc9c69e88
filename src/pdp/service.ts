/**
 * The PDP as one service for the composition root: policy store (loaded and validated at
 * start), caches, engine, search, the token-exchange authorizer, and policy reloads (file
 * watch, SIGHUP, admin API).
 *
 * @module
 */
import type { AgentRegistry } from '../agents/index.js';
import type { DeputyConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { RegistryAuthorizer, type DelegationAuthorizer, type SubjectResolver } from '../delegation/index.js';
import { PdpDelegationAuthorizer } from './exchange-authorizer.js';
import { CedarEngine } from './engine.js';
import { AgentCache } from './entities.js';
import { PolicyDecisionPoint } from './pdp.js';
import { PolicyStore, type ReloadResult, type ReloadTrigger } from './policy-store.js';
import { Search } from './search.js';

export { PolicyLoadError } from './policy-store.js';

/** What {@link startPdp} needs from the composition root. */
export interface PdpServiceDeps {
  config: DeputyConfig;
  /** Resolves agent tokens presented as subjects; the OAuth side implements it (oauth/agent-token-resolver.ts). */
  subjects: SubjectResolver;
  agents: AgentRegistry;
  logger: Logger;
}

/** The PDP as the HTTP layer and the token exchange see it. */
export interface PdpService {
  readonly pdp: PolicyDecisionPoint;
  readonly search: Search;
  readonly policies: PolicyStore;
  /** The token exchange's authorizer: the registry's rules, then the Cedar `delegate` decision. */
  delegationAuthorizer(registry: RegistryAuthorizer): DelegationAuthorizer;
  /** Reloads the policy folder; throws PolicyLoadError (the previous set keeps serving). */
  reload(trigger: ReloadTrigger): Promise<ReloadResult>;
  /** Stops watching the policy folder and cancels a pending crash recovery (PolicyStore `close`). */
  close(): void;
}

/**
 * Loads and validates the policy set, then builds the PDP, its search and its reload triggers.
 *
 * @throws PolicyLoadError when the policy folder does not load or validate.
 */
export async function startPdp(deps: PdpServiceDeps): Promise<PdpService> {
  const { config, logger } = deps;
  const policies = new PolicyStore({ dir: config.pdp.policies, logger });
  await policies.load();
  const engine = new CedarEngine({ cacheSize: config.pdp.decisionCacheSize });
  policies.onReload(() => engine.clearCache());
  const agents = new AgentCache(deps.agents, config.pdp.entityCacheSeconds);
  const registry = new RegistryAuthorizer(config.tokens.maxChainDepth);
  const pdp = new PolicyDecisionPoint({ store: policies, engine, subjects: deps.subjects, registry, agents, logger });
  const search = new Search(pdp, agents, { defaultLimit: config.pdp.searchPageSize, maxLimit: config.pdp.searchMaxPageSize });
  if (config.pdp.watch) policies.watch();
  if (config.pdp.auth === 'none') logger.warn('pdp.auth is "none": the AuthZEN endpoints accept unauthenticated requests');
  return {
    pdp,
    search,
    policies,
    delegationAuthorizer: (registry) => new PdpDelegationAuthorizer(registry, pdp),
    reload: (trigger) => policies.reload(trigger),
    close: () => policies.close(),
  };
}
