/**
 * Admin API for the PDP's policy set (requires a `deputy:admin` token, like every admin route):
 *
 * - `GET /admin/policies`: the set serving now (generation, digest, `loaded_at` as RFC 3339, policy
 *   ids and effects). One resource, not a paged listing: the set is served and digested whole.
 * - `POST /admin/policies/reload`: reload the policy folder now. An invalid set is refused with
 *   422 and the validation errors; the previous set keeps serving.
 *
 * @module
 */
import Router from '@koa/router';
import { DeputyError } from '../errors/index.js';
import { PolicyLoadError, type PdpService } from '../pdp/service.js';
import { requireAdmin, wireTime } from './admin-api.js';
import type { Authenticate } from './util.js';

export interface PolicyAdminDeps {
  pdp: PdpService;
  authenticate: Authenticate;
  /** The admin resource identifier (token audience). */
  audience: string;
}

/** The policy folder did not validate: 422 with every problem (files and Cedar's messages). */
export class PolicySetRefused extends DeputyError {
  constructor(readonly issues: readonly string[]) {
    super(422, 'invalid_request', `the policy set was refused and the previous set keeps serving: ${issues.slice(0, 20).join('; ')}`);
  }
}

export function policyAdminRoutes(deps: PolicyAdminDeps): Router {
  const router = new Router({ prefix: '/admin/policies' });
  router.use(requireAdmin(deps));

  router.get('/', async function showPolicies(ctx) {
    const s = deps.pdp.policies.current;
    ctx.body = {
      dir: deps.pdp.policies.dir,
      generation: s.generation,
      digest: s.digest,
      loaded_at: wireTime(s.loadedAt),
      policies: [...s.policies.values()].map((p) => ({ id: p.id, effect: p.effect, file: p.file })),
      entities: s.data.size,
      warnings: s.warnings,
    };
  });

  router.post('/reload', async function reloadPolicies(ctx) {
    try {
      const r = await deps.pdp.reload('admin');
      ctx.body = { changed: r.changed, generation: r.generation, policies: r.policies, entities: r.entities, digest: r.digest, warnings: r.warnings };
    } catch (err) {
      if (err instanceof PolicyLoadError) throw new PolicySetRefused(err.issues);
      throw err;
    }
  });

  return router;
}
