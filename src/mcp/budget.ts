/**
 * Per-tool budgets at the MCP gateway (issue 15): the `tools/call` budget slot of the session's
 * pipeline (./session.ts), filled with the same known-cost budgeter as the HTTP gateway's
 * (src/budgets/budgeter.ts), so one request and the tool's cost are reserved before the upstream
 * call, all or none, on every budget of the chain's agents, the user and the MCP server (a
 * budget's `connection` selects the server id).
 *
 * Settlement follows the pipeline's outcome: an answer from the upstream — a result, also one
 * with `isError: true` (the tool ran) — charges the reservation; a JSON-RPC error from the
 * upstream, an unreachable upstream or a timeout releases it. An exhausted budget refuses the
 * call with a JSON-RPC error whose `data` is the 402 problem object (./steps.ts `toJsonRpcError`).
 *
 * @module
 */
import type { ReceiptAppender } from '../audit/index.js';
import { knownCostBudgeter, type BudgetLedger } from '../budgets/index.js';
import type { Budgeter } from '../enforcement/index.js';
import type { Logger } from '../log.js';
import type { McpServerConfig } from './config.js';
import type { McpBudgetContext } from './session.js';

/** What one `tools/call` of `tool` costs on `server`: its `toolCosts` entry, else `costPerCall`, else none. */
export function toolCost(server: McpServerConfig, tool: string): number | undefined {
  // An own property only: a tool named `constructor` must not read the prototype.
  const own = server.toolCosts && Object.hasOwn(server.toolCosts, tool) ? server.toolCosts[tool] : undefined;
  return own ?? server.costPerCall;
}

/**
 * The MCP gateway's budgeter: one request and {@link toolCost} per `tools/call`, with a
 * `budget_settlement` receipt of each charge after the call.
 */
export function mcpToolBudgeter(options: { ledger: BudgetLedger; logger: Logger; receipts?: ReceiptAppender | undefined }): Budgeter<McpBudgetContext> {
  return knownCostBudgeter<McpBudgetContext>({ ...options, target: (ctx) => ({ connection: ctx.server.id, cost: toolCost(ctx.server, ctx.tool) }) });
}
