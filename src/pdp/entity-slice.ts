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
 *    literal written in a policy, or an entity reference in an attribute of an entity it
 *    reached; and reads the ancestors of an entity it reached (`in`). The slice is that closure:
 *    anything outside it is never looked up.
 *
 * A decision's entity list with two entities of one uid is passed whole (Cedar refuses it, and
 * that refusal is kept).
 *
 * @module
 */
import type { CedarValueJson, EntityJson, EntityUid } from './cedar.js';
import type { CedarRequest } from './engine.js';

/** What the policies of a set can read of entities: attribute names, and the entities they name literally. */
export interface PolicyReads {
  /** Every attribute name used in `.`, `[…]` or `has` anywhere in the set (entity attributes or record members alike). */
  readonly attributes: ReadonlySet<string>;
  /** Every entity written literally in a policy (scope or condition). */
  readonly entities: readonly EntityUid[];
}

/**
 * What a set of policies reads, from their JSON form (Cedar's EST, `policyToJson`). Walks every
 * node: an attribute access is `{".": {left, attr}}` or `{"has": {left, attr}}`; an entity
 * literal is `{"__entity": {type, id}}` (conditions) or `entity` / `entities` (scope). Anything
 * else of the tree is walked too, so a construct unknown here can only add names, never hide one.
 */
export function policyReads(policies: readonly unknown[]): PolicyReads {
  const attributes = new Set<string>();
  const entities = new Map<string, EntityUid>();
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(visit);
    if (typeof node !== 'object' || node === null) return;
    for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
      if ((key === '.' || key === 'has') && typeof (value as { attr?: unknown })?.attr === 'string') attributes.add((value as { attr: string }).attr);
      if (key === '__entity' || key === 'entity') addUid(entities, value);
      if (key === 'entities' && Array.isArray(value)) value.forEach((v) => addUid(entities, v));
      visit(value);
    }
  };
  policies.forEach(visit);
  return { attributes, entities: [...entities.values()] };
}

function addUid(into: Map<string, EntityUid>, value: unknown): void {
  const u = value as { type?: unknown; id?: unknown } | null;
  if (u && typeof u.type === 'string' && typeof u.id === 'string') into.set(uidKey(u.type, u.id), { type: u.type, id: u.id });
}

/** A decision's entities by uid; `undefined` when a uid occurs twice (the list is then passed whole). */
const indexes = new WeakMap<readonly EntityJson[], Map<string, EntityJson> | undefined>();
/** Each entity with the attributes no policy names left out, per policy set (its {@link PolicyReads}). */
const pruned = new WeakMap<PolicyReads, WeakMap<EntityJson, EntityJson>>();

/**
 * `request` with only the entities its evaluation can reach, each without the attributes no
 * policy names (see the module comment). The request's own objects are not changed.
 */
export function sliceRequest(reads: PolicyReads, request: CedarRequest): CedarRequest {
  const index = indexOf(request.entities);
  if (!index) return request;
  const out: EntityJson[] = [];
  const seen = new Set<string>();
  const queue: EntityUid[] = [request.principal, request.action, request.resource, ...reads.entities];
  collectRefs(request.context, queue);
  for (let uid = queue.pop(); uid !== undefined; uid = queue.pop()) {
    const key = uidKey(uid.type, uid.id);
    if (seen.has(key)) continue;
    seen.add(key);
    const entity = index.get(key);
    if (!entity) continue;
    const slim = prune(reads, entity);
    out.push(slim);
    for (const p of slim.parents) queue.push(plainUid(p));
    collectRefs(slim.attrs, queue);
  }
  return { ...request, entities: out };
}

function indexOf(entities: readonly EntityJson[]): Map<string, EntityJson> | undefined {
  if (indexes.has(entities)) return indexes.get(entities);
  let index: Map<string, EntityJson> | undefined = new Map();
  for (const e of entities) {
    const u = plainUid(e.uid);
    const key = uidKey(u.type, u.id);
    if (index.has(key)) {
      index = undefined;
      break;
    }
    index.set(key, e);
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
  for (const [name, value] of Object.entries(entity.attrs ?? {})) {
    if (reads.attributes.has(name) || hasEscape(value)) attrs[name] = value;
    else dropped = true;
  }
  const slim = dropped ? { ...entity, attrs } : entity;
  memo.set(entity, slim);
  return slim;
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
  for (const member of Object.values(v)) collectRefs(member, into);
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
