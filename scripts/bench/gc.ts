/**
 * The bench's GC helpers (issue 16, tenth round): naming a `perf_hooks` GC entry, and running a
 * collection on demand in a process started without `--expose-gc`.
 *
 * @module
 */
import { constants, type PerformanceEntry } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * `perf_hooks` GC entry kinds (`NODE_PERFORMANCE_GC_*`) by name. Until the tenth round the bench
 * read 4 as `incremental` and 8 as `weak-callbacks`: 4 is the major GC (the mark-compact's pause),
 * 8 the start of incremental marking, 16 the weak callbacks.
 */
const GC_KINDS: Readonly<Record<number, string>> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak-callbacks',
};

/** A `gc` performance entry's kind: `scavenge`, `mark-compact`, `incremental`, `weak-callbacks` or `other`. */
export function gcKindOf(entry: PerformanceEntry): string {
  const kind = (entry as { detail?: { kind?: number } }).detail?.kind;
  return (kind === undefined ? undefined : GC_KINDS[kind]) ?? 'other';
}

type GcFunction = (options?: { type?: 'major' | 'minor' }) => void;
let exposed: GcFunction | undefined;

/** V8's `gc()`: `--expose-gc` set at run time; only a context created after that sees it. */
function v8Gc(): GcFunction {
  if (!exposed) {
    setFlagsFromString('--expose-gc');
    exposed = runInNewContext('gc') as GcFunction;
  }
  return exposed;
}

/**
 * Runs a full collection of this process's heap, so a timed window opens with an empty young
 * generation: the requests a load generator built just before it (thousands of headers and DPoP
 * proofs, megabytes) are moved to old space here, not by the window's first scavenge, which
 * copied them all inside the window (12.8 and 14.4 ms at c1 on the lead's quiet tail runs: a
 * load-generator pause counted as the server's latency).
 */
export function settleHeap(): void {
  v8Gc()();
}

/** Runs one scavenge now (the heap sampler's survivors profile: young garbage is not counted). */
export function scavengeNow(): void {
  v8Gc()({ type: 'minor' });
}
