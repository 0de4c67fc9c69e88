/**
 * Liveness (`/healthz`: the process answers, and its store is not lost for good — `Store.lost`)
 * and readiness (`/readyz`: the store answers and
 * keys are loaded). Load balancers route only to ready instances.
 *
 * @module
 */
import Router from '@koa/router';
import type { KeyStore } from '../keys/index.js';
import type { Store } from '../store/index.js';
import { noStore } from '../util/http.js';

export function healthRoutes(deps: { store: Store; keys: KeyStore | undefined }): Router {
  const router = new Router();
  router.get('/healthz', (ctx) => {
    noStore(ctx);
    // A store lost for good (the embedded database's worker died) is not an outage: only a restart
    // brings it back, so liveness fails and the orchestrator restarts the process.
    const lost = deps.store.lost?.() !== undefined;
    ctx.status = lost ? 503 : 200;
    ctx.body = lost ? { status: 'store_lost' } : { status: 'ok' };
  });
  router.get('/readyz', async (ctx) => {
    noStore(ctx);
    const store = await deps.store.ping().then(
      () => 'ok' as const,
      () => 'unavailable' as const,
    );
    const keys = deps.keys?.activeSigningKey ? ('ok' as const) : ('missing' as const);
    const ready = store === 'ok' && keys === 'ok';
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ready' : 'not_ready', checks: { store, keys } };
  });
  return router;
}
