/**
 * Per trusted issuer, the optional OpenID Connect client settings that make Deputy a relying
 * party of that IdP (OpenID Connect Core §3.1, authorization code flow with PKCE): users sign in
 * there before a connect flow or an authorization-code flow at Deputy.
 *
 * ```yaml
 * trustedIssuers:
 *   - id: okta
 *     preset: okta
 *     issuer: https://example.okta.com/oauth2/default
 *     audience: api://deputy
 *     signIn:
 *       clientId: 0oa9deputysignin
 *       clientAuth: private_key_jwt        # Deputy signs with its active signing key (published at /jwks)
 *   - id: entra
 *     ...
 *     signIn:
 *       clientId: 6e74172b-…
 *       clientAuth: client_secret_basic
 *       secret: { env: ENTRA_SIGNIN_SECRET }   # copied into the vault at start; never in the YAML
 * ```
 *
 * The redirect URI to register at the IdP is `{issuer}/signin/callback` (Deputy's issuer).
 *
 * @module
 */
import { z } from 'zod';
import { SCOPE_TOKEN } from '../util/scope.js';
import { secretSourceSchema } from '../vault/connections/config.js';

/** Client authentication at the IdP's token endpoint (OpenID Connect Core §9). */
export const SIGNIN_CLIENT_AUTH = ['private_key_jwt', 'client_secret_basic', 'client_secret_post'] as const;

/** `trustedIssuers[].signIn`. */
export const signInClientSchema = z
  .strictObject({
    /** The OIDC client id Deputy is registered under at this IdP; ID tokens must be issued to it (`aud`). */
    clientId: z.string().min(1, 'signIn.clientId must not be empty').max(256),
    /**
     * `private_key_jwt` (default, RFC 7523 §2.2): assertions signed with Deputy's active signing
     * key, whose public key the IdP reads at `{issuer}/jwks`. `client_secret_*`: a shared secret,
     * referenced by `secret` and kept in the vault.
     */
    clientAuth: z.enum(SIGNIN_CLIENT_AUTH).default('private_key_jwt'),
    /** The client secret (`client_secret_basic` / `client_secret_post` only). */
    secret: secretSourceSchema.optional(),
    /** Scopes requested at sign-in; `openid` is always included. */
    scopes: z.array(z.string().regex(SCOPE_TOKEN, 'signIn.scopes must list scope tokens (RFC 6749 §3.3)')).max(20).default(['openid', 'profile', 'email']),
  })
  .superRefine((value, ctx) => {
    const needsSecret = value.clientAuth !== 'private_key_jwt';
    if (needsSecret && value.secret === undefined) ctx.addIssue({ code: 'custom', path: ['secret'], message: `signIn.secret is required with clientAuth ${value.clientAuth}` });
    if (!needsSecret && value.secret !== undefined) ctx.addIssue({ code: 'custom', path: ['secret'], message: 'signIn.secret applies only to clientAuth client_secret_basic / client_secret_post' });
  });

/** A validated `signIn` block. */
export type SignInClientConfig = z.infer<typeof signInClientSchema>;
