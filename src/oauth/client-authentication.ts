/**
 * Client-authentication refusals at `/token`, `/introspect` and `/revoke` as the RFCs define
 * them: `401 invalid_client` (RFC 6749 §5.2, RFC 7662 §2.3, RFC 7523 §3.2).
 *
 * oidc-provider already answers a failed authentication (unknown client, bad signature, replayed
 * assertion, wrong method) with 401 `invalid_client`. It answers `400 invalid_request` when the
 * client sent no usable authentication at all; RFC 6749 §5.2 lists "no client authentication
 * included" and "unsupported authentication method" under `invalid_client`, and RFC 7523 §3.2
 * requires `invalid_client` for a client assertion that is not a valid JWT. This middleware
 * re-classifies exactly those refusals, which happen before any client is identified.
 *
 * `WWW-Authenticate`: RFC 6749 §5.2 requires a challenge matching the scheme when the client
 * used the `Authorization` header (`Basic`, which oidc-provider also names on its own 401s).
 * Deputy supports no HTTP authentication scheme for clients (`private_key_jwt` travels in the
 * body), so a request without that header gets no challenge to advertise.
 *
 * @module
 */
import type Koa from 'koa';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { InvalidClient } from '../errors/index.js';

/** The endpoints where oidc-provider authenticates clients. */
const CLIENT_AUTHENTICATED_ROUTES = new Set(['token', 'introspection', 'revocation']);

/**
 * oidc-provider's `invalid_request` descriptions (lib/shared/client_auth.js, 9.13.3) that mean
 * "no or unusable client authentication", and what Deputy says instead. A version that changes
 * them fails test/features/metadata.test.ts rather than silently answering 400.
 */
const MISSING_OR_UNUSABLE: ReadonlyMap<string, string> = new Map([
  ['no client authentication mechanism provided', 'client authentication is required: send client_id with a private_key_jwt client_assertion (RFC 7523)'],
  ['invalid client_assertion format', 'client_assertion is not a JWT'],
  ['client_id mismatch', 'client_id does not match the subject of the client authentication'],
  ['invalid authorization header value format', 'the Authorization header is not a supported client authentication: use a private_key_jwt client_assertion'],
  ['client_id and client_secret in the authorization header are not properly encoded', 'HTTP Basic client authentication is not supported: use a private_key_jwt client_assertion'],
  ['client_secret must be provided in the Authorization header', 'HTTP Basic client authentication is not supported: use a private_key_jwt client_assertion'],
]);

interface RenderedError {
  error?: unknown;
  error_description?: unknown;
}

/**
 * Install with `provider.use(...)`; throws {@link InvalidClient}, rendered by src/http/errors.ts.
 * Also marks every error of these endpoints `Cache-Control: no-store` (oidc-provider leaves its
 * own 401s cacheable).
 */
export function clientAuthenticationErrors(): Koa.Middleware {
  return async function classifyClientAuthentication(ctx, next) {
    await next();
    const oidc = (ctx as unknown as KoaContextWithOIDC).oidc;
    if (!oidc?.route || !CLIENT_AUTHENTICATED_ROUTES.has(oidc.route) || ctx.status < 400) return;
    // RFC 6749 §5.2 (example) / §5.1: errors of these endpoints are not cached either.
    ctx.set('Cache-Control', 'no-store');
    if (ctx.status !== 400) return;
    if (oidc.client !== undefined) return; // the client authenticated: a later check refused the request
    const body = ctx.body as RenderedError | undefined;
    if (body?.error !== 'invalid_request' || typeof body.error_description !== 'string') return;
    const description = MISSING_OR_UNUSABLE.get(body.error_description);
    if (description === undefined) return;
    throw new InvalidClient(description, { headers: basicChallenge(ctx, description) });
  };
}

/** RFC 6749 §5.2: the challenge for a client that tried HTTP Basic authentication. */
function basicChallenge(ctx: Koa.Context, description: string): Record<string, string> {
  if (!/^basic\b/i.test(ctx.get('Authorization'))) return {};
  const realm = (ctx as unknown as KoaContextWithOIDC).oidc.issuer;
  return { 'WWW-Authenticate': `Basic realm="${realm}", error="invalid_client", error_description="${description.replace(/[\\"]/g, '\\$&')}"` };
}
