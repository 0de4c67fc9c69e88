/**
 * Budget definitions: the `budgets` table. Budgets come from configuration (`budgets.limits`,
 * synced at each start, `source = 'config'`) or from the admin API (`source = 'api'`); a
 * configured budget belongs to the file and the API cannot change or delete it.
 *
 * @module
 */
import { Conflict, NotFound } from '../errors/index.js';
import type { Queryable, Store } from '../store/index.js';
import type { BudgetDefinition, BudgetPatch, BudgetUnit, BudgetWindow } from './config.js';
import { withinBound } from '../util/fresh.js';

/** A stored budget. Selectors left out match any call. */
export interface Budget {
  id: string;
  name: string | undefined;
  agent: string | undefined;
  user: string | undefined;
  connection: string | undefined;
  model: string | undefined;
  unit: BudgetUnit;
  window: BudgetWindow;
  limit: number;
  source: 'config' | 'api';
  createdAt: Date;
  updatedAt: Date;
}

/** The coordinates of one call a budget may apply to. */
export interface BudgetScope {
  /** Every agent of the delegation chain (a budget on an agent covers what it delegates). */
  agents: readonly string[];
  user: string;
  connection: string;
  /** The model of an LLM call; absent elsewhere (model budgets then do not apply). */
  model?: string;
}

interface Row {
  id: string;
  name: string | null;
  agent_id: string | null;
  user_id: string | null;
  connection_id: string | null;
  model: string | null;
  unit: BudgetUnit;
  window: BudgetWindow;
  limit: string | number;
  source: 'config' | 'api';
  created_at: Date | string;
  updated_at: Date | string;
}

export const BUDGET_COLUMNS = 'id, name, agent_id, user_id, connection_id, model, unit, "window", "limit", source, created_at, updated_at';

export function budgetFromRow(r: Row): Budget {
  return {
    id: r.id,
    name: r.name ?? undefined,
    agent: r.agent_id ?? undefined,
    user: r.user_id ?? undefined,
    connection: r.connection_id ?? undefined,
    model: r.model ?? undefined,
    unit: r.unit,
    window: r.window,
    limit: Number(r.limit),
    source: r.source,
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
  };
}

/**
 * The budgets that apply to a call, in id order (the order every transaction locks their
 * counters in, so concurrent reservations never deadlock).
 */
export async function applicableBudgets(db: Queryable, scope: BudgetScope): Promise<Budget[]> {
  const rows = await db.query<Row>(
    `SELECT ${BUDGET_COLUMNS} FROM budgets
      WHERE (agent_id IS NULL OR agent_id = ANY($1::text[]))
        AND (user_id IS NULL OR user_id = $2)
        AND (connection_id IS NULL OR connection_id = $3)
        AND (model IS NULL OR model = $4)
      ORDER BY id`,
    [[...scope.agents], scope.user, scope.connection, scope.model ?? null],
    { prepare: true },
  );
  return rows.map(budgetFromRow);
}

/**
 * How long an answer "no budget applies to this call" is reused, in milliseconds: a budget
 * created (or widened) through **another** instance applies there within this bound; through
 * this instance, at once (README "Budgets": the staleness bound).
 */
export const NO_BUDGET_TTL_MS = 2_000;

/** Scopes remembered at most (the oldest is dropped first). */
const NO_BUDGET_MAX_SCOPES = 10_000;

/**
 * Remembers, per call scope, that no budget applied to it, for {@link NO_BUDGET_TTL_MS}: a call
 * no budget applies to then reads nothing (issue 16: the budget read was one statement per
 * gateway call). Only that negative answer is kept — a call some budget applies to always
 * reserves in the store, so the limits themselves are never read from memory.
 *
 * One memo per {@link Store} object (this instance's connection to its database), shared by
 * every {@link BudgetStore} and ledger over it: a budget created, changed or synced through this
 * instance forgets everything at once ({@link NoBudgetMemo.forget}), and a look-up that started
 * before such a change is not remembered (generation check).
 */
export class NoBudgetMemo {
  /** Per scope key, when the look-up that found no budget began (epoch ms). */
  readonly #since = new Map<string, number>();
  #generation = 0;

  /** Changes with every {@link forget}: read before a look-up, handed to {@link remember}. */
  get generation(): number {
    return this.#generation;
  }

  /**
   * Whether no budget applied to `key` less than the bound ago (`nowMs`: epoch ms). A clock that
   * reads earlier than the look-up began (the wall clock stepped back: NTP, an operator) is not
   * trusted with the bound: the answer is dropped, not kept for the step's length on top.
   */
  has(key: string, nowMs: number): boolean {
    const since = this.#since.get(key);
    if (since === undefined) return false;
    if (withinBound(since, nowMs, NO_BUDGET_TTL_MS)) return true;
    this.#since.delete(key);
    return false;
  }

  /**
   * Records that no budget applied to `key`, unless budgets changed since `generation` was read.
   * @param nowMs - when the look-up began (epoch ms): the bound counts from there.
   */
  remember(key: string, generation: number, nowMs: number): void {
    if (generation !== this.#generation) return;
    if (this.#since.size >= NO_BUDGET_MAX_SCOPES) this.#since.delete(this.#since.keys().next().value!);
    this.#since.set(key, nowMs);
  }

  /** Budgets changed through this instance: nothing remembered holds any more. */
  forget(): void {
    this.#generation += 1;
    this.#since.clear();
  }
}

const memos = new WeakMap<Store, NoBudgetMemo>();

/** The {@link NoBudgetMemo} of `store` (one per store object). */
export function noBudgetMemo(store: Store): NoBudgetMemo {
  let memo = memos.get(store);
  if (!memo) memos.set(store, (memo = new NoBudgetMemo()));
  return memo;
}

/**
 * Runs `write` (a change to the budgets) and then forgets "no budget applies" on `store`'s memo,
 * whatever `write`'s outcome: a write that failed may still have been committed (the connection
 * lost during COMMIT, or after an autocommitted INSERT), and a look-up that ran while it was in
 * flight may have remembered the budgets as they were. Forgetting too often costs a look-up;
 * forgetting too rarely lets calls pass a new budget for up to {@link NO_BUDGET_TTL_MS}.
 */
async function forgetting<T>(store: Store, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } finally {
    noBudgetMemo(store).forget();
  }
}

/** A call scope as a memo key: the chain's agents, the user, the connection and the model. */
export function scopeKey(scope: BudgetScope): string {
  return JSON.stringify([scope.agents, scope.user, scope.connection, scope.model ?? null]);
}

export class BudgetStore {
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  async get(id: string): Promise<Budget | undefined> {
    const rows = await this.#store.query<Row>(`SELECT ${BUDGET_COLUMNS} FROM budgets WHERE id = $1`, [id]);
    return rows[0] && budgetFromRow(rows[0]);
  }

  /** A page of budgets in id order, after the id `after`. */
  async list(page: { limit: number; after?: string }): Promise<{ budgets: Budget[]; next: string | undefined }> {
    const rows = await this.#store.query<Row>(
      `SELECT ${BUDGET_COLUMNS} FROM budgets WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2`,
      [page.after ?? null, page.limit + 1],
    );
    const budgets = rows.slice(0, page.limit).map(budgetFromRow);
    return { budgets, next: rows.length > page.limit ? budgets.at(-1)!.id : undefined };
  }

  /**
   * @throws Conflict (409) when the id is taken. Whatever the outcome, "no budget applies" is
   * forgotten ({@link forgetting}): a connection lost after the INSERT may have committed it.
   */
  async create(def: BudgetDefinition): Promise<Budget> {
    const rows = await forgetting(this.#store, () => this.#store.query<Row>(
      `INSERT INTO budgets (id, name, agent_id, user_id, connection_id, model, unit, "window", "limit", source)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'api') ON CONFLICT (id) DO NOTHING RETURNING ${BUDGET_COLUMNS}`,
      [def.id, def.name ?? null, def.agent ?? null, def.user ?? null, def.connection ?? null, def.model ?? null, def.unit, def.window, def.limit],
    ));
    if (!rows[0]) throw new Conflict(`budget "${def.id}" exists already`);
    return budgetFromRow(rows[0]);
  }

  /**
   * Changes a budget made through the API. Spend already counted stays; a lower limit refuses
   * new reservations once spend and reservations reach it. Changing the unit or window starts
   * new counters (the old ones are dropped: their numbers were in another unit or period).
   *
   * @throws NotFound (404); Conflict (409) for a budget from the configuration file.
   */
  async update(id: string, patch: BudgetPatch): Promise<Budget> {
    // Its selectors may now match calls that no budget applied to.
    return forgetting(this.#store, () => this.#store.transaction(async (tx) => {
      const current = await this.#lockApi(tx, id);
      const next = {
        name: patch.name === undefined ? current.name : patch.name ?? undefined,
        agent: patch.agent === undefined ? current.agent : patch.agent ?? undefined,
        user: patch.user === undefined ? current.user : patch.user ?? undefined,
        connection: patch.connection === undefined ? current.connection : patch.connection ?? undefined,
        model: patch.model === undefined ? current.model : patch.model ?? undefined,
        unit: patch.unit ?? current.unit,
        window: patch.window ?? current.window,
        limit: patch.limit ?? current.limit,
      };
      if (next.unit !== current.unit || next.window !== current.window) await tx.query('DELETE FROM budget_usage WHERE budget_id = $1', [id]);
      const rows = await tx.query<Row>(
        `UPDATE budgets SET name = $2, agent_id = $3, user_id = $4, connection_id = $5, model = $6, unit = $7, "window" = $8, "limit" = $9, updated_at = now()
          WHERE id = $1 RETURNING ${BUDGET_COLUMNS}`,
        [id, next.name ?? null, next.agent ?? null, next.user ?? null, next.connection ?? null, next.model ?? null, next.unit, next.window, next.limit],
      );
      return budgetFromRow(rows[0]!);
    }, { retryConflicts: true }));
  }

  /** Deletes a budget made through the API, with its counters and reservation items. */
  async delete(id: string): Promise<void> {
    await this.#store.transaction(async (tx) => {
      await this.#lockApi(tx, id);
      await tx.query('DELETE FROM budgets WHERE id = $1', [id]);
    }, { retryConflicts: true });
  }

  /**
   * Makes the configured budgets the `source = 'config'` rows: inserted, updated, and those no
   * longer in the file deleted.
   *
   * @throws Conflict when a configured id belongs to a budget created through the API.
   */
  async syncFromConfig(defs: readonly BudgetDefinition[]): Promise<{ removed: string[] }> {
    return forgetting(this.#store, () => this.#syncRows(defs));
  }

  async #syncRows(defs: readonly BudgetDefinition[]): Promise<{ removed: string[] }> {
    return this.#store.transaction(async (tx) => {
      for (const d of defs) {
        const existing = (await tx.query<Row>(`SELECT ${BUDGET_COLUMNS} FROM budgets WHERE id = $1 FOR UPDATE`, [d.id]))[0];
        if (existing && existing.source !== 'config') throw new Conflict(`budget "${d.id}" exists already (created through the admin API): delete it there or rename the configured one`);
        if (existing && (existing.unit !== d.unit || existing.window !== d.window)) await tx.query('DELETE FROM budget_usage WHERE budget_id = $1', [d.id]);
        await tx.query(
          `INSERT INTO budgets (id, name, agent_id, user_id, connection_id, model, unit, "window", "limit", source)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'config')
           ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, agent_id = EXCLUDED.agent_id, user_id = EXCLUDED.user_id,
             connection_id = EXCLUDED.connection_id, model = EXCLUDED.model, unit = EXCLUDED.unit, "window" = EXCLUDED."window",
             "limit" = EXCLUDED."limit", updated_at = now()`,
          [d.id, d.name ?? null, d.agent ?? null, d.user ?? null, d.connection ?? null, d.model ?? null, d.unit, d.window, d.limit],
        );
      }
      const stale = await tx.query<{ id: string }>(`DELETE FROM budgets WHERE source = 'config' AND NOT (id = ANY($1::text[])) RETURNING id`, [defs.map((d) => d.id)]);
      return { removed: stale.map((r) => r.id) };
    }, { retryConflicts: true });
  }

  async #lockApi(tx: Queryable, id: string): Promise<Budget> {
    const row = (await tx.query<Row>(`SELECT ${BUDGET_COLUMNS} FROM budgets WHERE id = $1 FOR UPDATE`, [id]))[0];
    if (!row) throw new NotFound(`budget "${id.slice(0, 64)}" does not exist`);
    if (row.source === 'config') throw new Conflict(`budget "${id}" is defined in the configuration file; change it there`);
    return budgetFromRow(row);
  }
}
