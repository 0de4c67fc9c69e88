/**
 * `deputy/agent/governance`: Deputy as a policy backend of Microsoft's Agent Governance Toolkit,
 * and the AuthZEN PEP it builds on. See the README's "Agent library".
 *
 * @module
 */
export { DeputyPolicyBackend } from './agt-backend.js';
export type { DeputyPolicyBackendOptions, TokenHolder } from './agt-backend.js';
export { AuthZenPep, cacheKey } from './authzen-pep.js';
export type { AuthZenAction, AuthZenEntity, AuthZenEvaluation, AuthZenPepOptions, PepCredentials, PepDecision } from './authzen-pep.js';
