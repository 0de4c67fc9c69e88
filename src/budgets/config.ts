/**
 * Budget configuration: the `budgets:` section of the YAML (time zone, currency, price table,
 * reservation lifetime, budgets defined in the file) and the schema of one budget, shared with
 * the admin API (`/admin/budgets`).
 *
 * ```yaml
 * budgets:
 *   timeZone: Europe/Paris          # day / month windows start at local midnight
 *   currency: USD                   # cost is counted in micro-units of it (1 USD = 1 000 000)
 *   prices:                         # micro-units per million tokens, per model
 *     gpt-4o-mini: { input: 150000, output: 600000 }
 *   limits:
 *     - { id: research-daily, agent: research-bot, unit: cost, window: day, limit: 5000000 }
 *     - { id: alice-requests, user: alice@example.com, unit: requests, window: month, limit: 1000 }
 * ```
 *
 * @module
 */
import { z } from 'zod';

/** What a budget counts. `cost` is in integer micro-units of `budgets.currency`. */
export const BUDGET_UNITS = ['requests', 'input_tokens', 'output_tokens', 'cost'] as const;
export type BudgetUnit = (typeof BUDGET_UNITS)[number];

/** The period a budget's spend accumulates over before it starts again from zero. */
export const BUDGET_WINDOWS = ['day', 'month', 'total'] as const;
export type BudgetWindow = (typeof BUDGET_WINDOWS)[number];

/** Budget ids appear in URLs (`/admin/budgets/{id}`) and problem bodies: lowercase slugs. */
export const BUDGET_ID = /^[a-z0-9][a-z0-9_.-]{0,62}$/;

const selector = z.string().min(1).max(320);

const budgetFields = {
  /** Shown in listings and 402 bodies. */
  name: z.string().min(1).max(200).optional(),
  /** The budget applies to calls where this agent is anywhere in the delegation chain. */
  agent: selector.optional(),
  /** …made for this user (the chain's `sub`). */
  user: selector.optional(),
  /** …through this connection (`/gw/{id}`, `/llm/{id}`). */
  connection: selector.optional(),
  /** …to this model (LLM calls only). */
  model: selector.optional(),
  unit: z.enum(BUDGET_UNITS),
  window: z.enum(BUDGET_WINDOWS),
  /** Most the window may spend, in `unit` (whole numbers; cost in micro-units). */
  limit: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
};

/**
 * A budget: a limit in one unit over one window, applying to every call that matches all of its
 * selectors (`agent`, `user`, `connection`, `model`; an absent selector matches any call, so a
 * budget with none is global; `agent` + `user` is a per user×agent budget).
 */
export const budgetSchema = z.strictObject({
  id: z.string().regex(BUDGET_ID, 'must be a lowercase slug: a-z 0-9 _ . - (1-63, starting with a letter or digit)'),
  ...budgetFields,
});
export type BudgetDefinition = z.infer<typeof budgetSchema>;

/** A change to a budget through the admin API: anything but `id`; `null` clears a selector. */
export const budgetPatchSchema = z
  .strictObject({
    name: budgetFields.name.nullable(),
    agent: budgetFields.agent.nullable(),
    user: budgetFields.user.nullable(),
    connection: budgetFields.connection.nullable(),
    model: budgetFields.model.nullable(),
    unit: budgetFields.unit.optional(),
    window: budgetFields.window.optional(),
    limit: budgetFields.limit.optional(),
  })
  .refine((p) => Object.keys(p).length > 0, { message: 'nothing to change' });
export type BudgetPatch = z.infer<typeof budgetPatchSchema>;

/** One model's price, in micro-units of the currency. */
export const priceSchema = z.strictObject({
  /** Per million input (prompt) tokens. */
  input: z.number().int().min(0),
  /** Per million output (completion) tokens. */
  output: z.number().int().min(0),
  /** Per request, on top. */
  request: z.number().int().min(0).default(0),
});
export type ModelPrice = z.infer<typeof priceSchema>;

function validTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** The `budgets:` section. */
export const budgetsConfigSchema = z
  .strictObject({
    /** IANA time zone in which `day` and `month` windows start (local midnight). */
    timeZone: z.string().refine(validTimeZone, { message: 'must be an IANA time zone name such as UTC or Europe/Paris' }).default('UTC'),
    /** ISO 4217 code of the currency `cost` is counted in (micro-units of it). */
    currency: z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code such as USD').default('USD'),
    /**
     * How long a reservation holds before it is released as abandoned (an instance that crashed
     * mid-call). Longer than any call: the LLM wall-clock cap and the gateway timeouts.
     */
    reservationSeconds: z.number().int().min(10).max(86_400).default(900),
    /** Per-model prices (the `cost` unit); a model absent here cannot be charged in cost. */
    prices: z.record(z.string().min(1).max(200), priceSchema).default({}),
    /** Budgets defined in the file, synced at each start (the admin API cannot change them). */
    limits: z
      .array(budgetSchema)
      .default([])
      .refine((list) => new Set(list.map((b) => b.id)).size === list.length, { message: 'budget ids must be unique' }),
  })
  .prefault({});
export type BudgetsConfig = z.infer<typeof budgetsConfigSchema>;
