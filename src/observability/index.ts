/**
 * Observability (issue 17): Prometheus metrics on a registry of Deputy's own (`metrics.ts`),
 * OpenTelemetry traces that are off unless the standard `OTEL_*` variables configure them
 * (`tracing.ts`), and the wrappers that observe services carrying no observability code
 * (`instrument.ts`: the PDP, the enforcement pipeline's observed steps, the token exchange,
 * receipt appends). The HTTP edge (server spans, request metrics, `/metrics`) is
 * src/http/metrics.ts.
 *
 * @module
 */
export {
  DeputyMetrics,
  metrics,
  recordBudgetSpend,
  processExposition,
  shareWithClusterPrimary,
  clusterExposition,
  secondsSince,
  statusClass,
  type Exposition,
  type PoolObservable,
  type PoolStats,
} from './metrics.js';
export {
  startTracing,
  tracingSettings,
  tracer,
  traced,
  tracedStep,
  failed,
  errorCode,
  activeTraceId,
  withTraceContext,
  TRACER_NAME,
  type StartTracingOptions,
  type TracingHandle,
  type TracingSettings,
} from './tracing.js';
export {
  instrumentPdp,
  observeStep,
  observeTokenExchange,
  observeReceiptAppend,
  type ObservablePdp,
  type ObservableEngine,
  type ObservedStepKind,
} from './instrument.js';
