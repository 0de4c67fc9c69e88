/**
 * Observability at the HTTP edge: one server span and the request metrics per request, and the
 * Prometheus scrape endpoint (`GET /metrics`), either on the main listener behind an admin token
 * or alone on a listener of its own (`metrics.listen`, src/main.ts).
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import Router from '@koa/router';
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type Koa from 'koa';
import { metrics, processExposition, secondsSince, type Exposition } from '../observability/metrics.js';
import { tracer, tracingActive } from '../observability/tracing.js';
import { NO_STORE, noStore } from '../util/http.js';
import { requireAdmin } from './admin-api.js';
import type { Authenticate } from './util.js';

/** The scrape path, on the main listener and on the separate one alike. */
export const METRICS_PATH = '/metrics';

/** The route label of requests no known route served: bounded cardinality whatever clients send. */
export const OTHER_ROUTE = 'other';

/**
 * Paths served outside Deputy's routers (oidc-provider's endpoints, middleware-served documents),
 * by their exact value; anything else unknown becomes {@link OTHER_ROUTE}.
 */
const STATIC_ROUTES = new Set([
  '/token', '/jwks', '/introspect', '/revoke', '/auth', '/reg', '/me', '/request', '/session/end',
  '/.well-known/openid-configuration', '/.well-known/oauth-authorization-server', METRICS_PATH,
  // Answered by the PDP's cached path (./authzen-cached.ts) without the router: the router's own labels.
  '/access/v1/evaluation', '/access/v1/evaluations',
]);

/** Path prefixes of the PEPs and documents served by middleware: `{prefix}…` → the pattern. */
const PREFIX_ROUTES: ReadonlyArray<readonly [string, string]> = [
  ['/gw/', '/gw/:connection/*'],
  ['/mcp/', '/mcp/:server/*'],
  ['/llm/', '/llm/:connection/*'],
  ['/.well-known/oauth-protected-resource/', '/.well-known/oauth-protected-resource/*'],
];

/**
 * The route label of a request: the router's pattern (`/admin/agents/:id`) when a router
 * matched, else a known path or prefix pattern, else `other` — never the raw path.
 *
 * @param path - the path as received (before any rewrite).
 */
export function routeOf(ctx: Koa.Context, path: string): string {
  const matched = (ctx as { _matchedRoute?: unknown })._matchedRoute;
  if (typeof matched === 'string' && matched) return matched;
  if (ctx.status === 404) return OTHER_ROUTE;
  if (STATIC_ROUTES.has(path)) return path;
  for (const [prefix, pattern] of PREFIX_ROUTES) if (path.startsWith(prefix)) return pattern;
  return OTHER_ROUTE;
}

/**
 * Outermost middleware: a server span per request (child of the caller's W3C `traceparent`
 * when it sent one; a no-op while traces are off), and `deputy_http_requests_total` /
 * `deputy_http_request_duration_seconds` by route pattern, method and status. The span holds
 * the method, route and status — not the URL's query, which may carry tokens.
 */
export function observeRequests(): Koa.Middleware {
  return async function observeRequest(ctx, next) {
    const start = process.hrtime.bigint();
    const path = ctx.path;
    const method = ctx.method;
    // Tracing off: the metrics alone, no no-op span or context per request (src/observability/tracing.ts `tracingActive`).
    if (!tracingActive()) {
      try {
        await next();
      } finally {
        countRequest(ctx, path, method, start);
      }
      return;
    }
    const parent = propagation.extract(ROOT_CONTEXT, ctx.req.headers);
    const span = tracer().startSpan(method, { kind: SpanKind.SERVER, attributes: { 'http.request.method': method } }, parent);
    try {
      await context.with(trace.setSpan(parent, span), next);
    } finally {
      const route = countRequest(ctx, path, method, start);
      const status = ctx.status;
      span.updateName(`${method} ${route}`);
      span.setAttributes({ 'http.route': route, 'http.response.status_code': status });
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    }
  };
}

/** Counts and times one request under its route label; returns the label. */
function countRequest(ctx: Koa.Context, path: string, method: string, start: bigint): string {
  const route = routeOf(ctx, path);
  metrics.httpRequests.inc({ route, method, status: String(ctx.status) });
  metrics.httpDuration.observe({ route, method }, secondsSince(start));
  return route;
}

/**
 * What {@link observeRequests} records, for a request answered before Koa (the PDP's cached path,
 * ./authzen-cached.ts): the same metrics and labels, and a server span (child of the caller's
 * `traceparent`) opened and closed around `inside(arg)` — what runs there (the access log line) is
 * in the span's context, so its log lines carry the trace id, as under {@link observeRequests}.
 * With tracing off (`tracingActive`), `inside(arg)` runs alone: no no-op span, context or
 * attribute objects per request, as {@link observeRequests} skips them.
 *
 * @param route - a route label as {@link routeOf} gives it (a known path, never a raw one).
 * @param start - `process.hrtime.bigint()` when the request arrived.
 * @param inside - run with the span active (synchronous), given `arg` (a shared function and its
 *   argument rather than a closure per request); what it throws propagates, the span ended.
 */
export function observeAnswered<T>(req: IncomingMessage, route: string, status: number, start: bigint, inside?: (arg: T) => void, arg?: T): void {
  const method = req.method ?? 'GET';
  if (tracingActive()) spanAround(req, method, route, status, inside, arg);
  else inside?.(arg as T);
  metrics.httpRequests.inc({ route, method, status: String(status) });
  metrics.httpDuration.observe({ route, method }, secondsSince(start));
}

/** {@link observeAnswered}'s server span, `inside(arg)` run within it. */
function spanAround<T>(req: IncomingMessage, method: string, route: string, status: number, inside: ((arg: T) => void) | undefined, arg: T | undefined): void {
  const parent = propagation.extract(ROOT_CONTEXT, req.headers);
  const attributes = { 'http.request.method': method, 'http.route': route, 'http.response.status_code': status };
  const span = tracer().startSpan(`${method} ${route}`, { kind: SpanKind.SERVER, attributes }, parent);
  try {
    if (inside) context.with(trace.setSpan(parent, span), inside, undefined, arg as T);
  } finally {
    span.end();
  }
}

/** A request being answered before Koa after asynchronous work: see {@link observeAnswering}. */
export interface Answering {
  /**
   * Runs `work` with the request's server span active: the spans it opens are children of it, and
   * the log lines it writes carry its trace id, as under {@link observeRequests}.
   */
  run<T>(work: () => T): T;
  /** The request was answered with `status`: the metrics recorded, the span closed. */
  answered(status: number): void;
  /** The request is left to Koa after all (which records it): the span closed as abandoned, no metrics. */
  abandoned(): void;
}

/**
 * What {@link observeRequests} records, for a request answered before Koa after asynchronous work
 * (the PDP's lean path, ./authzen-lean.ts): unlike {@link observeAnswered}, the server span is
 * opened now (child of the caller's `traceparent`) and is the parent of what the work traces
 * (`pdp.evaluate`), as it is on the routes.
 *
 * @param route - a route label as {@link routeOf} gives it (a known path, never a raw one).
 */
export function observeAnswering(req: IncomingMessage, route: string): Answering {
  const start = process.hrtime.bigint();
  const method = req.method ?? 'GET';
  const parent = propagation.extract(ROOT_CONTEXT, req.headers);
  const span = tracer().startSpan(`${method} ${route}`, { kind: SpanKind.SERVER, attributes: { 'http.request.method': method, 'http.route': route } }, parent);
  const active = trace.setSpan(parent, span);
  return {
    run: (work) => context.with(active, work),
    answered(status) {
      metrics.httpRequests.inc({ route, method, status: String(status) });
      metrics.httpDuration.observe({ route, method }, secondsSince(start));
      span.setAttribute('http.response.status_code', status);
      span.end();
    },
    abandoned() {
      span.setAttribute('deputy.handed_to_routes', true);
      span.end();
    },
  };
}

/** `GET /metrics` on the main listener, for an admin client's token (`deputy:admin`, as `/admin/*`). */
export function metricsRoutes(deps: { authenticate: Authenticate; audience: string }): Router {
  const router = new Router();
  router.get(METRICS_PATH, requireAdmin(deps), async function scrape(ctx) {
    const { contentType, body } = await metrics.exposition();
    noStore(ctx);
    ctx.type = contentType;
    ctx.body = body;
  });
  return router;
}

/**
 * The request handler of the separate metrics listener (`metrics.listen`): `GET`/`HEAD /metrics`
 * without authentication, 404 for anything else. No Koa: nothing else is served there.
 *
 * @param exposition - this process's metrics; in a cluster primary, every worker's summed.
 */
export function metricsListener(exposition: Exposition = processExposition): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== METRICS_PATH || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(path === METRICS_PATH ? 405 : 404, { 'Content-Type': 'text/plain; charset=utf-8', ...(path === METRICS_PATH ? { Allow: 'GET, HEAD' } : {}) }).end(path === METRICS_PATH ? 'method not allowed\n' : 'not found\n');
      return;
    }
    exposition().then(
      ({ contentType, body }) => {
        res.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': NO_STORE });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      () => res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end('metrics unavailable\n'),
    );
  };
}
