/**
 * The price table: what a model's tokens cost, in integer micro-units of the configured
 * currency (`budgets.prices`). Prices are read when a call is reserved and the same price settles
 * it, so a price change applies to calls reserved after it, never to one in flight.
 *
 * @module
 */
import type { ModelPrice } from './config.js';

/** Token counts of one call (RFC-free: the providers' `usage`, normalised). */
export interface TokenCounts {
  inputTokens: number;
  outputTokens: number;
}

export class PriceTable {
  readonly #prices: ReadonlyMap<string, ModelPrice>;

  constructor(prices: Readonly<Record<string, ModelPrice>>) {
    this.#prices = new Map(Object.entries(prices));
  }

  /** The model's price, or `undefined` when the table does not list it. */
  price(model: string): ModelPrice | undefined {
    return this.#prices.get(model);
  }

  /**
   * What `tokens` of `model` cost: `ceil((in × input + out × output) / 10⁶) + request`
   * micro-units (rounded up: a call is never charged less than it cost).
   *
   * @returns `undefined` when the model has no price
   */
  cost(model: string, tokens: TokenCounts): number | undefined {
    const p = this.#prices.get(model);
    return p === undefined ? undefined : costOf(p, tokens);
  }
}

/** {@link PriceTable.cost} for one price. */
export function costOf(p: ModelPrice, tokens: TokenCounts): number {
  return Math.ceil((tokens.inputTokens * p.input + tokens.outputTokens * p.output) / 1_000_000) + p.request;
}
