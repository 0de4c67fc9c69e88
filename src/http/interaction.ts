/**
 * Deputy's interaction for the authorization endpoint (`/interaction/{uid}`): the user signs in
 * at the enterprise IdP (src/http/signin.ts) if they have no session, then sees a consent page
 * naming the client, the scopes and the resource, and approves or declines with a CSRF-protected
 * form. A client the operator pre-approved gets no page.
 *
 * @module
 */
import Router from '@koa/router';
import type Koa from 'koa';
import { noStore } from '../util/http.js';
import { AccessDenied, InvalidRequest } from '../errors/index.js';
import type { ConsentRequest, Interactions } from '../oauth/oidc-provider/index.js';
import type { CookieSealer, SignInSession } from '../signin/index.js';
import { escapeHtml, sendPage } from './pages.js';
import { checkCsrf, csrfField, currentSession, formBody, formField, signInLocation } from './signin.js';

export interface InteractionRoutesDeps {
  interactions: Interactions;
  sealer: CookieSealer;
  issuer: string;
}

const UID = /^[A-Za-z0-9_-]{10,64}$/;

function userOf(session: SignInSession) {
  return {
    id: session.userId,
    issuerId: session.issuerId,
    groups: session.groups,
    roles: session.roles,
    ...(session.email ? { email: session.email } : {}),
    ...(session.tenant ? { tenant: session.tenant } : {}),
  };
}

function consentPage(request: ConsentRequest, session: SignInSession): string {
  const client = request.clientName ? `${escapeHtml(request.clientName)} (<code>${escapeHtml(request.clientId)}</code>)` : `<code>${escapeHtml(request.clientId)}</code>`;
  const host = URL.parse(request.redirectUri)?.host ?? request.redirectUri;
  const scopes = request.scopes.length ? `<ul>${request.scopes.map((s) => `<li><code>${escapeHtml(s)}</code></li>`).join('')}</ul>` : '<p>No particular scope.</p>';
  const who = escapeHtml(session.email ?? session.name ?? session.userId);
  return (
    `<p>Signed in as <strong>${who}</strong>.</p>` +
    `<p>The application ${client} asks to act on your behalf.</p>` +
    `<h2>Access to</h2><p><code>${escapeHtml(request.resource)}</code></p>` +
    `<h2>Scopes</h2>${scopes}` +
    `<p>After your answer you go back to <strong>${escapeHtml(host)}</strong>.</p>` +
    `<form method="post" action="/interaction/${escapeHtml(request.uid)}">${csrfField(session)}` +
    `<fieldset><legend>Allow this application to act for you?</legend>` +
    `<button type="submit" name="decision" value="approve">Allow</button> ` +
    `<button type="submit" name="decision" value="deny">Deny</button></fieldset></form>`
  );
}

/** `GET /interaction/{uid}` (sign in, then consent) and `POST /interaction/{uid}` (the decision). */
export function interactionRoutes(deps: InteractionRoutesDeps): Router {
  const router = new Router({ prefix: '/interaction' });

  router.get('/:uid', async function showConsent(ctx: Koa.Context) {
    const uid = ctx.params.uid!;
    if (!UID.test(uid)) throw new InvalidRequest('malformed interaction id');
    const session = await currentSession(ctx, deps.sealer);
    if (!session) {
      noStore(ctx);
      ctx.redirect(signInLocation(`/interaction/${uid}`));
      return;
    }
    const request = await deps.interactions.details(ctx.req, ctx.res);
    if (request.uid !== uid) throw new InvalidRequest('this authorization request belongs to another browser');
    if (request.preApproved) {
      ctx.status = 303;
      ctx.redirect(await deps.interactions.approve(ctx.req, ctx.res, request, userOf(session)));
      return;
    }
    sendPage(ctx, 'Authorize access', consentPage(request, session));
  });

  router.post('/:uid', formBody(), async function decide(ctx: Koa.Context) {
    const session = await currentSession(ctx, deps.sealer);
    if (!session) throw new AccessDenied('you are not signed in (or your session expired): start again from the application');
    checkCsrf(ctx, session, deps.issuer);
    const request = await deps.interactions.details(ctx.req, ctx.res);
    if (request.uid !== ctx.params.uid) throw new InvalidRequest('this authorization request belongs to another browser');
    const decision = formField(ctx, 'decision');
    if (decision !== 'approve' && decision !== 'deny') throw new InvalidRequest('decision must be "approve" or "deny"');
    const next = decision === 'approve' ? await deps.interactions.approve(ctx.req, ctx.res, request, userOf(session)) : await deps.interactions.deny(ctx.req, ctx.res);
    noStore(ctx);
    ctx.status = 303;
    ctx.redirect(next);
  });
  return router;
}
