/**
 * The AuthZEN routes on a bare Koa app (no store, no OAuth server), in the `pdp.auth: none`
 * deployment mode: a policy store, an empty agent registry, no delegated subjects. Shared by the
 * tests that drive the PDP over HTTP without a whole Deputy (pdp-http, pdp-cedar-crash).
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import type { Logger } from 'pino';
import type { AgentRegistry } from '../../src/agents/registry.js';
import { RegistryAuthorizer, type SubjectResolver } from '../../src/delegation/index.js';
import { authzenRoutes, PepTokens } from '../../src/http/authzen.js';
import { errorBoundary } from '../../src/http/errors.js';
import { requestContext } from '../../src/http/middleware.js';
import type { Authenticate } from '../../src/http/util.js';
import { CedarEngine } from '../../src/pdp/engine.js';
import { AgentCache } from '../../src/pdp/entities.js';
import { PolicyDecisionPoint } from '../../src/pdp/pdp.js';
import type { PolicyStore } from '../../src/pdp/policy-store.js';
import { Search } from '../../src/pdp/search.js';

const refuseAll: Authenticate = () => Promise.reject(new Error('authentication must not be called in "none" mode'));

/** A listening bare PDP over `store` (already loaded); `cacheSize` is the engine's decision cache. */
export async function startBarePdp(store: PolicyStore, logger: Logger, cacheSize: number): Promise<{ server: Server; url: string }> {
  const registry = { onChange: () => {}, get: async () => undefined, list: async () => ({ agents: [] }) } as unknown as AgentRegistry;
  const agents = new AgentCache(registry, 5);
  const subjects = { resolve: () => Promise.reject(new Error('no delegated subjects here')) } as unknown as SubjectResolver;
  const pdp = new PolicyDecisionPoint({ store, engine: new CedarEngine({ cacheSize }), subjects, registry: new RegistryAuthorizer(3), agents, logger });
  const router = authzenRoutes({
    pdp,
    search: new Search(pdp, agents, { defaultLimit: 10, maxLimit: 10 }),
    issuer: 'https://pdp.example.com',
    authenticate: refuseAll,
    audience: 'https://pdp.example.com/access',
    auth: 'none',
    adminReasons: true,
    bodyLimitBytes: 4096,
    maxBatch: 10,
    maxJsonDepth: 8,
    pepTokens: new PepTokens({ knownLive: () => false }),
  });
  const app = new Koa();
  app.use(requestContext(logger));
  app.use(errorBoundary());
  app.use(router.routes()).use(router.allowedMethods());
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}
