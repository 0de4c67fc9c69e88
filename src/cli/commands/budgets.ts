/**
 * `deputy budgets …`: the budgets of `/admin/budgets` (src/http/budgets.ts) over the shared admin
 * helpers (./admin.ts). Reads show the current window's spend and reservations as Deputy sends them.
 *
 * @module
 */
import { Command } from 'commander';
import { printJson, type Io } from '../shared.js';
import { jsonBody, limitOption, path, printList, withAdmin, withBody, type BodyOptions } from './admin.js';

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
  cmd
    .command('list')
    .description('budgets: id, unit/window, spent+reserved of limit this window, selectors (one page)')
    .addOption(limitOption())
    .option('--cursor <cursor>', 'the next_cursor of the previous page')
    .action((o: { limit?: number; cursor?: string }, c: Command) =>
      withAdmin(io, done, c, async (admin, g) => {
        const q = new URLSearchParams();
        if (o.limit) q.set('limit', String(o.limit));
        if (o.cursor) q.set('cursor', o.cursor);
        printList(io, g, await admin.request('GET', `/admin/budgets${q.size ? `?${q}` : ''}`), 'budgets', budgetLine);
      }),
    );
  cmd
    .command('get')
    .description('one budget with its current window, open reservations and recent windows')
    .argument('<id>')
    .action((id: string, _o: unknown, c: Command) => withAdmin(io, done, c, async (admin) => printJson(io, await admin.request('GET', path('/admin/budgets', id)))));
  withBody(cmd.command('create').description('create a budget (body: id, unit, window, limit; optional name, agent, user, connection, model)')).action(
    (o: BodyOptions, c: Command) => {
      const body = jsonBody(o);
      return withAdmin(io, done, c, async (admin, g) => {
        const created = await admin.request('POST', '/admin/budgets', body);
        if (g.json) printJson(io, created);
        else io.out(`created budget ${String((created as { id: string }).id)}\n`);
      });
    },
  );
  withBody(cmd.command('update').description('change a budget (a partial body: limit, window, unit, name, selectors; null clears a selector)').argument('<id>')).action(
    (id: string, o: BodyOptions, c: Command) => {
      const body = jsonBody(o);
      return withAdmin(io, done, c, async (admin) => printJson(io, await admin.request('PATCH', path('/admin/budgets', id), body)));
    },
  );
  cmd
    .command('delete')
    .description('delete a budget with its counters')
    .argument('<id>')
    .action((id: string, _o: unknown, c: Command) =>
      withAdmin(io, done, c, async (admin, g) => {
        await admin.request('DELETE', path('/admin/budgets', id));
        if (g.json) printJson(io, { deleted: id });
        else io.out(`deleted budget ${id}\n`);
      }),
    );
  return cmd;
}
