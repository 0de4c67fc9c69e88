/**
 * Budgets assembled from configuration: the definitions (synced from `budgets.limits`), the
 * price table and the ledger. The composition root calls {@link createBudgets} once.
 *
 * @module
 */
import type { Store } from '../store/index.js';
import { BudgetStore } from './budgets.js';
import type { BudgetsConfig } from './config.js';
import { BudgetLedger } from './ledger.js';
import { PriceTable } from './prices.js';

export interface Budgets {
  definitions: BudgetStore;
  ledger: BudgetLedger;
  /**
   * The current price table. Replaceable (a configuration reload): calls reserved after the
   * change use the new prices; a call in flight settles at the price it was reserved with.
   */
  prices: PriceTable;
  currency: string;
}

/**
 * @throws Conflict when a configured budget id belongs to a budget created through the API
 */
export async function createBudgets(config: BudgetsConfig, store: Store, now?: () => Date): Promise<Budgets> {
  const definitions = new BudgetStore(store);
  await definitions.syncFromConfig(config.limits);
  const ledger = new BudgetLedger({
    store, timeZone: config.timeZone, reservationSeconds: config.reservationSeconds, currency: config.currency, ...(now ? { now } : {}),
  });
  return { definitions, ledger, prices: new PriceTable(config.prices), currency: config.currency };
}
