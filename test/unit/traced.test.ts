/**
 * `traced` without an `async` wrapper while tracing is off (issue 16, ninth round): every caller
 * still gets a promise — a function that throws synchronously gives a rejected promise, never a
 * synchronous throw — with the function's own error; with a tracer provider, each call is a span
 * that ends once, with the error's protocol code when it fails.
 */
import { context, SpanStatusCode, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterEach, describe, expect, it } from 'vitest';
import { DeputyError } from '../../src/errors/index.js';
import { startTracing, traced, tracedStep, tracingActive } from '../../src/observability/tracing.js';

afterEach(() => {
  trace.disable();
  context.disable();
});

/** A function that throws before returning anything. */
function throwsNow(error: Error): () => never {
  return () => {
    throw error;
  };
}

/** Calls `call` and returns what it returned, or `sync-throw` when the call itself threw. */
function settle(call: () => Promise<unknown>): Promise<unknown> | 'sync-throw' {
  try {
    return call();
  } catch {
    return 'sync-throw';
  }
}

function register(): InMemorySpanExporter {
  const exporter = new InMemorySpanExporter();
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
  return exporter;
}

describe.each([
  ['off', () => undefined],
  ['on', () => register()],
])('traced with tracing %s', (state, setup) => {
  it('a synchronous throw is a rejected promise with the same error, for traced and tracedStep', async () => {
    setup();
    expect(tracingActive()).toBe(state === 'on');
    const error = new DeputyError(400, 'invalid_grant', 'refused');
    const direct = settle(() => traced('step', throwsNow(error)));
    const step = settle(() => tracedStep('step', async () => throwsNow(error)())());
    const stepSync = settle(() => tracedStep('step', throwsNow(error) as () => Promise<never>)());
    for (const result of [direct, step, stepSync]) {
      expect(result).toBeInstanceOf(Promise);
      await expect(result).rejects.toBe(error);
    }
  });

  it('a value, a promise and a rejection come back as they are', async () => {
    setup();
    await expect(traced('step', () => 42)).resolves.toBe(42);
    await expect(traced('step', async () => 'later')).resolves.toBe('later');
    const error = new TypeError('boom');
    await expect(traced('step', () => Promise.reject(error))).rejects.toBe(error);
    // A thenable that is not a promise is adopted, as an async function would.
    await expect(traced('step', () => ({ then: (resolve: (v: string) => void) => resolve('thenable') }) as unknown as Promise<string>)).resolves.toBe('thenable');
  });
});

describe('traced with a tracer provider: spans', () => {
  it('one span per call, ended once, with the attributes given; a failure records the protocol code, a sync throw too', async () => {
    const exporter = register();
    await traced('ok', () => 1, { attributes: { 'deputy.step': 'authenticate' } });
    await traced('async-fail', () => Promise.reject(new DeputyError(400, 'invalid_grant', 'refused: secret-bit'))).catch(() => undefined);
    await traced('sync-fail', throwsNow(new RangeError('out of range: secret-bit'))).catch(() => undefined);
    const spans = exporter.getFinishedSpans();
    expect(spans.map((s) => s.name)).toEqual(['ok', 'async-fail', 'sync-fail']);
    expect(spans[0]!.attributes).toMatchObject({ 'deputy.step': 'authenticate' });
    expect(spans[0]!.status.code).not.toBe(SpanStatusCode.ERROR);
    expect(spans[1]!.status).toEqual({ code: SpanStatusCode.ERROR, message: 'invalid_grant' });
    expect(spans[1]!.attributes['error.type']).toBe('invalid_grant');
    expect(spans[2]!.status).toEqual({ code: SpanStatusCode.ERROR, message: 'RangeError' });
    // Never a message (it may quote input).
    expect(JSON.stringify(spans.map((s) => [s.attributes, s.status, s.events]))).not.toContain('secret-bit');
  });

  it('a span started inside another is its child (Deputy\'s own start: a context manager registered)', async () => {
    const exporter = new InMemorySpanExporter();
    const handle = await startTracing({ env: { OTEL_TRACES_EXPORTER: 'otlp' }, processor: new SimpleSpanProcessor(exporter) });
    try {
      await traced('outer', () => traced('inner', () => 1));
      await traced('outer-sync-throw', () => traced('inner-sync-throw', throwsNow(new Error('x')))).catch(() => undefined);
      const [inner, outer, innerThrow, outerThrow] = exporter.getFinishedSpans();
      expect([inner!.name, outer!.name, innerThrow!.name, outerThrow!.name]).toEqual(['inner', 'outer', 'inner-sync-throw', 'outer-sync-throw']);
      expect(inner!.parentSpanContext?.spanId).toBe(outer!.spanContext().spanId);
      expect(innerThrow!.parentSpanContext?.spanId).toBe(outerThrow!.spanContext().spanId);
      expect([innerThrow!.status.code, outerThrow!.status.code]).toEqual([SpanStatusCode.ERROR, SpanStatusCode.ERROR]);
    } finally {
      await handle.shutdown();
    }
  });
});
