/**
 * `deputy/agent`: the agent client library (issue 18). See the README's "Agent library".
 *
 * @module
 */
export { DeputyAgent, DelegatedToken, TOKEN_EXCHANGE_GRANT, TOKEN_TYPE_PREFIX } from './agent.js';
export type { DeputyAgentOptions, DeputyHandoff, ExchangeRequest, SubjectTokenSource } from './agent.js';
export { BudgetExceededError, DeputyAgentError, DeputyProtocolError, PolicyDeniedError, deputyErrorFromResponse, deputyErrorOf } from './errors.js';
export type { DeputyAgentErrorCode, ProblemDetails } from './errors.js';
export type { DpopKeyInput, DpopKeyPair, PrivateKeyInput, SigningAlgorithm } from './keys.js';
