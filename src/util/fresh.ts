/**
 * The staleness bound of a short-lived answer, read on the wall clock and robust to it being
 * stepped back (NTP, an operator, a VM restored from a snapshot).
 *
 * A cache that keeps `until = lookedUpAt + bound` and trusts the answer while `until > now`
 * stretches the answer by the length of any backward step: an hour's step back kept a
 * "not revoked" or "this connection's settings" answer an hour and the bound (issue 16, tenth
 * round red team). Keeping when the look-up began and trusting the answer only while the clock
 * reads within `[lookedUpAt, lookedUpAt + bound)` drops it instead: a look-up too many, never an
 * answer older than the bound.
 *
 * @module
 */

/**
 * Whether an answer whose look-up began at `lookedUpAt` (epoch ms) may be reused at `now` (epoch
 * ms) under the staleness bound `boundMs`: only while `lookedUpAt <= now < lookedUpAt + boundMs`.
 */
export function withinBound(lookedUpAt: number, now: number, boundMs: number): boolean {
  return now >= lookedUpAt && now - lookedUpAt < boundMs;
}
