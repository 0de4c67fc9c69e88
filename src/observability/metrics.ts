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
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** The metrics, typed by their label names. Names are part of the operator contract (README, docs/production.md). */
export class DeputyMetrics {
  readonly registry = new Registry();

  /** Requests by route pattern (`other` for unknown routes), method and status. */
  readonly httpRequests = new Counter({
    name: 'deputy_http_requests_total',
    help: 'HTTP requests by route pattern, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  });

  /** Seconds until the response headers (streamed bodies continue after). */
  readonly httpDuration = new Histogram({
    name: 'deputy_http_request_duration_seconds',
    help: 'HTTP request latency until the response is handed to Node, by route pattern and method',
    labelNames: ['route', 'method'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  /** RFC 8693 exchanges at the grant: `outcome` issued/refused, `error` the OAuth error code (`none` when issued). */
  readonly tokenExchanges = new Counter({
    name: 'deputy_token_exchanges_total',
    help: 'RFC 8693 token exchanges by outcome and OAuth error code',
    labelNames: ['outcome', 'error'] as const,
    registers: [this.registry],
  });

  readonly tokenExchangeDuration = new Histogram({
    name: 'deputy_token_exchange_duration_seconds',
    help: 'RFC 8693 token exchange latency (grant handler), by outcome',
    labelNames: ['outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  /** PDP decisions: `decision` permit/deny, `source` evaluation (AuthZEN, gateways) or delegation (token exchange). */
  readonly pdpDecisions = new Counter({
    name: 'deputy_pdp_decisions_total',
    help: 'PDP decisions by decision and source (evaluation: AuthZEN and gateways; delegation: token exchange)',
    labelNames: ['decision', 'source'] as const,
    registers: [this.registry],
  });

  readonly pdpCacheHits = new Counter({
    name: 'deputy_pdp_decision_cache_hits_total',
    help: 'Cedar calls answered from the decision cache',
    registers: [this.registry],
  });

  readonly pdpCacheMisses = new Counter({
    name: 'deputy_pdp_decision_cache_misses_total',
    help: 'Cedar calls evaluated (decision cache misses, or the cache disabled)',
    registers: [this.registry],
  });

  #policyGeneration: (() => number) | undefined;
  readonly pdpPolicyGeneration = new Gauge({
    name: 'deputy_pdp_policy_generation',
    help: 'Generation of the policy set serving (1 at start, +1 per accepted reload)',
    registers: [this.registry],
    // Across cluster workers: the newest generation any of them serves (not a sum).
    aggregator: 'max',
    collect: () => {
      const generation = this.#policyGeneration?.();
      if (generation !== undefined) this.pdpPolicyGeneration.set(generation);
    },
  });

  readonly pdpPolicyReloads = new Counter({
    name: 'deputy_pdp_policy_reloads_total',
    help: 'Policy reloads by outcome (applied, unchanged, refused) and trigger (file, signal, admin)',
    labelNames: ['outcome', 'trigger'] as const,
    registers: [this.registry],
  });

  #policyDigest: (() => string) | undefined;
  /** Always 1, labelled with the serving policy set's digest (16 hex digits): drift across instances shows as several digests. */
  readonly pdpPolicyInfo: Gauge<'digest'> = new Gauge({
    name: 'deputy_pdp_policy_info',
    help: 'The serving policy set, by digest (first 16 hex digits of its SHA-256); value 1',
    labelNames: ['digest'] as const,
    registers: [this.registry],
    collect: () => {
      const digest = this.#policyDigest?.();
      this.pdpPolicyInfo.reset();
      if (digest !== undefined) this.pdpPolicyInfo.set({ digest: digest.slice(0, 16) }, 1);
    },
  });

  /** Seconds from sending to the upstream's response headers, per connection or MCP server (config-bounded; /mcp: the server name, status `none` — a JSON-RPC answer has no HTTP status of its own) and status class. */
  readonly gatewayUpstreamDuration = new Histogram({
    name: 'deputy_gateway_upstream_duration_seconds',
    help: 'Gateway upstream call latency until response headers, by connection and status class (error: no response)',
    labelNames: ['connection', 'status'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  /** Upstream calls that got no response (refused, reset, timed out), per connection. */
  readonly gatewayUpstreamErrors = new Counter({
    name: 'deputy_gateway_upstream_errors_total',
    help: 'Gateway upstream calls without a response (connection refused or reset, timeout), by connection',
    labelNames: ['connection'] as const,
    registers: [this.registry],
  });

  readonly receiptAppendDuration = new Histogram({
    name: 'deputy_receipt_append_duration_seconds',
    help: 'Signed receipt append latency (hash-chain head lock, sign, insert), by outcome',
    labelNames: ['outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly receiptAppendFailures = new Counter({
    name: 'deputy_receipt_append_failures_total',
    help: 'Receipt appends that failed',
    registers: [this.registry],
  });

  /** Requests answered 503 because the store could not answer (src/http/errors.ts `classifyError`). */
  readonly storeUnavailable = new Counter({
    name: 'deputy_store_unavailable_total',
    help: 'Requests answered 503 temporarily_unavailable because the store could not answer',
    registers: [this.registry],
  });

  /** RFC 9449 §11.1: proofs presented again (a client bug, or a stolen proof). */
  readonly dpopReplays = new Counter({
    name: 'deputy_dpop_replays_total',
    help: 'DPoP proofs refused because their jti was already spent (RFC 9449 section 11.1)',
    registers: [this.registry],
  });

  /** Failed fetches of a remote JWK Set (src/federation/jwks.ts: trusted IdPs, agents' `jwks_uri`): unreachable, timeout, not a JWK Set. */
  readonly federationJwksFetchFailures = new Counter({
    name: 'deputy_federation_jwks_fetch_failures_total',
    help: "Failed fetches of a remote JWK Set (trusted IdPs, agents' jwks_uri)",
    registers: [this.registry],
  });

  /** Vault data keys that could not be unwrapped (KEK not loaded here, or a tampered row). */
  readonly vaultUnwrapFailures = new Counter({
    name: 'deputy_vault_unwrap_failures_total',
    help: 'Vault data keys that could not be unwrapped (key-encryption key not loaded, or tampered row)',
    registers: [this.registry],
  });

  #signingKeyCreatedAt: (() => number) | undefined;
  readonly signingKeyAge = new Gauge({
    name: 'deputy_signing_key_age_seconds',
    help: 'Age of the active token-signing key (seconds since it was created)',
    registers: [this.registry],
    aggregator: 'max',
    collect: () => {
      const createdAt = this.#signingKeyCreatedAt?.();
      if (createdAt !== undefined) this.signingKeyAge.set(Math.max(0, Date.now() / 1000 - createdAt));
    },
  });

  #pool: PoolObservable | undefined;
  readonly storePoolTotal = this.#poolGauge('deputy_store_pool_total', 'PostgreSQL pool connections open', 'total');
  readonly storePoolIdle = this.#poolGauge('deputy_store_pool_idle', 'PostgreSQL pool connections idle', 'idle');
  readonly storePoolWaiting = this.#poolGauge('deputy_store_pool_waiting', 'Queries waiting for a PostgreSQL pool connection', 'waiting');

  /** Budget spend by budget id (config-bounded) and unit (requests, tokens, cost units). */
  readonly budgetSpend = new Counter({
    name: 'deputy_budget_spend_total',
    help: 'Budget spend charged at settlement, by budget and unit',
    labelNames: ['budget', 'unit'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /**
   * The store whose pool the `deputy_store_pool_*` gauges read at scrape time; `undefined` to
   * stop. The gauges are registered only for a store with a pool (PostgreSQL): PGlite gets no
   * samples rather than misleading zeros.
   */
  observeStore(store: PoolObservable | undefined): void {
    this.#pool = store;
    for (const gauge of [this.storePoolTotal, this.storePoolIdle, this.storePoolWaiting]) {
      const name = (gauge as unknown as { name: string }).name;
      const registered = this.registry.getSingleMetric(name) !== undefined;
      if (store?.poolStats && !registered) this.registry.registerMetric(gauge);
      if (!store?.poolStats && registered) this.registry.removeSingleMetric(name);
    }
  }

  /** Where the policy gauges (`deputy_pdp_policy_generation`, `deputy_pdp_policy_info`) read the serving set at scrape time. */
  observePolicies(read: (() => { generation: number; digest: string }) | undefined): void {
    this.#policyGeneration = read && (() => read().generation);
    this.#policyDigest = read && (() => read().digest);
  }

  /** Where `deputy_signing_key_age_seconds` reads the active signing key's creation time (epoch seconds). */
  observeSigningKey(createdAt: (() => number) | undefined): void {
    this.#signingKeyCreatedAt = createdAt;
  }

  /** The Prometheus text exposition (format 0.0.4) and its content type. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  #poolGauge(name: string, help: string, field: keyof PoolStats): Gauge {
    const gauge: Gauge = new Gauge({
      name,
      help,
      registers: [], // registered by observeStore for a store with a pool
      collect: () => {
        const stats = this.#pool?.poolStats?.();
        if (stats) gauge.set(stats[field]);
      },
    });
    return gauge;
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
