/**
 * Pre-parsed policy subsets by scope (issue 16, ninth round): for each principal type, action
 * and resource type the schema lets a call have, a Cedar policy set holding only the policies
 * whose scope may match such a call (`mayApply`, entity-slice.ts, module comment 4).
 *
 * Why: `statefulIsAuthorized` clones the whole pre-parsed policy set on every call (cedar-policy
 * `ffi/is_authorized.rs`, `PREPARSED_POLICY_SETS … .cloned()`) and then tests every policy's
 * scope. With the default set (7 policies) a user's call needs 2 and an agent's 3: measured
 * in-process, ~6 µs less per call of ~45–60; the cost of the rest grows with the set's size.
 *
 * Exact: Cedar evaluates a policy as `principal-scope && action-scope && resource-scope &&
 * conditions`, conditions only when the scope matched, and a scope cannot error; a policy left
 * out here is one whose scope fixes another principal type, resource type or action, so it
 * could neither be satisfied nor err. The decision, its determining policies and its erroring
 * policies are Cedar's answer on the whole set (the slice property test compares the two,
 * test/unit/pdp-entity-slice.test.ts).
 *
 * Bounded: subsets equal to the whole set are not made (the call uses the whole set), equal
 * subsets are made once, and no more than {@link MAX_SUBSET_POLICIES} × the set's size policies
 * are pre-parsed in subsets (past it, calls use the whole set). Subsets are pre-parsed into ids
 * derived from the snapshot's slot, before the snapshot becomes current, as the whole set is
 * (policy-store.ts): a reload into the same slot overwrites them, and empties those of an earlier
 * load it does not make (a reload with fewer subsets).
 *
 * @module
 */
import { cedar, describeCedarErrors, type Cedar, type EntityUid } from './cedar.js';
import { mayApply, ScopeMap } from './entity-slice.js';
import { PolicyLoadError } from './policy-load-error.js';
import type { ActionInfo } from './schema.js';

/** Policies pre-parsed in subsets, at most, as a multiple of the set's size. */
const MAX_SUBSET_POLICIES = 4;

/** Subset ids pre-parsed under each slot so far, at most: `${slot}~0` … `${slot}~(n-1)`. */
const made = new Map<string, number>();

/** The policy set id a call with this principal type, action and resource type is evaluated against. */
export type ScopedPolicySet = (principalType: string, action: EntityUid, resourceType: string) => string;

/**
 * Pre-parses the subsets of `policies` (ids, Cedar texts, and EST forms, in one order) for every
 * (principal type, action, resource type) `actions` declare, under ids `${slot}~n`.
 *
 * @param dir - the policy folder, named by a refusal.
 * @param engine - the Cedar instance to pre-parse into (a policy set's own: policy-store.ts).
 * @returns The policy set id for a call: its subset's, else `slot` (the whole set).
 * @throws {@link PolicyLoadError} with Cedar's messages if a subset does not pre-parse (it parsed
 *   as a whole: a bug) — the store's refusal, so a reload is refused and logged as such and the
 *   set serving keeps serving.
 */
export function preparseScopedSets(
  slot: string,
  policies: { ids: readonly string[]; texts: Readonly<Record<string, string>>; ests: readonly unknown[] },
  actions: readonly ActionInfo[],
  dir: string,
  engine: Cedar = cedar,
): ScopedPolicySet {
  const byKey = new ScopeMap<string>();
  const bySubset = new Map<string, string>();
  let budget = MAX_SUBSET_POLICIES * policies.ids.length;
  for (const action of actions) {
    for (const principalType of action.principalTypes) {
      for (const resourceType of action.resourceTypes) {
        const ids = policies.ids.filter((_, i) => mayApply(policies.ests[i], principalType, action.uid, resourceType));
        if (ids.length === policies.ids.length) continue;
        // JSON, not a separator: policy ids are any string (`@id("a\0b")`), and two different subsets
        // whose ids joined to one string would share one pre-parsed set (a forbid left out).
        const subset = JSON.stringify(ids);
        let id = bySubset.get(subset);
        if (id === undefined) {
          if (ids.length > budget) continue;
          budget -= ids.length;
          id = `${slot}~${bySubset.size}`;
          made.set(slot, Math.max(made.get(slot) ?? 0, bySubset.size + 1));
          const answer = engine.preparsePolicySet(id, { staticPolicies: Object.fromEntries(ids.map((p) => [p, policies.texts[p]!])) });
          if (answer.type === 'failure') throw new PolicyLoadError(dir, describeCedarErrors(answer.errors).map((m) => `policy subset ${id} did not pre-parse: ${m}`));
          bySubset.set(subset, id);
        }
        byKey.set(principalType, action.uid, resourceType, id);
      }
    }
  }
  clearStale(slot, bySubset.size, engine);
  return (principalType, action, resourceType) => byKey.get(principalType, action, resourceType) ?? slot;
}

/**
 * Empties the ids `${slot}~kept` and up that an earlier load into the slot (or a refused one)
 * pre-parsed: no snapshot refers to them any more, and Cedar has no call that forgets a set, so
 * their policies would stay parsed for as long as the process runs.
 */
function clearStale(slot: string, kept: number, engine: Cedar): void {
  for (let i = kept; i < (made.get(slot) ?? 0); i++) engine.preparsePolicySet(`${slot}~${i}`, { staticPolicies: {} });
  made.set(slot, kept);
}
