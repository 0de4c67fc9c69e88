/**
 * Deputy's own scopes and resources: the one place that says what they are.
 *
 * Operator privileges (the admin API, the PDP, receipts, keys, the token endpoint…) belong to
 * operator clients (`admin.clients`, client_credentials) and never to an agent (DESIGN invariant
 * "Deputy's own scopes and resources (admin, PDP) never reach an agent's token"). Every check
 * that keeps them apart asks this module: the agent schema (registry API and static
 * configuration), the start-time check of configured agents, and the token exchange.
 *
 * - A Deputy-own **scope** is any scope token in Deputy's namespaces `deputy:` and `authzen:`
 *   (compared case-insensitively: a look-alike is refused too, as nothing legitimate needs it).
 * - A Deputy-own **resource** (RFC 8707 resource indicator / RFC 8693 audience) is any URL under
 *   Deputy's issuer — same origin, path at or under the issuer's path — except a gateway
 *   connection `<issuer>/gw/{connection}` or LLM connection `<issuer>/llm/{connection}` (exactly
 *   that, no query or fragment). Agent handoff
 *   audiences `urn:deputy:agent:{id}` (and the `urn:deputy:agent:*` pattern of an agent's
 *   allowed audiences) are agent-facing too. URLs are compared after WHATWG URL normalisation
 *   (scheme and host case, default port, dot segments), so a spelling variant is no way around.
 *
 * Pure functions, no I/O: safe to import from configuration, HTTP and OAuth code alike.
 *
 * @module
 */
import { CONNECTION_ID } from '../vault/connections/config.js';
import { AGENT_AUDIENCE_PREFIX } from '../delegation/index.js';

/** The scope of the admin API (`<issuer>/admin`). */
export const ADMIN_SCOPE = 'deputy:admin';
/** The scope of the AuthZEN PDP (`<issuer>/access`). */
export const AUTHZEN_SCOPE = 'authzen:evaluate';
/** Scope namespaces reserved for Deputy's own surfaces; no agent may hold a scope in them. */
export const DEPUTY_SCOPE_NAMESPACES = ['deputy:', 'authzen:'] as const;
/** The gateway's route prefix; `<issuer>/gw/{connection}` is each connection's audience. */
export const GATEWAY_PREFIX = '/gw';
/** The MCP gateway's route prefix; `<issuer>/mcp/{server}` is each MCP server's audience (src/mcp). */
export const MCP_GATEWAY_PREFIX = '/mcp';
/** The LLM gateway's route prefix; `<issuer>/llm/{connection}` is each LLM connection's audience. */
export const LLM_PREFIX = '/llm';

/** Whether `scope` (one RFC 6749 §3.3 scope token) is one of Deputy's own. */
export function isDeputyScope(scope: string): boolean {
  const lower = scope.toLowerCase();
  return DEPUTY_SCOPE_NAMESPACES.some((ns) => lower.startsWith(ns));
}

/**
 * Whether `target` (an RFC 8707 `resource` or RFC 8693 `audience` value, or an entry of an
 * agent's allowed audiences) names one of Deputy's own resources under `issuer`.
 * Anything that is not a URL under the issuer (a logical name, another host) is not Deputy's.
 */
export function isDeputyResource(target: string, issuer: string): boolean {
  if (target.startsWith(AGENT_AUDIENCE_PREFIX)) return false;
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return false;
  }
  const base = new URL(issuer);
  if (url.origin !== base.origin || url.origin === 'null') return false;
  const basePath = base.pathname.replace(/\/$/, '');
  if (basePath !== '' && url.pathname !== basePath && !url.pathname.startsWith(`${basePath}/`)) return false;
  return !isGatewayAudience(url, basePath);
}

/** `<issuer>/gw/{connection}` exactly: no user info, query, fragment or deeper path. */
function isGatewayAudience(url: URL, basePath: string): boolean {
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') return false;
  return [GATEWAY_PREFIX, MCP_GATEWAY_PREFIX, LLM_PREFIX].some((p) => {
    const prefix = `${basePath}${p}/`;
    return url.pathname.startsWith(prefix) && CONNECTION_ID.test(url.pathname.slice(prefix.length));
  });
}

/** What an agent definition would be granted: its allowed scopes and audiences. */
export interface AgentGrants {
  scopes?: readonly string[] | undefined;
  audiences?: readonly string[] | undefined;
}

/**
 * The Deputy-own scopes and resources an agent definition lists, each as `field: problem` with
 * the field named (`scopes.0`, `audiences.2`), ready for a 400 or a configuration error.
 * `issuer` undefined checks scopes only (the issuer is not known yet).
 */
export function deputyOwnGrantIssues(agent: AgentGrants, issuer: string | undefined): string[] {
  const issues: string[] = [];
  (agent.scopes ?? []).forEach((s, i) => {
    if (isDeputyScope(s)) issues.push(`scopes.${i}: ${deputyScopeMessage}`);
  });
  if (issuer !== undefined) {
    (agent.audiences ?? []).forEach((a, i) => {
      if (isDeputyResource(a, issuer)) issues.push(`audiences.${i}: ${deputyResourceMessage}`);
    });
  }
  return issues;
}

/** Why a Deputy-own scope is refused (used as the zod message and in errors). */
export const deputyScopeMessage = 'is one of Deputy\'s own scopes (deputy:*, authzen:*), which are never granted to an agent';
/** Why a Deputy-own resource is refused. */
export const deputyResourceMessage = `is one of Deputy's own resources (a URL under its issuer other than ${GATEWAY_PREFIX}/{connection}, ${MCP_GATEWAY_PREFIX}/{server} and ${LLM_PREFIX}/{connection}), which are never granted to an agent`;

/** Deputy's own protected resources (RFC 8707 resource indicators) and the scope each accepts. */
export interface DeputyResources {
  /** Admin API: scope `deputy:admin`. */
  admin: string;
  /** AuthZEN PDP: scope `authzen:evaluate`. */
  access: string;
}

/** The resource indicators of Deputy's own APIs under `issuer`. */
export function deputyResources(issuer: string): DeputyResources {
  return { admin: `${issuer}/admin`, access: `${issuer}/access` };
}

/** The one scope each of Deputy's own resources accepts. */
export const RESOURCE_SCOPES: Readonly<Record<keyof DeputyResources, string>> = { admin: ADMIN_SCOPE, access: AUTHZEN_SCOPE };
