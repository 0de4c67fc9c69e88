/**
 * The `act` claim codec: a token's delegation chain — who acts for the user, through whom
 * (RFC 8693 §4.1 `act`) — and who may act next (RFC 8693 §4.4 `may_act`).
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

/** A structurally invalid `act` claim; `message` names the defect and carries no token data. */
export class ChainClaimError extends Error {
  readonly code = 'ERR_DELEGATION_CHAIN';
  constructor(message: string) {
    super(message);
    this.name = 'ChainClaimError';
  }
}

/** Nesting beyond this is refused outright, whatever the configured limits (parsing bound). */
export const ACT_PARSE_LIMIT = 32;

/**
 * Reads an `act` claim (RFC 8693 §4.1) into a chain, first agent first. Each level must be an
 * object with a non-empty string `sub`; other members of a level are ignored.
 *
 * @param act The claim's value (untrusted JSON); `undefined` is the empty chain.
 * @returns The agents in delegation order (outermost `sub` last).
 * @throws {@link ChainClaimError} for a non-object level (arrays, null, strings), a missing or
 *   empty `sub`, or nesting deeper than {@link ACT_ACT_PARSE_LIMIT} levels.
 */
export function chainFromAct(act: unknown): DelegationChain {
  const reversed: string[] = [];
  let level: unknown = act;
  while (level !== undefined) {
    if (reversed.length >= ACT_PARSE_LIMIT) throw new ChainClaimError(`"act" is nested deeper than ${ACT_PARSE_LIMIT} levels`);
    if (typeof level !== 'object' || level === null || Array.isArray(level)) throw new ChainClaimError('"act" must be a JSON object');
    const { sub, act: inner } = level as Record<string, unknown>;
    if (typeof sub !== 'string' || sub.length === 0) throw new ChainClaimError('every "act" level must carry a non-empty string "sub"');
    reversed.push(sub);
    level = inner;
  }
  return reversed.reverse();
}

/**
 * Writes a chain (first agent first) as a nested `act` claim (RFC 8693 §4.1), current actor
 * outermost: `["A", "B"]` becomes `{ sub: "B", act: { sub: "A" } }`. The inverse of
 * {@link chainFromAct} for every chain of non-empty ids.
 *
 * @returns `undefined` for the empty chain (the token then carries no `act`).
 */
export function actFromChain(chain: DelegationChain): ActorClaim | undefined {
  let act: ActorClaim | undefined;
  for (const sub of chain) act = act === undefined ? { sub } : { sub, act };
  return act;
}

/**
 * The chain after `actor` takes over (a token exchange by `actor`): unchanged when `actor` is
 * already the current actor, so re-exchanging one's own token does not deepen the chain.
 */
export function extendChain(chain: DelegationChain, actor: string): DelegationChain {
  return chain.at(-1) === actor ? chain : [...chain, actor];
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
