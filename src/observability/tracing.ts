/**
 * OpenTelemetry traces: off unless the standard `OTEL_*` variables configure them.
 *
 * Off, `traced` calls its function directly with a non-recording span, and every other span is
 * `@opentelemetry/api`'s no-op: no provider, no context manager, no propagator is registered, so a
 * span costs a function call. On, a `NodeTracerProvider` with a
 * batch processor and the OTLP/HTTP (JSON) exporter is registered globally, with the
 * AsyncLocalStorage context manager and the W3C Trace Context propagator (`traceparent`).
 *
 * Spans carry routes, step names, decisions, connection ids and status codes; never a token,
 * proof, assertion, secret, query string or header value.
 *
 * @see https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/
 * @module
 */
import { context, INVALID_SPAN_CONTEXT, propagation, ProxyTracerProvider, SpanKind, SpanStatusCode, trace, type Attributes, type Span } from '@opentelemetry/api';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { DeputyError } from '../errors/index.js';

/** The instrumentation scope of every Deputy span. */
export const TRACER_NAME = 'deputy';

/** What the `OTEL_*` variables ask for. */
export type TracingSettings =
  | { enabled: false; reason: string }
  | { enabled: true; serviceName: string; url: string | undefined };

/**
 * Reads the standard variables. Traces are on when `OTEL_TRACES_EXPORTER` is `otlp`, or when it
 * is unset and an OTLP endpoint (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`)
 * is set; `OTEL_SDK_DISABLED=true` and `OTEL_TRACES_EXPORTER=none` turn them off. The traces
 * endpoint is used as is; the generic one gets `/v1/traces` appended (OTLP/HTTP).
 *
 * @throws TypeError for an exporter other than `otlp` / `none` (a start-up configuration error).
 */
export function tracingSettings(env: Readonly<Record<string, string | undefined>>): TracingSettings {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return { enabled: false, reason: 'OTEL_SDK_DISABLED' };
  const tracesEndpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  const endpoint = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  const url = tracesEndpoint || (endpoint ? `${endpoint.replace(/\/+$/, '')}/v1/traces` : undefined);
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '').split(',').map((e) => e.trim().toLowerCase()).filter(Boolean);
  if (exporters.length === 0 && url === undefined) return { enabled: false, reason: 'not configured' };
  if (exporters.includes('none')) return { enabled: false, reason: 'OTEL_TRACES_EXPORTER=none' };
  const unsupported = exporters.filter((e) => e !== 'otlp');
  if (unsupported.length) throw new TypeError(`OTEL_TRACES_EXPORTER: only "otlp" and "none" are supported, not "${unsupported.join(',')}"`);
  return { enabled: true, serviceName: env.OTEL_SERVICE_NAME?.trim() || 'deputy', url };
}

/** Traces as started: {@link TracingHandle.shutdown} flushes and unregisters. */
export interface TracingHandle {
  readonly enabled: boolean;
  /** Exports what is buffered, then unregisters the provider, context manager and propagator. */
  shutdown(): Promise<void>;
}

/** What {@link startTracing} reads. */
export interface StartTracingOptions {
  /** The `OTEL_*` variables ({@link tracingSettings}); `process.env` in production. */
  env: Readonly<Record<string, string | undefined>>;
  /** Tests: the processor to use instead of the batch processor over the OTLP exporter. */
  processor?: SpanProcessor;
}

/**
 * Starts tracing when {@link tracingSettings} enable it; otherwise a handle that does nothing.
 * Process-wide (the global tracer provider): call once, from the process's entry point. The SDK
 * is loaded only when traces are on.
 *
 * @throws TypeError for an unsupported `OTEL_TRACES_EXPORTER`.
 */
export async function startTracing(options: StartTracingOptions): Promise<TracingHandle> {
  const settings = tracingSettings(options.env);
  if (!settings.enabled) return { enabled: false, shutdown: async () => {} };
  const [{ NodeTracerProvider }, { BatchSpanProcessor }, { resourceFromAttributes }, { ATTR_SERVICE_NAME }] = await Promise.all([
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/semantic-conventions'),
  ]);
  let processor = options.processor;
  if (!processor) {
    const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http');
    processor = new BatchSpanProcessor(new OTLPTraceExporter(settings.url ? { url: settings.url } : {}));
  }
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: settings.serviceName }),
    spanProcessors: [processor],
  });
  provider.register();
  return {
    enabled: true,
    shutdown: async () => {
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}

/** Deputy's tracer (the no-op one while tracing is off). */
export function tracer() {
  return trace.getTracer(TRACER_NAME);
}

/** The API's own no-op provider: what the global proxy delegates to while no provider is registered. */
const NO_PROVIDER = new ProxyTracerProvider().getDelegate();

/**
 * Whether a tracer provider is registered — Deputy's ({@link startTracing}) or any other the
 * process registered globally (an operator's OpenTelemetry auto-instrumentation). Off, the
 * helpers below skip the no-op span, its context and its attribute objects altogether: the API's
 * no-op path still allocated a proxy tracer, a span and a closure per call — five times per token
 * exchange, three or more times per gateway call (issue 16, eighth round).
 */
export function tracingActive(): boolean {
  const provider = trace.getTracerProvider();
  return !(provider instanceof ProxyTracerProvider) || provider.getDelegate() !== NO_PROVIDER;
}

/** The span handed to `fn` while tracing is off: non-recording, so one serves every call. */
export const NO_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/**
 * Runs `fn` in a child span of the active one named `name`; the span records an exception and
 * an error status when `fn` throws (the error propagates unchanged).
 *
 * @param attributes - bounded, secret-free values only (step names, codes, connection ids).
 */
export function traced<T>(name: string, fn: (span: Span) => Promise<T> | T, options: { kind?: SpanKind; attributes?: Attributes } = {}): Promise<T> {
  if (!tracingActive()) return untraced(fn);
  return tracer().startActiveSpan(name, { kind: options.kind ?? SpanKind.INTERNAL, ...(options.attributes ? { attributes: options.attributes } : {}) }, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      failed(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

/**
 * `fn(NO_SPAN)` as a promise, without an `async` wrapper of its own: a promise `fn` returns is
 * handed back as it is (an `async` function would wrap it in another promise and settle that
 * one two microtask turns later — with oidc-provider's AsyncLocalStorage, each promise also
 * runs a hook; issue 16, ninth round). A synchronous throw becomes a rejection, as before.
 */
function untraced<T>(fn: (span: Span) => Promise<T> | T): Promise<T> {
  try {
    return Promise.resolve(fn(NO_SPAN));
  } catch (err) {
    return Promise.reject(err as Error);
  }
}

/**
 * `fn` as a function whose every call runs in a span named `name` ({@link traced}): for named
 * protocol steps (the token exchange's), wrapped where they are declared.
 */
export function tracedStep<A extends unknown[], R>(name: string, fn: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return (...args) => traced(name, () => fn(...args));
}

/**
 * Marks a span failed with the error's protocol code (`error` of a DeputyError) or type name:
 * never its message, which may quote input.
 */
export function failed(span: Span, err: unknown): void {
  const code = errorCode(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message: code });
  span.setAttribute('error.type', code);
}

/** The protocol error code of a Deputy error (`invalid_grant`…), else the error's class name. */
export function errorCode(err: unknown): string {
  if (err instanceof DeputyError) return err.code;
  return err instanceof Error ? err.name : 'error';
}

/**
 * `headers` with the active span's W3C Trace Context (`traceparent`, `tracestate`) set, for an
 * outgoing request; `headers` itself when traces are off or no span is active (an agent's own
 * `traceparent` then passes through as it came).
 */
export function withTraceContext(headers: Record<string, string>): Record<string, string> {
  if (activeTraceId() === undefined) return headers;
  const out = { ...headers };
  propagation.inject(context.active(), out);
  return out;
}

/** The active span's trace id, when a real (sampled or recorded) span is active. */
export function activeTraceId(): string | undefined {
  const span = trace.getActiveSpan();
  if (!span) return undefined;
  const ctx = span.spanContext();
  return trace.isSpanContextValid(ctx) ? ctx.traceId : undefined;
}

