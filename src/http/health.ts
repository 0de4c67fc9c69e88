/**
 * Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the store answers and
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
    ctx.body = { status: 'ok' };
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
