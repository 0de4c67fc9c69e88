/**
 * Metrics and spans around services that know nothing of either: the PDP (decisions, its
 * decision cache, the policy generation), the enforcement pipeline's observed steps, the token
 * exchange and receipt appends. Each hook is a wrapper, so the services stay free of
 * observability code and the hooks stay in one file.
 *
 * @module
 */
import { SpanKind, type Span } from '@opentelemetry/api';
import { DeputyError } from '../errors/index.js';
import { errorCause } from '../log.js';
import { metrics, secondsSince, statusClass } from './metrics.js';
import { errorCode, failed, NO_SPAN, traced, tracer, tracingActive } from './tracing.js';

/** The PDP as seen here (src/pdp/pdp.ts `PolicyDecisionPoint` fits): the two decision entry points. */
export interface ObservablePdp {
  evaluate(...args: never[]): Promise<{ decision: boolean }>;
  decideDelegation(...args: never[]): Promise<{ decision: boolean }>;
  readonly engine: ObservableEngine;
  /** The policy store (src/pdp/policy-store.ts `PolicyStore` fits). */
  readonly store: {
    readonly current: { readonly generation: number; readonly digest: string };
    reload(trigger: string): Promise<{ changed: boolean }>;
  };
}

/** The Cedar engine as seen here (src/pdp/engine.ts): `calls` counts evaluations (cache misses). */
export interface ObservableEngine {
  authorize(...args: never[]): unknown;
  readonly calls: number;
}

/**
 * The PDP's remembered decisions (src/pdp/remembered-decisions.ts `RememberedDecisions` fits):
 * `evaluate` answers a plain decision from memory, or a promise of the PDP's own `evaluate`.
 */
export interface ObservableRememberedDecisions {
  evaluate(...args: never[]): { decision: boolean } | Promise<{ decision: boolean }>;
}

/**
 * Counts every PDP decision (`deputy_pdp_decisions_total{decision,source}`), traces it (span
 * `pdp.evaluate` / `pdp.delegate`), counts decision-cache hits and misses and policy reloads,
 * and exposes the serving policy set (generation, digest). Wraps the instance's methods: a batch's items (which call
 * `evaluate` on the instance) are counted one by one.
 *
 * @param remembered - the PDP's remembered decisions: a decision answered from memory is counted
 *   as one (no span: nothing ran to trace, as on the AuthZEN cached path); one evaluated goes
 *   through the PDP's `evaluate`, wrapped here, and is counted there.
 */
export function instrumentPdp(pdp: ObservablePdp, remembered?: ObservableRememberedDecisions): void {
  if (remembered) {
    const recall = remembered.evaluate.bind(remembered);
    Object.assign(remembered, {
      evaluate: (...args: never[]) => {
        const result = recall(...args);
        if (!(result instanceof Promise)) metrics.pdpDecisions.inc({ decision: result.decision ? 'permit' : 'deny', source: 'evaluation' });
        return result;
      },
    });
  }
  const evaluate = pdp.evaluate.bind(pdp);
  const decideDelegation = pdp.decideDelegation.bind(pdp);
  Object.assign(pdp, {
    evaluate: (...args: never[]) => decision('evaluation', () => evaluate(...args)),
    decideDelegation: (...args: never[]) => decision('delegation', () => decideDelegation(...args)),
  });
  const engine = pdp.engine;
  const authorize = engine.authorize.bind(engine);
  Object.assign(engine, {
    authorize: (...args: never[]) => {
      const before = engine.calls;
      const verdict = authorize(...args);
      // The engine counts its Cedar calls: a call that did not evaluate was answered by the cache.
      if (engine.calls > before) metrics.pdpCacheMisses.inc();
      else metrics.pdpCacheHits.inc();
      return verdict;
    },
  });
  const policies = pdp.store;
  const reload = policies.reload.bind(policies);
  Object.assign(policies, {
    reload: async (trigger: string) => {
      try {
        const result = await reload(trigger);
        metrics.pdpPolicyReloads.inc({ outcome: result.changed ? 'applied' : 'unchanged', trigger });
        return result;
      } catch (err) {
        metrics.pdpPolicyReloads.inc({ outcome: 'refused', trigger });
        throw err;
      }
    },
  });
  metrics.observePolicies(() => policies.current);
}

async function decision<D extends { decision: boolean }>(source: 'evaluation' | 'delegation', decide: () => Promise<D>): Promise<D> {
  return traced(source === 'evaluation' ? 'pdp.evaluate' : 'pdp.delegate', async (span) => {
    const result = await decide();
    const verdict = result.decision ? 'permit' : 'deny';
    span.setAttribute('deputy.decision', verdict);
    metrics.pdpDecisions.inc({ decision: verdict, source });
    return result;
  });
}

/** What an enforcement step asks to be observed as (src/enforcement/pipeline.ts `Step.observe`). */
export type ObservedStepKind = 'decision' | 'upstream';

/**
 * Runs one observed step of the enforcement pipeline in a span of its own — `decide`
 * (internal) or the forward step (a client span, so the `traceparent` injected into the
 * upstream request names it) — and times upstream calls into
 * `deputy_gateway_upstream_duration_seconds{connection,status}`.
 *
 * @param ctx - the pipeline context: `connection.id` (/gw, /llm) or, at the MCP gateway,
 *   `server.id` (the MCP server's name) labels upstream calls as `connection` — both bounded by
 *   configuration and the admin API, never by a request.
 * @param run - the step's own `run`; its additions are returned unchanged (`response.status` read).
 */
export async function observeStep<A>(kind: ObservedStepKind, name: string, ctx: object, run: () => A | Promise<A>): Promise<A> {
  const connection = upstreamName(ctx);
  const label = typeof connection === 'string' ? connection : 'none';
  const start = process.hrtime.bigint();
  // Tracing off: no no-op span, context or attribute object per step (./tracing.ts `tracingActive`).
  if (!tracingActive()) return timedStep(NO_SPAN, kind, label, start, run);
  return tracer().startActiveSpan(
    kind === 'upstream' ? `upstream ${label}` : name,
    { kind: kind === 'upstream' ? SpanKind.CLIENT : SpanKind.INTERNAL, attributes: { 'deputy.step': name, ...(connection ? { 'deputy.connection': label } : {}) } },
    (span) => timedStep(span, kind, label, start, run),
  );
}

/** {@link observeStep}'s body inside its span: the upstream's status on the span, its time in the histogram. */
async function timedStep<A>(span: Span, kind: ObservedStepKind, label: string, start: bigint, run: () => A | Promise<A>): Promise<A> {
  try {
    const added = await run();
    const status = (added as { response?: { status?: unknown } } | undefined)?.response?.status;
    if (typeof status === 'number') span.setAttribute('http.response.status_code', status);
    if (kind === 'upstream') metrics.gatewayUpstreamDuration.observe({ connection: label, status: typeof status === 'number' ? statusClass(status) : 'none' }, secondsSince(start));
    return added;
  } catch (err) {
    failed(span, err);
    if (kind === 'upstream') {
      metrics.gatewayUpstreamDuration.observe({ connection: label, status: 'error' }, secondsSince(start));
      metrics.gatewayUpstreamErrors.inc({ connection: label });
    }
    throw err;
  } finally {
    span.end();
  }
}

/** The upstream a pipeline context calls: its connection (/gw, /llm) or its MCP server (/mcp). */
function upstreamName(ctx: object): unknown {
  return (ctx as { connection?: { id?: unknown } }).connection?.id ?? (ctx as { server?: { id?: unknown } }).server?.id;
}

/**
 * One RFC 8693 exchange at the grant, counted and timed by outcome and OAuth error code, in a
 * `token_exchange` span that the exchange's steps become children of.
 */
export async function observeTokenExchange<T>(exchange: () => Promise<T>): Promise<T> {
  const start = process.hrtime.bigint();
  try {
    const issued = await traced('token_exchange', exchange);
    metrics.tokenExchanges.inc({ outcome: 'issued', error: 'none' });
    metrics.tokenExchangeDuration.observe({ outcome: 'issued' }, secondsSince(start));
    return issued;
  } catch (err) {
    // A protocol refusal carries its code; anything else (a store outage) is a server error.
    const code = err instanceof DeputyError ? errorCode(err) : 'server_error';
    metrics.tokenExchanges.inc({ outcome: 'refused', error: code });
    metrics.tokenExchangeDuration.observe({ outcome: 'refused' }, secondsSince(start));
    throw err;
  }
}

/**
 * One receipt append, timed into `deputy_receipt_append_duration_seconds{outcome}`: `appended`,
 * `refused` (the request's own doing, nothing written by design: a replayed once-key, a DPoP
 * proof that did not verify), or `failed` — only these count in
 * `deputy_receipt_append_failures_total`, whose alert means receipts cannot be written
 * (docs/production.md): an agent with a leaked token must not be able to raise it.
 */
export function observeReceiptAppend<T>(append: () => Promise<T>): Promise<T> {
  const start = process.hrtime.bigint();
  const failed = (err: unknown): never => {
    const outcome = refusedByRequest(err) ? 'refused' : 'failed';
    metrics.receiptAppendDuration.observe({ outcome }, secondsSince(start));
    if (outcome === 'failed') metrics.receiptAppendFailures.inc();
    throw err;
  };
  // One derived promise on the append's, not an `async` wrapper and its `await` (every gateway
  // call's receipt: issue 16, twelfth round); an `append` that throws is a failed append too.
  let appending: Promise<T>;
  try {
    appending = append();
  } catch (err) {
    return Promise.reject(err as Error).catch(failed);
  }
  return appending.then((appended) => {
    metrics.receiptAppendDuration.observe({ outcome: 'appended' }, secondsSince(start));
    return appended;
  }, failed);
}

/** An append refused because of the request (a once-key recorded before, a client error as `ready`'s rejection), not the store. */
function refusedByRequest(err: unknown): boolean {
  // AlreadyRecorded (src/audit/receipts.ts) by its code: the audit module imports this one.
  if ((err as { code?: unknown } | undefined)?.code === 'ERR_ALREADY_RECORDED') return true;
  return err instanceof DeputyError && err.status < 500;
}

/** Where {@link checkpointObserver} logs a failed checkpoint (a pino logger fits). */
export interface CheckpointLog {
  warn(fields: Record<string, unknown>, message: string): void;
}

/**
 * Reports embedded PGlite's checkpoints (src/store/checkpointer.ts `CheckpointEvents` fits):
 * each one counted in `deputy_store_checkpoints_total{reason}` and its pause timed into
 * `deputy_store_checkpoint_duration_seconds`; a failure logged as a warning, in the shape of
 * every other failure line (`err: { cause }`): the error's name and code (`errorCause`: the
 * SQLSTATE, `53100` for a full disk) and the database's message, which is what an operator acts on
 * and which no secret can be in (a `CHECKPOINT` carries no parameters); no stack.
 */
export function checkpointObserver(log: CheckpointLog): { checkpointed(reason: 'wal' | 'time', seconds: number): void; failed(err: unknown): void } {
  return {
    checkpointed(reason, seconds) {
      metrics.storeCheckpoints.inc({ reason });
      metrics.storeCheckpointDuration.observe(seconds);
    },
    failed(err) {
      const cause = err instanceof Error ? `${errorCause(err)}: ${err.message}` : 'unknown error';
      log.warn({ err: { cause } }, 'embedded store checkpoint failed; retried at the next look');
    },
  };
}
