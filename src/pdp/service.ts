/**
 * The PDP as one service for the composition root: policy store (loaded and validated at
 * start), caches, engine, search, the token-exchange authorizer, and policy reloads (file
 * watch, SIGHUP, admin API).
 *
 * @module
 */
import type { AgentRegistry } from '../agents/registry.js';
import type { DeputyConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { AccessTokenVerifier } from '../oauth/access-token.js';
import type { DelegationAuthorizer, RegistryAuthorizer } from '../oauth/delegation-authorizer.js';
import type { RevocationCache, TokenRecords } from '../oauth/token-records.js';
import { DelegatedSubjects } from './delegated-subject.js';
import { PdpDelegationAuthorizer } from './delegation.js';
import { CedarEngine } from './engine.js';
import { AgentCache } from './entities.js';
import { PolicyDecisionPoint } from './pdp.js';
import { PolicyStore, type ReloadResult, type ReloadTrigger } from './policy-store.js';
import { Search } from './search.js';

export { PolicyLoadError } from './policy-store.js';

export interface PdpServiceDeps {
  config: DeputyConfig;
  verifier: AccessTokenVerifier;
  records: TokenRecords;
  revocations: RevocationCache;
  agents: AgentRegistry;
  logger: Logger;
}

export interface PdpService {
  readonly pdp: PolicyDecisionPoint;
  readonly search: Search;
  readonly policies: PolicyStore;
  /** The token exchange's authorizer: the registry's rules, then the Cedar `delegate` decision. */
  delegationAuthorizer(registry: RegistryAuthorizer): DelegationAuthorizer;
  /** Reloads the policy folder; throws PolicyLoadError (the previous set keeps serving). */
  reload(trigger: ReloadTrigger): Promise<ReloadResult>;
  /** Stops watching the policy folder. */
  close(): void;
}

/** Loads and validates the policy set (throws PolicyLoadError), then builds the PDP. */
export async function startPdp(deps: PdpServiceDeps): Promise<PdpService> {
  const { config, logger } = deps;
  const policies = new PolicyStore({ dir: config.pdp.policies, logger });
  await policies.load();
  const engine = new CedarEngine({ cacheSize: config.pdp.decisionCacheSize });
  policies.onReload(() => engine.clearCache());
  const agents = new AgentCache(deps.agents, config.pdp.entityCacheSeconds);
  const subjects = new DelegatedSubjects({
    verifier: deps.verifier,
    records: deps.records,
    revocations: deps.revocations,
    agents,
    maxChainDepth: config.tokens.maxChainDepth,
  });
  const pdp = new PolicyDecisionPoint({ store: policies, engine, subjects, agents, logger });
  const search = new Search(pdp, agents, { defaultLimit: config.pdp.searchPageSize, maxLimit: config.pdp.searchMaxPageSize });
  const unwatch = config.pdp.watch ? policies.watch() : () => {};
  if (config.pdp.auth === 'none') logger.warn('pdp.auth is "none": the AuthZEN endpoints accept unauthenticated requests');
  return {
    pdp,
    search,
    policies,
    delegationAuthorizer: (registry) => new PdpDelegationAuthorizer(registry, pdp),
    reload: (trigger) => policies.reload(trigger),
    close: unwatch,
  };
}
