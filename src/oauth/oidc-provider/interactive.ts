/**
 * The endpoints oidc-provider mounts for browser flows Deputy does not offer, closed; and the
 * discovery document reduced to what Deputy implements.
 *
 * @module
 */
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { NotFound } from '../../errors/index.js';
import { authorizationServerMetadata, type MetadataOptions } from '../metadata.js';
import { routedTo } from './routing.js';

/** Endpoints oidc-provider always mounts for browser flows Deputy does not offer. */
const INTERACTIVE_PATHS = ['/auth', '/request', '/session/end'];

/**
 * Deputy issues tokens only at `/token` (client_credentials, token exchange): no user ever logs
 * in here. The authorization, PAR and logout endpoints answer 404 `not_found`, and discovery
 * serves the RFC 8414 document of what Deputy does implement (../metadata.ts).
 */
export function withoutInteractiveEndpoints(provider: Provider, metadata: MetadataOptions): void {
  // With the code flow on, `/auth` is served (./authorization-code.ts); PAR and logout stay closed.
  const closed = metadata.authorizationEndpoint ? INTERACTIVE_PATHS.filter((p) => p !== '/auth') : INTERACTIVE_PATHS;
  provider.use(async function noInteractiveEndpoints(ctx, next) {
    // As oidc-provider routes them (./routing.ts): `/AUTH` and `/Request/` are those endpoints too.
    if (closed.some((p) => routedTo(ctx.path, p, { under: true }))) {
      throw new NotFound('Deputy has no interactive endpoints; tokens are issued at /token');
    }
    await next();
    if ((ctx as unknown as KoaContextWithOIDC).oidc?.route === 'discovery' && ctx.body && typeof ctx.body === 'object') {
      ctx.body = authorizationServerMetadata(ctx.body as Record<string, unknown>, metadata);
    }
  });
}
