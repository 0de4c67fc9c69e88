/**
 * Budgets (DESIGN capability 5): definitions, windows, prices and the reserve-then-settle ledger.
 *
 * @module
 */
export { BUDGET_ID, BUDGET_UNITS, BUDGET_WINDOWS, budgetPatchSchema, budgetSchema, budgetsConfigSchema, priceSchema } from './config.js';
export type { BudgetDefinition, BudgetPatch, BudgetsConfig, BudgetUnit, BudgetWindow, ModelPrice } from './config.js';
export { applicableBudgets, BudgetStore, NO_BUDGET_TTL_MS, type Budget, type BudgetScope } from './budgets.js';
export { BUDGET_EXCEEDED_TYPE, BudgetExceeded, type BudgetRefusal } from './errors.js';
export { BudgetLedger, type Amounts, type Charge, type LedgerOptions, type ReserveOptions, type Reservation, type ReservationItem, type WindowUsage } from './ledger.js';
export { costOf, PriceTable, type TokenCounts } from './prices.js';
export { windowAt, zonedMidnight, type WindowSpan } from './window.js';
export { createBudgets, type Budgets } from './service.js';
export { callAmounts, fixedCostBudgeter, gatewayBudgeter, knownCostBudgeter, settlementReceipt, type FixedCostOptions, type FixedDemand, type KnownCostOptions } from './budgeter.js';
