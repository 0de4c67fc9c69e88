/**
 * Handoff audiences: a token exchange whose audience is `urn:deputy:agent:{id}` hands the
 * delegation over to another agent (README "Sub-delegation: who may exchange an agent token"), instead of targeting an API.
 *
 * @module
 */

/** `urn:deputy:agent:{id}`: the audience that hands a token over to another agent. */
export const AGENT_AUDIENCE_PREFIX = 'urn:deputy:agent:';

/**
 * The agent a handoff audience names, or undefined for an ordinary audience (and for the bare
 * prefix, which names no agent).
 */
export function handoffTarget(audience: string): string | undefined {
  return audience.startsWith(AGENT_AUDIENCE_PREFIX) && audience.length > AGENT_AUDIENCE_PREFIX.length
    ? audience.slice(AGENT_AUDIENCE_PREFIX.length)
    : undefined;
}
