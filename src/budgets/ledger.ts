/**
 * The budget ledger: reserve, then settle (DESIGN capability 5, invariant "no budget is ever
 * exceeded, under any concurrency, on any store").
 *
 * - {@link BudgetLedger.reserve} holds a call's worst case on **every** budget that applies, all
 *   or none, in one transaction. Each hold is one conditional `UPDATE … SET reserved = reserved + x
 *   WHERE spent + reserved + x <= limit` on the budget's counter row for the current window: on
 *   PostgreSQL the row lock serialises concurrent holders (READ COMMITTED re-checks the condition
 *   on the row the previous holder committed), so instances sharing one database never admit
 *   more than the limit; PGlite runs one transaction at a time. Counters are locked in budget id
 *   order, so two reservations never deadlock. A budget that cannot cover its share throws
 *   {@link BudgetExceeded} and the transaction rolls back: nothing is held anywhere. A call no
 *   budget applies to costs one plain read and no transaction, and that answer is remembered
 *   for 2 s per scope (`NoBudgetMemo` in ./budgets.ts: forgotten at once when budgets change
 *   through this instance; a budget created through another instance applies here within 2 s).
 * - {@link BudgetLedger.settle} charges the actual use — never more than was reserved, so spend
 *   stays within the limit — and releases the rest; a failed call settles with zero (release).
 * - A reservation not settled by its `expiresAt` (the instance crashed mid-call) is released by
 *   {@link BudgetLedger.releaseExpired}, run periodically and before a refusal is final.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import { recordBudgetSpend } from '../observability/metrics.js';
import type { Queryable, Store } from '../store/index.js';
import { applicableBudgets, noBudgetMemo, scopeKey, type Budget, type BudgetScope, type NoBudgetMemo } from './budgets.js';
import type { BudgetUnit } from './config.js';
import { BudgetExceeded } from './errors.js';
import { windowAt } from './window.js';

/** An amount per unit; an absent unit is zero. Whole numbers (cost in micro-units). */
export type Amounts = Partial<Record<BudgetUnit, number>>;

/** One budget's share of a reservation. */
export interface ReservationItem {
  budgetId: string;
  unit: BudgetUnit;
  limit: number;
  windowStart: Date;
  resetsAt: Date | undefined;
  amount: number;
}

/** A hold on every budget that applied to one call. */
export interface Reservation {
  id: string;
  items: readonly ReservationItem[];
  /** The amounts held: per unit, the least any budget holds (what the call may use at most). */
  held: Amounts;
  expiresAt: Date;
}

/** What one budget was charged when a call settled (receipts list these). */
export interface Charge {
  budgetId: string;
  unit: BudgetUnit;
  charged: number;
  /** Actual use that did not fit under the limit, not charged (the invariant wins); normally 0. */
  uncharged: number;
}

export interface LedgerOptions {
  store: Store;
  /** IANA zone of `day` / `month` windows. */
  timeZone: string;
  /** Reservation lifetime in seconds. */
  reservationSeconds: number;
  /** Currency code named in `cost` refusals. */
  currency?: string;
  /** The clock (tests move it to cross a window). */
  now?: () => Date;
}

/** How a reservation is made. */
export interface ReserveOptions {
  /** Recorded with the reservation (admin listing). */
  requestId?: string;
  /**
   * Per unit, the least a budget may hold for the call to go ahead: a budget with less left than
   * `amounts[unit]` but at least this holds what it has left (the call is then capped to it).
   * Absent: the full amount (all or nothing).
   */
  minimum?: Amounts;
  /**
   * A budget counts a unit `amounts` does not give (e.g. cost for a model without a price): the
   * error to refuse with. Absent: such budgets are skipped.
   */
  unmeasured?: (budget: Budget) => Error;
  /**
   * Nothing is held before it resolves (the gateway's DPoP proof signature, still verifying while
   * the call is decided: issue 16); when it rejects, nothing is held and the reserve rejects with
   * its error. Not awaited when no budget applies (nothing would be written).
   */
  ready?: Promise<unknown>;
}

/** Current counters of one budget window. */
export interface WindowUsage {
  windowStart: Date;
  resetsAt: Date | undefined;
  spent: number;
  reserved: number;
}

/** One reservation's request, as {@link BudgetLedger} hands it to its hold's transaction. */
interface HoldCall {
  scope: BudgetScope;
  amounts: Amounts;
  options: ReserveOptions;
  now: Date;
  id: string;
  expiresAt: Date;
}

/**
 * Whether `committed` (the budget row's `json_build_array(agent_id, user_id, connection_id, model,
 * unit, "window")`) still says what `b`, read earlier, says about which calls it counts and how.
 */
function countsAsRead(committed: unknown, b: Budget): boolean {
  const read = [b.agent ?? null, b.user ?? null, b.connection ?? null, b.model ?? null, b.unit, b.window];
  return Array.isArray(committed) && committed.length === read.length && committed.every((v, i) => v === read[i]);
}

/**
 * A budget read before the hold's transaction was changed or deleted before its counter was
 * locked (through another instance: nothing told this one). Thrown inside the transaction, so it
 * rolls back; the reserve then runs it again, reading the budgets inside it.
 */
class StaleBudget extends Error {}

export class BudgetLedger {
  readonly #store: Store;
  readonly #tz: string;
  readonly #ttlMs: number;
  readonly #currency: string | undefined;
  readonly #none: NoBudgetMemo;
  readonly now: () => Date;

  constructor(options: LedgerOptions) {
    this.#store = options.store;
    this.#tz = options.timeZone;
    this.#ttlMs = options.reservationSeconds * 1000;
    this.#currency = options.currency;
    this.#none = noBudgetMemo(options.store);
    this.now = options.now ?? (() => new Date());
  }

  /**
   * Whether no budget applies to `scope`, as remembered from an earlier look-up (the same memo and
   * staleness bound as {@link reserve}'s own early read: `reserve` would return an empty
   * reservation). Synchronous: a call that no budget covers is admitted without a promise, a
   * reservation id or a look-up (issue 16, tenth round). `false` means "look it up", not "budgeted".
   */
  unbudgeted(scope: BudgetScope): boolean {
    return this.#none.has(scopeKey(scope), this.now().getTime());
  }

  /**
   * Holds `amounts` on every budget that applies to `scope`, all or none. With no budget
   * applying, the reservation is empty (and settling it costs nothing).
   *
   * @throws BudgetExceeded (402) naming the first budget (in id order) that cannot cover its share
   */
  async reserve(scope: BudgetScope, amounts: Amounts, options: ReserveOptions = {}): Promise<Reservation> {
    try {
      return await this.#reserveOnce(scope, amounts, options);
    } catch (err) {
      // Abandoned holds of crashed instances may be what fills the budget: release them, then retry once.
      if (!(err instanceof BudgetExceeded) || (await this.releaseExpired()) === 0) throw err;
      return this.#reserveOnce(scope, amounts, options);
    }
  }

  async #reserveOnce(scope: BudgetScope, amounts: Amounts, options: ReserveOptions): Promise<Reservation> {
    const now = this.now();
    const id = randomUUID();
    const expiresAt = new Date(now.getTime() + this.#ttlMs);
    const generation = this.#none.generation;
    const read = await this.#applicable(scope, now);
    if (read.length === 0) return { id, items: [], held: { ...amounts }, expiresAt };
    // A hold is a write: only for a call that may go ahead (its error, not 402, otherwise).
    await options.ready;
    const call = { scope, amounts, options, now, id, expiresAt };
    // Budgets changed through this instance while the proof verified (every change, on PGlite):
    // the early read is stale, so the transaction reads them itself, as it did before issue 16.
    if (this.#none.generation !== generation) return this.#holdAll(call, undefined);
    try {
      return await this.#holdAll(call, read);
    } catch (err) {
      // One changed through another instance: the transaction rolled back; again, reading inside.
      if (!(err instanceof StaleBudget)) throw err;
      return this.#holdAll(call, undefined);
    }
  }

  /**
   * The hold's transaction: every budget's share, then the reservation and its items. `read`:
   * the budgets read before it, each checked unchanged by its counter's statement
   * ({@link StaleBudget} otherwise); undefined: read here.
   */
  async #holdAll(call: HoldCall, read: readonly Budget[] | undefined): Promise<Reservation> {
    const { scope, amounts, options, now, id, expiresAt } = call;
    return this.#store.transaction(async (tx) => {
      const budgets = read ?? (await applicableBudgets(tx, scope));
      const items: ReservationItem[] = [];
      for (const b of budgets) {
        const amount = amounts[b.unit];
        if (amount === undefined && options.unmeasured) throw options.unmeasured(b);
        if (amount === undefined || amount <= 0) continue;
        const item = await this.#hold(tx, b, amount, Math.min(amount, options.minimum?.[b.unit] ?? amount), now, read !== undefined);
        if (item) items.push(item);
      }
      const held: Amounts = { ...amounts };
      for (const item of items) held[item.unit] = Math.min(held[item.unit] ?? item.amount, item.amount);
      // The reservation and its items in one statement (the items' foreign key is checked at its end).
      if (items.length) {
        await tx.query(
          `WITH r AS (INSERT INTO budget_reservations (id, request_id, agent_id, user_id, expires_at) VALUES ($1, $2, $3, $4, $5) RETURNING id)
           INSERT INTO budget_reservation_items (reservation_id, budget_id, window_start, amount)
           SELECT r.id, b, w, a FROM r, unnest($6::text[], $7::timestamptz[], $8::bigint[]) AS t(b, w, a)`,
          [
            id, options.requestId ?? null, scope.agents.at(-1) ?? null, scope.user, expiresAt.toISOString(),
            items.map((i) => i.budgetId), items.map((i) => i.windowStart.toISOString()), items.map((i) => i.amount),
          ],
        );
      }
      return { id, items, held, expiresAt };
    }, { retryConflicts: true });
  }

  /**
   * The budgets that apply to `scope`, in id order (the order their counters are locked in):
   * none when remembered so for `NO_BUDGET_TTL_MS` (src/budgets/budgets.ts {@link NoBudgetMemo}),
   * else one plain read, not a transaction (three round trips on PostgreSQL). The hold's
   * transaction uses this read rather than reading again (issue 16: one statement less per
   * budgeted call): under READ COMMITTED a read inside it would be its own snapshot too, only a
   * little later. What this read cannot be trusted with is re-checked in the transaction: budgets
   * changed through this instance since (the memo's generation: every change on PGlite) are read
   * again, and each hold takes its budget's limit and what it counts (selectors, unit, window) from its counter's statement (a
   * budget changed or deleted through another instance: {@link StaleBudget}, read again).
   */
  async #applicable(scope: BudgetScope, now: Date): Promise<Budget[]> {
    const key = scopeKey(scope);
    if (this.#none.has(key, now.getTime())) return [];
    const generation = this.#none.generation;
    const budgets = await applicableBudgets(this.#store, scope);
    if (budgets.length === 0) this.#none.remember(key, generation, now.getTime());
    return budgets;
  }

  /**
   * One budget's share: `amount`, or as much of it as is left when at least `minimum` is (a
   * stream capped at what the budget still allows). The counter row is locked first, so the
   * amount decided here is the one written. `undefined`: the budget was deleted since it was read
   * in this transaction.
   *
   * @throws StaleBudget for an `early` budget changed or deleted since; BudgetExceeded
   */
  async #hold(tx: Queryable, b: Budget, amount: number, minimum: number, now: Date, early: boolean): Promise<ReservationItem | undefined> {
    const span = windowAt(b.window, now, this.#tz);
    const start = span.start.toISOString();
    // Creates the window's counter or locks the existing one (ON CONFLICT DO UPDATE takes the row
    // lock and returns the latest committed counts), in one statement — with the budget's limit
    // and what decides where it counts (selectors, unit, window) as committed now: a lowered limit
    // holds at once; a budget read before the transaction (`early`) and since changed in any of
    // those or deleted (through another instance) is stale. Compared by content, not by
    // `updated_at`: JavaScript's Date keeps milliseconds, PostgreSQL's timestamps microseconds,
    // and two changes can fall in one millisecond.
    const row = (await tx.query<{ spent: string; reserved: string; limit: string | null; counts: unknown }>(
      `INSERT INTO budget_usage (budget_id, window_start) SELECT id, $2::timestamptz FROM budgets WHERE id = $1
       ON CONFLICT (budget_id, window_start) DO UPDATE SET reserved = budget_usage.reserved
       RETURNING spent, reserved, (SELECT "limit" FROM budgets WHERE id = $1) AS "limit",
         (SELECT json_build_array(agent_id, user_id, connection_id, model, unit, "window") FROM budgets WHERE id = $1) AS counts`,
      [b.id, start],
    ))[0];
    const gone = !row || row.limit === null || row.counts === null;
    if (early && (gone || !countsAsRead(row.counts, b))) throw new StaleBudget();
    if (gone) return undefined;
    const spent = Number(row.spent);
    const reserved = Number(row.reserved);
    const limit = Number(row.limit);
    const left = limit - spent - reserved;
    if (left < minimum) {
      throw new BudgetExceeded(
        {
          budgetId: b.id, unit: b.unit, limit, spent, reserved, requested: minimum, resetsAt: span.resetsAt,
          ...(this.#currency ? { currency: this.#currency } : {}),
        },
        now,
      );
    }
    const take = Math.min(amount, left);
    await tx.query('UPDATE budget_usage SET reserved = reserved + $3 WHERE budget_id = $1 AND window_start = $2', [b.id, start, take]);
    return { budgetId: b.id, unit: b.unit, limit, windowStart: span.start, resetsAt: span.resetsAt, amount: take };
  }

  /**
   * Charges `used` (per unit) and releases the rest of the reservation. Use beyond the
   * reservation is charged only as far as the budget's limit allows; what does not fit is
   * reported as `uncharged` (the invariant wins over the bill). Idempotent: a second settle of
   * one reservation charges nothing. A reservation already released as expired is charged what
   * still fits in its budgets. Each charge is added to `deputy_budget_spend_total{budget,unit}`.
   */
  async settle(reservation: Reservation, used: Amounts): Promise<Charge[]> {
    if (reservation.items.length === 0) return [];
    const charges = await this.#settleOnce(reservation, used);
    // The one place every gateway's charges pass (HTTP, MCP, LLM), after the commit: counted once.
    for (const c of charges) recordBudgetSpend(c.budgetId, c.unit, c.charged);
    return charges;
  }

  async #settleOnce(reservation: Reservation, used: Amounts): Promise<Charge[]> {
    return this.#store.transaction(async (tx) => {
      // Deleting the reservation is the claim (its items go with it): a concurrent settle or
      // expiry sweep finds nothing left. The amounts are the ones this reservation holds.
      const claimed = (await tx.query('DELETE FROM budget_reservations WHERE id = $1 RETURNING id', [reservation.id])).length > 0;
      if (!claimed && !(await this.#sweptAsExpired(tx, reservation))) return [];
      const charges: Charge[] = [];
      for (const item of [...reservation.items].sort((a, b) => a.budgetId.localeCompare(b.budgetId))) {
        const want = Math.max(0, Math.floor(used[item.unit] ?? 0));
        if (!claimed) {
          // Released as expired meanwhile: charge what still fits under the limit.
          const fit = await this.#chargeWhatFits(tx, item, want);
          charges.push({ budgetId: item.budgetId, unit: item.unit, charged: fit, uncharged: want - fit });
          continue;
        }
        const charge = Math.min(want, item.amount);
        await tx.query('UPDATE budget_usage SET reserved = reserved - $3, spent = spent + $4 WHERE budget_id = $1 AND window_start = $2', [
          item.budgetId, item.windowStart.toISOString(), item.amount, charge,
        ]);
        // Used more than reserved (a provider counting more prompt tokens than Deputy's
        // estimate): the excess is charged as far as the limit still allows, never beyond.
        const extra = want > charge ? await this.#chargeWhatFits(tx, item, want - charge) : 0;
        charges.push({ budgetId: item.budgetId, unit: item.unit, charged: charge + extra, uncharged: want - charge - extra });
      }
      return charges;
    }, { retryConflicts: true });
  }

  /**
   * Whether an unclaimable reservation was released by the expiry sweep (and not yet settled):
   * the sweep leaves a marker; this settle takes it, so a repeated settle charges nothing.
   */
  async #sweptAsExpired(tx: Queryable, reservation: Reservation): Promise<boolean> {
    return (await tx.query('DELETE FROM budget_expired_reservations WHERE reservation_id = $1 RETURNING reservation_id', [reservation.id])).length > 0;
  }

  async #chargeWhatFits(tx: Queryable, item: ReservationItem, charge: number): Promise<number> {
    const row = (await tx.query<{ spent: string; reserved: string; limit: string }>(
      `SELECT u.spent, u.reserved, b."limit" FROM budget_usage u JOIN budgets b ON b.id = u.budget_id
        WHERE u.budget_id = $1 AND u.window_start = $2 FOR UPDATE OF u`, [item.budgetId, item.windowStart.toISOString()],
    ))[0];
    if (!row) return 0;
    const fit = Math.min(charge, Math.max(0, Number(row.limit) - Number(row.spent) - Number(row.reserved)));
    if (fit > 0) await tx.query('UPDATE budget_usage SET spent = spent + $3 WHERE budget_id = $1 AND window_start = $2', [item.budgetId, item.windowStart.toISOString(), fit]);
    return fit;
  }

  /** Releases everything `reservation` holds, charging nothing (a failed call). */
  async release(reservation: Reservation): Promise<void> {
    await this.settle(reservation, {});
  }

  /**
   * Releases reservations past their `expiresAt` (an instance crashed mid-call). Safe to run on
   * every instance at once: each reservation's items are claimed by deleting them.
   *
   * @returns how many reservations were released
   */
  async releaseExpired(limit = 200): Promise<number> {
    const expired = await this.#store.query<{ id: string }>('SELECT id FROM budget_reservations WHERE expires_at < $1 ORDER BY expires_at LIMIT $2', [this.now().toISOString(), limit]);
    let released = 0;
    for (const { id } of expired) {
      released += await this.#store.transaction(async (tx) => {
        const items = await tx.query<{ budget_id: string; window_start: Date | string; amount: string }>(
          'DELETE FROM budget_reservation_items WHERE reservation_id = $1 RETURNING budget_id, window_start, amount', [id],
        );
        if ((await tx.query('DELETE FROM budget_reservations WHERE id = $1 RETURNING id', [id])).length === 0) return 0;
        // A late settle of this reservation charges what still fits (it finds this marker).
        await tx.query('INSERT INTO budget_expired_reservations (reservation_id) VALUES ($1) ON CONFLICT DO NOTHING', [id]);
        for (const it of items.sort((a, b) => a.budget_id.localeCompare(b.budget_id))) {
          await tx.query('UPDATE budget_usage SET reserved = reserved - $3 WHERE budget_id = $1 AND window_start = $2', [it.budget_id, new Date(it.window_start).toISOString(), Number(it.amount)]);
        }
        return 1;
      }, { retryConflicts: true });
    }
    // Markers of reservations nobody came back to settle.
    await this.#store.query('DELETE FROM budget_expired_reservations WHERE released_at < $1', [new Date(this.now().getTime() - 2 * this.#ttlMs).toISOString()]);
    return released;
  }

  /** The counters of `budget`'s current window (zeros when nothing was reserved in it yet). */
  async usage(budget: Budget): Promise<WindowUsage> {
    const span = windowAt(budget.window, this.now(), this.#tz);
    const row = (await this.#store.query<{ spent: string; reserved: string }>('SELECT spent, reserved FROM budget_usage WHERE budget_id = $1 AND window_start = $2', [budget.id, span.start.toISOString()]))[0];
    return { windowStart: span.start, resetsAt: span.resetsAt, spent: Number(row?.spent ?? 0), reserved: Number(row?.reserved ?? 0) };
  }

  /** Every window's counters of `budgetId`, newest first (at most `limit`). */
  async history(budgetId: string, limit = 50): Promise<Array<{ windowStart: Date; spent: number; reserved: number }>> {
    const rows = await this.#store.query<{ window_start: Date | string; spent: string; reserved: string }>(
      'SELECT window_start, spent, reserved FROM budget_usage WHERE budget_id = $1 ORDER BY window_start DESC LIMIT $2', [budgetId, limit],
    );
    return rows.map((r) => ({ windowStart: new Date(r.window_start), spent: Number(r.spent), reserved: Number(r.reserved) }));
  }

  /** Open reservations holding on `budgetId` (oldest first, at most `limit`). */
  async reservations(budgetId: string, limit = 50): Promise<Array<{ id: string; requestId: string | undefined; agent: string | undefined; user: string | undefined; amount: number; createdAt: Date; expiresAt: Date }>> {
    const rows = await this.#store.query<{ id: string; request_id: string | null; agent_id: string | null; user_id: string | null; amount: string; created_at: Date | string; expires_at: Date | string }>(
      `SELECT r.id, r.request_id, r.agent_id, r.user_id, i.amount, r.created_at, r.expires_at
         FROM budget_reservation_items i JOIN budget_reservations r ON r.id = i.reservation_id
        WHERE i.budget_id = $1 ORDER BY r.created_at LIMIT $2`, [budgetId, limit],
    );
    return rows.map((r) => ({
      id: r.id, requestId: r.request_id ?? undefined, agent: r.agent_id ?? undefined, user: r.user_id ?? undefined,
      amount: Number(r.amount), createdAt: new Date(r.created_at), expiresAt: new Date(r.expires_at),
    }));
  }
}
