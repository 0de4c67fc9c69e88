/**
 * What a request pays for logging and tracing it does not use (issue 16, eighth round), and that
 * nothing it does use is lost: the request's child logger (`reqId`) is built only when something
 * logs through it; the access log line is written with `reqId` when `info` is on; a middleware
 * may replace `ctx.state.log`; and the tracing helpers skip their no-op spans only while no
 * tracer provider is registered — one registered by anything else in the process (an operator's
 * OpenTelemetry auto-instrumentation) still gets Deputy's spans.
 */
import { Writable } from 'node:stream';
import { context, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import Koa from 'koa';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { accessLog, requestContext } from '../../src/http/middleware.js';
import { createLogger, type Logger } from '../../src/log.js';
import { traced, tracingActive } from '../../src/observability/tracing.js';

/** A logger at `level` whose lines are collected as parsed JSON. */
function collectingLogger(level: string): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger(level, sink), lines };
}

/** Runs `requestContext` + `accessLog` + `handler` over a fake Koa context for one request. */
async function run(logger: Logger, handler: Koa.Middleware, requestId = 'req-1'): Promise<Koa.Context> {
  const app = new Koa();
  const ctx = app.createContext(
    Object.assign(Object.create(null), { headers: { 'x-request-id': requestId }, method: 'GET', url: '/gw/echo/items', socket: {} }) as never,
    Object.assign(Object.create(null), { setHeader() {}, getHeader() {}, removeHeader() {}, headersSent: false }) as never,
  );
  const chain = [requestContext(logger), accessLog(logger), handler];
  const dispatch = (i: number): Promise<void> => Promise.resolve(chain[i]?.(ctx, () => dispatch(i + 1)));
  await dispatch(0);
  return ctx;
}

describe('the request child logger', () => {
  it('is not built for a request that logs nothing at the default level', async () => {
    const { logger } = collectingLogger('warn');
    const child = vi.spyOn(logger, 'child');
    await run(logger, async (ctx) => {
      ctx.status = 200;
    });
    expect(child).not.toHaveBeenCalled();
  });

  it('is built once, on first use, and its lines carry reqId', async () => {
    const { logger, lines } = collectingLogger('warn');
    const child = vi.spyOn(logger, 'child');
    await run(logger, async (ctx) => {
      ctx.state.log.warn('first');
      ctx.state.log.warn('second');
    }, 'abc-123');
    expect(child).toHaveBeenCalledTimes(1);
    expect(lines.map((l) => [l.msg, l.reqId])).toEqual([['first', 'abc-123'], ['second', 'abc-123']]);
  });

  it('writes the access line with reqId when info is on', async () => {
    const { logger, lines } = collectingLogger('info');
    await run(logger, async (ctx) => {
      ctx.status = 204;
    }, 'xyz');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ msg: 'request', reqId: 'xyz', method: 'GET', path: '/gw/echo/items', status: 204 });
  });

  it('can be replaced by a later middleware', async () => {
    const { logger, lines } = collectingLogger('warn');
    const other = collectingLogger('warn');
    await run(logger, async (ctx) => {
      ctx.state.log = other.logger.child({ replaced: true });
      ctx.state.log.warn('here');
    });
    expect(lines).toEqual([]);
    expect(other.lines[0]).toMatchObject({ msg: 'here', replaced: true });
  });
});

describe('tracing helpers with tracing off', () => {
  afterEach(() => {
    trace.disable();
    context.disable();
  });

  it('are inactive with no provider, and traced() still runs its function', async () => {
    expect(tracingActive()).toBe(false);
    await expect(traced('x', (span) => (span.isRecording() ? 'recording' : 'ran'))).resolves.toBe('ran');
  });

  it('record spans through a provider another part of the process registered', async () => {
    const exporter = new InMemorySpanExporter();
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
    expect(tracingActive()).toBe(true);
    await traced('deputy.step', () => 1);
    expect(exporter.getFinishedSpans().map((s) => s.name)).toEqual(['deputy.step']);
  });
});
