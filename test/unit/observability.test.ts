/**
 * The pure parts of observability: the `metrics.listen` setting and its environment variable,
 * the budget hook's guard, and the route label of requests no router matched.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, validateConfig } from '../../src/config/load.js';
import { CachedJwks } from '../../src/federation/jwks.js';
import { classifyError } from '../../src/http/errors.js';
import { StoreUnavailableError } from '../../src/store/index.js';
import { OTHER_ROUTE, routeOf } from '../../src/http/metrics.js';
import { metrics, recordBudgetSpend, statusClass } from '../../src/observability/metrics.js';

describe('metrics.listen', () => {
  it.each(['127.0.0.1:9464', '0.0.0.0:0', 'metrics.internal:9464', '[::1]:9464'])('accepts %s', (listen) => {
    expect(validateConfig({ metrics: { listen } }, 'test').metrics.listen).toBe(listen);
  });

  it.each(['9464', '127.0.0.1', '127.0.0.1:99999', 'http://127.0.0.1:9464', '::1:9464', '127.0.0.1:94 64'])('refuses %s, naming the field', (listen) => {
    expect(() => validateConfig({ metrics: { listen } }, 'test')).toThrow(/metrics\.listen/);
  });

  it('is unset by default and set by DEPUTY_METRICS_LISTEN', () => {
    expect(loadConfig({ env: {} }).metrics.listen).toBeUndefined();
    expect(loadConfig({ env: { DEPUTY_METRICS_LISTEN: '127.0.0.1:9464' } }).metrics.listen).toBe('127.0.0.1:9464');
    expect(() => loadConfig({ env: { DEPUTY_METRICS_LISTEN: 'nine' } })).toThrow(ConfigError);
  });
});

describe('recordBudgetSpend', () => {
  it('adds positive finite amounts only', async () => {
    const read = async () => (await metrics.budgetSpend.get()).values.find((v) => v.labels.budget === 'b-unit')?.value ?? 0;
    recordBudgetSpend('b-unit', 'cost', 2.5);
    recordBudgetSpend('b-unit', 'cost', 0);
    recordBudgetSpend('b-unit', 'cost', -4);
    recordBudgetSpend('b-unit', 'cost', Number.NaN);
    recordBudgetSpend('b-unit', 'cost', Number.POSITIVE_INFINITY);
    expect(await read()).toBe(2.5);
  });
});

describe('deputy_store_unavailable_total', () => {
  it('counts the errors rendered as 503 because the store could not answer, and nothing else', async () => {
    const read = async () => (await metrics.storeUnavailable.get()).values[0]?.value ?? 0;
    const before = await read();
    expect(classifyError(new Error('wrapped', { cause: new StoreUnavailableError('connection refused') })).status).toBe(503);
    expect(classifyError(new Error('a bug')).status).toBe(500);
    expect(await read()).toBe(before + 1);
  });
});

describe('deputy_federation_jwks_fetch_failures_total', () => {
  it('counts a JWK Set that cannot be fetched', async () => {
    const read = async () => (await metrics.federationJwksFetchFailures.get()).values[0]?.value ?? 0;
    const before = await read();
    // Port 9 (discard) on loopback: refused at once, no network needed.
    const jwks = new CachedJwks(new URL('http://127.0.0.1:9/jwks'), { cacheMaxAgeMs: 60_000, unknownKidCooldownMs: 0, timeoutMs: 2_000 });
    await expect(jwks.getKey({ alg: 'ES256', kid: 'k' }, { payload: '', signature: '' } as never)).rejects.toThrow();
    expect(await read()).toBe(before + 1);
  });
});

describe('route labels', () => {
  const ctx = (status: number, matched?: string) => ({ status, ...(matched ? { _matchedRoute: matched } : {}) }) as unknown as Parameters<typeof routeOf>[0];

  it('uses the router pattern, then known paths and prefixes, else other', () => {
    expect(routeOf(ctx(200, '/admin/agents/:id'), '/admin/agents/a-1')).toBe('/admin/agents/:id');
    expect(routeOf(ctx(200), '/token')).toBe('/token');
    expect(routeOf(ctx(502), '/gw/echo/v1/users/42')).toBe('/gw/:connection/*');
    expect(routeOf(ctx(200), '/.well-known/oauth-protected-resource/gw/echo')).toBe('/.well-known/oauth-protected-resource/*');
    expect(routeOf(ctx(404), '/gw/nope/x')).toBe(OTHER_ROUTE);
    expect(routeOf(ctx(400), '/random/abc')).toBe(OTHER_ROUTE);
  });

  it('labels status classes', () => {
    expect([200, 204, 302, 404, 503].map(statusClass)).toEqual(['2xx', '2xx', '3xx', '4xx', '5xx']);
  });
});
