/**
 * Deputy's delegation-chain semantics — its own contribution beyond RFC 8693, whose §4.1 calls
 * nested `act` claims informational only. README "Delegation chain semantics" is the prose
 * version; this is the code.
 *
 * A request by a delegated subject (user → agent 1 → … → agent n) is permitted only if
 *
 * 1. every link is valid (delegation/subject-resolution.ts: records, revocation, registry rules), and each
 *    link is still authorized by the `delegate` policy, evaluated with these same semantics;
 * 2. the user and every agent are each permitted the action on the resource, each evaluated as
 *    the Cedar principal with its own place in the chain in `context.chain`;
 * 3. no `forbid` applies to any of them (and none errored: engine.ts fails closed).
 *
 * The first member that is not permitted decides the denial, which names it (position, agent
 * id) and the policies involved. A plain subject (no token) is a chain of one.
 *
 * `context.chain` (declare the attributes a policy set uses; the rest is left out):
 * `position` (0 = user or plain subject, 1 = first agent), `depth` (agents in the chain),
 * `current` (the principal is the one acting now), `delegated` (the subject is a verified agent
 * token), `scopes` (scopes granted at this link), `audience` (the token audience at this link),
 * `delegator` (the agent that delegated to this one, positions ≥ 2), `user` (the user).
 *
 * @module
 */
import canonicalize from 'canonicalize';
import type { Agent } from '../agents/index.js';
import { scopesOf, type DelegatedSubject, type DelegatingUser } from '../delegation/index.js';
import type { CedarValueJson, EntityJson } from './cedar.js';
import { deny, quoted, type Decision, type DeniedLink } from './decision.js';
import type { CedarEngine, CedarVerdict } from './engine.js';
import { agentEntity, bareEntity, deputyType, userEntity, type BuiltEntity } from './entities.js';
import type { PolicySnapshot } from './policy-store.js';
import type { ActionInfo } from './schema.js';

/** A principal's place in the chain, as `context.chain` gives it to policies. */
export interface ChainPosition {
  position: number;
  depth: number;
  current: boolean;
  delegated: boolean;
  scopes: readonly string[];
  audience?: string;
  delegator?: string;
  user?: string;
}

/** One principal the decision must permit. */
export interface Member {
  principal: BuiltEntity;
  chain: ChainPosition;
  /** How a denial names this member. */
  link: DeniedLink;
  label: string;
}

export interface ActionRequest {
  action: ActionInfo;
  resource: BuiltEntity;
  /** AuthZEN `context` (members the action's schema declares become Cedar context). */
  context: Readonly<Record<string, unknown>>;
  /** AuthZEN `action.properties` (Cedar `context.action`, when declared). */
  actionProperties: Readonly<Record<string, unknown>>;
}

/** The chain of one for a plain subject. */
export function plainMember(principal: BuiltEntity, input: { type: string; id: string }): Member {
  return {
    principal,
    chain: { position: 0, depth: 0, current: true, delegated: false, scopes: [] },
    link: { position: 0, depth: 0, type: input.type, id: input.id },
    label: `subject ${quoted(input.type)} ${quoted(input.id)}`,
  };
}

/**
 * The members of a delegation: the user at position 0, then each agent. `at(position)` gives
 * the scopes and audience of that link.
 */
export function delegationMembers(
  snapshot: PolicySnapshot,
  user: DelegatingUser,
  agents: readonly Agent[],
  at: (position: number) => LinkGrant,
): Member[] | Decision {
  const userType = deputyType(snapshot, 'User');
  const agentType = deputyType(snapshot, 'Agent');
  if (!userType || !agentType) return deny('invalid_input', 'the policy set declares no "User" and "Agent" entity types, which delegated subjects need');
  const depth = agents.length;
  const userMember: Member = {
    principal: userEntity(snapshot, userType, user),
    chain: linkPosition(0, depth, at(0), user),
    link: { position: 0, depth, type: 'User' },
    label: `the user (link 0 of ${depth})`,
  };
  const agentMembers = agents.map((agent, i): Member => {
    const position = i + 1;
    return {
      principal: agentEntity(snapshot, agentType, agent),
      chain: linkPosition(position, depth, at(position), user, agents[i - 1]?.id),
      link: { position, depth, type: 'Agent', id: agent.id },
      label: `agent "${agent.id}" (link ${position} of ${depth})`,
    };
  });
  return [userMember, ...agentMembers];
}

/** What a link was granted: its scopes and token audience. */
interface LinkGrant {
  scopes: readonly string[];
  audience: string | undefined;
}

/** `context.chain` for the member at `position` of a delegation of `depth` agents. */
function linkPosition(position: number, depth: number, grant: LinkGrant, user: DelegatingUser, delegator?: string): ChainPosition {
  return {
    position,
    depth,
    current: position === depth,
    delegated: true,
    scopes: grant.scopes,
    ...(grant.audience ? { audience: grant.audience } : {}),
    ...(delegator !== undefined ? { delegator } : {}),
    user: user.id,
  };
}

/** The members evaluated for a delegated subject's request: each at its own link. */
export function delegatedMembers(snapshot: PolicySnapshot, subject: DelegatedSubject): Member[] | Decision {
  const root = subject.grants[0]!;
  return delegationMembers(
    snapshot,
    subject.user,
    subject.links.map((l) => l.agent),
    (position) => {
      const g = position === 0 ? root : subject.links[position - 1]!.grant;
      return { scopes: scopesOf(g), audience: g.audience };
    },
  );
}

/**
 * Whether every link of a delegated subject is still authorized by the `delegate` policy
 * (step 1 of the module comment). Undefined when all are, or when the policy set has no
 * `delegate` action (links are then held to the registry's rules only).
 */
export function revalidateLinks(engine: CedarEngine, snapshot: PolicySnapshot, subject: DelegatedSubject): Decision | undefined {
  if (!snapshot.schema.action('delegate')) return undefined;
  for (const grant of subject.grants) {
    const agents = grant.chain.map((id) => subject.links.find((l) => l.agent.id === id)!.agent);
    const decision = decideDelegation(engine, snapshot, subject.user, agents, scopesOf(grant), grant.audience);
    if (!decision.decision) {
      const d = decision.denial;
      return deny('invalid_chain', `link ${grant.chain.length} is no longer authorized: ${d.admin}`, {
        user: d.kind === 'forbidden' ? d.user : undefined,
        ...(d.link ? { link: d.link } : {}),
        policies: d.policies,
      });
    }
  }
  return undefined;
}

/** The `delegate` decision (token exchange, and each link at evaluation): user and every agent permitted. */
export function decideDelegation(engine: CedarEngine, snapshot: PolicySnapshot, user: DelegatingUser, agents: readonly Agent[], scopes: readonly string[], audience: string): Decision {
  const action = snapshot.schema.action('delegate');
  const audienceType = deputyType(snapshot, 'Audience');
  if (!action || !audienceType) return deny('invalid_input', 'the policy set declares no "delegate" action on an "Audience" entity type');
  const members = delegationMembers(snapshot, user, agents, () => ({ scopes, audience }));
  if (!Array.isArray(members)) return members;
  return evaluateMembers(engine, snapshot, members, { action, resource: bareEntity(snapshot, audienceType, audience), context: {}, actionProperties: {} });
}

/**
 * Steps 2 and 3 of the module comment: each member in chain order, the first refusal decides.
 *
 * @returns A permit with every permitting policy, or the first member's denial.
 * @throws ProjectionError when the context does not fit the schema (the PDP turns it into a deny).
 */
export function evaluateMembers(engine: CedarEngine, snapshot: PolicySnapshot, members: readonly Member[], req: ActionRequest): Decision {
  const entities = oneEntityPerUid(members, req);
  if (!Array.isArray(entities)) return entities;
  const permitted: string[] = [];
  for (const m of members) {
    if (!req.action.principalTypes.has(m.principal.uid.type) || !req.action.resourceTypes.has(req.resource.uid.type)) {
      return deny('not_permitted', `${m.label} may not ${described(req)}: the schema does not apply action ${quoted(req.action.name)} to principal type ${m.principal.uid.type} and resource type ${req.resource.uid.type}`, { link: m.link });
    }
    const verdict = engine.authorize(snapshot, {
      principal: m.principal.uid,
      action: req.action.uid,
      resource: req.resource.uid,
      context: cedarContext(snapshot, req, m.chain),
      entities,
    });
    if (!verdict.allowed) return memberDenial(snapshot, m, req, verdict);
    permitted.push(...verdict.policies);
  }
  return { decision: true, policies: [...new Set(permitted)] };
}

/** `"action" on "Type" "id"`, for messages. */
function described(req: ActionRequest): string {
  return `${quoted(req.action.name)} on ${quoted(req.resource.uid.type)} ${quoted(req.resource.uid.id)}`;
}

/** The denial naming the member Cedar refused, by why it refused (engine.ts fails closed). */
function memberDenial(snapshot: PolicySnapshot, m: Member, req: ActionRequest, verdict: Extract<CedarVerdict, { allowed: false }>): Decision {
  const ids = verdict.policies.map((p) => `"${p}"`).join(', ');
  const what = described(req);
  switch (verdict.kind) {
    case 'not_permitted':
      return deny('not_permitted', `${m.label} may not ${what}: no policy permits it`, { link: m.link });
    case 'forbidden':
      return deny('forbidden', `${m.label} may not ${what}: forbidden by policy ${ids}`, { link: m.link, policies: verdict.policies, ...firstReason(snapshot, verdict.policies) });
    case 'policy_error':
      return deny('policy_error', `${m.label} may not ${what}: forbid policy ${ids} could not be evaluated (failing closed)`, { link: m.link, policies: verdict.policies });
    case 'engine_error':
      return deny('policy_error', `${m.label} may not ${what}: the policy engine failed (failing closed)`, { link: m.link });
    case 'request_error':
      return deny('invalid_input', `${m.label}: the request does not fit the schema of action ${quoted(req.action.name)}`, { link: m.link });
  }
}

function firstReason(snapshot: PolicySnapshot, policies: readonly string[]): { user?: string } {
  for (const id of policies) {
    const reason = snapshot.policies.get(id)?.reason;
    if (reason) return { user: reason };
  }
  return {};
}

/**
 * Contexts projected for a delegated subject's members whose request carries no AuthZEN `context` nor action
 * properties: the context is then a function of the member's `chain` alone and of the snapshot's
 * schema. Keyed by the `chain` object, which lives as long as the per-token members memo that
 * holds it (pdp.ts: issuance records, policy generation, registry agent objects, compared by
 * identity — the same key, so the same staleness), then by snapshot and action. Never mutated
 * (the entity slice builds a new record when it prunes, engine.ts serialises).
 */
const projectedContexts = new WeakMap<ChainPosition, Array<{ snapshot: PolicySnapshot; action: ActionInfo; context: Record<string, CedarValueJson> }>>();

/** The Cedar context for one member: declared AuthZEN context members, `action`, and Deputy's `chain`. */
export function cedarContext(snapshot: PolicySnapshot, req: ActionRequest, chain: ChainPosition): Record<string, CedarValueJson> {
  if (!req.action.context) return {};
  // A plain subject's chain is built per request: nothing to reuse.
  if (!chain.delegated || Object.keys(req.context).length > 0 || Object.keys(req.actionProperties).length > 0) return projectContext(snapshot, req, chain);
  let known = projectedContexts.get(chain);
  const hit = known?.find((k) => k.snapshot === snapshot && k.action === req.action);
  if (hit) return hit.context;
  const context = projectContext(snapshot, req, chain);
  if (!known) projectedContexts.set(chain, (known = []));
  // Bounded: a member is evaluated under a few actions per snapshot; a new snapshot starts over.
  if (known.length >= 8 || known.some((k) => k.snapshot !== snapshot)) known.length = 0;
  known.push({ snapshot, action: req.action, context });
  return context;
}

/** {@link cedarContext} computed afresh. */
export function projectContext(snapshot: PolicySnapshot, req: ActionRequest, chain: ChainPosition): Record<string, CedarValueJson> {
  const declared = req.action.context;
  if (!declared) return {};
  const source: Record<string, unknown> = {
    ...req.context,
    ...(Object.keys(req.actionProperties).length > 0 ? { action: req.actionProperties } : {}),
    chain: chainRecord(snapshot, chain),
  };
  return snapshot.schema.project(source, declared, 'context') as Record<string, CedarValueJson>;
}

function chainRecord(snapshot: PolicySnapshot, c: ChainPosition): Record<string, unknown> {
  const agentType = deputyType(snapshot, 'Agent')?.name;
  const userType = deputyType(snapshot, 'User')?.name;
  return {
    position: c.position,
    depth: c.depth,
    current: c.current,
    delegated: c.delegated,
    scopes: c.scopes,
    ...(c.audience !== undefined ? { audience: c.audience } : {}),
    ...(c.delegator !== undefined && agentType ? { delegator: { __entity: { type: agentType, id: c.delegator } } } : {}),
    ...(c.user !== undefined && userType ? { user: { __entity: { type: userType, id: c.user } } } : {}),
  };
}

/**
 * The request's entities, one per uid: Cedar refuses two different entities with one uid
 * (cedar-policy `EntitiesError::Duplicate`), and which of two would win decides the verdict.
 * The rule, whatever the order they come in:
 * - Deputy's own data wins: a chain member's principal (built from verified tokens and the
 *   registry), the PDP's entity data (every ancestor) and the schema's action entities are never
 *   replaced by an entity built from the request's properties — the request cannot override
 *   what Deputy derived (fail closed);
 * - two different entities both built from the request (a plain subject and the resource naming
 *   one entity with different properties) are a conflict no rule settles: the request is denied
 *   `invalid_input`, naming the entity;
 * - equal duplicates (the same agent as subject and resource, shared ancestors) are one entity.
 */
function oneEntityPerUid(members: readonly Member[], req: ActionRequest): EntityJson[] | Decision {
  const kept = new Map<string, EntityJson>();
  /** Keys whose kept entity was built from the request's properties. */
  const fromRequest = new Set<string>();
  const add = (built: BuiltEntity, topFromRequest: boolean): Decision | undefined => {
    for (let i = 0; i < built.entities.length; i++) {
      const entity = built.entities[i]!;
      const requested = topFromRequest && i === 0; // ancestors are the PDP's entity data
      const u = '__entity' in entity.uid ? entity.uid.__entity : entity.uid;
      const key = `${u.type}\0${u.id}`;
      const earlier = kept.get(key);
      if (earlier === undefined || (fromRequest.has(key) && !requested)) {
        kept.set(key, entity);
        if (requested) fromRequest.add(key);
        else fromRequest.delete(key);
      } else if (requested && fromRequest.has(key) && !sameEntity(earlier, entity)) {
        return deny('invalid_input', `the subject and the resource name entity ${quoted(u.type)} ${quoted(u.id)} with different properties`);
      }
    }
    return undefined;
  };
  // A plain subject is built from the request's properties; a delegated chain's members are not.
  for (const m of members) {
    const conflict = add(m.principal, !m.chain.delegated);
    if (conflict) return conflict;
  }
  const conflict = add(req.resource, true) ?? add({ uid: req.action.uid, entities: req.action.entities }, false);
  return conflict ?? [...kept.values()];
}

/**
 * Same attributes and parents, whatever the order of their members (RFC 8785 canonical JSON) and
 * of their sets' elements: every array of Cedar's entity JSON is a set (Cedar has no list type;
 * parents are a set), so two versions that differ only in an array's order or repetitions are
 * one entity to Cedar, not a conflict (red team, issue 16 seventh round).
 */
function sameEntity(a: EntityJson, b: EntityJson): boolean {
  return a === b || canonicalize(asSets([a.attrs, a.parents])) === canonicalize(asSets([b.attrs, b.parents]));
}

/** `value` with every array below the top one made a sorted set of its elements (by canonical JSON). */
function asSets(value: unknown, top = true): unknown {
  if (Array.isArray(value)) {
    const items = value.map((v) => asSets(v, false));
    if (top) return items;
    const byText = new Map(items.map((v) => [canonicalize(v) ?? '', v] as const));
    return [...byText.keys()].sort().map((k) => byText.get(k));
  }
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, asSets(v, false)]));
}
