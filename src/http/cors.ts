/**
 * CORS (Fetch Standard §3.2) for browser-based MCP clients and PEPs: the one place Deputy's own
 * routes answer cross-origin. A browser client must read a 401's `WWW-Authenticate` (RFC 6750 §3,
 * RFC 9728 §5.1 `resource_metadata`) and `DPoP-Nonce` (RFC 9449 §8–9) to find Deputy and retry,
 * and an MCP client its `Mcp-Session-Id` (MCP Streamable HTTP); a preflight must be answered
 * before any authentication runs.
 *
 * Which surfaces: the token-bearing ones — the gateways (`/gw/*`, `/mcp/*`, `/llm/*`) and the
 * PDP (`/access/v1/*`) — and the public documents Deputy serves itself (RFC 9728 protected
 * resource metadata, the AuthZEN PDP metadata, `/jwks`). Their credentials are tokens in
 * headers, never cookies, so `Access-Control-Allow-Origin: *` and **never**
 * `Access-Control-Allow-Credentials`: a browser then sends no cookie with a cross-origin request
 * (Fetch §3.2.5), and Deputy's sign-in cookie could not authorize anything there anyway.
 * The cookie and form surfaces (`/admin`, `/signin`, `/signout`, `/interaction`, `/connect`) get
 * no CORS header at all. oidc-provider answers CORS for its own endpoints (`/token`, discovery).
 *
 * @module
 */
import type Koa from 'koa';
import { GATEWAY_PREFIX, LLM_PREFIX, MCP_GATEWAY_PREFIX } from '../oauth/deputy-own.js';
import { PROTECTED_RESOURCE_WELL_KNOWN } from '../oauth/protected-resource-metadata.js';

/** A surface answered cross-origin: the paths it covers, its methods, the response headers a script may read. */
export interface CorsSurface {
  /** Whether `path` (the request path) belongs to this surface. */
  matches(path: string): boolean;
  /** Methods allowed (preflight `Access-Control-Allow-Methods`). */
  methods: readonly string[];
  /** Response headers exposed to scripts (`Access-Control-Expose-Headers`). */
  expose: readonly string[];
}

/** Request headers a client may send on every surface (preflight `Access-Control-Allow-Headers`). */
export const CORS_ALLOWED_HEADERS = ['Authorization', 'DPoP', 'Content-Type', 'Mcp-Session-Id', 'MCP-Protocol-Version', 'Last-Event-ID'] as const;

/** How long (seconds) a browser may cache a preflight answer. */
const PREFLIGHT_MAX_AGE = 600;

const CHALLENGE_HEADERS = ['WWW-Authenticate', 'DPoP-Nonce'];
const under = (prefix: string) => (path: string) => path.startsWith(`${prefix}/`);
const READ = ['GET', 'HEAD'];

/**
 * Deputy's cross-origin surfaces. `/gw` fronts any HTTP API (MCP servers too: it relays
 * `Mcp-Session-Id`); `/mcp/{server}` is Streamable HTTP (GET for the event stream, POST, DELETE
 * to end a session); `/llm` serves the providers' APIs; `/access/v1` is AuthZEN (POST).
 */
export const CORS_SURFACES: readonly CorsSurface[] = [
  { matches: under(GATEWAY_PREFIX), methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'], expose: [...CHALLENGE_HEADERS, 'Mcp-Session-Id'] },
  { matches: under(MCP_GATEWAY_PREFIX), methods: ['GET', 'POST', 'DELETE'], expose: [...CHALLENGE_HEADERS, 'Mcp-Session-Id'] },
  { matches: under(LLM_PREFIX), methods: ['GET', 'POST'], expose: CHALLENGE_HEADERS },
  { matches: under('/access/v1'), methods: ['POST'], expose: CHALLENGE_HEADERS },
  {
    matches: (path) => path === PROTECTED_RESOURCE_WELL_KNOWN || path.startsWith(`${PROTECTED_RESOURCE_WELL_KNOWN}/`) || path === '/.well-known/authzen-configuration' || path === '/jwks',
    methods: READ,
    expose: [],
  },
];

/**
 * Koa middleware, placed before the error boundary's routes and the gateways: answers a
 * preflight (`OPTIONS` with `Access-Control-Request-Method`) on a cross-origin surface with 204,
 * and marks every other response there — refusals included — readable from any origin.
 */
export function cors(surfaces: readonly CorsSurface[] = CORS_SURFACES): Koa.Middleware {
  // The header values joined once, not per request (issue 16, eighth round: allocation per call).
  const exposed = new Map(surfaces.map((s) => [s, s.expose.join(', ')]));
  // Not `async`: passes `next()`'s promise on (one promise fewer per request).
  return function crossOrigin(ctx, next) {
    const path = ctx.path;
    const surface = surfaces.find((s) => s.matches(path));
    if (!surface) return next();
    ctx.set('Access-Control-Allow-Origin', '*');
    if (ctx.method === 'OPTIONS' && ctx.get('Access-Control-Request-Method')) {
      ctx.set('Access-Control-Allow-Methods', surface.methods.join(', '));
      ctx.set('Access-Control-Allow-Headers', CORS_ALLOWED_HEADERS.join(', '));
      ctx.set('Access-Control-Max-Age', String(PREFLIGHT_MAX_AGE));
      ctx.status = 204;
      return Promise.resolve();
    }
    if (surface.expose.length > 0) ctx.set('Access-Control-Expose-Headers', exposed.get(surface)!);
    return next();
  };
}
