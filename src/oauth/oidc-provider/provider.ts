/**
 * oidc-provider set up as Deputy's OAuth machinery: discovery, JWKS, `/token` (client
 * authentication, DPoP proof checks, grants), introspection (RFC 7662) and revocation (RFC 7009).
 *
 * Deputy-specific choices, each for a reason:
 * - Only `private_key_jwt` client authentication (RFC 7523 §2.2): agents hold keys, not secrets.
 * - JWT access tokens (RFC 9068) for every resource Deputy knows; unknown resources are
 *   `invalid_target` (RFC 8707 §2).
 * - Replay detection (DPoP and client-assertion `jti`) is an insert-or-fail in the shared store,
 *   strict under concurrency and across instances (oidc-provider's default is find-then-insert).
 * - DPoP proofs at `/token` are verified by Deputy's own verifier, the gateway's and PDP's
 *   (./token-dpop.ts): one `htu` normalization, one nonce mechanism for the whole origin
 *   (RFC 9449 §8; the same secret as oidc-provider's). The proof's and the client assertion's
 *   `jti` are spent once per request, in the token exchange's own transaction or before any
 *   other grant runs (./token-spends.ts). Every grant binds that proof, none verifies or spends
 *   it a second time: `client_credentials` is Deputy's handler (./client-credentials-grant.ts),
 *   `authorization_code` and `refresh_token` are oidc-provider's fed the verified proof
 *   (./code-flow-grants.ts).
 * - Every URL the provider derives (discovery, expected `htu`) comes from the issuer, never from
 *   the request's scheme or Host (RFC 8414 §2, RFC 9449 §4.3): see `issuerDerivedUrls` (./urls.ts).
 * - Errors are rendered by Deputy's one serializer (./errors.ts), not by oidc-provider.
 * - Client assertions are addressed to the issuer, single-valued (RFC 7523 §3,
 *   draft-ietf-oauth-rfc7523bis); `oauth.clientAssertionAudience` may also allow the token endpoint.
 *
 * @module
 */
import Provider, { errors, type Adapter, type AdapterPayload, type ClientMetadata, type Configuration, type KoaContextWithOIDC, type ResourceServer, type TokenEndpointGrantContext } from 'oidc-provider';
import type { Agent, AgentRegistry } from '../../agents/index.js';
import type { DeputyConfig } from '../../config/schema.js';
import type { KeyStore } from '../../keys/index.js';
import type { Logger } from '../../log.js';
import type { Store } from '../../store/index.js';
import { CLIENT_AUTH_ALGS, DPOP_ALGS } from '../../util/algorithms.js';
import { deputyResources, RESOURCE_SCOPES, type DeputyResources } from '../deputy-own.js';
import { documentScopeCeiling } from '../client-id-metadata.js';
import type { DpopVerifier } from '../dpop.js';
import { TOKEN_EXCHANGE_GRANT } from '../token-exchange.js';
import { AgentClientAdapter, StoreAdapter } from './adapter.js';
import { clientCredentialsGrant } from './client-credentials-grant.js';
import { codeFlowGrants } from './code-flow-grants.js';
import { codeFlowConfiguration, codeFlowResourceScopes, codeFlowTokenClaims, resolveCodeFlowClient, withCodeFlow } from './authorization-code.js';
import { renderErrorWith, useErrorRendering, type ErrorWriter } from './errors.js';
import { withoutInteractiveEndpoints } from './interactive.js';
import { useStrictReplayDetection } from './replay.js';
import { tokenEndpointDpop } from './token-dpop.js';
import { spendBeforeGrant } from './token-spends.js';
import { checkClientAssertionAudience, clientAssertionAudiences, issuerDerivedUrls } from './urls.js';

/** What {@link createProvider} needs. */
export interface ProviderDeps {
  config: DeputyConfig;
  issuer: string;
  store: Store;
  keys: KeyStore;
  agents: AgentRegistry;
  /** Verifies DPoP proofs at `/token`, as at every other Deputy endpoint. */
  dpop: DpopVerifier;
  /** Writes an error response: Deputy's one writer (src/http/errors.ts `writeError`). */
  writeError: ErrorWriter;
  /** Where refusals (info), outages (warn) and server errors (error) of the OAuth endpoints are logged. */
  logger: Logger;
  /** Custom grants to register (token exchange, jwt-bearer); agents may use each. */
  grants?: ReadonlyArray<GrantRegistration>;
  /** Extra discovery metadata (RFC 8414 §2 allows additional members), e.g. `receipts_jwks_uri`. */
  discovery?: Readonly<Record<string, unknown>>;
}

/** A grant for `Provider#registerGrantType` (node-oidc-provider §Custom Grant Types). */
export interface GrantRegistration {
  grantType: string;
  parameters: readonly string[];
  allowedDuplicateParameters?: readonly string[];
  handler: (ctx: TokenEndpointGrantContext) => Promise<void>;
  /**
   * The handler records the request's single-use values (`pendingSpends`, ./token-spends.ts) in
   * its own transaction and calls `settleSpends`; otherwise they are spent before it runs.
   */
  foldsSpends?: boolean;
}

/** `handler`, after the request's DPoP proof and client assertion `jti`s are spent (one statement). */
function spendingFirst(db: Store, handler: GrantRegistration['handler']): GrantRegistration['handler'] {
  return async (ctx) => {
    await spendBeforeGrant(ctx, db);
    await handler(ctx);
  };
}

/**
 * An agent as oidc-provider client metadata. `grantTypes`: the custom grants registered (token
 * exchange, and jwt-bearer when ID-JAGs are accepted); oidc-provider refuses a grant a client
 * does not list (`unauthorized_client`).
 */
export function agentClientMetadata(agent: Agent, grantTypes: readonly string[] = [TOKEN_EXCHANGE_GRANT]): AdapterPayload {
  return {
    client_id: agent.id,
    client_name: agent.name,
    token_endpoint_auth_method: 'private_key_jwt',
    grant_types: [...grantTypes],
    response_types: [],
    redirect_uris: [],
    dpop_bound_access_tokens: true,
    ...(agent.jwks ? { jwks: agent.jwks } : { jwks_uri: agent.jwks_uri }),
  };
}

function adminClientMetadata(c: DeputyConfig['admin']['clients'][number]): ClientMetadata {
  return {
    client_id: c.client_id,
    token_endpoint_auth_method: 'private_key_jwt',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: c.scopes.join(' '),
    ...(c.jwks ? { jwks: c.jwks as ClientMetadata['jwks'] } : { jwks_uri: c.jwks_uri }),
  };
}

/** Client lifetimes of the code flow (seconds): refresh tokens, and the sign-in session the consent runs in. */
export const REFRESH_TOKEN_SECONDS = 8 * 3600;
const INTERACTION_SECONDS = 15 * 60;

/**
 * oidc-provider configured as Deputy's authorization server (see the module documentation),
 * with its middleware (DPoP at `/token`, closed interactive endpoints, client-authentication
 * errors), strict replay detection, Deputy's error rendering and `deps.grants` installed.
 */
export function createProvider(deps: ProviderDeps): Provider {
  const provider = new Provider(deps.issuer, providerConfiguration(deps));
  issuerDerivedUrls(provider);
  provider.use(tokenEndpointDpop({ verifier: deps.dpop, db: deps.store, tokenPath: provider.pathFor('token', { mountPath: '' }), tokenEndpoint: provider.urlFor('token') }));
  const codeFlow = deps.config.oauth.authorizationCode.enabled ? codeFlowGrants(provider) : [];
  const grants = [clientCredentialsGrant(), ...codeFlow, ...(deps.grants ?? [])];
  useStrictReplayDetection(provider, deps.store, new Set(grants.filter((g) => g.foldsSpends).map((g) => g.grantType)));
  withoutInteractiveEndpoints(provider, {
    scopes: Object.values(RESOURCE_SCOPES),
    extraMembers: Object.keys(deps.discovery ?? {}),
    authorizationEndpoint: deps.config.oauth.authorizationCode.enabled,
  });
  useErrorRendering(provider, deps.writeError, deps.logger);
  // clientCredentialsGrant() and codeFlowGrants() replace the built-in handlers: the proof Deputy
  // verified is bound, not verified again. A grant that does not record the request's single-use values in its
  // own transaction has them spent before it runs (./token-spends.ts).
  for (const g of grants) {
    const handler = g.foldsSpends ? g.handler : spendingFirst(deps.store, g.handler);
    provider.registerGrantType(g.grantType, handler, [...g.parameters], g.allowedDuplicateParameters ? [...g.allowedDuplicateParameters] : undefined);
  }
  return provider;
}

/** oidc-provider's configuration: clients and storage, keys and algorithms, features, hooks. */
function providerConfiguration(deps: ProviderDeps): Configuration {
  const { config, keys } = deps;
  const { features: codeFlowFeatures, ...codeFlowOptions } = codeFlowConfiguration({ config: config.oauth.authorizationCode, logger: deps.logger, agents: deps.agents });
  const documents = config.oauth.authorizationCode.enabled && config.oauth.authorizationCode.clientIdMetadataDocuments.enabled;
  return {
    adapter: modelAdapters(deps),
    clients: config.admin.clients.map(adminClientMetadata),
    // `none`: public clients identified by a metadata document (DPoP then required, ./authorization-code.ts).
    clientAuthMethods: documents ? ['private_key_jwt', 'none'] : ['private_key_jwt'],
    clientDefaults: {
      grant_types: [TOKEN_EXCHANGE_GRANT],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'private_key_jwt',
      id_token_signed_response_alg: keys.activeSigningKey.jwk.alg,
    },
    jwks: keys.providerJwks() as Configuration['jwks'],
    cookies: { keys: keys.cookieKeys },
    scopes: Object.values(RESOURCE_SCOPES),
    claims: { openid: ['sub'] },
    enabledJWA: {
      clientAuthSigningAlgValues: [...CLIENT_AUTH_ALGS],
      dPoPSigningAlgValues: [...DPOP_ALGS],
      idTokenSigningAlgValues: [keys.activeSigningKey.jwk.alg],
    },
    routes: { introspection: '/introspect', revocation: '/revoke', jwks: '/jwks' },
    ttl: {
      AccessToken: config.tokens.accessTokenTTL,
      ClientCredentials: config.tokens.accessTokenTTL,
      AuthorizationCode: 60,
      RefreshToken: REFRESH_TOKEN_SECONDS,
      Grant: REFRESH_TOKEN_SECONDS,
      Interaction: INTERACTION_SECONDS,
      Session: INTERACTION_SECONDS,
    },
    ...codeFlowOptions,
    features: { ...providerFeatures(deps), ...codeFlowFeatures } as Configuration['features'],
    ...(deps.discovery ? { discovery: { ...deps.discovery } } : {}),
    // P2 in shared/notes/oauth-libraries.md: without this, `extra` set by a grant is dropped.
    // Code-flow tokens carry `act` too: the client acting for the user (./authorization-code.ts).
    extraTokenClaims: (_ctx, token) => (token as { extra?: Record<string, unknown> }).extra ?? codeFlowTokenClaims(token as { gty?: string; clientId?: string }),
    assertJwtClientAuthClaimsAndHeader: (ctx, claims) => checkClientAssertionAudience(claims.aud, clientAssertionAudiences(config, ctx.oidc.provider)),
    // Clients preferring HTML get the same JSON error as everyone (Deputy has no error page).
    renderError: renderErrorWith(deps.writeError),
  };
}

/** The storage adapter factory: agents for `Client`, the store for every other model. */
function modelAdapters(deps: ProviderDeps): (name: string) => Adapter {
  const codeFlow = deps.config.oauth.authorizationCode;
  const grantTypes = (deps.grants ?? []).map((g) => g.grantType);
  const clientAdapter = new AgentClientAdapter(deps.agents, (agent) => withCodeFlow(codeFlow, agent, agentClientMetadata(agent, grantTypes.length > 0 ? grantTypes : undefined)));
  const adapters = new Map<string, Adapter>();
  return (name) => {
    if (name === 'Client') return clientAdapter;
    let a = adapters.get(name);
    if (!a) adapters.set(name, (a = new StoreAdapter(name, deps.store)));
    return a;
  };
}

/** Features: only what Deputy serves (client_credentials, introspection, revocation, DPoP, RFC 8707). */
function providerFeatures(deps: ProviderDeps): NonNullable<Configuration['features']> {
  const { config, keys } = deps;
  return {
    devInteractions: { enabled: false },
    userinfo: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    dPoP: {
      enabled: true,
      nonceSecret: keys.dpopNonceSecret,
      requireNonce: () => config.dpop.requireNonce,
      allowReplay: false,
    },
    resourceIndicators: resourceIndicators(deps),
  };
}

/**
 * RFC 8707: JWT access tokens (RFC 9068) for Deputy's own resources only, each with its one
 * scope; any other resource is `invalid_target`.
 */
function resourceIndicators(deps: ProviderDeps): NonNullable<NonNullable<Configuration['features']>['resourceIndicators']> {
  const { config, keys } = deps;
  const resources = deputyResources(deps.issuer);
  return {
    enabled: true,
    defaultResource: (ctx) => {
      // RFC 8707 §2: at the authorization endpoint Deputy requires the resource (one audience per token).
      if (ctx.oidc.route === 'authorization') throw new errors.InvalidTarget('the "resource" parameter is required (RFC 8707): name the API the token is for');
      return defaultResourceFor(ctx, resources);
    },
    useGrantedResource: () => true,
    getResourceServerInfo: async (_ctx, resource, client) => {
      const kind = (Object.keys(resources) as Array<keyof DeputyResources>).find((k) => resources[k] === resource);
      if (!kind) return codeFlowResourceServer(deps, resource, client.clientId, documentScopeCeiling(client.metadata() as Record<string, unknown>));
      const scope = RESOURCE_SCOPES[kind];
      if (!(client.scope ?? '').split(' ').includes(scope)) {
        throw new errors.InvalidTarget(`client is not allowed to obtain tokens for this resource`);
      }
      return {
        scope,
        audience: resource,
        accessTokenTTL: config.tokens.accessTokenTTL,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: keys.activeSigningKey.jwk.alg, kid: keys.activeSigningKey.jwk.kid } },
      };
    },
  };
}

/**
 * A resource of the code flow: one of the client's allowed audiences, with the scopes it may hold
 * (./authorization-code.ts); anything else is `invalid_target`.
 */
async function codeFlowResourceServer(deps: ProviderDeps, resource: string, clientId: string, ceiling: readonly string[] | undefined): Promise<ResourceServer> {
  const { config, keys } = deps;
  const client = await resolveCodeFlowClient(config.oauth.authorizationCode, deps.agents, clientId, ceiling);
  const scope = client ? codeFlowResourceScopes(client, resource, deps.issuer) : undefined;
  if (scope === undefined) throw new errors.InvalidTarget('unknown resource indicator, or one this client may not obtain tokens for');
  return {
    scope,
    audience: resource,
    accessTokenTTL: config.tokens.accessTokenTTL,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: keys.activeSigningKey.jwk.alg, kid: keys.activeSigningKey.jwk.kid } },
  };
}

/**
 * The resource a client_credentials request without `resource` targets, from its scope:
 * `deputy:admin` → the admin API, `authzen:evaluate` → the PDP.
 */
function defaultResourceFor(ctx: KoaContextWithOIDC, resources: DeputyResources): string | undefined {
  const scope = String(ctx.oidc.params?.scope ?? '').split(' ');
  if (scope.includes(RESOURCE_SCOPES.admin)) return resources.admin;
  if (scope.includes(RESOURCE_SCOPES.access)) return resources.access;
  return undefined;
}

