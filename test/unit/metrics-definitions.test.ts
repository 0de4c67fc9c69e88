/**
 * The metric definitions are an operator contract (README, docs/production.md): names, help,
 * types, label names, buckets, aggregators and the order of the exposition must not drift when
 * src/observability/metrics.ts is refactored. The snapshot was taken before the definitions
 * became one table (test/fixtures/metrics/README.md).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DeputyMetrics } from '../../src/observability/metrics.js';

interface Definition {
  name: string;
  help: string;
  type: string;
  labels: string[];
  buckets?: number[];
  aggregator?: string;
}

const SNAPSHOT = JSON.parse(readFileSync(new URL('../fixtures/metrics/definitions.json', import.meta.url), 'utf8')) as {
  definitions: Definition[];
  exposition: string[];
};

/** A registry with every source observed, so the collect-time gauges and the pool gauges show. */
function observedMetrics(): DeputyMetrics {
  const m = new DeputyMetrics();
  m.observeStore({ poolStats: () => ({ total: 3, idle: 2, waiting: 1 }) });
  m.observePolicies(() => ({ generation: 4, digest: '0123456789abcdef0123' }));
  m.observeSigningKey(() => Date.now() / 1000);
  return m;
}

function definitionsOf(m: DeputyMetrics): Definition[] {
  type Raw = { name: string; help: string; type: string; labelNames: string[]; upperBounds?: number[]; aggregator: string };
  const raw = m.registry.getMetricsAsArray() as unknown as Raw[];
  return raw
    .filter((x) => x.name.startsWith('deputy_'))
    .map((x) => ({
      name: x.name,
      help: x.help,
      type: x.type,
      labels: x.labelNames,
      ...(x.upperBounds ? { buckets: x.upperBounds } : {}),
      ...(x.aggregator !== 'sum' ? { aggregator: x.aggregator } : {}),
    }));
}

describe('metric definitions', () => {
  it('keeps every deputy_* name, help, type, label set, buckets and aggregator', () => {
    expect(definitionsOf(observedMetrics())).toEqual(SNAPSHOT.definitions);
  });

  it('keeps the deputy_* lines of the exposition, in order (values cut)', async () => {
    const body = (await observedMetrics().exposition()).body;
    const lines = body
      .split('\n')
      .filter((l) => /^(# (HELP|TYPE) )?deputy_/.test(l))
      .map((l) => (l.startsWith('#') ? l : l.replace(/ [0-9.e+-]+$/, '')));
    expect(lines).toEqual(SNAPSHOT.exposition);
  });

  it('registers the pool gauges only for a store with a pool', () => {
    const m = new DeputyMetrics();
    expect(m.registry.getSingleMetric('deputy_store_pool_total')).toBeUndefined();
    m.observeStore({ poolStats: () => ({ total: 1, idle: 1, waiting: 0 }) });
    expect(m.registry.getSingleMetric('deputy_store_pool_total')).toBeDefined();
    m.observeStore(undefined);
    expect(m.registry.getSingleMetric('deputy_store_pool_waiting')).toBeUndefined();
  });
});
