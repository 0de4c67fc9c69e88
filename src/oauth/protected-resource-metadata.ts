/**
 * OAuth 2.0 Protected Resource Metadata (RFC 9728) for everything Deputy fronts: each gateway
 * connection (`<issuer>/gw/{id}`), each MCP server of the MCP gateway (`<issuer>/mcp/{server}`)
 * and the AuthZEN PDP (`<issuer>/access`, the resource indicator PEP tokens are issued for).
 *
 * - The document of a resource lives at the RFC 9728 §3.1 address: `/.well-known/oauth-protected-resource`
 *   inserted between the host and the resource's path ({@link protectedResourceMetadataUrl}).
 * - Every 401 of such a resource names that address in `resource_metadata` (§5.1,
 *   {@link withResourceMetadata}). A request without credentials gets a `Bearer` challenge first,
 *   then the `DPoP` one: the MCP TypeScript SDK reads `resource_metadata` only from a first
 *   `Bearer` challenge (shared notes, clients-and-sdks), and RFC 9449 §7.1 allows both in one
 *   header. A refusal of presented credentials keeps the scheme they used, naming the error.
 *
 * Pure: no Koa, no store. The HTTP route is src/http/protected-resource-metadata.ts.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc9728 RFC 9728}
 * @module
 */
import type { ChallengeScheme, DeputyError } from '../errors/index.js';
import { DPOP_ALGS } from '../util/algorithms.js';
import { AUTHZEN_SCOPE, deputyResources, GATEWAY_PREFIX } from './deputy-own.js';

/** RFC 9728 §3: the well-known URI suffix. */
export const PROTECTED_RESOURCE_WELL_KNOWN = '/.well-known/oauth-protected-resource';

/** The MCP gateway's path prefix (`/mcp/{server}`). */
export const MCP_PREFIX = '/mcp';

/** What Deputy states about one protected resource. */
export interface ProtectedResource {
  /** RFC 9728 §2 `resource`: its identifier, the `aud` of the tokens it accepts (RFC 8707). */
  resource: string;
  /** `resource_name`: for people. */
  name: string;
  /** `scopes_supported`: the scopes a token needs there (may be empty). */
  scopes: readonly string[];
  /** `dpop_bound_access_tokens_required` (RFC 9449 §5.2 via RFC 9728 §2). */
  dpopRequired: boolean;
}

/** The RFC 9728 §2 document. */
export interface ProtectedResourceMetadata {
  resource: string;
  authorization_servers: string[];
  bearer_methods_supported: ['header'];
  scopes_supported: string[];
  resource_name: string;
  dpop_signing_alg_values_supported: string[];
  dpop_bound_access_tokens_required: boolean;
}

/**
 * RFC 9728 §3.1: the metadata URL of `resource` — the well-known suffix inserted between the
 * host and the path (`https://h/gw/x` → `https://h/.well-known/oauth-protected-resource/gw/x`).
 *
 * @throws TypeError when `resource` is not an absolute URL
 */
export function protectedResourceMetadataUrl(resource: string): string {
  const url = new URL(resource);
  const path = url.pathname === '/' ? '' : url.pathname;
  return `${url.origin}${PROTECTED_RESOURCE_WELL_KNOWN}${path}${url.search}`;
}

/** The RFC 9728 §2 document of `resource`, whose one authorization server is Deputy (`issuer`). */
export function protectedResourceMetadata(issuer: string, resource: ProtectedResource): ProtectedResourceMetadata {
  return {
    resource: resource.resource,
    authorization_servers: [issuer],
    // RFC 6750 §2.1 / RFC 9449 §7.1: the Authorization header only (no form body, no query).
    bearer_methods_supported: ['header'],
    scopes_supported: [...resource.scopes],
    resource_name: resource.name,
    dpop_signing_alg_values_supported: [...DPOP_ALGS],
    dpop_bound_access_tokens_required: resource.dpopRequired,
  };
}

/**
 * A gateway connection (`<issuer>/gw/{id}`): agent tokens only, always DPoP-bound; `scopes` are
 * what the connection requires (its `requiredScopes` and its routes' scopes).
 */
export function gatewayResource(issuer: string, connection: { id: string; name?: string | undefined; scopes: readonly string[] }): ProtectedResource {
  return { resource: `${issuer}${GATEWAY_PREFIX}/${connection.id}`, name: connection.name ?? connection.id, scopes: connection.scopes, dpopRequired: true };
}

/**
 * An MCP server of the MCP gateway (`<issuer>/mcp/{server}`): agent tokens, always DPoP-bound.
 */
export function mcpServerResource(issuer: string, server: { id: string; name?: string | undefined; scopes: readonly string[] }): ProtectedResource {
  return { resource: `${issuer}${MCP_PREFIX}/${server.id}`, name: server.name ?? server.id, scopes: server.scopes, dpopRequired: true };
}

/**
 * The AuthZEN PDP (`<issuer>/access`, scope `authzen:evaluate`). Its callers are PEPs with
 * client_credentials tokens, Bearer or DPoP-bound, so DPoP is supported, not required.
 */
export function pdpResource(issuer: string): ProtectedResource {
  return { resource: deputyResources(issuer).access, name: 'Deputy AuthZEN PDP', scopes: [AUTHZEN_SCOPE], dpopRequired: false };
}

/**
 * The resource path a request path belongs to, for the challenge of its 401: `/gw/{id}/…` →
 * `/gw/{id}`, `/mcp/{server}/…` → `/mcp/{server}`, `/access/v1/…` → `/access`; `undefined` for
 * anything else (Deputy's operator APIs are not advertised).
 */
export function resourcePathOf(requestPath: string): string | undefined {
  const m = /^\/(gw|mcp)\/([^/]+)(?:\/|$)/.exec(requestPath);
  if (m) return `/${m[1]}/${m[2]}`;
  if (requestPath === '/access/v1' || requestPath.startsWith('/access/v1/')) return '/access';
  return undefined;
}

/**
 * Adds `resource_metadata` (RFC 9728 §5.1) to the challenge of a 401: without credentials the
 * challenges become `Bearer` then `DPoP` (see the module documentation); otherwise the schemes
 * stay as they are. Other errors are returned unchanged. Mutates and returns `err`.
 */
export function withResourceMetadata(err: DeputyError, metadataUrl: string): DeputyError {
  if (err.status !== 401 || err.challenge === undefined) return err;
  const schemes: readonly ChallengeScheme[] = err.challenge.error ? err.challenge.schemes : ['Bearer', 'DPoP'];
  err.challenge = { ...err.challenge, schemes, resourceMetadata: metadataUrl, algs: err.challenge.algs ?? DPOP_ALGS };
  return err;
}
