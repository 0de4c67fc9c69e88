/**
 * The budget part of the store contract (./contract.ts): reserve-then-settle holds on every
 * store, and on PostgreSQL across two instances (two pools over one database). DESIGN invariant:
 * no budget is ever exceeded, under any concurrency, on any store.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BudgetExceeded, BudgetLedger, BudgetStore, NO_BUDGET_TTL_MS, type Amounts, type BudgetDefinition, type BudgetScope, type Reservation } from '../../src/budgets/index.js';
import type { Store } from '../../src/store/index.js';

/** A movable clock: windows and expiry without waiting. */
function clock(start = new Date('2026-03-10T12:00:00Z')) {
  let t = start.getTime();
  return { now: () => new Date(t), advance: (ms: number) => (t += ms) };
}

function ledger(store: Store, now: () => Date, timeZone = 'UTC'): BudgetLedger {
  return new BudgetLedger({ store, timeZone, reservationSeconds: 60, currency: 'USD', now });
}

/** A fresh agent id per test: budgets select on it, so tests never see each other's budgets. */
function scope(overrides: Partial<BudgetScope> = {}): BudgetScope {
  return { agents: [`agent-${randomUUID().slice(0, 8)}`], user: 'alice', connection: 'openai', ...overrides };
}

async function define(store: Store, def: Omit<BudgetDefinition, 'id'> & { id?: string }): Promise<string> {
  const id = def.id ?? `b-${randomUUID().slice(0, 12)}`;
  await new BudgetStore(store).create({ ...def, id });
  return id;
}

async function counters(store: Store, l: BudgetLedger, id: string) {
  const b = await new BudgetStore(store).get(id);
  return l.usage(b!);
}

/**
 * `store` whose next statement or transaction, once `armed`, does its work and then fails as a
 * connection lost before the answer arrived (the write may be committed; the caller cannot know).
 * Its own object: the no-budget memo is per store object, shared by the ledger and BudgetStore over it.
 */
function droppingAfterWrite(store: Store) {
  const state = { armed: false, store: undefined as unknown as Store };
  const lost = async <T>(work: Promise<T>): Promise<T> => {
    const result = await work;
    if (!state.armed) return result;
    state.armed = false;
    throw new Error('Connection terminated unexpectedly');
  };
  state.store = {
    kind: store.kind,
    query: (sql, params, options) => lost(store.query(sql, params, options)),
    transaction: (fn) => lost(store.transaction(fn)),
    ping: () => store.ping(),
    close: () => store.close(),
  } as Store;
  return state;
}

export function budgetContract(one: () => Store, two: () => Store, concurrent: boolean): void {
  describe('budgets: reserve, then settle', () => {
    it('reserves on every applicable budget or on none', async () => {
      const c = clock();
      const s = scope();
      const requests = await define(one(), { agent: s.agents[0], unit: 'requests', window: 'day', limit: 5 });
      const tokens = await define(one(), { agent: s.agents[0], user: 'alice', unit: 'output_tokens', window: 'month', limit: 100 });
      const other = await define(one(), { agent: s.agents[0], user: 'bob', unit: 'requests', window: 'day', limit: 0 });
      const l = ledger(one(), c.now);
      const r = await l.reserve(s, { requests: 1, output_tokens: 60 });
      expect(r.items.map((i) => i.budgetId).sort()).toEqual([requests, tokens].sort());
      // The second call would take the token budget over: nothing is held on the request budget either.
      const refused = await l.reserve(s, { requests: 1, output_tokens: 60 }).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(BudgetExceeded);
      expect((refused as BudgetExceeded).refusal).toMatchObject({ budgetId: tokens, unit: 'output_tokens', limit: 100, spent: 0, reserved: 60, requested: 60 });
      expect(await counters(one(), l, requests)).toMatchObject({ spent: 0, reserved: 1 });
      expect(await counters(two(), ledger(two(), c.now), other)).toMatchObject({ spent: 0, reserved: 0 });
    });

    it('`ready` (the gateway\'s DPoP proof, still verifying): nothing is held before it resolves; one that rejects holds nothing and refuses with its error, even on a spent budget', async () => {
      const c = clock();
      const s = scope();
      const id = await define(one(), { agent: s.agents[0], unit: 'requests', window: 'day', limit: 1 });
      const l = ledger(one(), c.now);
      const forged = Promise.reject(new Error('DPoP proof signature is invalid'));
      forged.catch(() => {});
      await expect(l.reserve(s, { requests: 1 }, { ready: forged })).rejects.toThrow('DPoP proof signature is invalid');
      expect(await counters(one(), l, id)).toMatchObject({ spent: 0, reserved: 0 });
      let verify!: () => void;
      const verifying = new Promise<void>((resolve) => (verify = resolve));
      const held = l.reserve(s, { requests: 1 }, { ready: verifying });
      await new Promise((r) => setImmediate(r));
      expect(await counters(one(), l, id)).toMatchObject({ reserved: 0 });
      verify();
      expect((await held).items.map((i) => i.budgetId)).toEqual([id]);
      // The budget is full: a proof that did not verify still gets its own error, not 402.
      await expect(l.reserve(s, { requests: 1 }, { ready: forged })).rejects.toThrow('DPoP proof signature is invalid');
      // No budget applies: nothing to hold, nothing to wait for.
      expect((await l.reserve(scope(), { requests: 1 }, { ready: forged })).items).toEqual([]);
    });

    it('a budget changed or deleted while the proof verifies (after the applicable budgets were read): the hold uses the budget as committed when it is taken — a lowered limit refuses, a new unit or window is the one counted, a deleted budget holds nothing and fails nothing', async () => {
      const c = clock();
      const budgets = new BudgetStore(one());
      /** A `ready` that runs `change` (committed) when the ledger waits for it: after its read of the applicable budgets, before its hold. */
      const changing = (change: () => Promise<unknown>) => ({ then: (ok: () => void, fail: (e: unknown) => void) => void change().then(() => ok(), fail) }) as unknown as Promise<void>;
      const s = scope();
      const id = await define(one(), { agent: s.agents[0], unit: 'requests', window: 'day', limit: 5 });
      const l = ledger(one(), c.now);
      const lowered = await l.reserve(s, { requests: 1 }, { ready: changing(() => budgets.update(id, { limit: 0 })) }).catch((e: unknown) => e);
      expect(lowered).toBeInstanceOf(BudgetExceeded);
      expect((lowered as BudgetExceeded).refusal).toMatchObject({ budgetId: id, limit: 0 });
      expect(await counters(one(), l, id)).toMatchObject({ spent: 0, reserved: 0 });
      // A new unit: the call is held in that unit (not as a request on the dropped counters).
      await budgets.update(id, { limit: 100 });
      const reunited = await l.reserve(s, { requests: 1, output_tokens: 7 }, { ready: changing(() => budgets.update(id, { unit: 'output_tokens' })) });
      expect(reunited.items).toEqual([expect.objectContaining({ budgetId: id, unit: 'output_tokens', amount: 7, limit: 100 })]);
      expect(await counters(one(), l, id)).toMatchObject({ reserved: 7 });
      await l.release(reunited);
      // Deleted: nothing is held, and the call is not failed by its vanished counter.
      const gone = await l.reserve(s, { requests: 1 }, { ready: changing(() => budgets.delete(id)) });
      expect(gone.items).toEqual([]);
      // A selector narrowed away from the call: the budget no longer applies.
      const t = scope();
      const narrowed = await define(one(), { agent: t.agents[0], unit: 'requests', window: 'day', limit: 5 });
      const away = await l.reserve(t, { requests: 1 }, { ready: changing(() => budgets.update(narrowed, { user: 'bob' })) });
      expect(away.items).toEqual([]);
      expect(await counters(one(), l, narrowed)).toMatchObject({ reserved: 0 });
      // Through the other instance (on PostgreSQL: nothing tells this one): the limit and the
      // budget's existence as committed when the counter is locked.
      const elsewhere = new BudgetStore(two());
      const u = scope();
      const far = await define(two(), { agent: u.agents[0], unit: 'requests', window: 'day', limit: 5 });
      const farLowered = await l.reserve(u, { requests: 1 }, { ready: changing(() => elsewhere.update(far, { limit: 0 })) }).catch((e: unknown) => e);
      expect((farLowered as BudgetExceeded).refusal).toMatchObject({ budgetId: far, limit: 0 });
      expect((await l.reserve(u, { requests: 1 }, { ready: changing(() => elsewhere.delete(far)) })).items).toEqual([]);
      // A new unit, or selectors that no longer match, through the other instance: as through this one.
      const v = scope();
      const farUnit = await define(two(), { agent: v.agents[0], unit: 'requests', window: 'day', limit: 100 });
      const farReunited = await l.reserve(v, { requests: 1, output_tokens: 7 }, { ready: changing(() => elsewhere.update(farUnit, { unit: 'output_tokens' })) });
      expect(farReunited.items).toEqual([expect.objectContaining({ budgetId: farUnit, unit: 'output_tokens', amount: 7 })]);
      await l.release(farReunited);
      // The same change within the budget's last millisecond (JavaScript's Date keeps no more): the
      // committed content, not the change time, tells it apart.
      const w = scope();
      const sameInstant = await define(two(), { agent: w.agents[0], unit: 'requests', window: 'day', limit: 100 });
      const unitInPlace = () =>
        two().query(`UPDATE budgets SET unit = 'output_tokens', updated_at = date_trunc('milliseconds', updated_at) WHERE id = $1`, [sameInstant]);
      await two().query(`UPDATE budgets SET updated_at = date_trunc('milliseconds', updated_at) WHERE id = $1`, [sameInstant]);
      const unnoticed = await l.reserve(w, { requests: 1, output_tokens: 7 }, { ready: changing(unitInPlace) });
      expect(unnoticed.items).toEqual([expect.objectContaining({ budgetId: sameInstant, unit: 'output_tokens', amount: 7 })]);
      await l.release(unnoticed);
      const farAway = await l.reserve(v, { output_tokens: 7 }, { ready: changing(() => elsewhere.update(farUnit, { user: 'bob' })) });
      expect(farAway.items).toEqual([]);
      expect(await counters(two(), ledger(two(), c.now), farUnit)).toMatchObject({ reserved: 0 });
    });

    it('settles the actual use and releases the rest; use beyond the reservation is charged only as far as the limit allows; only once', async () => {
      const c = clock();
      const s = scope();
      const id = await define(one(), { agent: s.agents[0], unit: 'output_tokens', window: 'total', limit: 100 });
      const l = ledger(one(), c.now);
      const r = await l.reserve(s, { output_tokens: 50 });
      expect(await counters(one(), l, id)).toMatchObject({ spent: 0, reserved: 50 });
      expect(await ledger(two(), c.now).settle(r, { output_tokens: 20 })).toEqual([{ budgetId: id, unit: 'output_tokens', charged: 20, uncharged: 0 }]);
      expect(await counters(one(), l, id)).toMatchObject({ spent: 20, reserved: 0 });
      expect(await l.settle(r, { output_tokens: 20 })).toEqual([]);
      const failed = await l.reserve(s, { output_tokens: 50 });
      await l.release(failed);
      expect(await counters(one(), l, id)).toMatchObject({ spent: 20, reserved: 0 });
      const over = await l.reserve(s, { output_tokens: 30 });
      expect(await l.settle(over, { output_tokens: 45 })).toEqual([{ budgetId: id, unit: 'output_tokens', charged: 45, uncharged: 0 }]);
      const held = await l.reserve(s, { output_tokens: 30 });
      const other = await l.reserve(s, { output_tokens: 2 });
      // 65 spent, 30 + 2 held: the first may overrun by what is left beside the other (3), no more.
      expect(await l.settle(held, { output_tokens: 100 })).toEqual([{ budgetId: id, unit: 'output_tokens', charged: 33, uncharged: 67 }]);
      expect(await counters(one(), l, id)).toMatchObject({ spent: 98, reserved: 2 });
      await l.settle(other, { output_tokens: 2 });
      expect(await counters(one(), l, id)).toMatchObject({ spent: 100, reserved: 0 });
    });

    it('holds what is left when at least the minimum is (a capped stream), and refuses below it', async () => {
      const c = clock();
      const s = scope();
      const id = await define(one(), { agent: s.agents[0], unit: 'output_tokens', window: 'total', limit: 100 });
      const l = ledger(one(), c.now);
      await l.settle(await l.reserve(s, { output_tokens: 80 }), { output_tokens: 80 });
      const r = await l.reserve(s, { output_tokens: 50, requests: 1 }, { minimum: { output_tokens: 1 } });
      expect(r.held).toEqual({ output_tokens: 20, requests: 1 });
      await expect(ledger(two(), c.now).reserve(s, { output_tokens: 50 }, { minimum: { output_tokens: 1 } })).rejects.toBeInstanceOf(BudgetExceeded);
      await expect(l.reserve({ ...s, model: 'm' }, { output_tokens: 1 }, { unmeasured: () => new Error('unmeasured') })).rejects.toBeInstanceOf(BudgetExceeded);
      const priced = scope();
      await define(one(), { agent: priced.agents[0], unit: 'cost', window: 'total', limit: 100 });
      await expect(l.reserve(priced, { output_tokens: 1 }, { unmeasured: (b) => new Error(`no ${b.unit}`) })).rejects.toThrow('no cost');
      await l.settle(r, { output_tokens: 20 });
      expect(await counters(one(), l, id)).toMatchObject({ spent: 100, reserved: 0 });
    });

    it('refuses with 402, the budget, its spend and Retry-After until the window resets; a new window starts from zero', async () => {
      const c = clock(new Date('2026-03-10T22:30:00Z'));
      const s = scope();
      const id = await define(one(), { agent: s.agents[0], unit: 'cost', window: 'day', limit: 1000 });
      const l = ledger(one(), c.now, 'Europe/Paris');
      await l.settle(await l.reserve(s, { cost: 900 }), { cost: 900 });
      const err = (await l.reserve(s, { cost: 200 }).catch((e: unknown) => e)) as BudgetExceeded;
      expect(err).toBeInstanceOf(BudgetExceeded);
      expect(err.status).toBe(402);
      // 23:30 in Paris (UTC+1 in March): the day resets at 23:00Z, half an hour later.
      expect(err.members).toMatchObject({ budget: id, unit: 'cost', limit: 1000, spent: 900, reserved: 0, requested: 200, resets_at: '2026-03-10T23:00:00.000Z', currency: 'USD' });
      expect(err.headers['Retry-After']).toBe('1800');
      c.advance(30 * 60_000);
      const next = await l.reserve(s, { cost: 200 });
      expect(next.items[0]!.windowStart.toISOString()).toBe('2026-03-10T23:00:00.000Z');
      expect(await counters(one(), l, id)).toMatchObject({ spent: 0, reserved: 200 });
    });

    it('releases reservations abandoned past their expiry (a crashed instance), and a late settle charges only what fits', async () => {
      const c = clock();
      const s = scope();
      const id = await define(one(), { agent: s.agents[0], unit: 'requests', window: 'total', limit: 1 });
      const l = ledger(one(), c.now);
      const abandoned = await l.reserve(s, { requests: 1 });
      await expect(l.reserve(s, { requests: 1 })).rejects.toBeInstanceOf(BudgetExceeded);
      c.advance(61_000);
      // The refusal path sweeps expired holds before it is final.
      const fresh = await ledger(two(), c.now).reserve(s, { requests: 1 });
      expect(await l.settle(abandoned, { requests: 1 })).toEqual([{ budgetId: id, unit: 'requests', charged: 0, uncharged: 1 }]);
      await l.settle(fresh, { requests: 1 });
      expect(await counters(one(), l, id)).toMatchObject({ spent: 1, reserved: 0 });
    });

    it('a call no budget applies to is remembered for the bound; a budget created or changed through this instance applies at once, through another within the bound', async () => {
      const c = clock();
      const s = scope();
      const l = ledger(one(), c.now);
      // `unbudgeted` (the PEPs' synchronous skip) says "free" exactly where `reserve` would hold nothing from memory.
      expect(l.unbudgeted(s)).toBe(false); // never looked up: not known
      expect((await l.reserve(s, { requests: 1 })).items).toEqual([]);
      expect(l.unbudgeted(s)).toBe(true);
      // Through this instance: the next call is held at once.
      const id = await define(one(), { agent: s.agents[0], unit: 'requests', window: 'total', limit: 1 });
      expect(l.unbudgeted(s)).toBe(false);
      expect((await l.reserve(s, { requests: 1 })).items.map((i) => i.budgetId)).toEqual([id]);
      expect(l.unbudgeted(s)).toBe(false);
      await expect(l.reserve(s, { requests: 1 })).rejects.toBeInstanceOf(BudgetExceeded);
      // A change that widens a budget to a scope remembered as free applies at once too.
      const widened = scope();
      expect((await l.reserve(widened, { requests: 1 })).items).toEqual([]);
      await new BudgetStore(one()).update(id, { agent: widened.agents[0] });
      expect(l.unbudgeted(widened)).toBe(false);
      await expect(l.reserve(widened, { requests: 1 })).rejects.toBeInstanceOf(BudgetExceeded); // its one request is held above
      if (one() === two()) return; // one instance (PGlite): there is no other
      // Through another instance: remembered until the bound, applied from then on.
      const free = scope();
      expect((await l.reserve(free, { requests: 1 })).items).toEqual([]);
      const elsewhere = await define(two(), { agent: free.agents[0], unit: 'requests', window: 'total', limit: 5 });
      c.advance(NO_BUDGET_TTL_MS - 1);
      expect(l.unbudgeted(free)).toBe(true);
      expect((await l.reserve(free, { requests: 1 })).items).toEqual([]);
      c.advance(1);
      expect(l.unbudgeted(free)).toBe(false);
      expect((await l.reserve(free, { requests: 1 })).items.map((i) => i.budgetId)).toEqual([elsewhere]);
    });

    it('a connection lost as a budget is created or changed (after the write, before its outcome is known) still forgets "no budget applies": the budget may have been committed', async () => {
      const c = clock();
      const s = scope();
      const dropping = droppingAfterWrite(one());
      const l = ledger(dropping.store, c.now);
      expect((await l.reserve(s, { requests: 1 })).items).toEqual([]);
      expect(l.unbudgeted(s)).toBe(true);
      dropping.armed = true;
      const created = `b-${randomUUID().slice(0, 12)}`;
      await expect(new BudgetStore(dropping.store).create({ id: created, agent: s.agents[0], unit: 'requests', window: 'total', limit: 1 })).rejects.toThrow(/Connection terminated/);
      expect(l.unbudgeted(s)).toBe(false);
      expect((await l.reserve(s, { requests: 1 })).items.map((i) => i.budgetId)).toEqual([created]);
      // update: a budget on another agent moved onto this scope's, the COMMIT's answer lost.
      const t = scope();
      const moved = await define(one(), { agent: `agent-${randomUUID().slice(0, 8)}`, unit: 'requests', window: 'total', limit: 1 });
      expect((await l.reserve(t, { requests: 1 })).items).toEqual([]);
      expect(l.unbudgeted(t)).toBe(true);
      dropping.armed = true;
      await expect(new BudgetStore(dropping.store).update(moved, { agent: t.agents[0] })).rejects.toThrow(/Connection terminated/);
      expect(l.unbudgeted(t)).toBe(false);
      expect((await l.reserve(t, { requests: 1 })).items.map((i) => i.budgetId)).toEqual([moved]);
    });

    it('a wall clock stepped back (NTP, an operator) does not stretch "no budget applies" past the bound', async () => {
      const c = clock();
      const s = scope();
      const l = ledger(one(), c.now);
      expect((await l.reserve(s, { requests: 1 })).items).toEqual([]);
      expect(l.unbudgeted(s)).toBe(true);
      // Another instance creates a budget (on PGlite there is none: the clock alone is the attack).
      const id = one() === two() ? undefined : await define(two(), { agent: s.agents[0], unit: 'requests', window: 'total', limit: 1 });
      c.advance(-60 * 60_000); // an hour back: the remembered answer's end is now an hour and 2 s away
      c.advance(NO_BUDGET_TTL_MS);
      expect(l.unbudgeted(s)).toBe(false);
      if (id) expect((await l.reserve(s, { requests: 1 })).items.map((i) => i.budgetId)).toEqual([id]);
    });

    it('a budget on an agent covers what it delegates; a model budget applies to that model only', async () => {
      const c = clock();
      const parent = `agent-${randomUUID().slice(0, 8)}`;
      const id = await define(one(), { agent: parent, unit: 'requests', window: 'total', limit: 1 });
      const model = await define(one(), { agent: parent, model: 'gpt-x', unit: 'requests', window: 'total', limit: 5 });
      const l = ledger(one(), c.now);
      const r = await l.reserve({ agents: [parent, 'sub-agent'], user: 'alice', connection: 'gw', model: 'gpt-y' }, { requests: 1 });
      expect(r.items.map((i) => i.budgetId)).toEqual([id]);
      await expect(l.reserve({ agents: ['sub-agent', parent], user: 'bob', connection: 'x' }, { requests: 1 })).rejects.toBeInstanceOf(BudgetExceeded);
      expect(await counters(one(), l, model)).toMatchObject({ reserved: 0 });
    });

    it('50 concurrent calls against a budget admitting 10: 10 admitted, spend never over the limit' + (concurrent ? ' (two instances)' : ''), async () => {
      const c = clock();
      const s = scope();
      const requests = await define(one(), { agent: s.agents[0], unit: 'requests', window: 'day', limit: 10 });
      const cost = await define(one(), { agent: s.agents[0], unit: 'cost', window: 'day', limit: 1_000 });
      const ledgers = [ledger(one(), c.now), ledger(two(), c.now)];
      const call = async (n: number): Promise<boolean> => {
        const l = ledgers[n % 2]!;
        let r: Reservation;
        try {
          r = await l.reserve(s, { requests: 1, cost: 100 });
        } catch (err) {
          if (err instanceof BudgetExceeded) return false;
          throw err;
        }
        const used: Amounts = n % 5 === 0 ? {} : { requests: 1, cost: 100 };
        if (n % 5 === 0) await l.release(r);
        else await l.settle(r, used);
        return true;
      };
      const admitted = (await Promise.all(Array.from({ length: 50 }, (_, n) => call(n)))).filter(Boolean).length;
      const spent = await counters(one(), ledgers[0]!, requests);
      const money = await counters(one(), ledgers[0]!, cost);
      expect(spent.reserved).toBe(0);
      expect(spent.spent).toBeLessThanOrEqual(10);
      expect(money.spent).toBeLessThanOrEqual(1_000);
      expect(admitted).toBeGreaterThanOrEqual(10);
      expect(admitted).toBeLessThanOrEqual(20); // released calls (n % 5 == 0) free their place
    });

    it('property: whatever calls reserve, use (even beyond their reservation), settle, release or abandon, spend never exceeds any limit', async () => {
      const op = fc.record({
        amount: fc.integer({ min: 1, max: 60 }),
        minimum: fc.option(fc.integer({ min: 1, max: 60 }), { nil: undefined }),
        end: fc.constantFrom('settle', 'release', 'abandon'),
        used: fc.integer({ min: 0, max: 120 }),
        instance: fc.constantFrom(0, 1),
      });
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), fc.integer({ min: 0, max: 150 }), async (ops, limit) => {
          const c = clock();
          const s = scope();
          const id = await define(one(), { agent: s.agents[0], unit: 'output_tokens', window: 'total', limit });
          const ledgers = [ledger(one(), c.now), ledger(two(), c.now)];
          await Promise.all(ops.map(async (o) => {
            const l = ledgers[o.instance]!;
            const r = await l.reserve(s, { output_tokens: o.amount }, o.minimum === undefined ? {} : { minimum: { output_tokens: o.minimum } }).catch((err: unknown) => {
              if (err instanceof BudgetExceeded) return undefined;
              throw err;
            });
            if (!r) return;
            if (o.end === 'settle') await l.settle(r, { output_tokens: o.used });
            else if (o.end === 'release') await l.release(r);
          }));
          c.advance(61_000);
          await ledgers[0]!.releaseExpired();
          const u = await counters(one(), ledgers[0]!, id);
          expect(u.reserved).toBe(0);
          expect(u.spent).toBeLessThanOrEqual(limit);
        }),
        { numRuns: 15 },
      );
    });

    it('exactly the limit is admitted when every call settles in full', async () => {
      const c = clock();
      const s = scope();
      const id = await define(one(), { agent: s.agents[0], unit: 'input_tokens', window: 'total', limit: 1_000 });
      const ledgers = [ledger(one(), c.now), ledger(two(), c.now)];
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, n) =>
          ledgers[n % 2]!.reserve(s, { input_tokens: 100 }).then(
            async (r) => (await ledgers[(n + 1) % 2]!.settle(r, { input_tokens: 100 }), true),
            (err: unknown) => {
              if (err instanceof BudgetExceeded) return false;
              throw err;
            },
          ),
        ),
      );
      expect(results.filter(Boolean)).toHaveLength(10);
      expect(await counters(one(), ledgers[0]!, id)).toMatchObject({ spent: 1_000, reserved: 0 });
    });
  });
}
