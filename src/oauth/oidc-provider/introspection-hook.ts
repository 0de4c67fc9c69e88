/**
 * The hook that lets Deputy answer `/introspect` and `/revoke` for its own JWT agent tokens
 * (../introspection.ts), after oidc-provider authenticated the caller and refused the token as
 * one it does not store.
 *
 * @module
 */
import type Koa from 'koa';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { introspect, revoke, type IntrospectionDeps } from '../introspection.js';

/** oidc-provider refused the token because it is a JWT: the case Deputy takes over. */
function refusedAsStructured(ctx: Koa.Context): boolean {
  const body = ctx.body as { error?: unknown } | undefined;
  return ctx.status === 400 && body?.error === 'unsupported_token_type';
}

/**
 * Provider middleware (install with `provider.use(...)`): answers introspection (RFC 7662 §2.2)
 * and revocation (RFC 7009 §2.2) of Deputy's agent tokens. Revocation refusals are thrown as
 * typed errors (`unauthorized_client`, `unsupported_token_type`) to Deputy's error boundary.
 */
export function agentTokenIntrospection(deps: IntrospectionDeps): Koa.Middleware {
  return async function introspectAgentTokens(ctx, next) {
    await next();
    const oidc = (ctx as unknown as KoaContextWithOIDC).oidc;
    if (!oidc || (oidc.route !== 'introspection' && oidc.route !== 'revocation')) return;
    if (!refusedAsStructured(ctx)) return;
    const caller = oidc.client?.clientId;
    const token = (oidc.params as Record<string, unknown> | undefined)?.token;
    if (caller === undefined || typeof token !== 'string') return;
    if (oidc.route === 'introspection') {
      ctx.status = 200;
      ctx.body = await introspect(deps, caller, token);
    } else {
      await revoke(deps, caller, token);
      ctx.status = 200;
      ctx.body = '';
    }
  };
}
