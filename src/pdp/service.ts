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
import { RememberedDecisions } from './remembered-decisions.js';

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
  /**
   * The PDP's evaluations for in-process PEPs (the HTTP gateway), answered from remembered
   * decisions while their basis holds (./remembered-decisions.ts); nothing remembered with the
   * decision cache off (`pdp.decisionCacheSize: 0`).
   */
  readonly remembered: RememberedDecisions;
  /** The token exchange's authorizer: the registry's rules, then the Cedar `delegate` decision. */
  delegationAuthorizer(registry: RegistryAuthorizer): DelegationAuthorizer;
  /** Reloads the policy folder; throws PolicyLoadError (the previous set keeps serving). */
  reload(trigger: ReloadTrigger): Promise<ReloadResult>;
  /** Stops watching the policy folder and cancels a pending crash recovery (PolicyStore `close`). */
  close(): void;
}

/** Bytes of decisions the gateway's remembered path keeps (about 8 MiB: a couple of thousand gateway evaluations, as the AuthZEN cached path's budget). */
const REMEMBERED_DECISION_BYTES = 8 * 1024 * 1024;

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
  // Off with the decision cache, and never more entries than it holds: "cache off" means every decision is evaluated.
  const remembered = new RememberedDecisions(pdp, { budgetBytes: config.pdp.decisionCacheSize > 0 ? REMEMBERED_DECISION_BYTES : 0, maxEntries: config.pdp.decisionCacheSize });
  return {
    pdp,
    search,
    remembered,
    policies,
    delegationAuthorizer: (registry) => new PdpDelegationAuthorizer(registry, pdp),
    reload: (trigger) => policies.reload(trigger),
    close: () => policies.close(),
  };
}
