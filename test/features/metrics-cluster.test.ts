/**
 * `metrics.listen` with several workers (PostgreSQL only): the primary serves every worker's
 * metrics summed (prom-client's cluster aggregation), whichever worker served the requests,
 * and stops with the workers on SIGTERM.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { createTestDatabase, usingPostgres } from '../support/database.js';
import { freePort } from '../support/net.js';
import { isListening, killAll, logLines, startDeputyProcess } from '../support/process.js';
import { parsePrometheus, sampleValue } from '../support/prometheus.js';

const tmp = mkdtempSync(join(tmpdir(), 'deputy-metrics-cluster-'));
afterAll(() => {
  killAll();
  rmSync(tmp, { recursive: true, force: true });
});

it.skipIf(!usingPostgres)(
  'sums the workers\' metrics on the primary\'s metrics listener',
  async () => {
    const db = await createTestDatabase();
    try {
      const [port, metricsPort] = [await freePort(), await freePort()];
      const proc = startDeputyProcess({
        DEPUTY_WORKERS: '2', PORT: String(port), HOST: '127.0.0.1', DATABASE_URL: db.url!, DEPUTY_KEYS_DIR: join(tmp, 'keys'),
        DEPUTY_METRICS_LISTEN: `127.0.0.1:${metricsPort}`, LOG_LEVEL: 'info',
      });
      await proc.until((out) => logLines(out).filter((l) => l.msg === 'deputy started').length >= 2, 'two workers started');
      for (let i = 0; i < 6; i += 1) expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(404);

      const families = parsePrometheus(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
      expect(sampleValue(families, 'deputy_http_requests_total', { route: '/healthz', status: '200' })).toBe(6);
      expect(sampleValue(families, 'deputy_pdp_policy_generation')).toBe(1);
      expect(sampleValue(families, 'deputy_store_pool_total')).toBeGreaterThanOrEqual(2);

      proc.child.kill('SIGTERM');
      expect((await proc.exited).code).toBe(0);
      expect(await isListening(metricsPort)).toBe(false);
    } finally {
      await db.drop();
    }
  },
  120_000,
);
