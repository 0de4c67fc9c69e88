/**
 * OpenTelemetry traces end to end, with an in-memory exporter behind the same provider set-up
 * as production (src/observability/tracing.ts): a server span per request continuing the
 * caller's W3C `traceparent`, the exchange's steps and PDP decisions as its children, the
 * gateway's upstream call as a client span whose `traceparent` reaches the upstream, and the
 * trace id in log lines. The same server has a separate metrics listener (`metrics.listen`):
 * it serves `/metrics` without authentication and the main listener no longer does.
 */
import { randomBytes } from 'node:crypto';
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTracing, tracingSettings, type TracingHandle } from '../../src/observability/tracing.js';
import { agentConfig, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { clientKeys } from '../support/clients.js';
import { REPO, startPdpHarness } from '../support/authzen.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { parsePrometheus } from '../support/prometheus.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';

const API_KEY = `sk_live_${randomBytes(16).toString('hex')}`;
const exporter = new InMemorySpanExporter();

let tracing: TracingHandle;
let idp: MockIdp;
let up: MockUpstream;
let deputy: TestDeputy;
let agent: TestAgent;
const gw = () => `${deputy.issuer}/gw/echo`;

beforeAll(async () => {
  tracing = await startTracing({ env: { OTEL_TRACES_EXPORTER: 'otlp', OTEL_SERVICE_NAME: 'deputy-test' }, processor: new SimpleSpanProcessor(exporter) });
  idp = await startMockIdp();
  up = await startMockUpstream();
  const agentKeys = await clientKeys();
  const port = await freePort();
  deputy = await startTestDeputy({
    env: { ECHO_KEY: API_KEY },
    config: {
      server: { port },
      metrics: { listen: '127.0.0.1:0' },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [agentConfig('agent-t', agentKeys, { scopes: ['deputy.read'], audiences: [`http://localhost:${port}/gw/echo`] })],
      connections: [{ id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] }],
    },
  });
  agent = await testAgent(deputy.issuer, 'agent-t', agentKeys);
});
afterAll(async () => {
  await deputy?.stop();
  await tracing?.shutdown();
  await up?.close();
  await idp?.close();
});

const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
const byId = (spans: ReadableSpan[]) => new Map(spans.map((s) => [s.spanContext().spanId, s]));

/** The names of `span`'s ancestors, nearest first. */
function ancestors(span: ReadableSpan, spans: ReadableSpan[]): string[] {
  const ids = byId(spans);
  const names: string[] = [];
  for (let p = ids.get(parentOf(span) ?? ''); p; p = ids.get(parentOf(p) ?? '')) names.push(p.name);
  return names;
}

describe('traces', () => {
  it('traces an exchange: its steps and the delegate decision under the /token server span', async () => {
    exporter.reset();
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    const issued = await exchange(agent, { subject_token: subject, resource: gw(), scope: 'deputy.read' });
    const spans = exporter.getFinishedSpans();
    const server = spans.find((s) => s.name === 'POST /token')!;
    expect(server.kind).toBe(SpanKind.SERVER);
    expect(server.resource.attributes['service.name']).toBe('deputy-test');
    const exchangeSpan = spans.find((s) => s.name === 'token_exchange')!;
    expect(ancestors(exchangeSpan, spans)).toContain('POST /token');
    for (const step of ['token_exchange.client', 'token_exchange.subject', 'token_exchange.authorize', 'token_exchange.issue']) {
      const span = spans.find((s) => s.name === step);
      expect(span, step).toBeDefined();
      expect(parentOf(span!)).toBe(exchangeSpan.spanContext().spanId);
      expect(span!.spanContext().traceId).toBe(server.spanContext().traceId);
    }
    const delegate = spans.find((s) => s.name === 'pdp.delegate')!;
    expect(ancestors(delegate, spans)[0]).toBe('token_exchange.authorize');
    expect(delegate.attributes['deputy.decision']).toBe('permit');
    // No token in any span.
    expect(JSON.stringify(spans.map((s) => [s.name, s.attributes, s.events]))).not.toContain(issued.access_token.slice(20, 60));
  });

  it('continues the caller\'s traceparent through the gateway and passes it to the upstream; logs carry trace_id', async () => {
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    const token = (await exchange(agent, { subject_token: subject, resource: gw(), scope: 'deputy.read' })).access_token;
    exporter.reset();
    const traceId = randomBytes(16).toString('hex');
    const callerSpan = randomBytes(8).toString('hex');
    const headers = new Headers({ traceparent: `00-${traceId}-${callerSpan}-01` });
    const res = await client.fetchProtectedResource(agent.config, token, new URL(`${gw()}/items/1`), 'GET', null, headers, { DPoP: agent.handle });
    expect(res.status).toBe(200);
    await res.arrayBuffer();

    const spans = exporter.getFinishedSpans();
    const server = spans.find((s) => s.name === 'GET /gw/:connection/*')!;
    expect(server.spanContext().traceId).toBe(traceId);
    expect(parentOf(server)).toBe(callerSpan);
    expect(server.attributes['http.response.status_code']).toBe(200);

    const upstream = spans.find((s) => s.name === 'upstream echo')!;
    expect(upstream.kind).toBe(SpanKind.CLIENT);
    expect(upstream.spanContext().traceId).toBe(traceId);
    expect(ancestors(upstream, spans)).toContain('GET /gw/:connection/*');
    const decide = spans.find((s) => s.name === 'decide')!;
    const evaluate = spans.find((s) => s.name === 'pdp.evaluate')!;
    expect(parentOf(evaluate)).toBe(decide.spanContext().spanId);
    expect(parentOf(decide)).toBe(server.spanContext().spanId);

    // The upstream saw the client span as its parent, in the caller's trace.
    const received = up.requests.at(-1)!.headers.traceparent;
    expect(received).toBe(`00-${traceId}-${upstream.spanContext().spanId}-01`);

    const lines = deputy.logs.map((l) => JSON.parse(l) as Record<string, unknown>);
    const requestLine = lines.find((l) => l.msg === 'request' && typeof l.path === 'string' && l.path.startsWith('/gw/echo/items/1'));
    expect(requestLine?.trace_id).toBe(traceId);
    expect(lines.find((l) => l.msg === 'gateway call' && l.trace_id === traceId)).toBeDefined();

    const everything = JSON.stringify(spans.map((s) => [s.name, s.attributes, s.events, s.status]));
    for (const secret of [API_KEY, token.slice(20, 60)]) expect(everything).not.toContain(secret);
  });
});

describe('the PDP\'s lean path (decision cache off) traces and logs as the routes do', () => {
  it('its server span continues the traceparent and parents pdp.evaluate; its access log line carries the trace id', async () => {
    const h = await startPdpHarness({ policies: `${REPO}test/fixtures/policies/chain`, config: { pdp: { policies: `${REPO}test/fixtures/policies/chain`, decisionCacheSize: 0 } } });
    try {
      const body = { subject: { type: 'User', id: 'alice@example.com', properties: { email: 'alice@example.com' } }, action: { name: 'read' }, resource: { type: 'Document', id: 'doc-1', properties: {} } };
      // The first answer is the routes' (the PEP token verified there, the head learned); then the lean path answers.
      for (let i = 0; i < 2; i++) expect((await h.post('/access/v1/evaluation', body)).status).toBe(200);
      for (const path of ['/access/v1/evaluation', '/access/v1/evaluation?routes']) {
        exporter.reset();
        const traceId = randomBytes(16).toString('hex');
        const requestId = `trace-${traceId.slice(0, 8)}`;
        expect((await h.post(path, body, { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01`, 'x-request-id': requestId })).status).toBe(200);
        const spans = exporter.getFinishedSpans();
        const server = spans.find((s) => s.kind === SpanKind.SERVER && s.spanContext().traceId === traceId)!;
        expect(server.name, path).toBe('POST /access/v1/evaluation');
        expect(parentOf(spans.find((s) => s.name === 'pdp.evaluate')!), path).toBe(server.spanContext().spanId);
        const line = h.deputy.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'request' && l.reqId === requestId);
        expect(line, path).toMatchObject({ status: 200, trace_id: traceId });
      }
    } finally {
      await h.stop();
    }
  });
});

describe('the PDP\'s cached path (decision cache on) logs a hit inside its span', () => {
  it('its access log line carries the trace id of the hit\'s server span', async () => {
    const h = await startPdpHarness({ policies: `${REPO}test/fixtures/policies/chain` });
    try {
      const body = { subject: { type: 'User', id: 'alice@example.com', properties: { email: 'alice@example.com' } }, action: { name: 'read' }, resource: { type: 'Document', id: 'doc-1', properties: {} } };
      // The first answer is the routes' (the PEP token verified there), the second the routes' too, remembered; then hits, answered before Koa.
      for (let i = 0; i < 2; i++) expect((await h.post('/access/v1/evaluation', body)).status).toBe(200);
      exporter.reset();
      const traceId = randomBytes(16).toString('hex');
      const requestId = `hit-${traceId.slice(0, 8)}`;
      expect((await h.post('/access/v1/evaluation', body, { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01`, 'x-request-id': requestId })).status).toBe(200);
      const spans = exporter.getFinishedSpans();
      const server = spans.find((s) => s.kind === SpanKind.SERVER && s.spanContext().traceId === traceId)!;
      expect(server.name).toBe('POST /access/v1/evaluation');
      // A hit: no evaluation ran.
      expect(spans.find((s) => s.name === 'pdp.evaluate')).toBeUndefined();
      const line = h.deputy.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'request' && l.reqId === requestId);
      expect(line).toMatchObject({ status: 200, trace_id: traceId });
    } finally {
      await h.stop();
    }
  });
});

describe('a separate metrics listener (metrics.listen)', () => {
  it('serves /metrics without authentication there, and the main listener does not serve it', async () => {
    expect(deputy.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${deputy.metricsUrl}/metrics`);
    expect(res.status).toBe(200);
    const families = parsePrometheus(await res.text());
    expect(families.get('deputy_http_requests_total')?.type).toBe('COUNTER');
    expect((await fetch(`${deputy.metricsUrl}/admin/agents`)).status).toBe(404);
    expect((await fetch(`${deputy.metricsUrl}/metrics`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`${deputy.url}/metrics`)).status).toBe(404);
  });
});

describe('tracingSettings (the OTEL_* variables)', () => {
  it('is off unless configured, and honours OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER=none', () => {
    expect(tracingSettings({}).enabled).toBe(false);
    expect(tracingSettings({ OTEL_SERVICE_NAME: 'x' }).enabled).toBe(false);
    expect(tracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' }).enabled).toBe(false);
    expect(tracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' }).enabled).toBe(false);
  });

  it('derives the traces endpoint and the service name', () => {
    expect(tracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/' })).toEqual({ enabled: true, serviceName: 'deputy', url: 'http://c:4318/v1/traces' });
    expect(tracingSettings({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/custom', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://d:4318', OTEL_SERVICE_NAME: 'edge' })).toEqual({ enabled: true, serviceName: 'edge', url: 'http://c:4318/custom' });
    expect(tracingSettings({ OTEL_TRACES_EXPORTER: 'otlp' })).toEqual({ enabled: true, serviceName: 'deputy', url: undefined });
  });

  it('refuses an exporter it does not ship', () => {
    expect(() => tracingSettings({ OTEL_TRACES_EXPORTER: 'zipkin' })).toThrow(TypeError);
  });
});
