/**
 * The admin API: agents (create, list, read, update, disable, enable, delete). Every route requires an
 * access token Deputy issued for its admin resource with the `deputy:admin` scope; there is no
 * unauthenticated admin surface. Members, timestamps and pagination follow the admin API's one
 * dialect (./admin-api.ts): `max_delegation_depth` on read and write, RFC 3339 times.
 *
 * @module
 */
import Router from '@koa/router';
import type { Agent, AgentPatch, AgentRegistry } from '../agents/index.js';
import { agentPatchSchema, agentSchema } from '../config/schema.js';
import { InvalidRequest, NotFound } from '../errors/index.js';
import { ADMIN_SCOPE, deputyOwnGrantIssues } from '../oauth/deputy-own.js';
import { nextCursor, pageRequest, parseAdminBody, requireAdmin, schemaMembers, toWire, wireFields, wireTime } from './admin-api.js';
import { jsonBody, type Authenticate } from './util.js';

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

/** Agent members: `maxDelegationDepth` inside, `max_delegation_depth` on the wire. */
const AGENT_FIELDS = wireFields([...schemaMembers(agentSchema), ...schemaMembers(agentPatchSchema)]);

export function adminRoutes(deps: AdminDeps): Router {
  const router = new Router({ prefix: '/admin' });
  router.use(requireAdmin(deps), jsonBody(deps.bodyLimitBytes));

  router.get('/agents', async function listAgents(ctx) {
    const page = await deps.agents.list(pageRequest(ctx.query, 'agents'));
    ctx.body = { agents: page.agents.map(view), next_cursor: nextCursor('agents', page.next) };
  });

  router.post('/agents', async function createAgent(ctx) {
    const input = parseAdminBody(agentSchema, ctx.request.body, agentNamed('agent', (ctx.request.body as { id?: unknown } | undefined)?.id), AGENT_FIELDS);
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
    const patch = parseAdminBody(agentPatchSchema, ctx.request.body, agentNamed('change to agent', ctx.params.id), AGENT_FIELDS) as AgentPatch;
    refuseDeputyOwn(patch, deps.issuer, 'agent change');
    ctx.body = view(await deps.agents.update(ctx.params.id!, patch));
  });

  router.post('/agents/:id/disable', async function disableAgent(ctx) {
    ctx.body = view(await deps.agents.update(ctx.params.id!, { status: 'disabled' }));
  });

  router.post('/agents/:id/enable', async function enableAgent(ctx) {
    ctx.body = view(await deps.agents.update(ctx.params.id!, { status: 'active' }));
  });

  /**
   * 204 once deleted: its tokens and everything delegated from them revoked, its receipts kept
   * and its chain closed by an `agent_deleted` receipt naming this request (src/agents/registry.ts `delete`). 404 for an unknown id, a repeated DELETE included: the
   * method is idempotent by its effect, not its status (RFC 9110 §9.2.2, §9.3.5). 409 for a
   * configured agent (removed from the file, it is deleted at the next start).
   */
  router.delete('/agents/:id', async function deleteAgent(ctx) {
    await deps.agents.delete(ctx.params.id!, { requestId: ctx.state.requestId });
    ctx.status = 204;
  });

  return router;
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

/** The wire view of an agent (./admin-api.ts): snake_case members, RFC 3339 times. */
function view(a: Agent): Record<string, unknown> {
  const { jwks, jwks_uri, createdAt, updatedAt, ...rest } = a;
  return toWire({ ...rest, ...(jwks ? { jwks } : { jwks_uri }), createdAt: wireTime(createdAt), updatedAt: wireTime(updatedAt) });
}

/** `agent "a"` for errors about one agent (as the configuration's `agents.3 (agent "a")`); `what` alone when the id is not a string. */
function agentNamed(what: string, id: unknown): string {
  return typeof id === 'string' ? `${what} ${JSON.stringify(id.slice(0, 128))}` : what;
}
