/**
 * A PDP decision and, when it denies, why: which kind of check failed, which link of the
 * delegation chain, which policies. Messages are built from identifiers Deputy controls
 * (agent ids, policy ids, schema paths) and never quote a token, a claim value or a property
 * value, so they are safe to send to an authenticated PEP (AuthZEN 1.0 §5.5.1–5.5.2, `reason_admin`).
 *
 * @module
 */

/** Which kind of check denied; maps to the end-user text and to Deputy's `reason_admin`. */
export type DenyKind =
  /** No permit policy applied to a principal of the chain. */
  | 'not_permitted'
  /** A forbid policy applied. */
  | 'forbidden'
  /** A forbid policy could not be evaluated (Deputy fails closed, see engine.ts). */
  | 'policy_error'
  /** The subject token is invalid, expired, revoked, or not a Deputy agent token. */
  | 'invalid_subject'
  /** A delegation link is no longer valid (revoked, agent disabled, limits, `delegate` policy). */
  | 'invalid_chain'
  /** The request names an unknown type or action, or properties/context do not fit the schema. */
  | 'invalid_input'
  /** Not evaluated: an earlier item decided a short-circuiting batch. */
  | 'not_evaluated';

/** The chain member a denial is about. The user of a delegated subject is not named (it comes from a token). */
export interface DeniedLink {
  /** 0 = the user (or a plain subject), 1 = the first agent, …; `depth` = the current actor. */
  position: number;
  depth: number;
  type: string;
  id?: string;
}

/** Why a decision denies (AuthZEN 1.0 §5.5.2 reasons), and whom it concerns. */
export interface Denial {
  kind: DenyKind;
  /** For administrators (AuthZEN `reason_admin`). */
  admin: string;
  /** May be shown to the end user (AuthZEN `reason_user`): a policy's `@reason`, or a generic text. */
  user: string;
  link?: DeniedLink;
  policies: readonly string[];
}

/** A PDP decision (AuthZEN 1.0 §5.5): a permit with the policies that decided, or a denial. */
export type Decision = { decision: true; policies: readonly string[] } | { decision: false; denial: Denial };

const USER_TEXT: Readonly<Record<DenyKind, string>> = {
  not_permitted: 'Access denied.',
  forbidden: 'Access denied by policy.',
  policy_error: 'Access denied.',
  invalid_subject: 'The presented credentials are not valid.',
  invalid_chain: 'The delegation is no longer valid.',
  invalid_input: 'The request could not be evaluated.',
  not_evaluated: 'Not evaluated.',
};

/** A denial of `kind`; `extra.user` defaults to the kind's generic end-user text. */
export function deny(kind: DenyKind, admin: string, extra: { user?: string; link?: DeniedLink; policies?: readonly string[] } = {}): Decision {
  return { decision: false, denial: { kind, admin, user: extra.user ?? USER_TEXT[kind], policies: extra.policies ?? [], ...(extra.link ? { link: extra.link } : {}) } };
}

/** A short, printable rendering of a caller-supplied name for messages (never a token). */
export function quoted(s: string): string {
  const clean = s.replace(/[^\x20-\x7E]/g, '?');
  return JSON.stringify(clean.length > 80 ? `${clean.slice(0, 77)}...` : clean);
}
