/**
 * The `client_credentials` grant (RFC 6749 §4.4) for Deputy's operator clients, registered in
 * place of oidc-provider's built-in handler (`lib/actions/grants/client_credentials.js`, 9.13.3).
 *
 * Why: at `/token` the DPoP proof is verified, and its `jti` spent, by Deputy's middleware
 * (./token-dpop.ts) before the client is authenticated. The built-in handler verified the same
 * proof a second time (one more ECDSA verification per grant) and spent its `jti` a second time
 * under another key (one more store statement). This handler does what the built-in one does —
 * the requested resource and scope resolved by the same oidc-provider helpers, the token bound to
 * the proof key (RFC 9449 §5, `cnf.jkt`), "DPoP proof JWT not provided" for a client registered
 * with `dpop_bound_access_tokens` — but takes the proof from {@link verifiedTokenProof}: one
 * verification and one spend per grant. Not supported here because Deputy enables neither:
 * mTLS-bound tokens and rich authorization requests.
 *
 * @module
 */
import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import { resolveRequestedResources, validateClientScope } from 'oidc-provider/lib/helpers/grant_authorization.js';
import type { GrantRegistration } from './provider.js';
import { verifiedTokenProof } from './token-dpop.js';

/** RFC 6749 §4.4.2 response members (RFC 9449 §5 `token_type`). */
interface ClientCredentialsResponse {
  access_token: string;
  token_type: string;
  /** Seconds. */
  expires_in: number;
  scope?: string;
}

/**
 * The grant registration: parameters `scope` and `resource` (RFC 8707; repeatable, so a repeated
 * one is refused as `invalid_target` rather than `invalid_request`), as the built-in grant has
 * them with resource indicators on.
 */
export function clientCredentialsGrant(): GrantRegistration {
  return {
    grantType: 'client_credentials',
    parameters: ['scope', 'resource'],
    allowedDuplicateParameters: ['resource'],
    handler: async (ctx) => {
      const oidc = ctx as unknown as KoaContextWithOIDC;
      oidc.body = await issueClientCredentials(oidc);
    },
  };
}

/**
 * The built-in handler's steps, in its order (so refusals come in the same order): resource
 * (`invalid_target`), scope (`invalid_scope`), DPoP required (`invalid_grant`), then the token
 * signed (JWT format for Deputy's resources, ./provider.ts `getResourceServerInfo`).
 */
async function issueClientCredentials(ctx: KoaContextWithOIDC): Promise<ClientCredentialsResponse> {
  const { provider, client } = ctx.oidc;
  const proof = verifiedTokenProof(ctx);
  const resourceServers = await resolveRequestedResources(provider, ctx);
  const scopes = [...validateClientScope(provider, ctx)];
  const token = new provider.ClientCredentials({ client: client!, scope: scopes.join(' ') || undefined });
  const [resourceServer] = resourceServers;
  if (resourceServer) {
    if (resourceServers.length !== 1) throw new errors.InvalidTarget('only a single resource indicator value is supported for this grant type');
    token.resourceServer = resourceServer;
    const offered = new Set(resourceServer.scope.split(' '));
    token.scope = scopes.filter((s) => offered.has(s)).join(' ') || undefined;
  }
  if (proof) token.setThumbprint('jkt', proof.jkt);
  else if (client!.dpopBoundAccessTokens) throw new errors.InvalidGrant('DPoP proof JWT not provided');
  ctx.oidc.entity('ClientCredentials', token);
  const value = await token.save();
  return {
    access_token: value,
    expires_in: token.expiration,
    ...(token.scope ? { scope: token.scope } : {}),
    token_type: token.tokenType,
  };
}
