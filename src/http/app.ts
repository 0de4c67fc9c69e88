/**
 * The Koa application: cross-cutting middleware, Deputy's routes, then oidc-provider for the
 * OAuth endpoints (`/token`, `/jwks`, discovery, `/introspect`, `/revoke`).
 *
 * This is the only folder that imports Koa; services receive plain values.
 *
 * @module
 */
import Koa from 'koa';
import mount from 'koa-mount';
import type { Interactions, Provider } from '../oauth/oidc-provider/index.js';
import { interactionRoutes } from './interaction.js';
import type { AgentRegistry } from '../agents/registry.js';
import type { ReceiptService } from '../audit/receipts.js';
import type { DeputyConfig } from '../config/schema.js';
import type { KeyStore } from '../keys/keystore.js';
import type { Logger } from '../log.js';
import type { AccessTokenVerifier } from '../oauth/access-token.js';
import { deputyResources } from '../oauth/deputy-own.js';
import type { PdpService } from '../pdp/service.js';
import type { Store } from '../store/index.js';
import type { CredentialIsolation } from '../gateway/index.js';
import type { Budgets } from '../budgets/index.js';
import { budgetAdminRoutes } from './budgets.js';
import type { LlmGateway } from '../llm/gateway.js';
import { llmMiddleware } from './llm.js';
import { adminRoutes } from './admin.js';
import { adminNoStore } from './admin-api.js';
import { pdpSurface, type PdpSurface } from './authzen.js';
import { cors } from './cors.js';
import { errorBoundary } from './errors.js';
import { healthRoutes } from './health.js';
import { metricsRoutes, observeRequests } from './metrics.js';
import { receiptRoutes } from './receipts.js';
import { accessLog, bodyLimit, closeGracefullyWhenBodyUnread, requestContext, securityHeaders } from './middleware.js';
import { koaAuthenticate, operatorAuthenticate, operatorClients, type Authenticate } from './util.js';
import type { OperatorTokenRevocations } from '../oauth/operator-token-revocation.js';
import { connectionAdminRoutes, connectRoutes, gatewayMiddleware } from './gateway.js';
import { connectionLookup, pdpLookup, protectedResourceChallenges, protectedResourceMetadataRoute, type ProtectedResourceDeps, type ProtectedResourceLookup } from './protected-resource-metadata.js';
import { signInRoutes } from './signin.js';
import type { CookieSealer, SignIn } from '../signin/index.js';
import { mcpAdminRoutes, mcpMiddleware, mcpProtectedResources } from './mcp.js';
import type { McpSurface } from '../mcp/index.js';

/** The services the Koa application routes to (configuration, verifier, provider, registry, PDP, receipts, isolation). */
export interface AppDeps {
  config: DeputyConfig;
  issuer: string;
  logger: Logger;
  store: Store;
  keys: KeyStore;
  agents: AgentRegistry;
  provider: Provider;
  verifier: AccessTokenVerifier;
  /** Revoked operator (`admin.clients`) tokens, refused by every operator surface. */
  operatorTokens: OperatorTokenRevocations;
  receipts: ReceiptService;
  /** The AuthZEN PDP and its policy admin routes. */
  pdp: PdpService;
  /** Connections, connect flow and gateway (`/gw`, `/connect`, `/admin/connections`). */
  isolation?: CredentialIsolation;
  /** Budgets (`/admin/budgets`). */
  budgets?: Budgets;
  /** The LLM gateway (`/llm/{connection}`). */
  llm?: LlmGateway;
  /**
   * More RFC 9728 protected resources (e.g. the MCP gateway's `/mcp/{server}`), after the
   * gateway connections and the PDP.
   */
  protectedResources?: readonly ProtectedResourceLookup[];
  /** Enterprise sign-in (`/signin…`, `/signout`) and the session cookies. */
  signIn: AppSignIn;
  /** The authorization endpoint's interaction (`/interaction/{uid}`), when the code flow is on. */
  interactions?: Interactions;
  /** The MCP gateway (`/mcp/{server}`, `/admin/mcp-servers`). */
  mcp?: McpSurface;
}

/** What the browser surfaces need: the relying party, the cookie sealer, the session lifetime (seconds). */
export interface AppSignIn {
  service: SignIn;
  sealer: CookieSealer;
  sessionSeconds: number;
}

/**
 * Builds the Koa application: request context, error boundary, security headers, body limits, Deputy's
 * routes (admin, AuthZEN, receipts, policies, connections, gateway, health), then oidc-provider for
 * the OAuth endpoints. Listens nowhere; the composition root mounts it.
 */
export function createApp(deps: AppDeps): Koa {
  const app = new Koa();
  app.proxy = deps.config.server.trustProxy;
  // oidc-provider runs mounted on this app's contexts: its signed cookies (the interaction's) are
  // signed with these keys, and must verify when it reads them back (interactionDetails).
  app.keys = deps.keys.cookieKeys;
  app.silent = true;
  // Every route below that authenticates is an operator surface (admin API, receipts, PDP,
  // connections): only `admin.clients` tokens pass. Agents reach the gateway, which verifies on its own.
  const authenticate = operatorAuthenticate(koaAuthenticate(deps.verifier, deps.issuer), operatorClients(deps.config.admin.clients), deps.operatorTokens);

  // Outermost: the server span is active for everything below (logs carry its trace id).
  app.use(observeRequests());
  // AuthZEN decisions answered before (./authzen-cached.ts): ahead of everything below, metrics included above.
  const pdp = pdpSurface({ config: deps.config, issuer: deps.issuer, pdp: deps.pdp, authenticate, operatorTokens: deps.operatorTokens, logger: deps.logger, receipts: deps.receipts });
  app.use(pdp.cachedDecisions.middleware);
  listenPdpFirst(app, pdp);
  app.use(closeGracefullyWhenBodyUnread());
  app.use(requestContext(deps.logger));
  app.use(accessLog(deps.logger));
  app.use(securityHeaders());
  // Cross-origin surfaces (./cors.ts): preflights answered before any authentication.
  app.use(cors());
  app.use(adminNoStore());
  app.use(errorBoundary());
  const resources = protectedResources(deps);
  app.use(protectedResourceChallenges(resources));
  // Before the server-wide body limit: the gateway streams bodies under its own limit.
  if (deps.isolation) app.use(gatewayMiddleware(deps.isolation.gateway));
  if (deps.mcp) app.use(mcpMiddleware(deps.mcp));
  if (deps.llm) app.use(llmMiddleware(deps.llm));
  app.use(bodyLimit(deps.config.server.bodyLimitBytes));
  app.use(oauthAuthorizationServerMetadata());
  app.use(protectedResourceMetadataRoute(resources));

  for (const router of [
    healthRoutes({ store: deps.store, keys: deps.keys }),
    // With a separate metrics listener (src/main.ts), the main one does not serve /metrics.
    ...(deps.config.metrics.listen === undefined ? [metricsRoutes({ authenticate, audience: deputyResources(deps.issuer).admin })] : []),
    adminRoutes({
      agents: deps.agents, authenticate, issuer: deps.issuer, audience: deputyResources(deps.issuer).admin,
      operatorClientIds: new Set(deps.config.admin.clients.map((c) => c.client_id)), bodyLimitBytes: deps.config.server.bodyLimitBytes,
    }),
    receiptRoutes({ receipts: deps.receipts, keys: deps.keys, authenticate, audience: deputyResources(deps.issuer).admin }),
    ...pdp.routers,
    signInRoutes({ signIn: deps.signIn.service, sealer: deps.signIn.sealer, sessionSeconds: deps.signIn.sessionSeconds, secure: deps.issuer.startsWith('https:'), issuer: deps.issuer }),
    ...(deps.interactions ? [interactionRoutes({ interactions: deps.interactions, sealer: deps.signIn.sealer, issuer: deps.issuer })] : []),
    ...(deps.isolation ? isolationRoutes(deps, deps.isolation, authenticate) : []),
    ...(deps.mcp ? [mcpAdminRoutes({
      mcp: deps.mcp, keys: deps.keys, authenticate, audience: deputyResources(deps.issuer).admin, issuer: deps.issuer, bodyLimitBytes: deps.config.server.bodyLimitBytes,
    })] : []),
    ...(deps.budgets ? [budgetAdminRoutes({ budgets: deps.budgets, authenticate, audience: deputyResources(deps.issuer).admin, bodyLimitBytes: deps.config.server.bodyLimitBytes })] : []),
  ]) {
    app.use(router.routes()).use(router.allowedMethods());
  }
  app.use(publishedJwks(deps.keys));
  app.use(canonicalOrigin(deps.issuer, deps.config.server.trustProxy));
  app.use(mount(deps.provider));
  return app;
}

/**
 * Requests reaching oidc-provider are presented as addressed to the issuer's host and scheme.
 * The URLs the provider derives do not depend on this any more (`issuerDerivedUrls` in
 * src/oauth/oidc-provider/urls.ts builds them from the issuer alone); it keeps anything else that reads
 * the request's origin consistent with the issuer. Client-supplied `X-Forwarded-For` is dropped
 * unless `server.trustProxy` is set.
 */
function canonicalOrigin(issuer: string, trustProxy: boolean): Koa.Middleware {
  const url = new URL(issuer);
  const proto = url.protocol.slice(0, -1);
  return async function presentAsIssuer(ctx, next) {
    const headers = ctx.req.headers;
    if (!trustProxy) delete headers['x-forwarded-for'];
    headers.host = url.host;
    headers['x-forwarded-host'] = url.host;
    headers['x-forwarded-proto'] = proto;
    await next();
  };
}

function isolationRoutes(deps: AppDeps, isolation: CredentialIsolation, authenticate: Authenticate) {
  return [
    connectRoutes({ flows: isolation.flows, secureCookies: deps.issuer.startsWith('https:'), sealer: deps.signIn.sealer }),
    connectionAdminRoutes({
      connections: isolation.connections,
      grants: isolation.grants,
      authenticate,
      audience: deputyResources(deps.issuer).admin,
      issuer: deps.issuer,
      bodyLimitBytes: deps.config.server.bodyLimitBytes,
    }),
  ];
}

/**
 * RFC 9728: what Deputy fronts, one handler asking each surface for its document — gateway
 * connections, the PDP, the MCP gateway's servers, then `deps.protectedResources`.
 */
function protectedResources(deps: AppDeps): ProtectedResourceDeps {
  return {
    issuer: deps.issuer,
    lookups: [
      ...(deps.isolation ? [connectionLookup(deps.issuer, deps.isolation.connections)] : []),
      pdpLookup(deps.issuer),
      ...(deps.mcp ? [mcpProtectedResources(deps.issuer, deps.mcp)] : []),
      ...(deps.protectedResources ?? []),
    ],
  };
}

/**
 * RFC 8414 §3: `/.well-known/oauth-authorization-server` serves the same metadata as OpenID
 * discovery (the issuer has no path component, so both live at the root).
 */
function oauthAuthorizationServerMetadata(): Koa.Middleware {
  return async function rfc8414Metadata(ctx, next) {
    if (ctx.path === '/.well-known/oauth-authorization-server') ctx.path = '/.well-known/openid-configuration';
    await next();
  };
}

/**
 * `/jwks` publishes the active signing key and retired keys whose tokens may still be live
 * (oidc-provider only knows the active key).
 */
function publishedJwks(keys: KeyStore): Koa.Middleware {
  return async function jwks(ctx, next) {
    if (ctx.path !== '/jwks' || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next();
    ctx.type = 'application/jwk-set+json; charset=utf-8';
    ctx.set('Cache-Control', 'public, max-age=60');
    ctx.body = keys.publicJwks();
  };
}

/**
 * Puts the PDP's listeners (cached hits, lean misses) in front of Koa's: what they answer is
 * answered before Koa builds a context. Every server (src/main.ts, the tests) takes the app's
 * `callback()`, so it is wrapped there.
 */
function listenPdpFirst(app: Koa, pdp: PdpSurface): void {
  const koaCallback = app.callback.bind(app);
  app.callback = () => pdp.listener(koaCallback());
}
