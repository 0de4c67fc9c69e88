/**
 * The budget errors a client sees.
 *
 * @module
 */
import { ProblemError } from '../errors/index.js';
import type { BudgetUnit } from './config.js';

/** The problem type URI of an exhausted budget (RFC 9457 §3.1.1); dereferences to the README. */
export const BUDGET_EXCEEDED_TYPE = 'https://deputy.dev/problems/budget-exceeded';

/** What a refusal says about the budget that refused. */
export interface BudgetRefusal {
  budgetId: string;
  unit: BudgetUnit;
  limit: number;
  /** Settled spend in the current window. */
  spent: number;
  /** Held by calls in flight. */
  reserved: number;
  /** What this call asked for. */
  requested: number;
  /** When the window starts again; `undefined` for a `total` budget. */
  resetsAt: Date | undefined;
  /** Currency of a `cost` budget (micro-units of it). */
  currency?: string;
}

/**
 * HTTP 402 Payment Required (RFC 9110 §15.5.3): the call would take a budget past its limit.
 * Distinct from 429 (rate limits): waiting a moment does not help, only the window's reset
 * (`Retry-After`, RFC 9110 §10.2.3, when it resets) or a larger limit. Nothing was reserved.
 */
export class BudgetExceeded extends ProblemError {
  readonly problemType = BUDGET_EXCEEDED_TYPE;
  readonly title = 'Budget exceeded';
  readonly members: Readonly<Record<string, unknown>>;

  constructor(readonly refusal: BudgetRefusal, now: Date) {
    super(402, 'budget_exceeded', `budget "${refusal.budgetId}" cannot cover this call: ${refusal.requested} ${refusal.unit} requested, ${Math.max(0, refusal.limit - refusal.spent - refusal.reserved)} left of ${refusal.limit}`, {
      headers: refusal.resetsAt ? { 'Retry-After': String(Math.max(1, Math.ceil((refusal.resetsAt.getTime() - now.getTime()) / 1000))) } : {},
    });
    this.members = {
      budget: refusal.budgetId,
      unit: refusal.unit,
      limit: refusal.limit,
      spent: refusal.spent,
      reserved: refusal.reserved,
      requested: refusal.requested,
      resets_at: refusal.resetsAt ? refusal.resetsAt.toISOString() : null,
      ...(refusal.unit === 'cost' && refusal.currency ? { currency: refusal.currency } : {}),
    };
  }
}
