/**
 * The Policy Decision Point: AuthZEN evaluations (single and batch), the `delegate` decision of
 * the token exchange, and the entry points of search (search.ts). No HTTP.
 *
 * Every decision runs in two phases. The asynchronous one gathers what may need the store —
 * the subject token's records, revocation state, registry agents — through caches. The
 * synchronous one takes the current policy snapshot once and makes every Cedar call of the
 * decision against it, so a decision never straddles a policy reload (policy-store.ts).
 *
 * @module
 */
import type { Agent } from '../agents/index.js';
import { unexpectedError, type Logger } from '../log.js';
import { checkAgainstRegistry, type DelegatedSubject, type DelegationGrant, type DelegationRequest, type InvalidSubject, type RegistryAuthorizer, type SubjectResolution, type SubjectResolver } from '../delegation/index.js';
import type { EvaluationInput, EvaluationsSemantic } from './authzen.js';
import { decideDelegation, delegatedMembers, evaluateMembers, plainMember, revalidateLinks, type Member } from './chain-evaluation.js';
import { deny, quoted, type Decision } from './decision.js';
import type { CedarEngine } from './engine.js';
import { agentEntity, deputyType, requestEntity, UnknownEntityType, type AgentCache, type BuiltEntity, type EntityInput } from './entities.js';
import type { PolicySnapshot, PolicyStore } from './policy-store.js';
import { ProjectionError } from './schema.js';
import { iJsonProblem } from '../util/i-json.js';

/** What a {@link PolicyDecisionPoint} is built from. */
export interface PdpDeps {
  store: PolicyStore;
  engine: CedarEngine;
  /** Resolves presented agent tokens (steps 1–3 of delegation/subject-resolution.ts); the OAuth side implements it. */
  subjects: SubjectResolver;
  /** The registry's rules, applied again to every link of a presented chain (step 4). */
  registry: RegistryAuthorizer;
  agents: AgentCache;
  logger: Logger;
}

/**
 * A subject after the asynchronous phase: a plain subject (with its registry agent, when it
 * names one), a delegated subject (all four resolution steps passed), or why it is neither.
 */
export type PreparedSubject =
  | { kind: 'plain'; input: EntityInput; agent: Agent | undefined }
  | DelegatedSubject
  | InvalidSubject
  | { kind: 'malformed'; message: string };

/** An entity (resource, or plain subject) and, when it names a registry agent, that agent. */
export interface PreparedEntity {
  input: EntityInput;
  agent: Agent | undefined;
}

/**
 * A request's asynchronous phase, memoised: its subjects by their JSON
 * ({@link PolicyDecisionPoint.prepareSubject}) and the registry agents its resources name, by id.
 * Shared by a batch's items, and on the lean path by the basis computed first and the evaluation
 * after it (decision-basis.ts): the evaluation then decides on the very objects the basis names
 * and repeats none of its reads — a read that failed fails again at once, and only for an item
 * the evaluation reaches.
 */
export interface RequestMemo {
  readonly subjects: Map<string, Promise<PreparedSubject>>;
  readonly resourceAgents: Map<string, Promise<Agent | undefined>>;
}

/** An empty {@link RequestMemo}. */
export function requestMemo(): RequestMemo {
  return { subjects: new Map(), resourceAgents: new Map() };
}

/** Remembered `delegate` decisions of token exchanges ({@link PolicyDecisionPoint.decideDelegation}), at most. */
const MAX_DELEGATE_VERDICTS = 10_000;

/** Whether two chains' agents are the very same registry objects, in order (nothing re-read since). */
function sameAgents(a: readonly Agent[], b: readonly Agent[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** {@link PolicyDecisionPoint.peekEntityAgent}'s answer for an entity that names no agent. */
const NO_AGENT: { readonly agent: undefined } = Object.freeze({ agent: undefined });

/** Where a delegated subject's token goes in an AuthZEN request. */
export const SUBJECT_TOKEN_PROPERTY = 'token';

/**
 * The PDP: AuthZEN evaluations over plain and delegated subjects, and the `delegate` decision.
 * Bad input never throws: it is a deny with a reason. Store failures propagate (fail closed).
 */
export class PolicyDecisionPoint {
  readonly store: PolicyStore;
  readonly engine: CedarEngine;
  readonly #subjects: SubjectResolver;
  readonly #registry: RegistryAuthorizer;
  readonly #agents: AgentCache;
  readonly #logger: Logger;
  /**
   * Per delegated subject (one object per request, shared by a batch's items) and policy
   * generation: its members and the verdict on its links, built once rather than per item.
   */
  readonly #perSubject = new WeakMap<DelegatedSubject, { generation: number; members: Member[] | Decision; links: Decision | undefined }>();
  /**
   * The verdict on a presented token's links (one `delegate` decision per link), across requests:
   * keyed by its issuance records (the token resolver's cached array: the user and the grants
   * derive from them), reused while the policy generation and the registry's agent objects (its
   * read cache's, replaced on every re-read) are the same. Cedar is a pure function of these, so
   * a hit is the answer Cedar would give; it lives as long as the resolver keeps the token. The
   * token's members (its principals' entities and chain positions, built from the same inputs)
   * are kept with it: a new request by the same token builds no entity.
   */
  readonly #linkVerdicts = new WeakMap<object, { generation: number; agents: readonly Agent[]; members: Member[] | Decision; verdict: Decision | undefined }>();
  /**
   * The token exchange's `delegate` decisions ({@link decideDelegation}), by user attributes,
   * chain, scopes and audience; a hit counts only for the same policy generation and the same
   * registry agent objects. At most {@link MAX_DELEGATE_VERDICTS} and no more than the engine's
   * decision cache holds (`pdp.decisionCacheSize`), oldest dropped; none when it is off (0).
   */
  readonly #delegateVerdicts = new Map<string, { generation: number; agents: readonly Agent[]; decision: Decision }>();

  constructor(deps: PdpDeps) {
    this.store = deps.store;
    this.engine = deps.engine;
    this.#subjects = deps.subjects;
    this.#registry = deps.registry;
    this.#agents = deps.agents;
    this.#logger = deps.logger;
  }

  /**
   * One AuthZEN evaluation (§6). Never throws for bad input: that is a deny with a reason.
   *
   * @param memo - the request's asynchronous phase (a batch's, or the basis computed first on the
   *   lean path); none for a lone evaluation, which has nothing to share: the memo's key, a
   *   `JSON.stringify` of the subject and its token, is not worth computing.
   */
  async evaluate(input: EvaluationInput, memo?: RequestMemo): Promise<Decision> {
    const [subject, resource] = await Promise.all([this.prepareSubject(input.subject, memo?.subjects), this.prepareEntity(input.resource, memo)]);
    return this.decide(this.store.current, subject, input, resource);
  }

  /**
   * A batch (§7): items in order; the short-circuit semantics stop at the first deny / permit,
   * and the response then holds the items up to it (§7.1.2, "Evaluations semantics"). Items share subject preparation
   * (a batch usually repeats one subject); `memo` is the request's, when a basis was computed
   * over it first (decision-basis.ts), so the items decide on the subjects that basis names.
   */
  async evaluateAll(items: ReadonlyArray<{ ok: true; evaluation: EvaluationInput } | { ok: false; error: string }>, semantic: EvaluationsSemantic, memo = requestMemo()): Promise<Array<Decision | { error: string }>> {
    const out: Array<Decision | { error: string }> = [];
    for (const item of items) {
      const result = item.ok ? await this.evaluate(item.evaluation, memo) : { error: item.error };
      out.push(result);
      const permitted = 'decision' in result && result.decision;
      if (semantic === 'deny_on_first_deny' && !permitted) break;
      if (semantic === 'permit_on_first_permit' && permitted) break;
    }
    return out;
  }

  /**
   * The Cedar half of the token-exchange authorization (action `delegate`): the user and every
   * agent of the new chain must be permitted to delegate to the audience with the scopes.
   */
  async decideDelegation(request: DelegationRequest): Promise<Decision> {
    const agents: Agent[] = [];
    for (const id of request.chain) {
      const agent = id === request.agent.id ? request.agent : await this.#agents.get(id);
      if (!agent) return deny('invalid_chain', `agent "${id}" in the chain is not registered`);
      agents.push(agent);
    }
    const snapshot = this.store.current;
    const decide = () => this.#guard(() => decideDelegation(this.engine, snapshot, request.user, agents, request.scopes, request.audience));
    if (!this.engine.caching) return decide();
    // Cedar is a pure function of the policy generation, the user's attributes, the registry's
    // agent objects (replaced on every re-read), the scopes and the audience: a hit is the answer
    // it would give, with the entities and context not even built (issue 16, fifth round).
    const key = JSON.stringify([request.user, request.chain, request.scopes, request.audience]);
    const hit = this.#delegateVerdicts.get(key);
    if (hit && hit.generation === snapshot.generation && sameAgents(hit.agents, agents)) return hit.decision;
    const decision = decide();
    // No more than the decision cache may hold (`pdp.decisionCacheSize`): an operator who bounds it bounds this too.
    if (this.#delegateVerdicts.size >= Math.min(MAX_DELEGATE_VERDICTS, this.engine.cacheSize)) this.#delegateVerdicts.delete(this.#delegateVerdicts.keys().next().value!);
    this.#delegateVerdicts.set(key, { generation: snapshot.generation, agents, decision });
    return decision;
  }

  /**
   * The asynchronous phase for a subject; memoised per request (batches, searches) when given a
   * memo. Without one (a single decision), the memo's key — a `JSON.stringify` of the subject
   * and its token — is not worth computing.
   */
  prepareSubject(input: EntityInput, memo?: Map<string, Promise<PreparedSubject>>): Promise<PreparedSubject> {
    if (memo === undefined) return this.#prepareSubject(input);
    const key = JSON.stringify([input.type, input.id, input.properties]);
    let p = memo.get(key);
    if (!p) memo.set(key, (p = this.#prepareSubject(input)));
    return p;
  }

  async #prepareSubject(input: EntityInput): Promise<PreparedSubject> {
    const token = input.properties[SUBJECT_TOKEN_PROPERTY];
    if (token === undefined) return { kind: 'plain', input, agent: await this.#registryAgent(input) };
    if (typeof token !== 'string') return { kind: 'malformed', message: `subject.properties.${SUBJECT_TOKEN_PROPERTY} must be a string (a Deputy agent token)` };
    const resolved = await this.#resolve(token);
    if (resolved.kind === 'delegated' && input.id !== resolved.user.id && input.id !== resolved.chain.at(-1)) {
      return { kind: 'invalid', reason: 'invalid_subject', message: "subject.id names neither the token's user nor its current agent" };
    }
    return resolved;
  }

  /** All four steps of subject resolution: the resolver's (1–3), then the registry's (4). */
  async #resolve(token: string): Promise<SubjectResolution> {
    const verified = await this.#subjects.resolve(token);
    return verified.kind === 'verified' ? checkAgainstRegistry(verified, this.#agents, this.#registry) : verified;
  }

  /** The asynchronous phase for a resource: its registry agent when it names one (through the agent cache; memoised per request when given a memo). */
  async prepareEntity(input: EntityInput, memo?: RequestMemo): Promise<PreparedEntity> {
    if (memo === undefined || !this.#namesAgent(input)) return { input, agent: await this.#registryAgent(input) };
    let agent = memo.resourceAgents.get(input.id);
    if (!agent) memo.resourceAgents.set(input.id, (agent = this.#agents.get(input.id)));
    return { input, agent: await agent };
  }

  /** The registry agent an entity names, when its type is the policy set's `Agent` type. */
  async #registryAgent(input: EntityInput): Promise<Agent | undefined> {
    return this.#namesAgent(input) ? this.#agents.get(input.id) : undefined;
  }

  /** Whether an entity's type is the policy set's `Agent` type (its id then names a registry agent). */
  #namesAgent(input: EntityInput): boolean {
    const agentType = deputyType(this.store.current, 'Agent');
    return agentType !== undefined && this.store.current.schema.entityType(input.type)?.name === agentType.name;
  }

  /**
   * The registry agent {@link prepareEntity} (or a plain subject's preparation) would find for
   * `input` at `nowMs`, from the agent cache alone: `{ agent }` (undefined when the entity names
   * none, or names an unregistered one), or undefined when a store read would be needed.
   * Synchronous: for re-checking a remembered decision's basis (decision-basis.ts).
   */
  peekEntityAgent(input: EntityInput, nowMs: number): { readonly agent: Agent | undefined } | undefined {
    return this.#namesAgent(input) ? this.#agents.peek(input.id, nowMs) : NO_AGENT;
  }

  /**
   * Whether a delegated subject's preparation would, at `nowMs`, again find exactly `grants` and
   * `agents` (compared by identity), from cached answers alone (SubjectResolver.holds, the
   * agent cache); false whenever a read would be needed. Synchronous, as {@link peekEntityAgent}.
   */
  delegationHolds(input: EntityInput, grants: readonly DelegationGrant[], agents: readonly Agent[], nowMs: number): boolean {
    const token = input.properties[SUBJECT_TOKEN_PROPERTY];
    if (typeof token !== 'string' || this.#subjects.holds?.(token, grants, nowMs) !== true) return false;
    return agents.every((agent) => this.#agents.peek(agent.id, nowMs)?.agent === agent);
  }

  /** The synchronous phase: all Cedar calls of one decision against one snapshot. */
  decide(snapshot: PolicySnapshot, subject: PreparedSubject, input: Pick<EvaluationInput, 'action' | 'context'>, resource: PreparedEntity): Decision {
    return this.#guard(() => {
      const unfit = callerValueProblem(subject, input, resource);
      if (unfit) return deny('invalid_input', unfit);
      const action = snapshot.schema.action(input.action.name);
      if (!action) return deny('invalid_input', `action ${quoted(input.action.name)} is not declared by the policy set`);
      let members: Member[] | Decision;
      if (subject.kind === 'delegated') {
        let memo = this.#perSubject.get(subject);
        if (memo?.generation !== snapshot.generation) {
          memo = { generation: snapshot.generation, ...this.#perToken(snapshot, subject) };
          this.#perSubject.set(subject, memo);
        }
        if (memo.links) return memo.links;
        members = memo.members;
      } else {
        members = this.#members(snapshot, subject);
      }
      if (!Array.isArray(members)) return members;
      const resourceEntity = this.#entity(snapshot, resource, 'resource');
      if (!('uid' in resourceEntity)) return resourceEntity;
      return evaluateMembers(this.engine, snapshot, members, { action, resource: resourceEntity, context: input.context, actionProperties: input.action.properties });
    });
  }

  /** The subject's members and {@link revalidateLinks}' verdict, memoised per token in {@link #linkVerdicts}. */
  #perToken(snapshot: PolicySnapshot, subject: DelegatedSubject): { members: Member[] | Decision; links: Decision | undefined } {
    const agents = subject.links.map((l) => l.agent);
    const memo = this.#linkVerdicts.get(subject.grants);
    if (memo && memo.generation === snapshot.generation && sameAgents(memo.agents, agents)) return { members: memo.members, links: memo.verdict };
    const members = delegatedMembers(snapshot, subject);
    const verdict = Array.isArray(members) ? revalidateLinks(this.engine, snapshot, subject) : undefined;
    this.#linkVerdicts.set(subject.grants, { generation: snapshot.generation, agents, members, verdict });
    return { members, links: verdict };
  }

  #members(snapshot: PolicySnapshot, subject: PreparedSubject): Member[] | Decision {
    switch (subject.kind) {
      case 'malformed':
        return deny('invalid_input', subject.message);
      case 'invalid':
        return deny(subject.reason, subject.message, {
          ...(subject.position !== undefined ? { link: { position: subject.position, depth: subject.depth ?? subject.position, type: 'Agent', ...(subject.agentId ? { id: subject.agentId } : {}) } } : {}),
        });
      case 'delegated':
        return delegatedMembers(snapshot, subject); // decide() memoises this per subject
      case 'plain': {
        const principal = this.#entity(snapshot, { input: subject.input, agent: subject.agent }, 'subject');
        if (!('uid' in principal)) return principal;
        return [plainMember(principal, subject.input)];
      }
    }
  }

  #entity(snapshot: PolicySnapshot, e: PreparedEntity, role: 'subject' | 'resource'): BuiltEntity | Decision {
    const agentType = deputyType(snapshot, 'Agent');
    if (agentType && snapshot.schema.entityType(e.input.type)?.name === agentType.name) {
      if (!e.agent) return deny('invalid_input', `${role} names agent ${quoted(e.input.id)}, which is not registered`);
      return agentEntity(snapshot, agentType, e.agent);
    }
    return requestEntity(snapshot, e.input, role);
  }

  /** Bad input found while building entities or context becomes a deny with a reason; anything else is a bug. */
  #guard(fn: () => Decision): Decision {
    try {
      return fn();
    } catch (err) {
      if (err instanceof ProjectionError || err instanceof UnknownEntityType) return deny('invalid_input', err.message);
      // By name, code and frames only (`unexpectedError`): a bug's message here can quote the request's values.
      this.#logger.error({ err: unexpectedError(err) }, 'pdp evaluation failed');
      throw err;
    }
  }
}

/**
 * Why a caller's own values in an evaluation are not ones the PDP takes, or `undefined`: a lone
 * surrogate (RFC 7493 §2.1) in `context`, `action.properties` or the subject's or resource's
 * `properties` — strings or member names — or nesting deeper than `MAX_JSON_DEPTH`. Cedar throws on
 * a lone surrogate and a receipt cannot digest one; an entity id or String attribute with one is
 * already denied `invalid_input` (./entities.ts, ./schema.ts), and so is every other caller value,
 * whether or not a policy reads it and whether or not a receipt is asked for.
 */
function callerValueProblem(subject: PreparedSubject, input: Pick<EvaluationInput, 'action' | 'context'>, resource: PreparedEntity): string | undefined {
  return (
    iJsonProblem(input.context, 'context') ??
    iJsonProblem(input.action.properties, 'action.properties') ??
    iJsonProblem(resource.input.properties, 'resource.properties') ??
    (subject.kind === 'plain' ? iJsonProblem(subject.input.properties, 'subject.properties') : undefined)
  );
}
