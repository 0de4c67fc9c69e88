/**
 * The gateway's one authorization question: may this delegation chain make this call on this
 * connection? The gateway only sees {@link GatewayAuthorizer}; {@link ScopeAuthorizer} answers
 * from scopes and the connection's routes, and the PDP (Cedar, AuthZEN) plugs in behind the same
 * interface (./pdp-authorizer.ts).
 *
 * Action and resource (what policy sees):
 * - action: the matching route's `action` (a tool name, e.g. `github.create_issue`), or
 *   `http:{METHOD}` when the connection lists no routes;
 * - resource: the connection (`type: connection`, `id`), with the method and the upstream path.
 *
 * @module
 */
import type { DelegationChain } from '../delegation/index.js';
import type { UserAttributes } from '../oauth/token-records.js';
import type { RouteConfig } from '../vault/connections/config.js';
import type { Connection } from '../vault/connections/store.js';
import type { PepDecision } from '../enforcement/index.js';

/** One gateway call as the authorizer sees it: the agent, its chain, the connection, method and path. */
export interface GatewayAuthorizationRequest {
  subject: {
    userId: string;
    userAttrs: UserAttributes;
    /** Agents in delegation order, the current actor last (RFC 8693 §4.1 read outside-in, reversed). */
    chain: DelegationChain;
    /** The agent presenting the token. */
    agentId: string;
    scopes: ReadonlySet<string>;
    /** The verified agent token itself, for a PDP that evaluates the chain from it. */
    token: string;
    jti: string;
  };
  action: {
    /** The route's action (tool name) or `http:{METHOD}`. */
    name: string;
    method: string;
    /** Path below the connection's base URL, starting with `/` (no query). */
    path: string;
    /** The matching route, when the connection has routes and one matches. */
    route: RouteConfig | undefined;
  };
  resource: { type: 'connection'; id: string; kind: Connection['kind']; connection: Connection };
}

/** The authorizer's answer: the enforcement pipeline's decision (src/enforcement/context.ts). */
export type GatewayDecision = PepDecision;

/**
 * Decides one gateway call; the PDP-backed and scope-based authorizers implement it. The answer
 * is a plain value when it is known at once (the scopes; a remembered PDP decision whose basis
 * holds: src/pdp/remembered-decisions.ts), else a promise — so a call decided from memory costs
 * no promise here. Throwing (or rejecting) fails the call closed.
 */
export interface GatewayAuthorizer {
  authorize(request: GatewayAuthorizationRequest): GatewayDecision | Promise<GatewayDecision>;
}

/** The action a call is, from the connection's routes (undefined route: none matched / none listed). */
export function actionFor(connection: Connection, method: string, path: string): { name: string; route: RouteConfig | undefined } {
  const route = matchRoute(connection.settings.routes, method, path);
  return { name: route?.action ?? `http:${method}`, route };
}

/**
 * The first route whose methods include `method` and whose pattern matches `path`: segments
 * compare literally (after percent-decoding), `*` matches one segment, a final `**` any rest
 * (including nothing). HEAD matches routes that allow GET (RFC 9110 §9.3.2).
 */
export function matchRoute(routes: readonly RouteConfig[], method: string, path: string): RouteConfig | undefined {
  const segments = splitPath(path);
  return routes.find((r) => (r.methods.includes(method as RouteConfig['methods'][number]) || (method === 'HEAD' && r.methods.includes('GET'))) && matches(splitPath(r.path), segments));
}

function splitPath(path: string): string[] {
  return path
    .split('/')
    .filter((s, i) => !(i === 0 && s === ''))
    .map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    });
}

function matches(pattern: string[], segments: string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    if (p === '**' && i === pattern.length - 1) return true;
    const s = segments[i];
    if (s === undefined) return false;
    if (p !== '*' && p !== s) return false;
  }
  return pattern.length === segments.length;
}

/**
 * The default authorizer: the token must carry the connection's `requiredScopes` and the
 * matching route's `scopes`; when the connection lists routes, a call must match one.
 */
export class ScopeAuthorizer implements GatewayAuthorizer {
  authorize({ subject, action, resource }: GatewayAuthorizationRequest): GatewayDecision {
    const settings = resource.connection.settings;
    if (settings.routes.length > 0 && action.route === undefined) {
      return { allowed: false, reason: `connection "${resource.id}" has no route for ${action.method} ${action.path}` };
    }
    const needed = [...settings.requiredScopes, ...(action.route?.scopes ?? [])];
    const missing = needed.filter((s) => !subject.scopes.has(s));
    if (missing.length > 0) {
      return { allowed: false, reason: `action "${action.name}" on connection "${resource.id}" needs the scope "${missing.join(' ')}" in the agent token` };
    }
    return { allowed: true };
  }
}
