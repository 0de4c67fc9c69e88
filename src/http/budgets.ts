/**
 * `/admin/budgets`: create, list, read (with the current window's spend and reservations),
 * change and delete budgets. The admin API's dialect (./admin-api.ts): snake_case members,
 * RFC 3339 times, `limit` / `cursor` pagination.
 *
 * @module
 */
import Router from '@koa/router';
import type { Budget, Budgets } from '../budgets/index.js';
import { BUDGET_ID, budgetPatchSchema, budgetSchema } from '../budgets/index.js';
import { NotFound } from '../errors/index.js';
import { nextCursor, pageRequest, parseAdminBody, requireAdmin, schemaMembers, wireFields, wireTime } from './admin-api.js';
import { jsonBody, type Authenticate } from './util.js';

const BUDGET_FIELDS = wireFields([...schemaMembers(budgetSchema), ...schemaMembers(budgetPatchSchema)]);

export interface BudgetAdminDeps {
  budgets: Budgets;
  authenticate: Authenticate;
  /** The admin resource identifier (token audience). */
  audience: string;
  bodyLimitBytes: number;
}

export function budgetAdminRoutes(deps: BudgetAdminDeps): Router {
  const router = new Router({ prefix: '/admin/budgets' });
  router.use(requireAdmin(deps), jsonBody(deps.bodyLimitBytes));
  const { definitions, ledger } = deps.budgets;

  const view = (b: Budget) => budgetView(deps.budgets, b);

  router.get('/', async function listBudgets(ctx) {
    const page = await definitions.list(pageRequest(ctx.query, 'budgets', (k) => BUDGET_ID.test(k)));
    ctx.body = { budgets: await Promise.all(page.budgets.map(view)), next_cursor: nextCursor('budgets', page.next) };
  });

  router.post('/', async function createBudget(ctx) {
    const input = parseAdminBody(budgetSchema, ctx.request.body, 'budget', BUDGET_FIELDS);
    const created = await definitions.create(input);
    ctx.status = 201;
    ctx.set('Location', `/admin/budgets/${created.id}`);
    ctx.body = await view(created);
  });

  router.get('/:id', async function readBudget(ctx) {
    const b = await mustGet(deps.budgets, ctx.params.id!);
    const [reservations, windows] = await Promise.all([ledger.reservations(b.id), ledger.history(b.id, 12)]);
    ctx.body = {
      ...(await view(b)),
      reservations: reservations.map((r) => ({
        id: r.id, request_id: r.requestId ?? null, agent: r.agent ?? null, user: r.user ?? null, amount: r.amount,
        created_at: wireTime(r.createdAt), expires_at: wireTime(r.expiresAt),
      })),
      windows: windows.map((w) => ({ window_start: b.window === 'total' ? null : wireTime(w.windowStart), spent: w.spent, reserved: w.reserved })),
    };
  });

  router.patch('/:id', async function updateBudget(ctx) {
    const patch = parseAdminBody(budgetPatchSchema, ctx.request.body, 'budget change', BUDGET_FIELDS);
    ctx.body = await view(await definitions.update(ctx.params.id!, patch));
  });

  router.delete('/:id', async function deleteBudget(ctx) {
    await definitions.delete(ctx.params.id!);
    ctx.status = 204;
  });
  return router;
}

async function mustGet(budgets: Budgets, id: string): Promise<Budget> {
  const b = await budgets.definitions.get(id);
  if (!b) throw new NotFound(`budget "${id.slice(0, 64)}" does not exist`);
  return b;
}

/** The wire view of a budget with its current window's counters (the admin dialect: snake_case, RFC 3339). */
async function budgetView(budgets: Budgets, b: Budget): Promise<Record<string, unknown>> {
  const usage = await budgets.ledger.usage(b);
  return {
    id: b.id,
    name: b.name ?? null,
    agent: b.agent ?? null,
    user: b.user ?? null,
    connection: b.connection ?? null,
    model: b.model ?? null,
    unit: b.unit,
    ...(b.unit === 'cost' ? { currency: budgets.currency } : {}),
    window: b.window,
    limit: b.limit,
    current: {
      window_start: b.window === 'total' ? null : wireTime(usage.windowStart),
      resets_at: wireTime(usage.resetsAt),
      spent: usage.spent,
      reserved: usage.reserved,
      remaining: Math.max(0, b.limit - usage.spent - usage.reserved),
    },
    source: b.source,
    created_at: wireTime(b.createdAt),
    updated_at: wireTime(b.updatedAt),
  };
}
