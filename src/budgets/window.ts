/**
 * Budget windows: which period an instant falls in, for `day` and `month` windows that start at
 * local midnight in a configured IANA time zone (so "per day" means the operator's day, DST
 * included), and `total`, which never resets.
 *
 * Pure functions over `Intl.DateTimeFormat`: no dependency, no process time zone.
 *
 * @module
 */
import type { BudgetWindow } from './config.js';
import { setBounded } from '../util/bounded-map.js';

/** One window: its first instant and the instant the next one starts (`undefined`: never). */
export interface WindowSpan {
  start: Date;
  resetsAt: Date | undefined;
}

/** The start of a `total` window: one counter forever. */
export const TOTAL_WINDOW_START = new Date(0);

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

interface LocalTime {
  year: number;
  month: number; // 1-12
  day: number;
  hour: number;
  minute: number;
  second: number;
}

function localTime(at: number, timeZone: string): LocalTime {
  const parts: Record<string, number> = {};
  for (const p of formatter(timeZone).formatToParts(new Date(at))) if (p.type !== 'literal') parts[p.type] = Number(p.value);
  return { year: parts.year!, month: parts.month!, day: parts.day!, hour: parts.hour!, minute: parts.minute!, second: parts.second! };
}

/** The zone's offset from UTC at instant `at`, in milliseconds (local − UTC). */
function offsetAt(at: number, timeZone: string): number {
  const l = localTime(at, timeZone);
  const asUtc = Date.UTC(l.year, l.month - 1, l.day, l.hour, l.minute, l.second);
  return asUtc - Math.floor(at / 1000) * 1000;
}

/**
 * The instant of local midnight starting `year-month-day` in `timeZone` (month and day may
 * overflow: `Date.UTC` normalises them). Two passes settle the offset across a DST change; a
 * midnight that does not exist locally (a DST jump at 00:00) gives the first instant after it
 * (found by bisection when the passes land on the day before: zones west of UTC).
 */
export function zonedMidnight(year: number, month: number, day: number, timeZone: string): Date {
  const wall = Date.UTC(year, month - 1, day);
  const first = wall - offsetAt(wall, timeZone);
  const t = wall - offsetAt(first, timeZone);
  // West of UTC a jump at 00:00 sends the second pass an hour early, to 23:00 the day before
  // (Santiago, Havana): the day then starts at the jump, which lies between the two passes. Without
  // this, day windows do not tile time there (`windowAt` reuses the last one only because they do).
  if (t < first && localDate(t, timeZone) < wall && localDate(first, timeZone) >= wall) return new Date(firstInstantOfDay(t, first, wall, timeZone));
  return new Date(t);
}

/** The local calendar date of instant `at` (ms) in `timeZone`, as the UTC instant of that date's 00:00. */
function localDate(at: number, timeZone: string): number {
  const l = localTime(at, timeZone);
  return Date.UTC(l.year, l.month - 1, l.day);
}

/**
 * The first instant whose local date is `wall`'s, given `before` (a local date before it) and
 * `after` (on it): bisection to the millisecond (a jump lies within the hour between them).
 */
function firstInstantOfDay(before: number, after: number, wall: number, timeZone: string): number {
  let lo = before;
  let hi = after;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (localDate(mid, timeZone) >= wall) hi = mid;
    else lo = mid;
  }
  return hi;
}

/**
 * The last window found per kind and zone: a call falls in it until it resets (issue 16: five
 * `formatToParts` per budget per reservation, ~20 µs of CPU each budget, the largest single
 * Deputy function in the LLM gateway's profile). Exact, not a
 * cache with a staleness bound: windows of one kind and zone tile time, so the one holding `now`
 * is this one exactly when `start <= now < resetsAt`. Keys come from the configuration (a kind
 * and the ledger's zone); cleared past {@link MAX_SPANS} all the same.
 */
const lastSpans = new Map<string, WindowSpan>();
const MAX_SPANS = 64;

/**
 * The window of kind `window` that contains `now`, in `timeZone`.
 *
 * @param timeZone an IANA name (validated by the configuration schema)
 */
export function windowAt(window: BudgetWindow, now: Date, timeZone: string): WindowSpan {
  if (window === 'total') return { start: TOTAL_WINDOW_START, resetsAt: undefined };
  const key = `${window}\0${timeZone}`;
  const t = now.getTime();
  const last = lastSpans.get(key);
  if (last && last.start.getTime() <= t && t < last.resetsAt!.getTime()) return { start: last.start, resetsAt: last.resetsAt };
  const span = zonedWindowAt(window, t, timeZone);
  setBounded(lastSpans, key, span, MAX_SPANS);
  return { start: span.start, resetsAt: span.resetsAt };
}

/** The `day` or `month` window holding instant `at` (ms), computed from the zone's local calendar. */
function zonedWindowAt(window: 'day' | 'month', at: number, timeZone: string): WindowSpan {
  const l = localTime(at, timeZone);
  if (window === 'day') {
    return { start: zonedMidnight(l.year, l.month, l.day, timeZone), resetsAt: zonedMidnight(l.year, l.month, l.day + 1, timeZone) };
  }
  return { start: zonedMidnight(l.year, l.month, 1, timeZone), resetsAt: zonedMidnight(l.year, l.month + 1, 1, timeZone) };
}
