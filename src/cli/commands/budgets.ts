/**
 * `deputy budgets …`: the budgets of `/admin/budgets` (src/http/budgets.ts) over the shared admin
 * subcommands (../admin-resource.ts). Reads show the current window's spend and reservations as Deputy sends them.
 *
 * @module
 */
import { Command } from 'commander';
import { addCreate, addDelete, addGet, addList, addUpdate, type AdminCollection } from '../admin-resource.js';
import type { Io } from '../shared.js';

const BUDGETS: AdminCollection = { base: '/admin/budgets', member: 'budgets', noun: 'budget' };

/** One listing line: id, unit/window, spent+reserved of limit in the current window, selectors. */
function budgetLine(b: Record<string, unknown>): string {
  const cur = (b.current as Record<string, unknown> | undefined) ?? {};
  const selectors = (['agent', 'user', 'connection', 'model'] as const)
    .filter((k) => b[k] !== null && b[k] !== undefined)
    .map((k) => `${k}=${String(b[k])}`)
    .join(' ');
  return `${String(b.id)}\t${String(b.unit)}/${String(b.window)}\t${String(cur.spent ?? 0)}+${String(cur.reserved ?? 0)} of ${String(b.limit)}\t${selectors || '(global)'}`;
}

/** `deputy budgets list|get|create|update|delete` (issue 17). Exit codes as the other admin commands. */
export function budgetsCommand(io: Io, done: (code: number) => void): Command {
  const cmd = new Command('budgets').description('spend limits per agent, user, connection or model (/admin/budgets)');
  const out = { io, done };
  addList(cmd, out, BUDGETS, { description: 'budgets: id, unit/window, spent+reserved of limit this window, selectors (one page)', line: budgetLine });
  addGet(cmd, out, BUDGETS, { description: 'one budget with its current window, open reservations and recent windows' });
  addCreate(cmd, out, BUDGETS, { description: 'create a budget (body: id, unit, window, limit; optional name, agent, user, connection, model)', idFrom: 'answer' });
  addUpdate(cmd, out, BUDGETS, { description: 'change a budget (a partial body: limit, window, unit, name, selectors; null clears a selector)' });
  addDelete(cmd, out, BUDGETS, { description: 'delete a budget with its counters' });
  return cmd;
}
