/**
 * HTTP surfaces of the MCP gateway:
 *
 * - `/mcp/{server}` — the Streamable HTTP endpoint (POST, GET, DELETE), plain middleware before
 *   the server-wide body parser and limit: the gateway reads bodies under each server's own limit
 *   and the SDK transport writes the response (JSON or SSE) itself.
 * - RFC 9728 protected resource metadata of each server ({@link mcpProtectedResources}, served
 *   with every other surface's by ./protected-resource-metadata.ts), so an unmodified MCP client
 *   finds Deputy as the server's authorization server.
 * - `/admin/mcp-servers…` — servers (create, list, read, delete), live tools with their pin
 *   verdicts, approving pins, importing publisher pins, exporting pins with the keys that
 *   verify them, revoking a pin. `deputy:admin` tokens only, like every admin route.
 *
 * @module
 */
import Router from '@koa/router';
import type Koa from 'koa';
import type { KeyStore } from '../keys/keystore.js';
import { DeputyError, InvalidRequest, NotFound } from '../errors/index.js';
import { MCP_SERVER_ID, mcpServerSchema, serverScope, type McpServerConfig } from '../mcp/config.js';
import { mcpAudience, McpHttpError, MCP_PREFIX, type McpSurface } from '../mcp/index.js';
import type { StoredPin } from '../mcp/store.js';
import { TOOL_PIN_ALGORITHMS, TOOL_PIN_TYP } from '../mcp/tool-pin.js';
import { parseAdminBody, requireAdmin, schemaMembers, toWire, wireFields, wireTime } from './admin-api.js';
import { mcpServerLookup, type ProtectedResourceLookup } from './protected-resource-metadata.js';
import { RECEIPTS_JWKS_PATH } from './receipts.js';
import { jsonBody, type Authenticate } from './util.js';

const MCP_PATH = new RegExp(`^${MCP_PREFIX}/([^/]+)/?$`);
const SERVER_FIELDS = wireFields(schemaMembers(mcpServerSchema));

/** `/mcp/{server}`: authenticated, decided and relayed by the MCP gateway. */
export function mcpMiddleware(mcp: McpSurface): Koa.Middleware {
  return async function mcpCall(ctx, next) {
    const m = MCP_PATH.exec(ctx.path);
    if (!m) return next();
    if (!MCP_SERVER_ID.test(m[1]!)) throw new NotFound(`MCP server "${m[1]!.slice(0, 64)}" does not exist`);
    if (!['GET', 'POST', 'DELETE'].includes(ctx.method)) {
      ctx.set('Allow', 'GET, POST, DELETE');
      return rpcError(ctx, 405, -32000, 'Method not allowed.');
    }
    try {
      ctx.respond = false;
      await mcp.gateway.handle({ serverId: m[1]!, req: ctx.req, res: ctx.res, requestId: String(ctx.state.requestId) });
    } catch (err) {
      ctx.respond = true;
      if (ctx.res.headersSent) throw err;
      if (err instanceof McpHttpError) return rpcError(ctx, err.status, err.rpcCode, err.message);
      throw err; // DeputyError: 401 with its challenge, 404 … rendered by the error boundary
    }
  };
}

/** A JSON-RPC error body (id null: the request could not be attributed to a message). */
function rpcError(ctx: Koa.Context, status: number, code: number, message: string): void {
  ctx.status = status;
  ctx.type = 'application/json';
  ctx.body = { jsonrpc: '2.0', error: { code, message }, id: null };
}

export interface McpRoutesDeps {
  mcp: McpSurface;
  keys: Pick<KeyStore, 'receiptJwks'>;
  authenticate: Authenticate;
  /** The admin resource identifier (token audience). */
  audience: string;
  issuer: string;
  bodyLimitBytes: number;
}

/**
 * RFC 9728: the MCP gateway's answer to "which protected resource is at this path?" — each
 * server at `/mcp/{server}`, its scopes the required ones (default `mcp:{server}`, the scope
 * its PDP resource carries).
 */
export function mcpProtectedResources(issuer: string, mcp: Pick<McpSurface, 'servers'>): ProtectedResourceLookup {
  return mcpServerLookup(issuer, {
    get: async (id) => {
      const server = await mcp.servers.get(id);
      return server && { id: server.id, name: server.settings.name, requiredScopes: server.settings.requiredScopes.length ? server.settings.requiredScopes : [serverScope(server.settings)] };
    },
  });
}

/** `/admin/mcp-servers`: servers and their pins. */
export function mcpAdminRoutes(deps: McpRoutesDeps): Router {
  const router = new Router({ prefix: '/admin/mcp-servers' });
  router.use(requireAdmin(deps), jsonBody(deps.bodyLimitBytes));
  const { servers, gateway } = deps.mcp;

  const view = (s: { id: string; settings: McpServerConfig; source: string; createdAt: number; updatedAt: number }) => ({
    id: s.id,
    name: s.settings.name ?? null,
    audience: mcpAudience(deps.issuer, s.id),
    mcp_url: mcpAudience(deps.issuer, s.id),
    settings: toWire(s.settings),
    source: s.source,
    created_at: wireTime(s.createdAt),
    updated_at: wireTime(s.updatedAt),
  });
  const mustGet = async (id: string) => {
    const s = MCP_SERVER_ID.test(id) ? await servers.get(id) : undefined;
    if (!s) throw new NotFound(`MCP server "${id.slice(0, 64)}" does not exist`);
    return s;
  };
  const live = async (server: McpServerConfig) => {
    try {
      return await gateway.liveTools(server);
    } catch (err) {
      if (err instanceof McpHttpError) throw new DeputyError(502, 'bad_gateway', err.message);
      throw err;
    }
  };

  router.get('/', async function listMcpServers(ctx) {
    ctx.body = { mcp_servers: (await servers.list()).map(view), next_cursor: null };
  });

  router.post('/', async function createMcpServer(ctx) {
    const input = parseAdminBody(mcpServerSchema, ctx.request.body, 'MCP server', SERVER_FIELDS);
    const created = await servers.create(input);
    ctx.status = 201;
    ctx.set('Location', `/admin/mcp-servers/${created.id}`);
    ctx.body = view(created);
  });

  router.get('/:id', async function readMcpServer(ctx) {
    ctx.body = view(await mustGet(ctx.params.id!));
  });

  router.delete('/:id', async function deleteMcpServer(ctx) {
    await servers.delete(ctx.params.id!);
    ctx.status = 204;
  });

  addPinRoutes(router, deps, mustGet, live);
  return router;
}

/** The pin routes of `/admin/mcp-servers/{id}`: live tools and verdicts, approve/import, export, revoke. */
function addPinRoutes(
  router: Router,
  deps: McpRoutesDeps,
  mustGet: (id: string) => Promise<{ id: string; settings: McpServerConfig }>,
  live: (server: McpServerConfig) => Promise<Array<Record<string, unknown>>>,
): void {
  const { pins } = deps.mcp;
  const pinView = (p: StoredPin) => ({ tool: p.tool, digest: p.digest, jws: p.jws, signer: p.signer, definition: p.definition === undefined ? null : (JSON.parse(p.definition) as unknown), created_at: wireTime(p.createdAt) });
  /** The live tools with each one's digest and pin verdict: what an operator reviews before approving. */
  router.get('/:id/tools', async function liveMcpTools(ctx) {
    const server = (await mustGet(ctx.params.id!)).settings;
    const tools = await live(server);
    const verdicts = await pins.check(server, tools);
    ctx.body = {
      tools: tools.map((t) => {
        const v = verdicts.get(String(t.name))!;
        return { name: t.name, digest: v.digest, pin: v.status, ...(v.status === 'changed' ? { changed: v.changed } : {}), definition: t };
      }),
    };
  });

  /**
   * Approve or import pins. Body, one of:
   * - `{ "approve": "all" | ["tool", …] }` — sign the upstream's live definitions of these tools;
   * - `{ "definitions": [Tool, …] }` — sign these definitions (a server Deputy cannot list alone);
   * - `{ "pins": [{ "jws": "…", "definition"?: Tool }, …] }` — import pins signed offline by a
   *   publisher trusted for this server (or exported from Deputy).
   */
  router.post('/:id/pins', async function approveMcpPins(ctx) {
    const server = (await mustGet(ctx.params.id!)).settings;
    ctx.status = 201;
    ctx.body = { pins: (await storePins(deps.mcp, server, ctx.request.body, live)).map(pinView) };
  });

  /**
   * The server's pins with everything needed to verify them offline: Deputy's receipt JWKS (and
   * its URL) and the server's trusted publishers' keys.
   */
  router.get('/:id/pins', async function exportMcpPins(ctx) {
    const server = (await mustGet(ctx.params.id!)).settings;
    const all = await deps.mcp.pins.signers(server);
    const stored = await deps.mcp.pins.stored(server.id);
    ctx.body = {
      server: server.id,
      typ: TOOL_PIN_TYP,
      algorithms: TOOL_PIN_ALGORITHMS,
      signers: all.map((s) => ({ issuer: s.issuer, jwks: s.issuer === deps.issuer ? deps.keys.receiptJwks() : s.jwks, ...(s.issuer === deps.issuer ? { jwks_uri: `${deps.issuer}${RECEIPTS_JWKS_PATH}` } : {}), ...(s.server ? { server: s.server } : {}) })),
      pins: [...stored.values()].map(pinView),
    };
  });

  router.delete('/:id/pins/:tool', async function revokeMcpPin(ctx) {
    const server = await mustGet(ctx.params.id!);
    if (!(await deps.mcp.pins.revoke(server.id, ctx.params.tool!))) throw new NotFound(`tool "${ctx.params.tool!.slice(0, 64)}" has no pin`);
    ctx.status = 204;
  });
}

/**
 * What `POST /admin/mcp-servers/{id}/pins` stores, from its body:
 * - `{ "approve": "all" | ["tool", …] }` — sign the upstream's live definitions of these tools;
 * - `{ "definitions": [Tool, …] }` — sign these definitions (a server Deputy cannot list alone);
 * - `{ "pins": [{ "jws": "…", "definition"?: Tool }, …] }` — import pins signed offline by a
 *   publisher trusted for this server (or exported from Deputy).
 *
 * @throws InvalidRequest for a body that is none of these, a tool the server does not list, or a
 *   pin refused (untrusted key, another server, a definition without the pin's digest).
 */
async function storePins(
  mcp: McpSurface,
  server: McpServerConfig,
  body: unknown,
  live: (server: McpServerConfig) => Promise<Array<Record<string, unknown>>>,
): Promise<StoredPin[]> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new InvalidRequest('the body must be a JSON object');
  const b = body as Record<string, unknown>;
  if (b.approve !== undefined) {
    const names = b.approve === 'all' ? undefined : Array.isArray(b.approve) && b.approve.every((n) => typeof n === 'string') ? (b.approve as string[]) : null;
    if (names === null) throw new InvalidRequest('approve must be "all" or an array of tool names');
    const tools = await live(server);
    const missing = (names ?? []).filter((n) => !tools.some((t) => t.name === n));
    if (missing.length) throw new InvalidRequest(`the server does not list ${missing.slice(0, 10).map((n) => `"${n.slice(0, 64)}"`).join(', ')}`);
    return mcp.pins.approve(server, names === undefined ? tools : tools.filter((t) => names.includes(String(t.name))));
  }
  if (Array.isArray(b.definitions)) {
    if (!b.definitions.every((d) => d && typeof d === 'object' && typeof (d as { name?: unknown }).name === 'string')) throw new InvalidRequest('definitions must be tool definitions with a name');
    return mcp.pins.approve(server, b.definitions as Array<Record<string, unknown>>);
  }
  if (Array.isArray(b.pins)) {
    const stored: StoredPin[] = [];
    for (const p of b.pins as Array<{ jws?: unknown; definition?: unknown } | null>) {
      if (!p || typeof p.jws !== 'string') throw new InvalidRequest('each pin needs a "jws"');
      const def = p.definition !== undefined && p.definition !== null && typeof p.definition === 'object' ? (p.definition as Record<string, unknown>) : undefined;
      stored.push(await mcp.pins.import(server, p.jws, def));
    }
    return stored;
  }
  throw new InvalidRequest('give one of approve, definitions or pins');
}
