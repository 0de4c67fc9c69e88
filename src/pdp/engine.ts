/**
 * One Cedar authorization call against the current pre-parsed policy set, and a cache of
 * answers. No HTTP, no store: callers hand over fully built entities and context, already
 * conforming to the schema (the policies were validated against it at load).
 *
 * Cedar's own rule is "deny unless a permit applies and no forbid applies"; a policy whose
 * evaluation errors is skipped. Deputy tightens the last part: if a `forbid` policy errored
 * (for example it reads an attribute the entity lacks), the answer is deny, because skipping
 * it could permit exactly what the policy author meant to forbid (fail closed).
 *
 * Each call gets only the entities and attributes its evaluation can read (entity-slice.ts):
 * Cedar's cost is mostly parsing entities. The cache is keyed by the policy set's generation and
 * the request Cedar is given (its entity slice included), so any change in data a policy can read
 * is a different key; it is emptied on reload. Cedar decisions are pure functions of these inputs, which is what makes this safe.
 *
 * A call that crashes Cedar (cedar.ts `isCedarCrash`: its stack overflowed, its memory may be
 * corrupt) fails closed — that request, and every call against the set until the store has
 * loaded it again into a fresh instance (policy-store.ts `crashed`, a new generation) — and
 * such answers are not cached: a corrupt instance is never asked again.
 *
 * @module
 */
import { isCedarCrash, type CedarValueJson, type EntityJson, type EntityUid } from './cedar.js';
import { sliceRequest } from './entity-slice.js';
import type { PolicySnapshot } from './policy-store.js';
import { sha256Base64url } from '../util/sha256.js';

export interface CedarRequest {
  principal: EntityUid;
  action: EntityUid;
  resource: EntityUid;
  context: Record<string, CedarValueJson>;
  entities: EntityJson[];
}

export type CedarVerdict =
  /** A permit applied and no forbid did. `policies`: the permits that applied. */
  | { allowed: true; policies: readonly string[] }
  /**
   * `forbidden`: a forbid applied (`policies`); `not_permitted`: no permit applied; `engine_error`:
   * Cedar crashed, or its instance had (fail closed; never cached); `error`: see `message`.
   */
  | { allowed: false; kind: 'forbidden' | 'not_permitted' | 'policy_error' | 'request_error' | 'engine_error'; policies: readonly string[]; message?: string };

/** The answer while a set's Cedar instance is unusable (engine.ts module comment). */
const ENGINE_ERROR: CedarVerdict = { allowed: false, kind: 'engine_error', policies: [], message: 'the policy engine failed; its policy set is being loaded again' };

export class CedarEngine {
  readonly #maxEntries: number;
  readonly #slice: boolean;
  readonly #cache = new Map<string, CedarVerdict>();
  /** Cedar calls made (cache misses), for tests and metrics. */
  calls = 0;

  /**
   * @param options.cacheSize Answers kept (0: no cache).
   * @param options.slice Pass each call only the entities and attributes its evaluation can read
   *   (entity-slice.ts; default), against only the policies whose scope may match it
   *   (policy-scopes.ts). `false` passes the request's entities as given against the whole policy
   *   set: the construction before issue 16's fourth round, kept so a property test can compare the two.
   */
  constructor(options: { cacheSize: number; slice?: boolean }) {
    this.#maxEntries = options.cacheSize;
    this.#slice = options.slice ?? true;
  }

  /** Whether answers are kept (`cacheSize` > 0): callers memoising whole decisions follow this switch. */
  get caching(): boolean {
    return this.#maxEntries > 0;
  }

  /** The most answers kept (`cacheSize`; 0: none): callers memoising whole decisions keep no more. */
  get cacheSize(): number {
    return this.#maxEntries;
  }

  clearCache(): void {
    this.#cache.clear();
  }

  /**
   * Cedar's verdict on `request` against `snapshot`'s policies; `request.entities` may hold more
   * than this call needs (a decision's entities for all its principals): it is sliced here.
   */
  authorize(snapshot: PolicySnapshot, full: CedarRequest): CedarVerdict {
    const request = this.#slice ? sliceRequest(snapshot.reads, full) : full;
    if (this.#maxEntries === 0) return this.#evaluate(snapshot, request);
    // A digest, not the JSON itself: requests carry whole entities, and the cache holds many.
    const key = `${snapshot.generation}:${sha256Base64url(JSON.stringify(request))}`;
    const hit = this.#cache.get(key);
    if (hit) {
      // Least recently used goes first: re-insert on every hit.
      this.#cache.delete(key);
      this.#cache.set(key, hit);
      return hit;
    }
    const verdict = this.#evaluate(snapshot, request);
    if (verdict === ENGINE_ERROR) return verdict;
    if (this.#cache.size >= this.#maxEntries) this.#cache.delete(this.#cache.keys().next().value!);
    this.#cache.set(key, verdict);
    return verdict;
  }

  #evaluate(snapshot: PolicySnapshot, request: CedarRequest): CedarVerdict {
    this.calls++;
    // No schema at evaluation: Deputy has already projected entities and context onto the schema
    // (schema.ts) and checked the action applies (chain-evaluation.ts), and passes the action hierarchy as
    // entities. Cedar's schema-based parsing would repeat that work: measured 1.3-1.6x slower.
    // Only the policies whose scope may match this call (policy-scopes.ts); the whole set without slices.
    const policySetId = this.#slice ? snapshot.scopedPolicySetId(request.principal.type, request.action, request.resource.type) : snapshot.policySetId;
    if (!snapshot.usable()) return ENGINE_ERROR;
    let answer: ReturnType<PolicySnapshot['cedar']['statefulIsAuthorized']>;
    try {
      answer = snapshot.cedar.statefulIsAuthorized({ ...request, preparsedPolicySetId: policySetId });
    } catch (err) {
      if (!isCedarCrash(err)) throw err;
      snapshot.crashed(err);
      return ENGINE_ERROR;
    }
    if (answer.type === 'failure') {
      // Entities or context that do not fit the schema. Cedar's message may quote values, so it
      // goes to the log through `message`, never to the PEP.
      return { allowed: false, kind: 'request_error', policies: [], message: answer.errors.map((e) => e.message).join('; ') };
    }
    const { decision, diagnostics } = answer.response;
    // Cedar lists them from a hash set, in an order that changes from call to call (and with the
    // policy subset): in the set's order, the answer (and the first forbid's `@reason`) is one.
    const reason = inSetOrder(snapshot, diagnostics.reason);
    const erroredForbids = inSetOrder(snapshot, diagnostics.errors.map((e) => e.policyId)).filter((id) => snapshot.policies.get(id)?.effect === 'forbid');
    if (erroredForbids.length > 0) return { allowed: false, kind: 'policy_error', policies: erroredForbids };
    if (decision === 'allow') return { allowed: true, policies: reason };
    const forbids = reason.filter((id) => snapshot.policies.get(id)?.effect === 'forbid');
    return forbids.length > 0 ? { allowed: false, kind: 'forbidden', policies: forbids } : { allowed: false, kind: 'not_permitted', policies: [] };
  }
}

/** Each policy set's position of every policy id (file order), built at its first use. */
const positions = new WeakMap<PolicySnapshot['policies'], ReadonlyMap<string, number>>();

/** `ids` (Cedar's determining or erroring policies) in the order of the snapshot's policy set. */
function inSetOrder(snapshot: PolicySnapshot, ids: readonly string[]): string[] {
  if (ids.length < 2) return [...ids];
  let position = positions.get(snapshot.policies);
  if (!position) positions.set(snapshot.policies, (position = new Map([...snapshot.policies.keys()].map((id, i) => [id, i]))));
  const at = (id: string) => position.get(id) ?? Number.MAX_SAFE_INTEGER;
  return [...ids].sort((a, b) => at(a) - at(b));
}
