/**
 * Step `budget`: the slot where budgets (issue 15) reserve before the upstream call and settle
 * after it. Without a {@link Budgeter} it does nothing.
 *
 * - reads: `decision` (a denied action reserves nothing) and whatever the budgeter reads (the
 *   principal, the connection, the model, `max_tokens`, a cost estimate).
 * - adds: {@link Budgeted} — the hold, when one was made; or a replaced `decision`: a denial
 *   whose `refusal` is the budget's error (402), so that `receipt` records the denial and
 *   `refuseDenied` refuses with that error.
 * - on a refusal (a later step or the upstream failed): the hold's `settle` with `refused`:
 *   release all. After the response ended: `completed` / `cut`: charge what was used, release
 *   the rest. (Errors of the first replace the refusal: a hold should catch and log its own.)
 *
 * @module
 */
import type { Decided, PepDecision } from '../context.js';
import { NOTHING, type Outcome, type Step } from '../pipeline.js';

/** A reservation on every budget that applies, made all or none. */
export interface BudgetHold {
  /** Releases or charges the hold once the run's outcome is known (see the module doc). Should not throw. */
  settle(outcome: Outcome): Promise<void>;
}

/**
 * What fills the slot: reserves the worst case for the action, or denies it.
 *
 * @typeParam C - the context it reads.
 */
export interface Budgeter<C> {
  /**
   * @returns a hold (reserved), a denial (a budget is exhausted: carry a 402 `refusal`), or
   *   undefined (no budget applies) — undefined itself, not a promise, when that is known without
   *   waiting (the step then adds nothing without a microtask turn: issue 16, tenth round).
   */
  reserve(ctx: C): Promise<BudgetHold | Extract<PepDecision, { allowed: false }> | undefined> | undefined;
}

/** Added by `budget`. */
export interface Budgeted {
  budgetHold?: BudgetHold;
}

/** The `budget` step (see the module doc); `budgeter` undefined: the no-op slot. */
export function budget<C extends Decided>(budgeter?: Budgeter<C>): Step<C, Budgeted & Partial<Decided>> {
  // The empty slot has no settle: a pipeline whose steps have none skips settling altogether.
  if (!budgeter) return { name: 'budget', run: () => NOTHING };
  return {
    name: 'budget',
    run(ctx) {
      if (!ctx.decision.allowed) return NOTHING;
      const reserving = budgeter.reserve(ctx);
      if (reserving === undefined) return NOTHING;
      return reserving.then((held) => (held === undefined ? NOTHING : 'settle' in held ? { budgetHold: held } : { decision: held }));
    },
    async refused(ctx, refusal) {
      await ctx.budgetHold?.settle(refusal);
    },
    // Without a hold (no budget applied) nothing to wait for: no promise.
    settle(ctx, ending) {
      return ctx.budgetHold?.settle(ending);
    },
  };
}
