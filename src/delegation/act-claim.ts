/**
 * The delegation chain of a token: who acts for the user, through whom (RFC 8693 §4.1 `act`),
 * and who may act next (RFC 8693 §4.4 `may_act`).
 *
 * Deputy writes `act` with the *current* actor outermost and prior actors nested inside, as
 * RFC 8693 §4.1 prescribes: user → A → B is `{ "sub": "B", "act": { "sub": "A" } }`. Internally
 * the chain is a list in delegation order, first agent first: `["A", "B"]`. Only the outermost
 * actor is the one acting now; the rest is history that policy (and auditors) may inspect.
 *
 * @module
 */

/** RFC 8693 §4.1: the current actor, with prior actors nested inside. */
export interface ActorClaim {
  sub: string;
  act?: ActorClaim;
  [claim: string]: unknown;
}

/** The agents of a chain in delegation order (first agent first, current actor last). */
export type DelegationChain = readonly string[];

/** A structurally invalid `act` / `may_act` claim. */
export class ChainClaimError extends Error {
  readonly code = 'ERR_DELEGATION_CHAIN';
  constructor(message: string) {
    super(message);
    this.name = 'ChainClaimError';
  }
}

/** Nesting beyond this is refused outright, whatever the configured limits (parsing bound). */
const PARSE_LIMIT = 32;

/**
 * Reads an `act` claim into a chain, first agent first. Each level must be an object with a
 * non-empty string `sub`; anything else (arrays, loops of depth > 32, missing `sub`) is refused.
 */
export function chainFromAct(act: unknown): DelegationChain {
  const reversed: string[] = [];
  let level: unknown = act;
  while (level !== undefined) {
    if (reversed.length >= PARSE_LIMIT) throw new ChainClaimError(`"act" is nested deeper than ${PARSE_LIMIT} levels`);
    if (typeof level !== 'object' || level === null || Array.isArray(level)) throw new ChainClaimError('"act" must be a JSON object');
    const { sub, act: inner } = level as Record<string, unknown>;
    if (typeof sub !== 'string' || sub.length === 0) throw new ChainClaimError('every "act" level must carry a non-empty string "sub"');
    reversed.push(sub);
    level = inner;
  }
  return reversed.reverse();
}

/** Writes a chain (first agent first) as a nested `act` claim, current actor outermost. */
export function actFromChain(chain: DelegationChain): ActorClaim | undefined {
  let act: ActorClaim | undefined;
  for (const sub of chain) act = act === undefined ? { sub } : { sub, act };
  return act;
}

/** The chain after `actor` takes over: unchanged when `actor` is already the current actor. */
export function extendChain(chain: DelegationChain, actor: string): DelegationChain {
  return chain.at(-1) === actor ? chain : [...chain, actor];
}

/** The agent acting now, if any. */
export function currentActor(chain: DelegationChain): string | undefined {
  return chain.at(-1);
}

/**
 * Whether a `may_act` claim (RFC 8693 §4.4) names `actorId`. The claim identifies the party by
 * `sub` (Deputy writes the agent id there) or `client_id`; when it also names an `iss`, that
 * issuer must be Deputy, since Deputy is the one that knows agents by these ids.
 */
export function mayActNames(mayAct: unknown, actorId: string, issuer: string): boolean {
  if (typeof mayAct !== 'object' || mayAct === null || Array.isArray(mayAct)) return false;
  const claim = mayAct as Record<string, unknown>;
  if (claim.iss !== undefined && claim.iss !== issuer) return false;
  return claim.sub === actorId || claim.client_id === actorId;
}

/** `urn:deputy:agent:{id}`: the audience that hands a token over to another agent. */
export const AGENT_AUDIENCE_PREFIX = 'urn:deputy:agent:';

/** The agent a handoff audience names, or undefined for an ordinary audience. */
export function handoffTarget(audience: string): string | undefined {
  return audience.startsWith(AGENT_AUDIENCE_PREFIX) && audience.length > AGENT_AUDIENCE_PREFIX.length
    ? audience.slice(AGENT_AUDIENCE_PREFIX.length)
    : undefined;
}
