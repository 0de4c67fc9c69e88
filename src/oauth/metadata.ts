/**
 * Deputy's authorization server metadata (RFC 8414 §2): exactly what Deputy implements today,
 * served at `/.well-known/oauth-authorization-server` and, unchanged, at
 * `/.well-known/openid-configuration`.
 *
 * Why one document at both addresses: Deputy is an OAuth 2.0 authorization server, not an
 * OpenID Provider (no authorization endpoint, no ID tokens, no UserInfo), so it cannot serve
 * the document OpenID Connect Discovery 1.0 §3 requires (`authorization_endpoint`,
 * `subject_types_supported`, `id_token_signing_alg_values_supported`). RFC 8414 §5 states that
 * the `openid-configuration` suffix, despite its name, refers to the general OAuth 2.0 metadata
 * feature; and openid-client's `discovery()` (what the README and agents use) fetches
 * `/.well-known/openid-configuration` by default with no fallback. Serving the RFC 8414 document
 * there keeps unmodified clients working without claiming to be an OpenID Provider.
 *
 * The document is built from an allow-list, so a member oidc-provider adds for a feature Deputy
 * does not offer (OIDC claims, response modes, PKCE, request objects…) is never advertised.
 *
 * @module
 */

/**
 * RFC 8414 §2 and RFC 9449 §5.1 members Deputy serves, each backed by a working endpoint or
 * check (test/features/metadata.test.ts exercises every one).
 */
const SERVED_MEMBERS = [
  'issuer',
  'token_endpoint',
  'jwks_uri',
  'scopes_supported',
  'response_types_supported',
  'grant_types_supported',
  'token_endpoint_auth_methods_supported',
  'token_endpoint_auth_signing_alg_values_supported',
  'introspection_endpoint',
  'introspection_endpoint_auth_methods_supported',
  'introspection_endpoint_auth_signing_alg_values_supported',
  'revocation_endpoint',
  'revocation_endpoint_auth_methods_supported',
  'revocation_endpoint_auth_signing_alg_values_supported',
  'dpop_signing_alg_values_supported',
] as const;

/**
 * Members of the authorization code flow (RFC 8414 §2, RFC 9207 §3, RFC 7636 §6.2,
 * draft-ietf-oauth-client-id-metadata-document), served only when `oauth.authorizationCode` is on.
 */
const CODE_FLOW_MEMBERS = [
  'authorization_endpoint',
  'code_challenge_methods_supported',
  'authorization_response_iss_parameter_supported',
  'client_id_metadata_document_supported',
] as const;

/** What Deputy adds to oidc-provider's RFC 8414 metadata: the scopes it supports, extra members, whether the authorization endpoint is served. */
export interface MetadataOptions {
  /** The scopes clients can obtain at `/token` (RFC 8414 §2 `scopes_supported`). */
  scopes: readonly string[];
  /** Deputy's own additional members (RFC 8414 §2 allows them), e.g. `receipts_jwks_uri`. */
  extraMembers: readonly string[];
  /** Whether the authorization endpoint (code flow with PKCE S256) is served. */
  authorizationEndpoint?: boolean;
}

/**
 * The RFC 8414 document from the one oidc-provider rendered (`served`, its discovery body).
 *
 * - `response_types_supported` (REQUIRED by RFC 8414 §2) is `["code"]` with the authorization
 *   endpoint on (PKCE S256 only, RFC 9207 `iss` in responses), `[]` without it.
 * - `scopes_supported` lists only `options.scopes` (oidc-provider always adds `openid`).
 * - `/introspect` and `/revoke` authenticate clients with the same mechanism and algorithms as
 *   `/token` (oidc-provider's one client-authentication step), so their
 *   `*_auth_methods_supported` / `*_auth_signing_alg_values_supported` say so; left out, RFC 8414
 *   §2 would default them to `client_secret_basic`, which Deputy does not accept.
 */
export function authorizationServerMetadata(served: Readonly<Record<string, unknown>>, options: MetadataOptions): Record<string, unknown> {
  const methods = served.token_endpoint_auth_methods_supported;
  const algs = served.token_endpoint_auth_signing_alg_values_supported;
  const scopes = Array.isArray(served.scopes_supported) ? served.scopes_supported.filter((s) => options.scopes.includes(s as string)) : [...options.scopes];
  const codeFlow = options.authorizationEndpoint === true;
  const complete: Record<string, unknown> = {
    ...served,
    scopes_supported: scopes,
    // RFC 8414 §2: REQUIRED; without an authorization endpoint, no response type is supported.
    response_types_supported: codeFlow ? ['code'] : [],
    ...(codeFlow ? { code_challenge_methods_supported: ['S256'], authorization_response_iss_parameter_supported: true } : {}),
  };
  if (!codeFlow && Array.isArray(served.grant_types_supported)) {
    complete.grant_types_supported = served.grant_types_supported.filter((g) => g !== 'authorization_code' && g !== 'refresh_token');
  }
  for (const endpoint of ['introspection', 'revocation'] as const) {
    if (served[`${endpoint}_endpoint`] === undefined) continue;
    complete[`${endpoint}_endpoint_auth_methods_supported`] = methods;
    complete[`${endpoint}_endpoint_auth_signing_alg_values_supported`] = algs;
  }
  const metadata: Record<string, unknown> = {};
  for (const member of [...SERVED_MEMBERS, ...(codeFlow ? CODE_FLOW_MEMBERS : []), ...options.extraMembers]) {
    if (complete[member] !== undefined) metadata[member] = complete[member];
  }
  return metadata;
}
