/**
 * The enforcement pipeline's budget slot (src/enforcement/steps/budget.ts) for calls whose cost
 * is known before they run: a gateway call (one request, the route's or connection's cost per
 * call) or an MCP tool call (one request, the tool's cost: src/mcp/budget.ts). Reserves before the upstream call,
 * all or none; charges the reservation in full once the response was delivered (or cut: the
 * upstream did the work); releases it when the run was refused after the reservation.
 *
 * The LLM gateway has its own budgeter (src/llm/gateway.ts): its cost is only known after.
 *
 * @module
 */
import { receiptText, requestDigest, type ReceiptAppender } from '../audit/index.js';
import type { ActionContext, Budgeter, BudgetHold, Described, Outcome, PepDecision, Targeted } from '../enforcement/index.js';
import { unexpectedError, type Logger } from '../log.js';
import type { BudgetScope } from './budgets.js';
import { BudgetExceeded } from './errors.js';
import type { Amounts, BudgetLedger, Charge, ReserveOptions } from './ledger.js';

/** What one action asks of budgets: who/where, and how much. `undefined`: no budget applies. */
export interface FixedDemand {
  scope: BudgetScope;
  amounts: Amounts;
  requestId?: string;
  /** Awaited before anything is held ({@link ReserveOptions.ready}): the call's DPoP proof signature. */
  ready?: Promise<unknown>;
}

export interface FixedCostOptions<C> {
  ledger: BudgetLedger;
  logger: Logger;
  /** The demand of the action in `ctx`. */
  demand(ctx: C): FixedDemand | undefined;
  /** Told the charges once the call settled (a receipt of the charge, metrics). */
  onCharged?: (ctx: C, charges: Charge[]) => void | Promise<void>;
}

/**
 * A {@link Budgeter} for actions of known cost.
 *
 * @returns on an exhausted budget, a denial carrying the 402 ({@link BudgetExceeded}) as its
 *   `refusal`, so the receipt records the denial and `refuseDenied` answers 402.
 */
export function fixedCostBudgeter<C>(options: FixedCostOptions<C>): Budgeter<C> {
  const { ledger, logger } = options;
  return {
    reserve(ctx: C): Promise<BudgetHold | Extract<PepDecision, { allowed: false }> | undefined> | undefined {
      const demand = options.demand(ctx);
      // Known to apply to no budget (the ledger's memo, same bound as its own early read): no promise, no id.
      if (!demand || ledger.unbudgeted(demand.scope)) return undefined;
      return reserveFor(demand, ctx);
    },
  };

  async function reserveFor(demand: FixedDemand, ctx: C): Promise<BudgetHold | Extract<PepDecision, { allowed: false }> | undefined> {
    let reservation;
    try {
      reservation = await ledger.reserve(demand.scope, demand.amounts, {
        ...(demand.requestId ? { requestId: demand.requestId } : {}),
        ...(demand.ready ? { ready: demand.ready } : {}),
      });
    } catch (err) {
      if (err instanceof BudgetExceeded) return { allowed: false, reason: err.description, refusal: err };
      throw err;
    }
    if (reservation.items.length === 0) return undefined;
    return {
      async settle(outcome: Outcome) {
        try {
          if (outcome.kind === 'refused') await ledger.release(reservation);
          else {
            const charges = await ledger.settle(reservation, demand.amounts);
            await options.onCharged?.(ctx, charges);
          }
        } catch (err) {
          logger.error({ err: unexpectedError(err), reqId: demand.requestId }, 'budget reservation could not be settled; it is released when it expires');
        }
      },
    };
  }
}

/**
 * The demand of one call of known cost: one request, and `cost` micro-units when a cost is
 * configured (absent: the call counts against `requests` budgets only; `cost` budgets skip it).
 */
export function callAmounts(cost: number | undefined): Amounts {
  return { requests: 1, ...(cost !== undefined ? { cost } : {}) };
}

/**
 * The receipt of a settled call (event `budget_settlement`), after its decision's receipt: the
 * charge on each budget it hit, under the same request id and digest, in the acting agent's
 * hash chain. Written only for a call that was charged something.
 */
export async function settlementReceipt(receipts: ReceiptAppender | undefined, ctx: ActionContext & Described, charges: readonly Charge[]): Promise<void> {
  if (!receipts || charges.length === 0) return;
  const { principal, requestId } = ctx.admission;
  await receipts.append({
    agent: principal.agentId,
    user: principal.userId,
    chain: principal.chain,
    event: 'budget_settlement',
    action: ctx.action.name,
    // As the decision receipt names it (src/enforcement/steps/receipt.ts): caller-derived text — a
    // token-shaped path, a tool named like a JWS, a path past the limit — refused the raw resource,
    // and the charged call went without its settlement receipt.
    resource: receiptText(ctx.action.resource),
    decision: 'permit',
    requestId,
    requestDigest: requestDigest(ctx.action.digest),
    tokenId: principal.tokenJti,
    charges: charges.map((c) => ({ budget: c.budgetId, unit: c.unit, amount: c.charged })),
  });
}

/** What {@link knownCostBudgeter} is built from. */
export interface KnownCostOptions<C> {
  ledger: BudgetLedger;
  logger: Logger;
  /** Where the `budget_settlement` receipt goes (absent: none). */
  receipts?: ReceiptAppender | undefined;
  /**
   * What the action in `ctx` calls and costs: `connection` is the id budgets select on (an HTTP
   * connection, an MCP server), `cost` its cost per call in micro-units (absent: none).
   */
  target(ctx: C): { connection: string; cost: number | undefined };
}

/**
 * The budgeter of a PEP whose calls cost a known amount (the HTTP gateway per route, the MCP
 * gateway per tool): one request and the call's `cost`, on the budgets of the chain's agents,
 * the user and the connection (so per agent, per user, per connection and per user×agent
 * budgets all apply); a `budget_settlement` receipt after the call.
 */
export function knownCostBudgeter<C extends ActionContext & Described>(options: KnownCostOptions<C>): Budgeter<C> {
  return fixedCostBudgeter<C>({
    ledger: options.ledger,
    logger: options.logger,
    demand: (ctx) => {
      const { connection, cost } = options.target(ctx);
      const { principal, requestId, proof } = ctx.admission;
      // A proof whose signature is still verifying (the HTTP gateway): nothing held before it did.
      return { scope: { agents: principal.chain, user: principal.userId, connection }, amounts: callAmounts(cost), requestId, ready: proof.verified };
    },
    onCharged: (ctx, charges) => settlementReceipt(options.receipts, ctx, charges),
  });
}

/**
 * The HTTP gateway's budgeter: one request and the route's `cost` (else the connection's
 * `costPerCall`) per call ({@link knownCostBudgeter}).
 */
export function gatewayBudgeter<C extends ActionContext & Targeted & Described & { route?: { cost?: number | undefined } | undefined }>(options: {
  ledger: BudgetLedger;
  logger: Logger;
  receipts?: ReceiptAppender | undefined;
}): Budgeter<C> {
  return knownCostBudgeter<C>({
    ...options,
    target: (ctx) => ({ connection: ctx.connection.id, cost: ctx.route?.cost ?? ctx.connection.settings.costPerCall }),
  });
}
