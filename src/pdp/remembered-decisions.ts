/**
 * Remembered decisions for the PDP's in-process callers (the HTTP gateway's
 * `PdpGatewayAuthorizer`): an evaluation asked again is answered **synchronously** — no
 * promise, no entity built, no Cedar call — while the basis it was decided on provably still
 * holds from the caches' answers alone (./decision-basis.ts `basisHolds`: the policy generation,
 * the subject token's issuance records unexpired and each link known live to the revocation
 * cache, the registry's agents the same objects and none due for a re-read). Whenever any of
 * those caches would read the store, or anything differs, the evaluation runs in full, exactly
 * as without this module. So the README's staleness bounds for the PDP's decision cache are the
 * bounds of every remembered decision, as on the AuthZEN endpoint's cached path
 * (src/http/authzen-cached.ts), which reuses answers by the same rules and the same helpers.
 *
 * What is remembered is keyed by the whole evaluation (subject and its token, action and its
 * properties — method, path, connection, tool —, resource and its properties, context), so a
 * change of any input is a different key and is evaluated. A decision is remembered under the
 * basis computed **before** it was evaluated, on the same request memo (`basisOrUndefined`): one
 * whose evaluation raced a reload, a revocation or a registry change is remembered under the
 * older basis, which the next call finds no longer holds. A subject with no basis (a bad,
 * expired or revoked token, a refused chain) and a failed evaluation are never remembered.
 *
 * Bounded twice: by bytes ({@link footprint}) and by entries (never more than the engine's
 * decision cache holds, `pdp.decisionCacheSize`); when full, the decisions remembered longest ago
 * make room. Nothing is remembered with the decision cache off (`pdp.decisionCacheSize: 0`).
 *
 * @module
 */
import type { EvaluationInput } from './authzen.js';
import { basisHoldsNow, basisOrUndefined, type DecisionBasis } from './decision-basis.js';
import type { Decision } from './decision.js';
import { requestMemo, type PolicyDecisionPoint } from './pdp.js';
import { SizeBoundedMap } from '../util/bounded-map.js';

/** A remembered decision: the evaluation it answers (as a one-item batch, for `basisHolds`), its basis, the decision. */
interface RememberedDecision {
  readonly inputs: readonly [EvaluationInput];
  readonly basis: DecisionBasis;
  readonly decision: Decision;
  /** {@link footprint}, counted against the byte budget. */
  readonly size: number;
}

/** What {@link RememberedDecisions} is built from. */
export interface RememberedDecisionsOptions {
  /** Bytes remembered at most ({@link footprint}); 0: nothing is remembered. */
  budgetBytes: number;
  /** Entries remembered at most (the engine's `cacheSize`); 0: nothing is remembered. */
  maxEntries: number;
}

/** The heap an entry costs besides its strings: the map slot, records, the basis's arrays, object headers. */
const ENTRY_OVERHEAD_BYTES = 1024;

/**
 * What one remembered decision keeps on the heap, estimated: the key (the evaluation's JSON,
 * counted at two bytes a character: a path may hold two-byte characters), the evaluation's own
 * objects and strings (at most as much again: the token, path and names it holds), the decision
 * (its JSON's size twice: reasons and policy ids as strings, their arrays and records) and a
 * fixed share for the entry and its basis (whose agents and records are the caches' objects,
 * shared, not copied).
 */
export function footprint(key: string, decision: Decision): number {
  return 4 * key.length + 2 * JSON.stringify(decision).length + ENTRY_OVERHEAD_BYTES;
}

/** The evaluation's key: its JSON (every member, in the order the caller built them); undefined when it has none (a value JSON cannot hold). */
function keyOf(input: EvaluationInput): string | undefined {
  try {
    return JSON.stringify(input);
  } catch {
    return undefined;
  }
}

/**
 * The evaluation `key` names, rebuilt from it: strings of its own. The caller's strings are often
 * slices of larger ones — a gateway path is a slice of the request's URL, query string and all —
 * and a V8 slice keeps its whole parent alive, so remembering the caller's object would keep up
 * to the request's URL per entry (16 KiB against a footprint of ~2–5 KiB: the byte budget
 * overrun several times over).
 */
function detached(key: string): EvaluationInput {
  return JSON.parse(key) as EvaluationInput;
}

/**
 * Decisions remembered per evaluation (see the module documentation). Never throws for what the
 * remembered path does: anything that fails there leaves the evaluation to the PDP, whose own
 * errors (a store away) propagate as `evaluate`'s do — fail closed.
 */
export class RememberedDecisions {
  readonly #pdp: PolicyDecisionPoint;
  readonly #budgetBytes: number;
  readonly #maxEntries: number;
  /** By key, in the order remembered (a replaced one counts as new): the first is forgotten first; bounded by bytes and entries. */
  readonly #entries: SizeBoundedMap<string, RememberedDecision>;

  constructor(pdp: PolicyDecisionPoint, options: RememberedDecisionsOptions) {
    this.#pdp = pdp;
    this.#budgetBytes = options.budgetBytes;
    this.#maxEntries = Math.floor(options.maxEntries);
    this.#entries = new SizeBoundedMap(this.#budgetBytes, this.#maxEntries);
  }

  /** Whether anything is remembered (a budget and an entry bound above zero). */
  get enabled(): boolean {
    return this.#budgetBytes > 0 && this.#maxEntries >= 1;
  }

  /** Bytes the remembered decisions count ({@link footprint}); never more than the budget. */
  get bytes(): number {
    return this.#entries.bytes;
  }

  /** Decisions remembered now; never more than the entry bound. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * One AuthZEN evaluation (§6), as `PolicyDecisionPoint.evaluate` decides it: the remembered
   * decision, synchronously, when one is remembered for exactly this evaluation and its basis
   * holds now; otherwise a promise of the full evaluation (remembered for next time when its
   * subject has a basis).
   *
   * @throws (the promise rejects with) what `PolicyDecisionPoint.evaluate` throws: a store failure.
   */
  evaluate(input: EvaluationInput): Decision | Promise<Decision> {
    if (!this.enabled) return this.#pdp.evaluate(input);
    const key = keyOf(input);
    if (key === undefined) return this.#pdp.evaluate(input);
    const known = this.#entries.get(key);
    if (known !== undefined && basisHoldsNow(this.#pdp, known.inputs, known.basis)) return known.decision;
    return this.#evaluateAndRemember(key, input);
  }

  /** The full evaluation on a fresh memo, remembered under the basis computed just before it on that memo. */
  async #evaluateAndRemember(key: string, input: EvaluationInput): Promise<Decision> {
    const memo = requestMemo();
    const basis = await basisOrUndefined(this.#pdp, [input], memo);
    // The same memo: the evaluation decides on the very subject and agents the basis names, and
    // a read that failed there fails again here (fail closed) without being waited for twice.
    const decision = await this.#pdp.evaluate(input, memo);
    if (basis !== undefined) this.#remember(key, { inputs: [detached(key)], basis, decision, size: footprint(key, decision) });
    return decision;
  }

  /** Remembers `entry` under `key`, forgetting the oldest entries as needed; one larger than the whole budget is not remembered. */
  #remember(key: string, entry: RememberedDecision): void {
    this.#entries.set(key, entry);
  }
}
