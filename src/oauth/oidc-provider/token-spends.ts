/**
 * When a `/token` request's single-use values are spent: its DPoP proof `jti` (RFC 9449 §11.1,
 * verified by ./token-dpop.ts) and its client assertion `jti` (RFC 7523 §3, checked during client
 * authentication, ./replay.ts).
 *
 * Both are spent once across every instance, and whatever happens to the request. Why they are
 * not simply spent as soon as they are seen: on PostgreSQL each autocommit insert is a durable
 * commit (one WAL flush) of its own, and the token exchange already writes its token record and
 * receipt in one statement. So for a grant that *folds* them (token exchange), the values are
 * recorded by the grant's issuing statement, which alone decides: a value recorded before — a
 * replay, or the loser of a race between identical requests — makes it write nothing and
 * refuse with that value's own error. They are not looked up first (that read cost every
 * exchange a round trip to refuse the rare replay a little earlier, issue 16 fifth round); a
 * replayed request that a policy refuses is looked up before its `deny` receipt, so it writes
 * none. Every other grant spends them, in one statement, before it runs. And after every request
 * that did not commit them — a refusal anywhere, the grant's included — ./token-dpop.ts spends
 * what is left and answers a replay found there as one, so a value that was used is never
 * accepted again and a replay is refused with the same error wherever the request failed.
 *
 * @module
 */
import type { Queryable } from '../../store/index.js';
import { spendEach, type SingleUse } from '../adapter.js';

const pending = new WeakMap<object, SingleUse[]>();

/** Adds a value the request `ctx` used, to be spent later (in this order: the proof first). */
export function deferSpend(ctx: object, item: SingleUse): void {
  const items = pending.get(ctx);
  if (items) items.push(item);
  else pending.set(ctx, [item]);
}

/** The request's values not spent yet, in the order they were added. */
export function pendingSpends(ctx: object): readonly SingleUse[] {
  return pending.get(ctx) ?? [];
}

/**
 * Spends every pending value now, with `extra` ones, in one statement; returns the first that
 * had been spent already (a replay), or `undefined`. The request has nothing pending afterwards.
 */
export async function spendPending(ctx: object, db: Queryable, extra: readonly SingleUse[] = []): Promise<SingleUse | undefined> {
  const items = [...pendingSpends(ctx), ...extra];
  pending.delete(ctx);
  return spendEach(db, items);
}

/** The grant committed the pending values in its own transaction: nothing is left to spend. */
export function settleSpends(ctx: object): void {
  pending.delete(ctx);
}

/** Requests whose values were all spent before their grant ran ({@link spendBeforeGrant}). */
const spentFirst = new WeakSet<object>();

/**
 * For a grant that does not fold them: spends every pending value (the proof, the client
 * assertion) in one statement before the grant runs, and remembers that it did.
 *
 * @throws the first replayed value's `replayed()` error (`invalid_dpop_proof`, `invalid_client`)
 */
export async function spendBeforeGrant(ctx: object, db: Queryable): Promise<void> {
  const replay = await spendPending(ctx, db);
  if (replay) throw replay.replayed();
  spentFirst.add(ctx);
}

/**
 * Whether the request's values, its DPoP proof included, were spent before its grant ran: an
 * oidc-provider grant's own replay check of that proof (`checkDpopReplay` in `issueTokens`) then
 * has nothing left to record (./replay.ts).
 */
export function spentBeforeGrant(ctx: object): boolean {
  return spentFirst.has(ctx);
}
