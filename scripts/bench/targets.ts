/**
 * Issue 16's table of targets, evaluated from one bench run (issue 16, fourteenth round): until
 * now the lead wrote "figure | target | status" by hand each round. Pure: given the run's ratios
 * (index.ts `ratios()`), the PDP part's report (pdp.ts) and the GET HTTP floor at c8, it returns
 * one row per line of the issue's table with each value measured per store and concurrency, the
 * target, and whether each value meets it.
 *
 * Each row says whether it is a **ratio** (two figures of the same run, robust to the VM's speed;
 * interleaved in slices where both sides are the bench's pairs) or **absolute** (milliseconds or
 * decisions per second: they move with the VM's speed, so read them beside the run's speed factors).
 *
 * @module
 */

/** The PDP part's rows as pdp.ts writes them (only the fields read here). */
export interface PdpRows {
  yardstick: { cedarStatefulIsAuthorizedPerSecond: number };
  rows: Array<{
    scenario: string; decisionCache: boolean; batch?: number; concurrency: number; decisionsPerSecond: number; latencyMs: { p50: number; p99: number };
    /**
     * The point's floor interleaved with it in slices (pdp.ts, issue 16 fourteenth round): the
     * median of the per-slice-pair decisions/s ÷ the floor's rate (per principal for Cedar), with
     * min–max. When present, the PDP ratio rows are this; otherwise the floor measured apart.
     */
    pair?: { floor: string; ratio: { median: number; min: number; max: number } };
    /** Requests of the point that failed (a failed request fails its value: fail closed). */
    errors?: number;
  }>;
}

/** One measured value of a target row: where (store and concurrency), the value, whether it meets the target. */
export interface TargetValue {
  at: string;
  value: number;
  met: boolean;
  /** The slice pairs' min–max, for an interleaved ratio. */
  spread?: [number, number];
  /** Failed requests on either side of the ratio in this point: any fails the value (only successes count in a rate, so a failing yardstick would flatter Deputy). */
  errors?: number;
}

/** One row of the issue's table. */
export interface TargetRow {
  figure: string;
  kind: 'ratio' | 'absolute';
  target: string;
  values: TargetValue[];
  /** `met` (every value), `not met` (none), `partly met`, or `not measured` (no value in this run). */
  status: 'met' | 'not met' | 'partly met' | 'not measured';
}

/** What the evaluation reads. `spreads`: min–max of a ratio's slice pairs and its sides' errors, by the ratio's key. */
export interface TargetInput {
  ratios: Record<string, number>;
  spreads?: Record<string, { min: number; max: number; errors?: number }>;
  pdp?: PdpRows;
  /** The GET HTTP floor's req/s at concurrency 8 (the PDP's cached-path yardstick in the issue). */
  httpFloorC8?: number;
  /** Failed requests of that floor's point: a failing floor would raise the PDP's ratio to it. */
  httpFloorC8Errors?: number;
}

const STORES = ['postgres', 'pglite'] as const;
const round2 = (n: number) => Math.round(n * 100) / 100;

function status(values: TargetValue[]): TargetRow['status'] {
  if (values.length === 0) return 'not measured';
  const met = values.filter((v) => v.met).length;
  return met === values.length ? 'met' : met === 0 ? 'not met' : 'partly met';
}

/**
 * One measured value, judged in one place: a value whose measurement had failed requests (either
 * side of a ratio, the PDP row, the floor it divides by) is **not met** whatever it reads — only
 * successes count in a rate or a percentile, so errors on a yardstick would flatter Deputy and
 * errors on Deputy's side would hide behind its successes' speed — and carries the count.
 */
function measured(at: string, value: number, meets: boolean, errors = 0, spread?: [number, number]): TargetValue {
  return { at, value, met: errors === 0 && meets, ...(spread ? { spread } : {}), ...(errors > 0 ? { errors } : {}) };
}

/** The values of `ratios` under `prefix.<store>.c<n>` (only concurrencies in `only`, when given), each judged by `meets(value, store)`. */
function fromRatios(input: TargetInput, prefix: string, meets: (v: number, store: string) => boolean, only?: number[]): TargetValue[] {
  const values: TargetValue[] = [];
  for (const store of STORES) {
    const keys = Object.keys(input.ratios)
      .filter((k) => k.startsWith(`${prefix}.${store}.c`))
      .map((k) => [k, Number(k.slice(`${prefix}.${store}.c`.length))] as const)
      .filter(([, c]) => Number.isInteger(c) && (!only || only.includes(c)))
      .sort((a, b) => a[1] - b[1]);
    for (const [key, c] of keys) {
      const value = input.ratios[key]!;
      const spread = input.spreads?.[key];
      values.push(measured(`${store} c${c}`, value, meets(value, store), spread?.errors, spread ? [spread.min, spread.max] : undefined));
    }
  }
  return values;
}

function pdpRow(pdp: PdpRows | undefined, scenario: string, cache: boolean, concurrency: number): PdpRows['rows'][number] | undefined {
  return pdp?.rows.find((r) => r.scenario === scenario && r.decisionCache === cache && (r.batch ?? 1) === 1 && r.concurrency === concurrency);
}

/**
 * A PDP row's ratio to its floor: the interleaved pair's median with min–max when the PDP part
 * measured one (the floor in the same point), else the decisions/s ÷ `apart` (a floor measured at
 * another time), judged against `atLeast`.
 */
function pdpRatio(at: string, r: PdpRows['rows'][number], apart: number, atLeast: number, apartErrors = 0): TargetValue {
  if (r.pair) return measured(at, r.pair.ratio.median, r.pair.ratio.median >= atLeast, r.errors ?? 0, [r.pair.ratio.min, r.pair.ratio.max]);
  const value = round2(r.decisionsPerSecond / apart);
  return measured(at, value, value >= atLeast, (r.errors ?? 0) + apartErrors);
}

function row(figure: string, kind: TargetRow['kind'], target: string, values: TargetValue[]): TargetRow {
  return { figure, kind, target, values, status: status(values) };
}

/** Issue 16's targets from one run; see the module documentation. */
export function evaluateTargets(input: TargetInput): TargetRow[] {
  const pdp = input.pdp;
  const oneLink = 'single, one-link subject';
  const cachedC1 = pdpRow(pdp, oneLink, true, 1);
  const cachedC8 = pdpRow(pdp, oneLink, true, 8);
  const cedarPerPrincipal = pdp ? pdp.yardstick.cedarStatefulIsAuthorizedPerSecond / 2 : undefined;
  const uncached = [1, 8].flatMap((c) => {
    const r = pdpRow(pdp, oneLink, false, c);
    if (!r || !cedarPerPrincipal) return [];
    return [pdpRatio(`pglite c${c}`, r, cedarPerPrincipal, 0.5)];
  });
  const cachedVsFloor = cachedC8 && (cachedC8.pair || input.httpFloorC8) ? [pdpRatio('pglite c8', cachedC8, input.httpFloorC8 ?? 0, 0.5, input.httpFloorC8Errors ?? 0)] : [];
  const threeLink = pdpRow(pdp, 'single, three-link subject', false, 1);
  return [
    row('gateway: added p50 over the upstream direct, c1 (ms)', 'absolute', '≤ 1 ms', fromRatios(input, 'gateway_added_p50_ms', (v) => v <= 1, [1])),
    row('gateway: added p99 over the upstream direct, c1 (ms)', 'absolute', '≤ 3 ms', fromRatios(input, 'gateway_added_p99_ms', (v) => v <= 3, [1])),
    row('token exchange ÷ client_credentials, c1 and c8', 'ratio', '≥ 0.8 PostgreSQL, ≥ 0.7 PGlite',
      fromRatios(input, 'exchange_vs_client_credentials', (v, store) => v >= (store === 'postgres' ? 0.8 : 0.7), [1, 8])),
    row("Deputy's client_credentials ÷ bare oidc-provider", 'ratio', '≥ 0.8', fromRatios(input, 'client_credentials_vs_bare_oidc_provider', (v) => v >= 0.8)),
    row('PDP single, one-link, cache on: p99 at c1 (ms)', 'absolute', '< 2 ms', cachedC1 ? [measured('pglite c1', cachedC1.latencyMs.p99, cachedC1.latencyMs.p99 < 2, cachedC1.errors)] : []),
    row('PDP single, one-link, cache on, c8 ÷ GET HTTP floor c8', 'ratio', '≥ 0.5',
      cachedVsFloor),
    row('PDP single, one-link, cache off ÷ (Cedar floor ÷ 2 principals)', 'ratio', '≥ 0.5', uncached),
    row('PDP three-link, cache off, c1 (decisions/s)', 'absolute', '≥ 1,000/s', threeLink ? [measured('pglite c1', threeLink.decisionsPerSecond, threeLink.decisionsPerSecond >= 1000, threeLink.errors)] : []),
    row('receipts on ÷ off, gateway', 'ratio', '≥ 0.9 at every point', fromRatios(input, 'gateway_call_receipts_on_vs_off', (v) => v >= 0.9)),
    row('receipts on ÷ off, exchange', 'ratio', '≥ 0.9 at every point', fromRatios(input, 'token_exchange_receipts_on_vs_off', (v) => v >= 0.9)),
  ];
}

/** The rows as a Markdown table: values as `store cN value` (with the slice pairs' min–max and the sides' errors), unmet values in bold. */
export function targetsMarkdown(rows: readonly TargetRow[]): string {
  const cell = (v: TargetValue) => `${v.at} ${v.met ? v.value : `**${v.value}**`}${v.spread ? ` (${v.spread[0]}–${v.spread[1]})` : ''}${v.errors ? ` ${v.errors} errors` : ''}`;
  return [
    '| figure (issue 16) | kind | this run (unmet in bold; slice pairs min–max) | target | status |',
    '| --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.figure} | ${r.kind === 'ratio' ? 'ratio (robust to the VM)' : 'absolute (moves with the VM)'} | ${r.values.map(cell).join(', ') || '—'} | ${r.target} | ${r.status} |`),
  ].join('\n');
}
