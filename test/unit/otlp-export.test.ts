/**
 * Tracing as production starts it, exporter included: the `OTEL_*` variables point the OTLP/HTTP
 * exporter at a tiny local collector, a span goes through the batch processor, and shutdown
 * flushes it to the collector as OTLP JSON (resource `service.name`, span name, W3C ids).
 * No Deputy server: the test is about the exporter wiring.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { activeTraceId, startTracing, traced, withTraceContext } from '../../src/observability/tracing.js';

interface OtlpBody {
  resourceSpans: Array<{
    resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> };
    scopeSpans: Array<{ scope: { name: string }; spans: Array<{ name: string; traceId: string; spanId: string; parentSpanId?: string }> }>;
  }>;
}

const received: Array<{ path: string; contentType: string | undefined; body: OtlpBody }> = [];
const collector = createServer((req: IncomingMessage, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    received.push({ path: req.url ?? '', contentType: req.headers['content-type'], body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as OtlpBody });
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
});

beforeAll(async () => {
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
});
afterAll(async () => {
  await new Promise<void>((resolve) => collector.close(() => resolve()));
});

it('exports spans as OTLP JSON to OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces, and stops cleanly', async () => {
  const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
  expect(activeTraceId()).toBeUndefined();
  const tracing = await startTracing({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_SERVICE_NAME: 'deputy-otlp-test' } });
  expect(tracing.enabled).toBe(true);
  let outgoing: Record<string, string> = {};
  let traceId: string | undefined;
  await traced('outer', () =>
    traced('inner', () => {
      traceId = activeTraceId();
      outgoing = withTraceContext({ accept: 'application/json' });
    }),
  );
  await tracing.shutdown();

  expect(traceId).toMatch(/^[0-9a-f]{32}$/);
  expect(outgoing.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
  expect(received.length).toBeGreaterThanOrEqual(1);
  expect(received[0]!.path).toBe('/v1/traces');
  expect(received[0]!.contentType).toMatch(/application\/json/);
  const resource = received[0]!.body.resourceSpans[0]!;
  expect(resource.resource.attributes).toContainEqual({ key: 'service.name', value: { stringValue: 'deputy-otlp-test' } });
  const spans = resource.scopeSpans.flatMap((s) => s.spans);
  const outer = spans.find((s) => s.name === 'outer')!;
  const inner = spans.find((s) => s.name === 'inner')!;
  expect(inner.traceId).toBe(traceId);
  expect(inner.parentSpanId).toBe(outer.spanId);
  expect(`-${inner.spanId}-`).toBe(outgoing.traceparent!.slice(35, 53));

  // Unregistered: back to the no-op API, and headers pass through untouched.
  await traced('after', () => {
    expect(activeTraceId()).toBeUndefined();
  });
  const headers = { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' };
  expect(withTraceContext(headers)).toBe(headers);
});
