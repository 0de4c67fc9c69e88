/**
 * When a `/token` request's single-use values are spent: its DPoP proof `jti` (RFC 9449 §11.1,
 * verified by ./token-dpop.ts) and its client assertion `jti` (RFC 7523 §3, checked during client
 * authentication, ./replay.ts).
 *
 * Both are spent once across every instance, and whatever happens to the request. Why they are
 * not simply spent as soon as they are seen: on PostgreSQL each autocommit insert is a durable
 * commit (one WAL flush) of its own, and the token exchange already writes its token record and
 * receipt in one transaction. So for a grant that *folds* them (token exchange), the values are
 * only looked up when seen (one read; a known replay is refused before any work, policy
 * included) and recorded inside the grant's transaction, which alone decides a race (exactly one
 * of two identical requests commits). Every other grant spends them, in one statement, before it
 * runs. And after every request that did not commit them — a refusal anywhere, the grant's
 * included — ./token-dpop.ts spends what is left, so a value that was used is never accepted
 * again.
 *
 * @module
 */
import type { Queryable } from '../../store/index.js';
import { findRecorded, onceKeyId, spendEach, type SingleUse } from '../adapter.js';

interface Pending {
  items: SingleUse[];
  /** Whether the items were looked up since the last was added. */
  checked: boolean;
}

const pending = new WeakMap<object, Pending>();

/** Adds a value the request `ctx` used, to be spent later (in this order: the proof first). */
export function deferSpend(ctx: object, item: SingleUse): void {
  const p = pending.get(ctx);
  if (p) {
    p.items.push(item);
    p.checked = false;
  } else pending.set(ctx, { items: [item], checked: false });
}

/** The request's values not spent yet, in the order they were added. */
export function pendingSpends(ctx: object): readonly SingleUse[] {
  return pending.get(ctx)?.items ?? [];
}

/**
 * Refuses a known replay without writing: the first pending value found recorded already throws
 * its `replayed()` error. One read for all pending values; nothing when they were just checked.
 */
export async function refuseSpent(ctx: object, db: Queryable): Promise<void> {
  const p = pending.get(ctx);
  if (!p || p.checked || p.items.length === 0) return;
  const recorded = await findRecorded(db, p.items.map((i) => i.once));
  p.checked = true;
  const replay = p.items.find((i) => recorded.has(onceKeyId(i.once.namespace, i.once.key)));
  if (replay) throw replay.replayed();
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
