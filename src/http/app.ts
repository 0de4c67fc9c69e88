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
import type Provider from 'oidc-provider';
import type { AgentRegistry } from '../agents/registry.js';
import type { ReceiptService } from '../audit/receipts.js';
import type { DeputyConfig } from '../config/schema.js';
import type { KeyStore } from '../keys/keystore.js';
import type { Logger } from '../log.js';
import type { AccessTokenVerifier } from '../oauth/access-token.js';
import { deputyResources } from '../oauth/provider.js';
import type { PdpService } from '../pdp/service.js';
import type { Store } from '../store/index.js';
import type { CredentialIsolation } from '../gateway/index.js';
import { adminRoutes } from './admin.js';
import { pdpRoutes } from './authzen.js';
import { errorBoundary, providerErrorRenderer } from './errors.js';
import { healthRoutes } from './health.js';
import { receiptRoutes } from './receipts.js';
import { accessLog, bodyLimit, closeGracefullyWhenBodyUnread, requestContext, securityHeaders } from './middleware.js';
import { koaAuthenticate, type Authenticate } from './util.js';
import { connectionAdminRoutes, connectRoutes, gatewayMiddleware } from './gateway.js';

export interface AppDeps {
  config: DeputyConfig;
  issuer: string;
  logger: Logger;
  store: Store;
  keys: KeyStore;
  agents: AgentRegistry;
  provider: Provider;
  verifier: AccessTokenVerifier;
  receipts: ReceiptService;
  /** The AuthZEN PDP and its policy admin routes. */
  pdp: PdpService;
  /** Connections, connect flow and gateway (`/gw`, `/connect`, `/admin/connections`). */
  isolation?: CredentialIsolation;
}

export function createApp(deps: AppDeps): Koa {
  const app = new Koa();
  app.proxy = deps.config.server.trustProxy;
  app.silent = true;
  const authenticate = koaAuthenticate(deps.verifier, deps.issuer);

  app.use(closeGracefullyWhenBodyUnread());
  app.use(requestContext(deps.logger));
  app.use(accessLog());
  app.use(securityHeaders());
  app.use(errorBoundary());
  // Before the server-wide body limit: the gateway streams bodies under its own limit.
  if (deps.isolation) app.use(gatewayMiddleware(deps.isolation.gateway));
  app.use(bodyLimit(deps.config.server.bodyLimitBytes));
  app.use(oauthAuthorizationServerMetadata());

  for (const router of [
    healthRoutes({ store: deps.store, keys: deps.keys }),
    adminRoutes({ agents: deps.agents, authenticate, audience: deputyResources(deps.issuer).admin, bodyLimitBytes: deps.config.server.bodyLimitBytes }),
    receiptRoutes({ receipts: deps.receipts, keys: deps.keys, authenticate, audience: deputyResources(deps.issuer).admin }),
    ...pdpRoutes({ config: deps.config, issuer: deps.issuer, pdp: deps.pdp, authenticate, receipts: deps.receipts }),
    ...(deps.isolation ? isolationRoutes(deps, deps.isolation, authenticate) : []),
  ]) {
    app.use(router.routes()).use(router.allowedMethods());
  }
  app.use(publishedJwks(deps.keys));
  app.use(canonicalOrigin(deps.issuer, deps.config.server.trustProxy));
  providerErrorRenderer(deps.provider, deps.logger);
  app.use(mount(deps.provider));
  return app;
}

/**
 * oidc-provider builds endpoint URLs (discovery) and the expected DPoP `htu` (RFC 9449 §4.3)
 * from the request's Host and scheme. Deputy knows its public URL — the issuer — so every
 * request reaching the provider is presented as addressed to it: discovery never advertises an
 * internal host name, and proofs are checked against the URL clients were told to use, exactly
 * as Deputy's own resource endpoints do (`koaAuthenticate`). Client-supplied `X-Forwarded-*`
 * headers are dropped unless `server.trustProxy` is set (the provider runs with `proxy = true`).
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
    connectRoutes({ flows: isolation.flows, secureCookies: deps.issuer.startsWith('https:') }),
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
