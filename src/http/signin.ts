/**
 * Enterprise sign-in in the browser (src/signin/): `/signin` (choose or go to the IdP),
 * `/signin/callback` (the IdP's redirect), `/signin/session` (who is signed in), `POST /signout`.
 *
 * The session is an encrypted cookie (`deputy_session`: `HttpOnly`, `SameSite=Lax`, `Secure` on an
 * https issuer, `Path=/`, `signIn` TTL); the transaction of a sign-in in progress another one
 * (`deputy_signin`, `Path=/signin`, 10 minutes). Every form carries the session's synchronizer
 * token and is refused without it ({@link checkCsrf}).
 *
 * @module
 */
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type Koa from 'koa';
import { constantTimeEqual } from '../util/constant-time.js';
import { noStore } from '../util/http.js';
import { AccessDenied, InvalidRequest, PayloadTooLarge } from '../errors/index.js';
import type { SignIn } from '../signin/relying-party.js';
import { safeReturnPath, type CookieSealer, type SignInSession } from '../signin/session.js';
import { escapeHtml, sendPage } from './pages.js';

/** The session cookie. */
export const SESSION_COOKIE = 'deputy_session';
/** The cookie of a sign-in in progress. */
export const SIGNIN_TX_COOKIE = 'deputy_signin';
/** How long a user has to finish signing in at the IdP, seconds. */
const TRANSACTION_SECONDS = 600;
/** Largest form body accepted (consent, sign-out). */
const FORM_LIMIT_BYTES = 8 * 1024;

export interface SessionCookieOptions {
  sealer: CookieSealer;
  /** `Secure` cookies (an https issuer). */
  secure: boolean;
  /** Session lifetime, seconds. */
  sessionSeconds: number;
  /** Deputy's issuer: its origin is the only one forms may be posted from. */
  issuer: string;
}

export interface SignInRoutesDeps extends SessionCookieOptions {
  signIn: SignIn;
}

/** A `Set-Cookie` value written by hand: behind a TLS-terminating proxy Koa may not know the request was https. */
function cookie(name: string, value: string, path: string, maxAge: number, secure: boolean): string {
  return `${name}=${value}; Path=${path}; Max-Age=${maxAge}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}

/** The signed-in user of this request, or undefined. */
export function currentSession(ctx: Koa.Context, sealer: CookieSealer): Promise<SignInSession | undefined> {
  return sealer.openSession(ctx.cookies.get(SESSION_COOKIE));
}

/** Where to send a browser that must sign in first, to come back to `returnTo` (a Deputy path). */
export function signInLocation(returnTo: string): string {
  return `/signin?return_to=${encodeURIComponent(returnTo)}`;
}

/** Form bodies (`application/x-www-form-urlencoded`) of the browser pages, small. */
export function formBody(): Koa.Middleware {
  const parse = bodyParser({
    enableTypes: ['form'],
    formLimit: FORM_LIMIT_BYTES,
    encoding: 'utf-8',
    onError: (err) => {
      if ((err as { status?: number }).status === 413) throw new PayloadTooLarge(FORM_LIMIT_BYTES);
      throw new InvalidRequest('the form is malformed');
    },
  });
  return async function parseForm(ctx, next) {
    if (ctx.method !== 'POST') return next();
    if (!ctx.is('application/x-www-form-urlencoded')) throw new InvalidRequest('expected a form (application/x-www-form-urlencoded)', { status: 415 });
    return parse(ctx, next);
  };
}

/** The string value of a form field (a repeated field is refused as absent). */
export function formField(ctx: Koa.Context, name: string): string | undefined {
  const value = (ctx.request.body as Record<string, unknown> | undefined)?.[name];
  return typeof value === 'string' ? value : undefined;
}

/**
 * CSRF (RFC 9700 §4.7 and the OWASP synchronizer-token pattern): the form's `csrf` must equal the
 * session's token, and a browser's `Origin` (when sent) must be Deputy's.
 * @throws AccessDenied (403) otherwise
 */
export function checkCsrf(ctx: Koa.Context, session: SignInSession, issuer: string): void {
  const origin = ctx.get('Origin');
  if (origin && origin !== new URL(issuer).origin) throw new AccessDenied('this form was posted from another site');
  if (!constantTimeEqual(formField(ctx, 'csrf') ?? '', session.csrf)) throw new AccessDenied('the form\'s CSRF token is missing or wrong: reload the page and try again');
}

/** The hidden CSRF field of every form. */
export function csrfField(session: SignInSession): string {
  return `<input type="hidden" name="csrf" value="${escapeHtml(session.csrf)}">`;
}

/** `/signin`, `/signin/callback`, `/signin/session`, `POST /signout`. */
export function signInRoutes(deps: SignInRoutesDeps): Router {
  const router = new Router();
  const base = deps.issuer;

  router.get('/signin', async function startSignIn(ctx) {
    const returnTo = safeReturnPath(ctx.query.return_to);
    const requested = typeof ctx.query.issuer === 'string' ? ctx.query.issuer : undefined;
    const ids = deps.signIn.issuerIds;
    const issuerId = requested ?? (ids.length === 1 ? ids[0] : undefined);
    if (issuerId === undefined) {
      if (ids.length === 0) throw new AccessDenied('sign-in is not configured (trustedIssuers[].signIn)');
      const links = ids.map((id) => `<li><a href="/signin?issuer=${encodeURIComponent(id)}&amp;return_to=${encodeURIComponent(returnTo)}">${escapeHtml(id)}</a></li>`).join('');
      sendPage(ctx, 'Sign in', `<p>Sign in with your organization's account:</p><ul>${links}</ul>`);
      return;
    }
    const started = await deps.signIn.start(issuerId, returnTo);
    const sealed = await deps.sealer.sealTransaction(started.transaction, TRANSACTION_SECONDS);
    noStore(ctx);
    ctx.append('Set-Cookie', cookie(SIGNIN_TX_COOKIE, sealed, '/signin', TRANSACTION_SECONDS, deps.secure));
    ctx.redirect(started.redirectTo);
  });

  router.get('/signin/callback', async function signInCallback(ctx) {
    noStore(ctx);
    const transaction = await deps.sealer.openTransaction(ctx.cookies.get(SIGNIN_TX_COOKIE));
    // No transaction cookie: this response was not asked for by this browser (login CSRF, RFC 9700 §4.7.1).
    if (!transaction) throw new InvalidRequest('this sign-in was not started in this browser, or took too long: start again');
    ctx.append('Set-Cookie', cookie(SIGNIN_TX_COOKIE, '', '/signin', 0, deps.secure));
    const identity = await deps.signIn.complete(new URL(`${deps.signIn.redirectUri}?${ctx.querystring}`), transaction);
    const session = await deps.sealer.sealSession(
      {
        userId: identity.userId,
        issuerId: identity.issuerId,
        groups: identity.groups,
        roles: identity.roles,
        ...(identity.email ? { email: identity.email } : {}),
        ...(identity.name ? { name: identity.name } : {}),
        ...(identity.tenant ? { tenant: identity.tenant } : {}),
      },
      deps.sessionSeconds,
    );
    ctx.append('Set-Cookie', cookie(SESSION_COOKIE, session, '/', deps.sessionSeconds, deps.secure));
    ctx.status = 303;
    ctx.redirect(`${base}${transaction.returnTo}`);
  });

  router.get('/signin/session', async function showSession(ctx) {
    const session = await currentSession(ctx, deps.sealer);
    if (!session) {
      sendPage(ctx, 'Not signed in', `<p><a href="/signin">Sign in</a></p>`);
      return;
    }
    const who = escapeHtml(session.email ?? session.name ?? session.userId);
    sendPage(
      ctx,
      'Signed in',
      `<p>You are signed in as <strong>${who}</strong> (${escapeHtml(session.issuerId)}; user id <code>${escapeHtml(session.userId)}</code>).</p>` +
        `<form method="post" action="/signout">${csrfField(session)}<button type="submit">Sign out</button></form>`,
    );
  });

  router.post('/signout', formBody(), async function signOut(ctx) {
    const session = await currentSession(ctx, deps.sealer);
    if (session) checkCsrf(ctx, session, deps.issuer);
    ctx.append('Set-Cookie', cookie(SESSION_COOKIE, '', '/', 0, deps.secure));
    sendPage(ctx, 'Signed out', '<p>You are signed out of Deputy. You may still be signed in at your identity provider.</p>');
  });
  return router;
}
