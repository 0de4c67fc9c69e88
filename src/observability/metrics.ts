/**
 * Deputy's Prometheus metrics (prom-client), on a registry of their own (never prom-client's
 * global one, so a library that registers there cannot leak into Deputy's scrape).
 *
 * One {@link DeputyMetrics} per process ({@link metrics}): the default process metrics
 * (CPU, memory, event loop lag, GC) describe the process, and Deputy's counters are recorded
 * from deep inside services (the PDP's cache, receipt appends, the enforcement pipeline) that
 * would otherwise all take one more dependency for it.
 *
 * Cardinality is bounded by construction: labels are routes (the router's pattern, never the
 * raw path), protocol error codes, decisions, and ids that only configuration creates
 * (connections, budgets). Never a user, agent, token or client id.
 *
 * @module
 */
import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Pool use of a PostgreSQL store (`pg.Pool` counts); PGlite has no pool. */
export interface PoolStats {
  /** Connections open (idle and in use). */
  total: number;
  /** Connections open and idle. */
  idle: number;
  /** Queries waiting for a connection. */
  waiting: number;
}

/** Anything that reports pool use (src/store/postgres.ts). */
export interface PoolObservable {
  poolStats?(): PoolStats;
}

/** Seconds; from sub-millisecond (cached PDP decisions) to the gateway's upstream timeouts. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const;

/** What the scrape-time gauges read; set by {@link DeputyMetrics}' `observe*` methods. */
interface MetricSources {
  policies?: () => { generation: number; digest: string };
  signingKeyCreatedAt?: () => number;
  pool?: PoolObservable;
}

/** One row of {@link METRIC_TABLE}: a prom-client metric as data, read by {@link defineMetric}. */
interface MetricSpec {
  readonly kind: 'counter' | 'histogram' | 'gauge';
  readonly name: string;
  readonly help: string;
  readonly labels?: readonly string[];
  /** Histograms only (seconds). */
  readonly buckets?: readonly number[];
  /** Across cluster workers (prom-client's AggregatorRegistry); prom-client's default is `sum`. */
  readonly aggregator?: 'max';
  /** Gauges only: sets the gauge at scrape time from what is observed. */
  readonly collect?: (gauge: Gauge, sources: MetricSources) => void;
  /** Registered by `observeStore` only for a store with a pool (PGlite gets no samples rather than misleading zeros). */
  readonly poolOnly?: true;
}

/** `deputy_store_pool_*`: one field of the pool's stats, read at scrape time. */
function poolGauge(field: keyof PoolStats): MetricSpec['collect'] {
  return (gauge, sources) => {
    const stats = sources.pool?.poolStats?.();
    if (stats) gauge.set(stats[field]);
  };
}

/**
 * Every Deputy metric, in exposition order, keyed by its {@link DeputyMetrics} field. Names,
 * help and labels are part of the operator contract (README, docs/production.md;
 * test/unit/metrics-definitions.test.ts holds them to a snapshot).
 */
const METRIC_TABLE = {
  /** Requests by route pattern (`other` for unknown routes), method and status. */
  httpRequests: { kind: 'counter', name: 'deputy_http_requests_total', help: 'HTTP requests by route pattern, method and status', labels: ['route', 'method', 'status'] },
  /** Seconds until the response headers (streamed bodies continue after). */
  httpDuration: {
    kind: 'histogram',
    name: 'deputy_http_request_duration_seconds',
    help: 'HTTP request latency until the response is handed to Node, by route pattern and method',
    labels: ['route', 'method'],
    buckets: LATENCY_BUCKETS,
  },
  /** RFC 8693 exchanges at the grant: `outcome` issued/refused, `error` the OAuth error code (`none` when issued). */
  tokenExchanges: { kind: 'counter', name: 'deputy_token_exchanges_total', help: 'RFC 8693 token exchanges by outcome and OAuth error code', labels: ['outcome', 'error'] },
  /** Grant handler latency (seconds), by outcome. */
  tokenExchangeDuration: {
    kind: 'histogram',
    name: 'deputy_token_exchange_duration_seconds',
    help: 'RFC 8693 token exchange latency (grant handler), by outcome',
    labels: ['outcome'],
    buckets: LATENCY_BUCKETS,
  },
  /** PDP decisions: `decision` permit/deny, `source` evaluation (AuthZEN, gateways) or delegation (token exchange). */
  pdpDecisions: {
    kind: 'counter',
    name: 'deputy_pdp_decisions_total',
    help: 'PDP decisions by decision and source (evaluation: AuthZEN and gateways; delegation: token exchange)',
    labels: ['decision', 'source'],
  },
  /** Cedar calls answered from the decision cache. */
  pdpCacheHits: { kind: 'counter', name: 'deputy_pdp_decision_cache_hits_total', help: 'Cedar calls answered from the decision cache' },
  /** Cedar calls evaluated. */
  pdpCacheMisses: { kind: 'counter', name: 'deputy_pdp_decision_cache_misses_total', help: 'Cedar calls evaluated (decision cache misses, or the cache disabled)' },
  /** The serving policy set's generation; across cluster workers the newest any of them serves (not a sum). */
  pdpPolicyGeneration: {
    kind: 'gauge',
    name: 'deputy_pdp_policy_generation',
    help: 'Generation of the policy set serving (1 at start, +1 per accepted reload)',
    aggregator: 'max',
    collect: (gauge, sources) => {
      const policies = sources.policies?.();
      if (policies !== undefined) gauge.set(policies.generation);
    },
  },
  /** Policy reloads by outcome and trigger. */
  pdpPolicyReloads: {
    kind: 'counter',
    name: 'deputy_pdp_policy_reloads_total',
    help: 'Policy reloads by outcome (applied, unchanged, refused) and trigger (file, signal, admin)',
    labels: ['outcome', 'trigger'],
  },
  /** Always 1, labelled with the serving policy set's digest (16 hex digits): drift across instances shows as several digests. */
  pdpPolicyInfo: {
    kind: 'gauge',
    name: 'deputy_pdp_policy_info',
    help: 'The serving policy set, by digest (first 16 hex digits of its SHA-256); value 1',
    labels: ['digest'],
    collect: (gauge, sources) => {
      const policies = sources.policies?.();
      gauge.reset();
      if (policies !== undefined) gauge.set({ digest: policies.digest.slice(0, 16) }, 1);
    },
  },
  /** Seconds from sending to the upstream's response headers, per connection or MCP server (config-bounded; /mcp: the server name, status `none` — a JSON-RPC answer has no HTTP status of its own) and status class. */
  gatewayUpstreamDuration: {
    kind: 'histogram',
    name: 'deputy_gateway_upstream_duration_seconds',
    help: 'Gateway upstream call latency until response headers, by connection and status class (error: no response)',
    labels: ['connection', 'status'],
    buckets: LATENCY_BUCKETS,
  },
  /** Upstream calls that got no response (refused, reset, timed out), per connection. */
  gatewayUpstreamErrors: {
    kind: 'counter',
    name: 'deputy_gateway_upstream_errors_total',
    help: 'Gateway upstream calls without a response (connection refused or reset, timeout), by connection',
    labels: ['connection'],
  },
  /** Receipt append latency (seconds), by outcome. */
  receiptAppendDuration: {
    kind: 'histogram',
    name: 'deputy_receipt_append_duration_seconds',
    help: 'Signed receipt append latency (hash-chain head lock, sign, insert), by outcome',
    labels: ['outcome'],
    buckets: LATENCY_BUCKETS,
  },
  /** Receipt appends that failed. */
  receiptAppendFailures: { kind: 'counter', name: 'deputy_receipt_append_failures_total', help: 'Receipt appends that failed' },
  /** Requests answered 503 because the store could not answer (src/http/errors.ts `classifyError`). */
  storeUnavailable: { kind: 'counter', name: 'deputy_store_unavailable_total', help: 'Requests answered 503 temporarily_unavailable because the store could not answer' },
  /** RFC 9449 §11.1: proofs presented again (a client bug, or a stolen proof). */
  dpopReplays: { kind: 'counter', name: 'deputy_dpop_replays_total', help: 'DPoP proofs refused because their jti was already spent (RFC 9449 section 11.1)' },
  /** Failed fetches of a remote JWK Set (src/federation/jwks.ts: trusted IdPs, agents' `jwks_uri`): unreachable, timeout, not a JWK Set. */
  federationJwksFetchFailures: { kind: 'counter', name: 'deputy_federation_jwks_fetch_failures_total', help: "Failed fetches of a remote JWK Set (trusted IdPs, agents' jwks_uri)" },
  /** Vault data keys that could not be unwrapped (KEK not loaded here, or a tampered row). */
  vaultUnwrapFailures: {
    kind: 'counter',
    name: 'deputy_vault_unwrap_failures_total',
    help: 'Vault data keys that could not be unwrapped (key-encryption key not loaded, or tampered row)',
  },
  /** Seconds since the active token-signing key was created; across workers the oldest. */
  signingKeyAge: {
    kind: 'gauge',
    name: 'deputy_signing_key_age_seconds',
    help: 'Age of the active token-signing key (seconds since it was created)',
    aggregator: 'max',
    collect: (gauge, sources) => {
      const createdAt = sources.signingKeyCreatedAt?.();
      if (createdAt !== undefined) gauge.set(Math.max(0, Date.now() / 1000 - createdAt));
    },
  },
  /** PostgreSQL pool connections open. */
  storePoolTotal: { kind: 'gauge', name: 'deputy_store_pool_total', help: 'PostgreSQL pool connections open', poolOnly: true, collect: poolGauge('total') },
  /** PostgreSQL pool connections idle. */
  storePoolIdle: { kind: 'gauge', name: 'deputy_store_pool_idle', help: 'PostgreSQL pool connections idle', poolOnly: true, collect: poolGauge('idle') },
  /** Queries waiting for a PostgreSQL pool connection. */
  storePoolWaiting: { kind: 'gauge', name: 'deputy_store_pool_waiting', help: 'Queries waiting for a PostgreSQL pool connection', poolOnly: true, collect: poolGauge('waiting') },
  /** Checkpoints Deputy ran on embedded PGlite (src/store/checkpointer.ts), by bound reached: `wal` (volume) or `time`. */
  storeCheckpoints: { kind: 'counter', name: 'deputy_store_checkpoints_total', help: 'Checkpoints of the embedded PGlite store, by the bound that was reached (wal or time)', labels: ['reason'] },
  /** Main-thread pause of each PGlite checkpoint (seconds): ~1 ms per MB of WAL since the previous one. */
  storeCheckpointDuration: {
    kind: 'histogram',
    name: 'deputy_store_checkpoint_duration_seconds',
    help: 'Pause of each embedded PGlite checkpoint (the process does nothing else meanwhile)',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  },
  /** Budget spend by budget id (config-bounded) and unit (requests, tokens, cost units). */
  budgetSpend: { kind: 'counter', name: 'deputy_budget_spend_total', help: 'Budget spend charged at settlement, by budget and unit', labels: ['budget', 'unit'] },
} as const satisfies Record<string, MetricSpec>;

type LabelsOf<S> = S extends { readonly labels: readonly (infer L extends string)[] } ? L : string;
type MetricOf<S> = S extends { kind: 'counter' } ? Counter<LabelsOf<S>> : S extends { kind: 'histogram' } ? Histogram<LabelsOf<S>> : Gauge<LabelsOf<S>>;

/** Deputy's metrics by {@link DeputyMetrics} field, each typed by its label names. */
export type DeputyMetricFields = { readonly [K in keyof typeof METRIC_TABLE]: MetricOf<(typeof METRIC_TABLE)[K]> };

/** One metric from its row; a `poolOnly` one is left for `observeStore` to register. */
function defineMetric(registry: Registry, spec: MetricSpec, sources: MetricSources): Counter | Histogram | Gauge {
  // Only the keys a row sets: prom-client assigns the config over its defaults, so an
  // `aggregator: undefined` would replace `sum`.
  const config = { name: spec.name, help: spec.help, labelNames: [...(spec.labels ?? [])], registers: spec.poolOnly ? [] : [registry] };
  if (spec.kind === 'counter') return new Counter(config);
  if (spec.kind === 'histogram') return new Histogram({ ...config, buckets: [...(spec.buckets ?? LATENCY_BUCKETS)] });
  const collect = spec.collect;
  const gauge: Gauge = new Gauge({
    ...config,
    ...(spec.aggregator ? { aggregator: spec.aggregator } : {}),
    ...(collect ? { collect: () => collect(gauge, sources) } : {}),
  });
  return gauge;
}

/** Every row of {@link METRIC_TABLE}, defined on `registry` in table order (the exposition's). */
function defineMetrics(registry: Registry, sources: MetricSources): DeputyMetricFields {
  const fields: Record<string, Counter | Histogram | Gauge> = {};
  for (const [field, spec] of Object.entries(METRIC_TABLE) as Array<[string, MetricSpec]>) fields[field] = defineMetric(registry, spec, sources);
  return fields as unknown as DeputyMetricFields;
}

/** Field names of the metrics registered only for a store with a pool. */
const POOL_FIELDS = (Object.entries(METRIC_TABLE) as Array<[keyof DeputyMetricFields, MetricSpec]>).filter(([, spec]) => spec.poolOnly).map(([field]) => field);

/** The fields {@link METRIC_TABLE} defines, merged into the class (assigned in its constructor). */
export interface DeputyMetrics extends DeputyMetricFields {}

/**
 * The metrics, typed by their label names: one field per {@link METRIC_TABLE} row
 * (`metrics.httpRequests`, `metrics.budgetSpend`, ...). Names are part of the operator contract
 * (README, docs/production.md).
 */
export class DeputyMetrics {
  readonly registry = new Registry();
  readonly #sources: MetricSources = {};

  constructor() {
    Object.assign(this, defineMetrics(this.registry, this.#sources));
    // The event-loop delay histogram samples on a timer; prom-client's default (10 ms) wakes an idle
    // server 100 times a second (~1 % of a core here). 100 ms keeps the lag metric and costs a tenth.
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });
  }

  /**
   * The store whose pool the `deputy_store_pool_*` gauges read at scrape time; `undefined` to
   * stop. The gauges are registered only for a store with a pool (PostgreSQL): PGlite gets no
   * samples rather than misleading zeros.
   */
  observeStore(store: PoolObservable | undefined): void {
    this.#sources.pool = store;
    for (const field of POOL_FIELDS) {
      const name = METRIC_TABLE[field].name;
      const registered = this.registry.getSingleMetric(name) !== undefined;
      if (store?.poolStats && !registered) this.registry.registerMetric(this[field]);
      if (!store?.poolStats && registered) this.registry.removeSingleMetric(name);
    }
  }

  /** Where the policy gauges (`deputy_pdp_policy_generation`, `deputy_pdp_policy_info`) read the serving set at scrape time. */
  observePolicies(read: (() => { generation: number; digest: string }) | undefined): void {
    this.#sources.policies = read;
  }

  /** Where `deputy_signing_key_age_seconds` reads the active signing key's creation time (epoch seconds). */
  observeSigningKey(createdAt: (() => number) | undefined): void {
    this.#sources.signingKeyCreatedAt = createdAt;
  }

  /** The Prometheus text exposition (format 0.0.4) and its content type. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** The process's metrics. */
export const metrics = new DeputyMetrics();

/** What a metrics endpoint serves: the exposition text and its content type. */
export type Exposition = () => Promise<{ contentType: string; body: string }>;

/** This process's metrics ({@link metrics}). */
export const processExposition: Exposition = () => metrics.exposition();

/**
 * In a `node:cluster` worker: answers the primary's aggregation requests (prom-client's
 * AggregatorRegistry protocol over the cluster IPC channel) with {@link metrics}' registry.
 */
export function shareWithClusterPrimary(): void {
  new AggregatorRegistry(); // installs the worker's IPC listener (idempotent)
  AggregatorRegistry.setRegistries([metrics.registry]);
}

/**
 * In the `node:cluster` primary: every worker's metrics, summed (gauges as their `aggregator`
 * says). The primary serves nothing else, so this is what its metrics listener exposes.
 */
export function clusterExposition(): Exposition {
  const aggregator = new AggregatorRegistry();
  return async () => ({ contentType: aggregator.contentType, body: await aggregator.clusterMetrics() });
}

/**
 * The budgets' hook: adds `amount` to `deputy_budget_spend_total{budget,unit}`. Called by the
 * ledger once per settled charge (src/budgets/ledger.ts `settle`), whichever gateway charged.
 *
 * @param budget - the budget's id (bounded by configuration and the admin API; never a user or agent id).
 * @param unit - `requests`, `input_tokens`, `output_tokens` or `cost`, as the budget counts.
 * @param amount - what was charged at settlement; zero and negative amounts are ignored.
 */
export function recordBudgetSpend(budget: string, unit: string, amount: number): void {
  if (!(amount > 0) || !Number.isFinite(amount)) return;
  metrics.budgetSpend.inc({ budget, unit }, amount);
}

/** Seconds elapsed since `start` (`process.hrtime.bigint()`). */
export function secondsSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** A status code as its class for labels: `2xx`…`5xx`. */
export function statusClass(status: number): string {
  return `${Math.floor(status / 100)}xx`;
}
