/**
 * HTTP surfaces of credential isolation: the gateway (`/gw/{connection}/{path…}`), the connect
 * flow (`/connect/…`); the connections admin API (`/admin/connections…`) is ./admin-connections.ts.
 *
 * The gateway is plain middleware, not a router route: it must see the raw request stream (no
 * body parser) and runs before the server-wide body limit, enforcing its own
 * (`gateway.maxRequestBytes`). Responses are written straight to the socket so bodies stream.
 *
 * @module
 */
import Router from '@koa/router';
import type Koa from 'koa';
import { AccessDenied } from '../errors/index.js';
import { GATEWAY_PREFIX, type Gateway } from '../gateway/gateway.js';
import { CONNECT_COOKIE, type ConnectFlows } from '../vault/connections/connect-flows.js';
import { noStore } from '../util/http.js';
import { escapeHtml, sendPage } from './pages.js';
import { streamedPepMiddleware } from './streamed-pep.js';
import { currentSession, signInLocation } from './signin.js';
import type { CookieSealer } from '../signin/session.js';
import { sha256Base64url } from '../util/sha256.js';

/** `/gw/{connection}/{path…}`: every method, streamed both ways (./streamed-pep.ts). */
export function gatewayMiddleware(gateway: Gateway): Koa.Middleware {
  return streamedPepMiddleware({ prefix: GATEWAY_PREFIX, label: 'connection', handle: (call) => gateway.handle(call) });
}

export interface ConnectRoutesDeps {
  flows: ConnectFlows;
  /** Whether the connect cookie needs `Secure` (an https issuer). */
  secureCookies: boolean;
  /** Opens the sign-in session: a connect flow is only for the signed-in user the link names. */
  sealer: CookieSealer;
}

/** The per-flow cookie name: several flows may run in one browser at once. */
function cookieName(state: string): string {
  return `${CONNECT_COOKIE}_${sha256Base64url(state).slice(0, 12)}`;
}

/** `/connect/{connection}?ticket=…` (start) and `/connect/callback` (the provider's redirect). */
export function connectRoutes(deps: ConnectRoutesDeps): Router {
  const router = new Router({ prefix: '/connect' });
  router.use(async (ctx, next) => {
    noStore(ctx);
    await next();
  });

  router.get('/callback', async function connectCallback(ctx) {
    const state = typeof ctx.query.state === 'string' ? ctx.query.state : '';
    const cookie = state ? ctx.cookies.get(cookieName(state)) : undefined;
    const session = await currentSession(ctx, deps.sealer);
    if (!session) throw new AccessDenied('you are not signed in (or your session expired): open the connect link again');
    const done = await deps.flows.complete(ctx.querystring, cookie, session.userId);
    if (state) ctx.append('Set-Cookie', `${cookieName(state)}=; Path=/connect; Max-Age=0; HttpOnly; SameSite=Lax${deps.secureCookies ? '; Secure' : ''}`);
    sendPage(ctx, 'Connected', `<p>Your account is now connected to <b>${escapeHtml(done.connectionId)}</b>. You can close this window and return to the agent.</p>`);
  });

  router.get('/:connection', async function connectStart(ctx) {
    const ticket = typeof ctx.query.ticket === 'string' ? ctx.query.ticket : undefined;
    const session = await currentSession(ctx, deps.sealer);
    if (!session) {
      // Sign in first, then come back to this very link (a path on Deputy).
      ctx.redirect(signInLocation(ctx.originalUrl));
      return;
    }
    const started = await deps.flows.start(ctx.params.connection!, ticket, session.userId);
    // SameSite=Lax: sent on the provider's top-level redirect back, not on cross-site subrequests.
    // Written by hand: behind a TLS-terminating proxy Koa may not know the request was https.
    ctx.append('Set-Cookie', `${cookieName(started.state)}=${started.state}; Path=/connect; Max-Age=900; HttpOnly; SameSite=Lax${deps.secureCookies ? '; Secure' : ''}`);
    ctx.redirect(started.redirectTo);
  });
  return router;
}

/** `/admin/connections` moved to ./admin-connections.ts (re-exported here for existing imports). */
export { connectionAdminRoutes, type ConnectionAdminDeps } from './admin-connections.js';

