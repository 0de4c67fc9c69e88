/**
 * `/admin/connections`: the connections admin API (DESIGN capability 3) — create, list, read,
 * rotate the secret, delete, disconnect a user. Write-only for secrets: no route returns one,
 * only whether one is set and its version. Speaks the admin API's dialect (./admin-api.ts).
 *
 * @module
 */
import Router from '@koa/router';
import { NotFound } from '../errors/index.js';
import { gatewayAudience } from '../gateway/gateway.js';
import { connectionInputSchema, secretRotationSchema } from '../vault/connections/config.js';
import type { Connection, ConnectionStore } from '../vault/connections/store.js';
import type { UserGrants } from '../vault/connections/user-grants.js';
import { nextCursor, pageRequest, parseAdminBody, requireAdmin, schemaMembers, toWire, wireFields, wireTime } from './admin-api.js';
import { jsonBody, type Authenticate } from './util.js';

/** Connection members: `baseUrl` in the YAML, `base_url` in the admin API. */
const CONNECTION_FIELDS = wireFields(schemaMembers(connectionInputSchema));
const SECRET_ROTATION_FIELDS = wireFields(schemaMembers(secretRotationSchema));

export interface ConnectionAdminDeps {
  connections: ConnectionStore;
  grants: UserGrants;
  authenticate: Authenticate;
  /** The admin resource identifier (token audience). */
  audience: string;
  issuer: string;
  bodyLimitBytes: number;
}

/**
 * `/admin/connections`: create, list, read, rotate the secret, delete, disconnect a user.
 * Write-only for secrets: no route returns one, only whether one is set and its version.
 * The admin API's dialect (./admin-api.ts): snake_case members (`base_url`, `required_scopes`)
 * on read and write, although the YAML spells them `baseUrl`, `requiredScopes`.
 */
export function connectionAdminRoutes(deps: ConnectionAdminDeps): Router {
  const router = new Router({ prefix: '/admin/connections' });
  router.use(requireAdmin(deps), jsonBody(deps.bodyLimitBytes));

  const view = (c: Connection) => connectionView(deps.issuer, c);

  router.get('/', async function listConnections(ctx) {
    const page = await deps.connections.list(pageRequest(ctx.query, 'connections'));
    ctx.body = { connections: page.connections.map(view), next_cursor: nextCursor('connections', page.next) };
  });

  router.post('/', async function createConnection(ctx) {
    const input = parseAdminBody(connectionInputSchema, ctx.request.body, 'connection', CONNECTION_FIELDS);
    const created = await deps.connections.create(input);
    ctx.status = 201;
    ctx.set('Location', `/admin/connections/${created.id}`);
    ctx.body = view(created);
  });

  router.get('/:id', async function readConnection(ctx) {
    ctx.body = view(await mustGet(deps.connections, ctx.params.id!));
  });

  router.post('/:id/secret', async function rotateSecret(ctx) {
    const { secret } = parseAdminBody(secretRotationSchema, ctx.request.body, 'secret rotation', SECRET_ROTATION_FIELDS);
    ctx.body = view(await deps.connections.rotateSecret(ctx.params.id!, secret));
  });

  router.delete('/:id', async function deleteConnection(ctx) {
    await deps.connections.delete(ctx.params.id!);
    ctx.status = 204;
  });

  router.delete('/:id/users/:user', async function disconnectUser(ctx) {
    await mustGet(deps.connections, ctx.params.id!);
    if (!(await deps.grants.disconnect(ctx.params.id!, ctx.params.user!))) throw new NotFound(`user "${ctx.params.user!.slice(0, 200)}" has not connected "${ctx.params.id}"`);
    ctx.status = 204;
  });
  return router;
}

/** The wire view of a connection (./admin-api.ts): snake_case members (settings too), RFC 3339 times; never a secret. */
export function connectionView(issuer: string, c: Connection): Record<string, unknown> {
  return {
    id: c.id,
    kind: c.kind,
    name: c.settings.name ?? null,
    audience: gatewayAudience(issuer, c.id),
    gateway_url: gatewayAudience(issuer, c.id),
    settings: toWire(c.settings),
    has_secret: c.hasSecret,
    secret_version: c.secretVersion,
    secret_updated_at: wireTime(c.secretUpdatedAt),
    source: c.source,
    created_at: wireTime(c.createdAt),
    updated_at: wireTime(c.updatedAt),
  };
}

/** The connection `id`, or NotFound (404). */
async function mustGet(connections: ConnectionStore, id: string): Promise<Connection> {
  const c = await connections.get(id);
  if (!c) throw new NotFound(`connection "${id.slice(0, 64)}" does not exist`);
  return c;
}
