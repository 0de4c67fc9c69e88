/**
 * Subject resolution: how a presented agent token becomes a delegation chain someone can
 * evaluate, and the port through which the PDP asks for it.
 *
 * RFC 8693 §4.1 says nested `act` claims are informational only: the token alone proves who
 * holds it, not that every earlier delegation is still good. So a chain is resolved against
 * Deputy's own issuance records, at every decision, in four steps:
 *
 * 1. the token: signature, issuer, `typ: at+jwt`, expiry (RFC 9068 §4) — not the audience,
 *    which belongs to the API the PEP guards, not to the PDP;
 * 2. it was issued by a token exchange (a record exists), and its `act` and `sub` match the
 *    record;
 * 3. every link (each exchange from the user's token to this one) is neither revoked nor
 *    expired, the chain only grows by the exchanging agent, and scopes only narrow
 *    ({@link checkGrantSequence});
 * 4. every agent in the chain is registered and active, and each link still passes the
 *    registry's rules as they are now (registry-check.ts).
 *
 * Steps 1–3 need the token verifier, the token records and the revocation cache: the OAuth side
 * implements them behind {@link SubjectResolver}. Step 4 needs only the registry and is done by
 * whoever holds the agents (the PDP), with `checkAgainstRegistry` (registry-check.ts).
 *
 * @module
 */
import type { Agent } from '../agents/index.js';
import type { DelegationChain } from './act-claim.js';
import type { DelegatingUser } from './delegating-user.js';

/** One exchange of a chain as Deputy recorded it when it issued the token (RFC 8693 §2.2). */
export interface DelegationGrant {
  /** The issued token's `jti`. */
  jti: string;
  /** The agent that exchanged (and holds the token); the chain's last element. */
  agentId: string;
  /** The delegating user's id; the same on every grant of a chain. */
  userId: string;
  /** The chain after this exchange, first agent first. */
  chain: DelegationChain;
  /** The token audience. */
  audience: string;
  /** The granted scopes, space-separated (RFC 6749 §3.3). */
  scope: string;
  /** Epoch seconds. */
  expiresAt: number;
}

/** A presented agent token whose chain passed steps 1–3 (module comment). */
export interface VerifiedChain {
  kind: 'verified';
  user: DelegatingUser;
  chain: DelegationChain;
  /** Every exchange from the user's token to the presented one, root first. */
  grants: readonly DelegationGrant[];
  /** The presented token's own scopes. */
  scopes: readonly string[];
}

/** One agent's place in the chain: the latest grant it held there (its scopes and audience). */
export interface DelegationLink {
  /** 1 = the first agent; the chain's length = the current actor. */
  position: number;
  agent: Agent;
  grant: DelegationGrant;
}

/** A chain that passed all four steps: its agents, as registered now, link by link. */
export interface DelegatedSubject extends Omit<VerifiedChain, 'kind'> {
  kind: 'delegated';
  links: readonly DelegationLink[];
}

/** Why a presented token cannot stand for a subject. Messages are safe to return (no token data). */
export interface InvalidSubject {
  kind: 'invalid';
  /** `invalid_subject`: the token itself; `invalid_chain`: one of its links. */
  reason: 'invalid_subject' | 'invalid_chain';
  message: string;
  /** The link concerned, when one is, and the chain's length. */
  position?: number;
  depth?: number;
  agentId?: string;
}

/** The outcome of resolving a presented token through all four steps. */
export type SubjectResolution = DelegatedSubject | InvalidSubject;

/**
 * The port through which a policy decision point resolves a presented agent token (steps 1–3
 * of the module comment). Implemented on the OAuth side (oauth/agent-token-resolver.ts) by
 * access-token verification, the token records and the revocation cache.
 */
export interface SubjectResolver {
  /**
   * @param token The presented agent token (compact JWS), untrusted.
   * @param nowMs The decision time, epoch milliseconds (default: now).
   * @returns The verified chain, or why the token stands for no subject. Bad tokens never throw.
   * @throws only on infrastructure failure (store unreachable); callers fail closed.
   */
  resolve(token: string, nowMs?: number): Promise<VerifiedChain | InvalidSubject>;
  /**
   * Whether {@link resolve} would still answer with exactly `grants` (the array it returned
   * before, compared by identity) at `nowMs`, known without any read: nothing expired, every
   * link's revocation state freshly cached and live. False whenever a read would be needed.
   * Optional: without it, every decision resolves the token again.
   */
  holds?(token: string, grants: readonly DelegationGrant[], nowMs: number): boolean;
}

/**
 * Step 3's structure over a chain's grants, root first: each exchange keeps the user and the chain,
 * extends it by at most the exchanging agent, and narrows scopes.
 *
 * @returns Undefined when the sequence holds, else the first offending link.
 */
export function checkGrantSequence(grants: readonly DelegationGrant[]): InvalidSubject | undefined {
  const depth = grants.at(-1)?.chain.length ?? 0;
  for (let i = 1; i < grants.length; i++) {
    const prev = grants[i - 1]!;
    const cur = grants[i]!;
    if (!extendsChain(prev, cur)) return invalidLink(cur, 'does not extend the chain it was exchanged from', depth);
    const widened = scopesOf(cur).filter((s) => !scopesOf(prev).includes(s));
    if (widened.length > 0) return invalidLink(cur, 'holds scopes its delegator did not have', depth);
  }
  return undefined;
}

/** Whether `cur` was exchanged from `prev` by its agent: the same chain, or one agent longer. */
function extendsChain(prev: DelegationGrant, cur: DelegationGrant): boolean {
  const grows = cur.chain.length - prev.chain.length;
  return cur.userId === prev.userId && (grows === 0 || grows === 1) && sameChain(prev.chain, cur.chain.slice(0, prev.chain.length)) && cur.chain.at(-1) === cur.agentId;
}

/** An `invalid_chain` resolution naming the grant's link. */
export function invalidLink(grant: DelegationGrant, what: string, depth: number): InvalidSubject {
  return { kind: 'invalid', reason: 'invalid_chain', message: `link ${grant.chain.length} (agent "${grant.agentId}") ${what}`, position: grant.chain.length, depth, agentId: grant.agentId };
}

/** An `invalid_subject` resolution: the token itself stands for no subject. */
export function invalidToken(message: string): InvalidSubject {
  return { kind: 'invalid', reason: 'invalid_subject', message };
}

/** The scopes of a grant (RFC 6749 §3.3 scope-token list). */
export function scopesOf(grant: Pick<DelegationGrant, 'scope'>): string[] {
  return grant.scope.split(' ').filter(Boolean);
}

/** Whether two chains name the same agents in the same order. */
export function sameChain(a: DelegationChain, b: DelegationChain): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
