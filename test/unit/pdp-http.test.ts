/**
 * The AuthZEN routes on a bare Koa app (no store, no OAuth server): the `pdp.auth: none`
 * deployment mode, where decisions carry only end-user reasons.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentRegistry } from '../../src/agents/registry.js';
import { RegistryAuthorizer, type SubjectResolver } from '../../src/delegation/index.js';
import { authzenRoutes, PepTokens } from '../../src/http/authzen.js';
import { errorBoundary } from '../../src/http/errors.js';
import { requestContext } from '../../src/http/middleware.js';
import type { Authenticate } from '../../src/http/util.js';
import { createLogger } from '../../src/log.js';
import { CedarEngine } from '../../src/pdp/engine.js';
import { AgentCache } from '../../src/pdp/entities.js';
import { PolicyDecisionPoint } from '../../src/pdp/pdp.js';
import { PolicyStore } from '../../src/pdp/policy-store.js';
import { Search } from '../../src/pdp/search.js';
import { REPO } from '../support/authzen.js';

let server: Server;
let url: string;
const refuseAll: Authenticate = () => Promise.reject(new Error('authentication must not be called in "none" mode'));

beforeAll(async () => {
  const logger = createLogger('silent');
  const store = new PolicyStore({ dir: `${REPO}config/policies`, logger });
  await store.load();
  const registry = { onChange: () => {}, get: async () => undefined, list: async () => ({ agents: [] }) } as unknown as AgentRegistry;
  const agents = new AgentCache(registry, 5);
  const subjects = { resolve: () => Promise.reject(new Error('no delegated subjects here')) } as unknown as SubjectResolver;
  const pdp = new PolicyDecisionPoint({ store, engine: new CedarEngine({ cacheSize: 100 }), subjects, registry: new RegistryAuthorizer(3), agents, logger });
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
  server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const post = async (body: unknown) => {
  const res = await fetch(`${url}/access/v1/evaluation`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

describe('pdp.auth: none', () => {
  it('answers without authentication', async () => {
    const res = await post({ subject: { type: 'User', id: 'a', properties: { email: 'a@x' } }, action: { name: 'read' }, resource: { type: 'Resource', id: 'r', properties: { owner: 'a@x' } } });
    expect(res).toEqual({ status: 200, body: { decision: true } });
  });

  it('a deny carries reason_user only: no admin reason, link or policy ids for unauthenticated callers', async () => {
    const res = await post({ subject: { type: 'User', id: 'a' }, action: { name: 'read' }, resource: { type: 'Resource', id: 'r' } });
    expect(res.body).toEqual({ decision: false, context: { id: 'not_permitted', reason_user: { en: 'Access denied.' } } });
  });

  it('a delegated subject that cannot be resolved is an error (500), not a permit', async () => {
    const res = await post({ subject: { type: 'User', id: 'a', properties: { token: 'x.y.z' } }, action: { name: 'read' }, resource: { type: 'Resource', id: 'r' } });
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: 'server_error', error_description: 'an unexpected error occurred' });
  });

  it('the metadata names the configured issuer as the PDP', async () => {
    const meta = (await (await fetch(`${url}/.well-known/authzen-configuration`)).json()) as Record<string, unknown>;
    expect(meta.policy_decision_point).toBe('https://pdp.example.com');
    expect(meta.access_evaluation_endpoint).toBe('https://pdp.example.com/access/v1/evaluation');
  });
});
