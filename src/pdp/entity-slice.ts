/**
 * The entities one Cedar call needs, out of the entities of a whole decision.
 *
 * Cedar's cost per call is mostly parsing the entities it is given (every attribute value is
 * turned into a Cedar value, every hierarchy closed transitively): measured here, six entities
 * of a three-link chain cost ~370 µs per call against ~130 µs for the same six without their
 * attributes, and ~65 µs for none. A decision of n principals used to hand every call the whole
 * decision's entities with every declared attribute. Two reductions, each exact (the decision,
 * the determining policies and the erroring policies are what Cedar would give for the full set):
 *
 * 1. **Attributes no policy names are left out.** Cedar reads an entity's attribute only through
 *    `e.attr`, `e["attr"]` or `e has attr`, with the name written in the policy (no dynamic
 *    names, no way to enumerate an entity's attributes; entities compare by uid). An attribute
 *    whose name appears in no such expression of the policy set can change no evaluation.
 *    Attributes holding one of Cedar's JSON escapes (an extension value `{"__extn": …}`, an
 *    entity reference) are always kept: Cedar parses them when the entity is built and refuses a
 *    malformed one (the request then fails, and Deputy denies), which must not change.
 * 2. **Entities the call cannot reach are left out.** Evaluation reaches an entity only from the
 *    request's principal, action and resource, an entity reference in the context, an entity
 *    literal written in a policy, or an entity reference in an attribute or a tag of an entity it
 *    reached; and reads the ancestors of an entity it reached (`in`). The slice is that closure:
 *    anything outside it is never looked up.
 * 3. **Context members no policy names are left out.** Cedar reads a record's member only by a
 *    name written in the policy, and a record as a whole only where the policy uses it as a value
 *    (`==`, a method, `has`); a member of a record the policies only reach into, whose name no
 *    policy writes, can change no evaluation. Deputy's `chain` record is built for every call and
 *    policies read only some of it (the default set: not `depth`, `user`, `delegator`). Only
 *    values Cedar always accepts are left out (a malformed escape is kept, and still refused).
 *
 * 4. **Only the policies whose scope can match the call count** (issue 16, sixth round). Cedar
 *    evaluates a policy as `principal-scope && action-scope && resource-scope && conditions`, the
 *    conditions only when the scope matched: a policy whose scope fixes another principal type
 *    (`principal is Agent`, `principal == Agent::"x"`), another resource type, or another action
 *    (`action == Action::"delete"`) reads nothing of this call, and errs on nothing. So 1–3 use
 *    the reads of the policies that may apply to the call's principal type, action and resource
 *    type ({@link PolicyReads.forRequest}); a scope `in` something (which depends on entity
 *    data) counts as applying. With the default policies, a user's call then carries no `chain`
 *    context at all and the resource without `scope` / `audience`, which only agent policies read.
 *
 * A decision's entity list with two entities of one uid is passed whole (Cedar refuses it, and
 * that refusal is kept).
 *
 * @module
 */
import type { CedarValueJson, EntityJson, EntityUid } from './cedar.js';
import type { CedarRequest } from './engine.js';
import { setMember } from '../util/own-member.js';

/** What the policies of a set can read of entities: attribute names by entity type, and the entities they name literally. */
export interface PolicyReads {
  /** Attribute names read of an expression whose entity type is not known here (any type may lose none of these). */
  readonly anyType: ReadonlySet<string>;
  /** Attribute names read of `principal` / `resource` under a scope that fixes their type (`is T`, `== T::"id"`), or of an entity literal. */
  readonly byType: ReadonlyMap<string, ReadonlySet<string>>;
  /** Every entity written literally in a policy (scope or condition). */
  readonly entities: readonly EntityUid[];
  /** What the policies read of `context` (see {@link ContextReads}). */
  readonly context: ContextReads;
  /**
   * The reads of only the policies whose scope may match a call with this principal type, action
   * and resource type (module comment, 4); memoised per key. Absent on the reads it returns.
   */
  readonly forRequest?: (principalType: string, action: EntityUid, resourceType: string) => PolicyReads;
}

/**
 * Values by (principal type, action, resource type), looked up without building a key string:
 * both lookups per Cedar call (the scoped reads here, the policy subset in policy-scopes.ts) ran
 * on a string built for the lookup (issue 16, eleventh round).
 */
export class ScopeMap<T> {
  readonly #byPrincipal = new Map<string, Map<string, Map<string, Map<string, T>>>>();
  /** Distinct keys set so far (callers bound their memo by it). */
  size = 0;

  /** The value set for this principal type, action (type and id) and resource type; `undefined` if none. */
  get(principalType: string, action: EntityUid, resourceType: string): T | undefined {
    return this.#byPrincipal.get(principalType)?.get(resourceType)?.get(action.type)?.get(action.id);
  }

  /** Sets (or replaces) the value for this principal type, action and resource type. */
  set(principalType: string, action: EntityUid, resourceType: string, value: T): void {
    const byResource = getOrMake(this.#byPrincipal, principalType);
    const byActionType = getOrMake(byResource, resourceType);
    const byActionId = getOrMake(byActionType, action.type);
    if (!byActionId.has(action.id)) this.size++;
    byActionId.set(action.id, value);
  }
}

function getOrMake<K, V>(map: Map<K, Map<string, V>>, key: K): Map<string, V> {
  let inner = map.get(key);
  if (inner === undefined) map.set(key, (inner = new Map()));
  return inner;
}

/** Scoped reads kept per policy set (principal type × action × resource type, all from the schema); past it they are computed per call. */
const MAX_SCOPED_READS = 4096;

/**
 * What the policies read of `context`, as member paths (`["chain", "position"]`, keyed by
 * {@link pathKey}; `context` itself is the empty path). `whole`: paths whose value is used as a
 * value (compared, passed to a method, tested with `has`), kept as given; `traversed`: paths only
 * ever the left side of an attribute access, so only their members that some policy names matter.
 */
export interface ContextReads {
  readonly whole: ReadonlySet<string>;
  readonly traversed: ReadonlySet<string>;
}

/** Entity types a scope variable can have under a policy's scope; `undefined`: any. */
interface ScopeTypes {
  principal: string | undefined;
  resource: string | undefined;
}

/**
 * What a set of policies reads, from their JSON form (Cedar's EST, `policyToJson`). Walks every
 * node: an attribute access is `{".": {left, attr}}` or `{"has": {left, attr}}`; an entity
 * literal is `{"__entity": {type, id}}` (conditions) or `entity` / `entities` (scope). The type
 * `has` also takes a path (`e has a.b`: `attr` is `["a", "b"]`). The type
 * of `left` is known for `principal` and `resource` when the scope fixes it (Cedar evaluates a
 * policy's conditions only when its scope matched), for an entity literal, for `context` (a
 * record: its members are no entity attributes), and for a member path of `context` as
 * `contextMember` (the schema) declares it; anything else counts for every type. The
 * rest of the tree is walked too, so a construct unknown here can only add names, never hide one.
 */
export function policyReads(policies: readonly unknown[], contextMember: (path: readonly string[]) => string | undefined = () => undefined): PolicyReads {
  const all = readsOf(policies, contextMember);
  const scoped = new ScopeMap<PolicyReads>();
  const forRequest = (principalType: string, action: EntityUid, resourceType: string): PolicyReads => {
    const known = scoped.get(principalType, action, resourceType);
    if (known) return known;
    const applicable = policies.filter((p) => mayApply(p, principalType, action, resourceType));
    const reads = applicable.length === policies.length ? all : readsOf(applicable, contextMember);
    if (scoped.size < MAX_SCOPED_READS) scoped.set(principalType, action, resourceType, reads);
    return reads;
  };
  return { ...all, forRequest };
}

/**
 * Whether a policy (EST) may apply to a call with this principal type, action and resource type
 * by its scope alone: false only when the scope fixes another type (`is T`, `== T::"id"`) or
 * another action (`== Action::"id"`); `in` (entity data) and anything unknown here may apply.
 * Shared with policy-scopes.ts, which pre-parses only these policies for such calls.
 */
export function mayApply(policy: unknown, principalType: string, action: EntityUid, resourceType: string): boolean {
  const p = policy as { action?: { op?: unknown; entity?: { type?: unknown; id?: unknown } } } | null;
  if (p?.action?.op === '==' && typeof p.action.entity?.type === 'string' && typeof p.action.entity.id === 'string') {
    if (p.action.entity.type !== action.type || p.action.entity.id !== action.id) return false;
  }
  const principal = scopeType(policy, 'principal');
  const resource = scopeType(policy, 'resource');
  return (principal === undefined || principal === principalType) && (resource === undefined || resource === resourceType);
}

/** {@link policyReads} of exactly `policies`, without {@link PolicyReads.forRequest}. */
function readsOf(policies: readonly unknown[], contextMember: (path: readonly string[]) => string | undefined): PolicyReads {
  const anyType = new Set<string>();
  const byType = new Map<string, Set<string>>();
  const entities = new Map<string, EntityUid>();
  const read = (left: unknown, attr: string, scope: ScopeTypes): void => {
    const type = typeOf(left, scope, contextMember);
    if (type === 'record') return;
    if (type === undefined) anyType.add(attr);
    else if (byType.has(type)) byType.get(type)!.add(attr);
    else byType.set(type, new Set([attr]));
  };
  // Cedar 4's `e has a.b.c` is one node whose `attr` is the path: `a` is read of `e`; `b`, `c` of
  // whatever `e.a`, `e.a.b` are (a record, or an entity reached through them): of any type.
  const readPath = (left: unknown, path: readonly unknown[], scope: ScopeTypes): void =>
    path.forEach((attr, i) => {
      if (typeof attr !== 'string') return;
      if (i === 0) read(left, attr, scope);
      else anyType.add(attr);
    });
  const visit = (node: unknown, scope: ScopeTypes): void => {
    if (Array.isArray(node)) return node.forEach((n) => visit(n, scope));
    if (typeof node !== 'object' || node === null) return;
    for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
      const access = value as { left?: unknown; attr?: unknown } | null;
      if ((key === '.' || key === 'has') && typeof access?.attr === 'string') read(access.left, access.attr, scope);
      if (key === 'has' && Array.isArray(access?.attr)) readPath(access.left, access.attr, scope);
      if (key === '__entity' || key === 'entity') addUid(entities, value);
      if (key === 'entities' && Array.isArray(value)) value.forEach((v) => addUid(entities, v));
      visit(value, scope);
    }
  };
  for (const policy of policies) visit(policy, { principal: scopeType(policy, 'principal'), resource: scopeType(policy, 'resource') });
  return { anyType, byType, entities: [...entities.values()], context: contextReads(policies) };
}

/**
 * The {@link ContextReads} of a set of policies (EST form). A `context` path expression (`context`,
 * `context.a.b`, `context["a"]`) that is the left side of `.` / `has` is traversed; anywhere else
 * it is used whole. `e has a.b` (a path) traverses `e`, `e.a` and uses `e.a.b` whole.
 */
export function contextReads(policies: readonly unknown[]): ContextReads {
  const whole = new Set<string>();
  const traversed = new Set<string>();
  const visit = (node: unknown, asLeft: boolean): void => {
    if (Array.isArray(node)) return node.forEach((n) => visit(n, false));
    if (typeof node !== 'object' || node === null) return;
    const path = (node as { Var?: unknown }).Var === 'context' ? [] : contextPath(node);
    if (path) (asLeft ? traversed : whole).add(pathKey(path));
    for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
      const access = value as { left?: unknown; attr?: unknown } | null;
      if ((key === '.' || key === 'has') && access && typeof access === 'object' && 'left' in access) {
        if (key === 'has') markHas(access.left, access.attr, whole, traversed);
        visit(access.left, true);
        visit({ ...access, left: undefined }, false);
      } else visit(value, false);
    }
  };
  for (const policy of policies) visit(policy, false);
  return { whole, traversed };
}

/** `context.p has a.b.c`: `p`, `p.a`, `p.a.b` traversed, `p.a.b.c` used whole (its presence is read). */
function markHas(left: unknown, attr: unknown, whole: Set<string>, traversed: Set<string>): void {
  const base = (left as { Var?: unknown } | null)?.Var === 'context' ? [] : contextPath(left);
  if (!base) return;
  const attrs = (Array.isArray(attr) ? attr : [attr]).filter((a): a is string => typeof a === 'string');
  attrs.forEach((_, i) => {
    const p = [...base, ...attrs.slice(0, i + 1)];
    (i === attrs.length - 1 ? whole : traversed).add(pathKey(p));
  });
}

function pathKey(path: readonly string[]): string {
  return path.join('\0');
}

/** The one entity type a policy's scope allows for `principal` / `resource` (`is T`, `== T::"id"`); `undefined`: any. */
function scopeType(policy: unknown, variable: 'principal' | 'resource'): string | undefined {
  const c = (policy as Record<string, { op?: unknown; entity_type?: unknown; entity?: { type?: unknown } }> | null)?.[variable];
  if (c?.op === 'is' && typeof c.entity_type === 'string') return c.entity_type;
  if (c?.op === '==' && typeof c.entity?.type === 'string') return c.entity.type;
  return undefined;
}

/**
 * The entity type of an attribute access's left side: a type; `record` for `context` and for a
 * member of it the schema declares a record in every action; `undefined` when unknown.
 */
function typeOf(left: unknown, scope: ScopeTypes, contextMember: (path: readonly string[]) => string | undefined): string | undefined {
  const l = left as { Var?: unknown; Value?: { __entity?: { type?: unknown } } } | null;
  if (l?.Var === 'context') return 'record';
  const path = contextPath(left);
  if (path) return contextMember(path);
  if (l?.Var === 'principal') return scope.principal;
  if (l?.Var === 'resource') return scope.resource;
  const literal = l?.Value?.__entity?.type;
  return typeof literal === 'string' ? literal : undefined;
}

/** `["chain", "user"]` for `context.chain.user`; `undefined` for anything not a member path of `context`. */
function contextPath(node: unknown): string[] | undefined {
  const path: string[] = [];
  let n = node as { '.'?: { left?: unknown; attr?: unknown }; Var?: unknown } | null;
  while (n?.['.'] && typeof n['.'].attr === 'string') {
    path.unshift(n['.'].attr);
    n = n['.'].left as typeof n;
  }
  return n?.Var === 'context' && path.length > 0 ? path : undefined;
}

function addUid(into: Map<string, EntityUid>, value: unknown): void {
  const u = value as { type?: unknown; id?: unknown } | null;
  if (u && typeof u.type === 'string' && typeof u.id === 'string') into.set(uidKey(u.type, u.id), { type: u.type, id: u.id });
}

/**
 * A decision's entities by uid (type, then id: no key string is built per lookup); `undefined`
 * when a uid occurs twice (the list is then passed whole).
 */
type EntityIndex = Map<string, Map<string, EntityJson>>;
const indexes = new WeakMap<readonly EntityJson[], EntityIndex | undefined>();
/** Each entity with the attributes no policy names left out, per policy set (its {@link PolicyReads}). */
const pruned = new WeakMap<PolicyReads, WeakMap<EntityJson, EntityJson>>();

/**
 * `request` with only the entities its evaluation can reach, each without the attributes no
 * policy names (see the module comment). The request's own objects are not changed.
 *
 * Runs for every Cedar call (two per one-link decision), so it builds no strings and walks
 * objects without copying their keys (issue 16, eleventh round: ~6.5 KiB per decision before).
 */
export function sliceRequest(all: PolicyReads, request: CedarRequest): CedarRequest {
  const index = indexOf(request.entities);
  if (!index) return request;
  const reads = all.forRequest?.(request.principal.type, request.action, request.resource.type) ?? all;
  const out: EntityJson[] = [];
  // The index holds one entity object per uid: visiting each object once visits each uid once.
  const seen = new Set<EntityJson>();
  const context = prunedContext(reads.context, request.context);
  const queue: EntityUid[] = [request.principal, request.action, request.resource, ...reads.entities];
  collectRefs(context, queue);
  for (let uid = queue.pop(); uid !== undefined; uid = queue.pop()) {
    const entity = index.get(uid.type)?.get(uid.id);
    if (entity === undefined || seen.has(entity)) continue;
    seen.add(entity);
    const slim = prune(reads, entity);
    if (!isBare(slim)) out.push(slim);
    for (const p of slim.parents) queue.push(plainUid(p));
    collectRefs(slim.attrs, queue);
    // Tag values are read whole (`getTag`), never pruned: an entity reference in one is reached too.
    collectRefs(slim.tags, queue);
  }
  return { ...request, context, entities: out };
}

/** Contexts pruned by {@link pruneContext}, per context reads and context object (a delegated member's context is memoised: chain-evaluation.ts). */
const prunedContexts = new WeakMap<ContextReads, WeakMap<Record<string, CedarValueJson>, Record<string, CedarValueJson>>>();

/** {@link pruneContext}, memoised per `reads` and `context` object (neither is ever mutated). */
function prunedContext(reads: ContextReads, context: Record<string, CedarValueJson>): Record<string, CedarValueJson> {
  let memo = prunedContexts.get(reads);
  if (!memo) prunedContexts.set(reads, (memo = new WeakMap()));
  let pruned = memo.get(context);
  if (!pruned) memo.set(context, (pruned = pruneContext(reads, context)));
  return pruned;
}

/**
 * `context` without the members no policy can read (module comment, 3). A member is kept whole
 * when its path is used whole, or any enclosing record is; a traversed record keeps the members
 * some policy names; any other member is left out — only when Cedar is sure to accept it
 * ({@link inert}), so a request Cedar would refuse is still refused.
 */
export function pruneContext(reads: ContextReads, context: Record<string, CedarValueJson>): Record<string, CedarValueJson> {
  return reads.whole.has('') ? context : pruneRecord(reads, undefined, context);
}

/** `record` (at the path whose {@link pathKey} is `key`; `undefined` for `context` itself) pruned. */
function pruneRecord(reads: ContextReads, key: string | undefined, record: Record<string, CedarValueJson>): Record<string, CedarValueJson> {
  const out: Record<string, CedarValueJson> = {};
  for (const name in record) {
    // Own members only: an inherited key (a polluted Object.prototype) is no member Cedar sees.
    if (!Object.hasOwn(record, name)) continue;
    const value = record[name]!;
    // pathKey, built incrementally: this runs per Cedar call.
    const member = key === undefined ? name : `${key}\0${name}`;
    if (reads.whole.has(member)) setMember(out, name, value);
    else if (reads.traversed.has(member) && isRecord(value)) setMember(out, name, pruneRecord(reads, member, value));
    else if (reads.traversed.has(member) || !inert(value)) setMember(out, name, value);
  }
  return out;
}

function isRecord(value: CedarValueJson): value is Record<string, CedarValueJson> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Object.keys(value).some((k) => k.startsWith('__'));
}

const CEDAR_RESERVED = new Set(['true', 'false', 'if', 'then', 'else', 'in', 'is', 'like', 'has', '__cedar']);
const CEDAR_IDENT = /^[_a-zA-Z][_a-zA-Z0-9]*$/;

/**
 * Whether Cedar parses `value` whatever it holds: strings, booleans, 64-bit-safe integers, sets and
 * records of those, and well-formed entity references (`{"__entity": {type, id}}` with a valid
 * type name). Anything else (extension values, other escapes, non-integers) may be refused.
 */
function inert(value: unknown): boolean {
  if (typeof value === 'string' || typeof value === 'boolean') return true;
  if (typeof value === 'number') return Number.isSafeInteger(value);
  if (Array.isArray(value)) return value.every(inert);
  if (typeof value !== 'object' || value === null) return false;
  const keys = Object.keys(value);
  if (keys.length === 1 && keys[0] === '__entity') return validRef((value as { __entity: unknown }).__entity);
  return keys.every((k) => !k.startsWith('__')) && Object.values(value).every(inert);
}

function validRef(ref: unknown): boolean {
  const r = ref as { type?: unknown; id?: unknown } | null;
  if (typeof r !== 'object' || r === null || Object.keys(r).length !== 2 || typeof r.id !== 'string' || typeof r.type !== 'string') return false;
  return r.type.split('::').every((seg) => CEDAR_IDENT.test(seg) && !CEDAR_RESERVED.has(seg));
}

function indexOf(entities: readonly EntityJson[]): EntityIndex | undefined {
  if (indexes.has(entities)) return indexes.get(entities);
  let index: EntityIndex | undefined = new Map();
  for (const e of entities) {
    const u = plainUid(e.uid);
    let ofType = index.get(u.type);
    if (ofType === undefined) index.set(u.type, (ofType = new Map()));
    if (ofType.has(u.id)) {
      index = undefined;
      break;
    }
    ofType.set(u.id, e);
  }
  indexes.set(entities, index);
  return index;
}

function prune(reads: PolicyReads, entity: EntityJson): EntityJson {
  let memo = pruned.get(reads);
  if (!memo) pruned.set(reads, (memo = new WeakMap()));
  const hit = memo.get(entity);
  if (hit) return hit;
  const attrs: Record<string, CedarValueJson> = {};
  let dropped = false;
  const ofType = reads.byType.get(plainUid(entity.uid).type);
  const given = entity.attrs ?? {};
  for (const name in given) {
    if (!Object.hasOwn(given, name)) continue;
    const value = given[name]!;
    if (reads.anyType.has(name) || ofType?.has(name) || hasEscape(value)) setMember(attrs, name, value);
    else dropped = true;
  }
  const slim = dropped ? { ...entity, attrs } : entity;
  memo.set(entity, slim);
  return slim;
}

/**
 * An entity with no attribute, parent or tag left answers every expression as its absence does
 * (`in` only through equality, `has` false, any read an error), so it is not passed at all.
 */
function isBare(e: EntityJson): boolean {
  return e.parents.length === 0 && isEmpty(e.attrs) && isEmpty(e.tags);
}

/** Whether `o` is absent or has no own enumerable key (as `Object.keys(o).length === 0`, without the array). */
function isEmpty(o: object | undefined): boolean {
  if (o === undefined) return true;
  for (const k in o) if (Object.hasOwn(o, k)) return false;
  return true;
}

/** Entity references anywhere in a Cedar JSON value: `{"__entity": {type, id}}`, and (conservatively) any `{type, id}` record. */
function collectRefs(value: unknown, into: EntityUid[]): void {
  if (Array.isArray(value)) {
    for (const v of value) collectRefs(v, into);
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  const v = value as Record<string, unknown>;
  if (typeof v.type === 'string' && typeof v.id === 'string') into.push({ type: v.type, id: v.id });
  // Own members only, as Object.values gives them, without building its array (a call per Cedar call).
  for (const k in v) if (Object.hasOwn(v, k)) collectRefs(v[k], into);
}

/** Whether a value holds one of Cedar's JSON escapes (`__extn`, `__entity`, …): parsed, and possibly refused, when the entity is built. */
function hasEscape(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(hasEscape);
  if (typeof value !== 'object' || value === null) return false;
  return Object.keys(value).some((k) => k.startsWith('__')) || Object.values(value).some(hasEscape);
}

function plainUid(u: EntityJson['uid']): EntityUid {
  return '__entity' in u ? u.__entity : u;
}

function uidKey(type: string, id: string): string {
  return `${type}\0${id}`;
}
