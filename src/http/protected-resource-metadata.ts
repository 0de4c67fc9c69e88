/**
 * RFC 9728 over HTTP: `GET /.well-known/oauth-protected-resource{path}` for every resource a
 * {@link ProtectedResourceLookup} knows (gateway connections, the PDP, the MCP gateway's
 * servers: one handler asks each surface for its document), 404 for anything else; and the `resource_metadata`
 * parameter on every 401 challenge of those resources
 * (src/oauth/protected-resource-metadata.ts says which challenges and why).
 *
 * @module
 */
import type Koa from 'koa';
import { DeputyError, NotFound } from '../errors/index.js';
import { GATEWAY_PREFIX } from '../oauth/deputy-own.js';
import {
  gatewayResource,
  mcpServerResource,
  MCP_PREFIX,
  pdpResource,
  protectedResourceMetadata,
  protectedResourceMetadataUrl,
  PROTECTED_RESOURCE_WELL_KNOWN,
  resourcePathOf,
  withResourceMetadata,
  type ProtectedResource,
} from '../oauth/protected-resource-metadata.js';
import { CONNECTION_ID } from '../vault/connections/config.js';
import type { Connection } from '../vault/connections/store.js';

/**
 * Finds the protected resource at a resource path (`/gw/echo`, `/access`, `/mcp/files`);
 * `undefined` when this lookup does not know it. Store errors propagate (503).
 */
export type ProtectedResourceLookup = (path: string) => Promise<ProtectedResource | undefined>;

/** What the route and the challenges need. */
export interface ProtectedResourceDeps {
  issuer: string;
  /** Tried in order; the first resource found wins. */
  lookups: readonly ProtectedResourceLookup[];
}

/** How long clients may cache a document (seconds): connections change through the admin API. */
const MAX_AGE = 60;

/** Gateway connections: `/gw/{id}` for each connection the store has. */
export function connectionLookup(issuer: string, connections: { get(id: string): Promise<Connection | undefined> }): ProtectedResourceLookup {
  const prefix = `${GATEWAY_PREFIX}/`;
  return async (path) => {
    if (!path.startsWith(prefix)) return undefined;
    const id = path.slice(prefix.length);
    if (!CONNECTION_ID.test(id)) return undefined;
    const connection = await connections.get(id);
    if (connection === undefined) return undefined;
    const { settings } = connection;
    const scopes = [...new Set([...settings.requiredScopes, ...settings.routes.flatMap((r) => r.scopes)])];
    return gatewayResource(issuer, { id, name: settings.name, scopes });
  };
}

/**
 * MCP servers of the MCP gateway (`/mcp/{server}`; src/http/mcp.ts `mcpProtectedResources`
 * adapts its store), so its documents and its 401s' `resource_metadata` (Bearer challenge
 * first) come from here like the gateway's.
 */
export function mcpServerLookup(
  issuer: string,
  servers: { get(id: string): Promise<{ id: string; name?: string | undefined; requiredScopes: readonly string[] } | undefined> },
): ProtectedResourceLookup {
  const prefix = `${MCP_PREFIX}/`;
  return async (path) => {
    if (!path.startsWith(prefix)) return undefined;
    const id = path.slice(prefix.length);
    if (!CONNECTION_ID.test(id)) return undefined;
    const server = await servers.get(id);
    return server === undefined ? undefined : mcpServerResource(issuer, { id, name: server.name, scopes: server.requiredScopes });
  };
}

/** The PDP: `/access`. */
export function pdpLookup(issuer: string): ProtectedResourceLookup {
  const pdp = pdpResource(issuer);
  return async (path) => (path === '/access' ? pdp : undefined);
}

async function find(deps: ProtectedResourceDeps, path: string): Promise<ProtectedResource | undefined> {
  for (const lookup of deps.lookups) {
    const found = await lookup(path);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** `GET|HEAD /.well-known/oauth-protected-resource{path}`: the RFC 9728 §3.2 response, or 404. */
export function protectedResourceMetadataRoute(deps: ProtectedResourceDeps): Koa.Middleware {
  return async function protectedResourceMetadataDocument(ctx, next) {
    if (!ctx.path.startsWith(PROTECTED_RESOURCE_WELL_KNOWN) || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next();
    const path = ctx.path.slice(PROTECTED_RESOURCE_WELL_KNOWN.length);
    if (path !== '' && !path.startsWith('/')) return next();
    const resource = path === '' ? undefined : await find(deps, path);
    if (resource === undefined) throw new NotFound('no protected resource has metadata at this address');
    ctx.set('Cache-Control', `public, max-age=${MAX_AGE}`);
    // A public document: browser-based MCP clients fetch it cross-origin, as they do the
    // authorization server metadata (which oidc-provider serves with CORS). No credentials.
    ctx.set('Access-Control-Allow-Origin', '*');
    ctx.body = protectedResourceMetadata(deps.issuer, resource);
  };
}

/**
 * Adds `resource_metadata` to every 401 of a known protected resource (RFC 9728 §5.1). Placed
 * inside the error boundary and before the gateways and routes, so it sees their refusals.
 */
export function protectedResourceChallenges(deps: ProtectedResourceDeps): Koa.Middleware {
  return async function resourceMetadataChallenge(ctx, next) {
    try {
      await next();
    } catch (err) {
      if (!(err instanceof DeputyError) || err.status !== 401) throw err;
      const path = resourcePathOf(ctx.path);
      // A lookup that fails leaves the refusal as it was: the 401 matters, the hint does not.
      const resource = path === undefined ? undefined : await find(deps, path).catch(() => undefined);
      throw resource === undefined ? err : withResourceMetadata(err, protectedResourceMetadataUrl(resource.resource));
    }
  };
}
