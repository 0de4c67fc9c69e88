/**
 * The admin API: agents (create, list, read, update, disable, enable). Every route requires an
 * access token Deputy issued for its admin resource with the `deputy:admin` scope; there is no
 * unauthenticated admin surface.
 *
 * @module
 */
import Router from '@koa/router';
import type Koa from 'koa';
import type { Agent, AgentPatch, AgentRegistry } from '../agents/registry.js';
import { agentPatchSchema, agentSchema } from '../config/schema.js';
import { InvalidRequest, NotFound } from '../errors/index.js';
import type { AuthenticatedRequest } from '../oauth/access-token.js';
import { ADMIN_SCOPE, deputyOwnGrantIssues } from '../oauth/deputy-own.js';
import { jsonBody, parseWith, type Authenticate } from './util.js';

export interface AdminDeps {
  agents: AgentRegistry;
  authenticate: Authenticate;
  /** Deputy's issuer: agents may not be granted resources under it (src/oauth/deputy-own.ts). */
  issuer: string;
  /** The admin resource identifier (token audience). */
  audience: string;
  /** `admin.clients` ids: an agent may not take an operator client's id. */
  operatorClientIds: ReadonlySet<string>;
  bodyLimitBytes: number;
}

export { ADMIN_SCOPE };

export function adminRoutes(deps: AdminDeps): Router {
  const router = new Router({ prefix: '/admin' });
  router.use(noStore, requireAdmin(deps), jsonBody(deps.bodyLimitBytes));

  router.get('/agents', async function listAgents(ctx) {
    const limit = parseLimit(ctx.query.limit);
    const after = typeof ctx.query.cursor === 'string' && ctx.query.cursor ? decodeCursor(ctx.query.cursor) : undefined;
    const page = await deps.agents.list({ limit, ...(after ? { after } : {}) });
    ctx.body = { agents: page.agents.map(view), next_cursor: page.next ? encodeCursor(page.next) : null };
  });

  router.post('/agents', async function createAgent(ctx) {
    const input = parseWith(agentSchema, ctx.request.body, 'agent');
    if (deps.operatorClientIds.has(input.id)) throw new InvalidRequest(`invalid agent: id: "${input.id}" is the client_id of an operator client (admin.clients)`);
    refuseDeputyOwn(input, deps.issuer, 'agent');
    const agent = await deps.agents.create(input);
    ctx.status = 201;
    ctx.set('Location', `/admin/agents/${encodeURIComponent(agent.id)}`);
    ctx.body = view(agent);
  });

  router.get('/agents/:id', async function readAgent(ctx) {
    ctx.body = view(await mustGet(deps.agents, ctx.params.id!));
  });

  router.patch('/agents/:id', async function updateAgent(ctx) {
    const patch = parseWith(agentPatchSchema, ctx.request.body, 'agent change') as AgentPatch;
    refuseDeputyOwn(patch, deps.issuer, 'agent change');
    ctx.body = view(await deps.agents.update(ctx.params.id!, patch));
  });

  router.post('/agents/:id/disable', async function disableAgent(ctx) {
    ctx.body = view(await deps.agents.update(ctx.params.id!, { status: 'disabled' }));
  });

  router.post('/agents/:id/enable', async function enableAgent(ctx) {
    ctx.body = view(await deps.agents.update(ctx.params.id!, { status: 'active' }));
  });

  return router;
}

/** Authenticates an admin call: a Deputy token for the admin resource with `deputy:admin`. */
export function requireAdmin(deps: Pick<AdminDeps, 'authenticate' | 'audience'>): Koa.Middleware {
  return async function authenticateAdmin(ctx, next) {
    const auth: AuthenticatedRequest = await deps.authenticate(ctx, deps.audience, ADMIN_SCOPE);
    ctx.state.auth = auth;
    (ctx.state.log as { info: (o: object, m: string) => void }).info({ admin: auth.claims.client_id, method: ctx.method, path: ctx.path }, 'admin call');
    await next();
  };
}

export async function noStore(ctx: Koa.Context, next: Koa.Next): Promise<void> {
  ctx.set('Cache-Control', 'no-store');
  await next();
}

/**
 * Deputy's own scopes and resources are never an agent's (DESIGN invariant): 400
 * `invalid_request` naming each field (`scopes.0`, `audiences.1`). The schema already refuses
 * Deputy's scopes; audiences need the issuer, so they are checked here.
 */
function refuseDeputyOwn(agent: Pick<AgentPatch, 'scopes' | 'audiences'>, issuer: string, what: string): void {
  const issues = deputyOwnGrantIssues(agent, issuer);
  if (issues.length) throw new InvalidRequest(`invalid ${what}: ${issues.slice(0, 10).join('; ')}`);
}

async function mustGet(agents: AgentRegistry, id: string): Promise<Agent> {
  const agent = await agents.get(id);
  if (!agent) throw new NotFound(`agent "${id}" does not exist`);
  return agent;
}

/** The wire view of an agent: snake_case like the rest of the OAuth surface. */
function view(a: Agent): Record<string, unknown> {
  return {
    id: a.id,
    name: a.name,
    owner: a.owner,
    scopes: a.scopes,
    audiences: a.audiences,
    max_delegation_depth: a.maxDelegationDepth,
    status: a.status,
    ...(a.jwks ? { jwks: a.jwks } : { jwks_uri: a.jwks_uri }),
    source: a.source,
    created_at: a.createdAt,
    updated_at: a.updatedAt,
  };
}

function parseLimit(raw: unknown): number {
  if (raw === undefined) return 50;
  const n = Number(raw);
  if (typeof raw !== 'string' || !/^\d+$/.test(raw) || n < 1 || n > 200) throw new InvalidRequest('limit must be an integer from 1 to 200');
  return n;
}

function encodeCursor(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): string {
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(cursor)) throw new InvalidRequest('cursor is malformed');
  return Buffer.from(cursor, 'base64url').toString('utf8');
}
