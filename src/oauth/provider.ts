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
 *   (RFC 9449 §8; the same secret as oidc-provider's), `jti` spent as soon as the proof verifies.
 * - Every URL the provider derives (discovery, expected `htu`) comes from the issuer, never from
 *   the request's scheme or Host (RFC 8414 §2, RFC 9449 §4.3): see {@link issuerDerivedUrls}.
 * - Client assertions are addressed to the issuer, single-valued (RFC 7523 §3,
 *   draft-ietf-oauth-rfc7523bis); `oauth.clientAssertionAudience` may also allow the token endpoint.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import Provider, { errors, type Adapter, type AdapterPayload, type ClientMetadata, type Configuration, type KoaContextWithOIDC, type TokenEndpointGrantContext } from 'oidc-provider';
import type { Agent, AgentRegistry } from '../agents/registry.js';
import type { DeputyConfig } from '../config/schema.js';
import type { KeyStore } from '../keys/keystore.js';
import type { Store } from '../store/index.js';
import { AgentClientAdapter, recordOnce, StoreAdapter } from './adapter.js';
import { useClientAuthenticationErrors } from './client-authentication.js';
import { ADMIN_SCOPE, AUTHZEN_SCOPE } from './deputy-own.js';
import type { DpopVerifier } from './dpop.js';
import { CLIENT_AUTH_ALGS, DPOP_ALGS } from '../util/algorithms.js';
import { authorizationServerMetadata, type MetadataOptions } from './metadata.js';
import { tokenEndpointDpop, verifiedTokenProof } from './token-dpop.js';

/** RFC 8693 §2.1 grant type. */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';

/** Client-authentication and DPoP algorithms Deputy accepts: src/util/algorithms.ts. */
export { CLIENT_AUTH_ALGS, DPOP_ALGS } from '../util/algorithms.js';

/** Deputy's own protected resources and the scope each one accepts. */
export interface DeputyResources {
  /** Admin API: scope `deputy:admin`. */
  admin: string;
  /** AuthZEN PDP: scope `authzen:evaluate`. */
  access: string;
}

export function deputyResources(issuer: string): DeputyResources {
  return { admin: `${issuer}/admin`, access: `${issuer}/access` };
}

const RESOURCE_SCOPES: Readonly<Record<keyof DeputyResources, string>> = { admin: ADMIN_SCOPE, access: AUTHZEN_SCOPE };

export interface ProviderDeps {
  config: DeputyConfig;
  issuer: string;
  store: Store;
  keys: KeyStore;
  agents: AgentRegistry;
  /** Verifies DPoP proofs at `/token`, as at every other Deputy endpoint. */
  dpop: DpopVerifier;
  /** Called with errors the provider could not turn into a protocol error (server errors). */
  onServerError?: (err: unknown) => void;
  /** Custom grants to register (token exchange). */
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
}

/** An agent as oidc-provider client metadata. */
export function agentClientMetadata(agent: Agent): AdapterPayload {
  return {
    client_id: agent.id,
    client_name: agent.name,
    token_endpoint_auth_method: 'private_key_jwt',
    grant_types: [TOKEN_EXCHANGE_GRANT],
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

export function createProvider(deps: ProviderDeps): Provider {
  const { config, issuer, store, keys } = deps;
  const resources = deputyResources(issuer);
  const clientAdapter = new AgentClientAdapter(deps.agents, agentClientMetadata);
  const adapters = new Map<string, Adapter>();
  const adapter = (name: string): Adapter => {
    if (name === 'Client') return clientAdapter;
    let a = adapters.get(name);
    if (!a) adapters.set(name, (a = new StoreAdapter(name, store)));
    return a;
  };

  const configuration: Configuration = {
    adapter,
    clients: config.admin.clients.map(adminClientMetadata),
    clientAuthMethods: ['private_key_jwt'],
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
    responseTypes: ['none'],
    enabledJWA: {
      clientAuthSigningAlgValues: [...CLIENT_AUTH_ALGS],
      dPoPSigningAlgValues: [...DPOP_ALGS],
      idTokenSigningAlgValues: [keys.activeSigningKey.jwk.alg],
    },
    routes: { introspection: '/introspect', revocation: '/revoke', jwks: '/jwks' },
    ttl: {
      AccessToken: config.tokens.accessTokenTTL,
      ClientCredentials: config.tokens.accessTokenTTL,
    },
    features: {
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
      resourceIndicators: {
        enabled: true,
        defaultResource: (ctx) => defaultResourceFor(ctx, resources),
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource, client) => {
          const kind = (Object.keys(resources) as Array<keyof DeputyResources>).find((k) => resources[k] === resource);
          if (!kind) throw new errors.InvalidTarget(`unknown resource indicator`);
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
      },
    },
    ...(deps.discovery ? { discovery: { ...deps.discovery } } : {}),
    // P2 in shared/notes/oauth-libraries.md: without this, `extra` set by a grant is dropped.
    extraTokenClaims: (_ctx, token) => (token as { extra?: Record<string, unknown> }).extra,
    assertJwtClientAuthClaimsAndHeader: (ctx, claims) => checkClientAssertionAudience(claims.aud, clientAssertionAudiences(config, ctx.oidc.provider)),
    renderError: (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  };

  const provider = new Provider(issuer, configuration);
  issuerDerivedUrls(provider);
  provider.use(tokenEndpointDpop({ verifier: deps.dpop, tokenPath: provider.pathFor('token', { mountPath: '' }), tokenEndpoint: provider.urlFor('token') }));
  useStrictReplayDetection(provider, store);
  withoutInteractiveEndpoints(provider, { scopes: Object.values(RESOURCE_SCOPES), extraMembers: Object.keys(deps.discovery ?? {}) });
  useClientAuthenticationErrors(provider);
  for (const g of deps.grants ?? []) {
    provider.registerGrantType(g.grantType, g.handler, [...g.parameters], g.allowedDuplicateParameters ? [...g.allowedDuplicateParameters] : undefined);
  }
  if (deps.onServerError) provider.on('server_error', (_ctx, err) => deps.onServerError!(err));
  return provider;
}

/**
 * Every URL oidc-provider builds for a request — discovery members, the `htu` it expects in a
 * DPoP proof, the audiences of a client assertion — derives from the issuer (RFC 8414 §2,
 * RFC 9449 §4.3), whatever the transport (TLS terminated by a proxy), `Host`, `X-Forwarded-*`
 * and `server.trustProxy` say. (oidc-provider's own `urlFor` reads them from the request, and
 * koa-mount runs it with Deputy's Koa app, so `provider.proxy` would not even apply.)
 *
 * At `/token`, the request's DPoP proof was already verified by Deputy (./token-dpop.ts) against
 * the issuer's token endpoint URL, with RFC 3986 normalization. oidc-provider's built-in grants
 * check it again by plain string equality against this URL; for those the URL is the one the
 * proof names, so both checks agree and Deputy's is the one that decides.
 */
function issuerDerivedUrls(provider: Provider): void {
  interface Context { route: string; ctx: object }
  const prototype = provider.OIDCContext.prototype as unknown as Record<string, unknown>;
  Object.defineProperty(prototype, 'urlFor', {
    configurable: true,
    writable: true,
    value: function urlFor(this: Context, name: string, options?: Record<string, unknown>): string {
      const proof = name === this.route ? verifiedTokenProof(this.ctx) : undefined;
      if (proof !== undefined) {
        const named = URL.parse(proof.htu);
        if (named) {
          named.search = '';
          named.hash = '';
          return named.href;
        }
      }
      return provider.urlFor(name, options);
    },
  });
  // The audience rule has one home, checkClientAssertionAudience(), which runs after the
  // assertion's signature is verified and names the failed check; oidc-provider's broader
  // pre-check (issuer, token endpoint or endpoint URL, any member of an array) defers to it.
  Object.defineProperty(prototype, 'clientJwtAuthExpectedAudience', {
    configurable: true,
    writable: true,
    value: () => ({ has: () => true }),
  });
}

/** The `aud` values a client assertion may carry: the issuer, and the token endpoint URL if configured. */
function clientAssertionAudiences(config: DeputyConfig, provider: Provider): ReadonlySet<string> {
  const accepted = new Set([provider.issuer]);
  if (config.oauth.clientAssertionAudience === 'issuer-or-token-endpoint') accepted.add(provider.urlFor('token'));
  return accepted;
}

/**
 * RFC 7523 §3 as draft-ietf-oauth-rfc7523bis tightens it: a client assertion's `aud` is the
 * issuer identifier, a single string (a list, or another URL, could make an assertion minted for
 * another server usable here). `invalid_client`, HTTP 401 (RFC 6749 §5.2).
 */
function checkClientAssertionAudience(aud: unknown, accepted: ReadonlySet<string>): void {
  const expected = [...accepted].map((a) => `"${a}"`).join(' or ');
  if (typeof aud !== 'string') {
    throw invalidClient(`client_assertion "aud" must be a single string, the issuer identifier ${expected} (RFC 7523 §3)`);
  }
  if (!accepted.has(aud)) throw invalidClient(`client_assertion "aud" must be ${expected}`);
}

function invalidClient(description: string): Error {
  return Object.assign(new errors.CustomOIDCProviderError('invalid_client', description), { status: 401, statusCode: 401 });
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

/** Endpoints oidc-provider always mounts for browser flows Deputy does not offer. */
const INTERACTIVE_PATHS = ['/auth', '/request', '/session/end'];
/**
 * Deputy issues tokens only at `/token` (client_credentials, token exchange): no user ever logs
 * in here. The authorization, PAR and logout endpoints answer 404, and discovery serves the
 * RFC 8414 document of what Deputy does implement (./metadata.ts).
 */
function withoutInteractiveEndpoints(provider: Provider, metadata: MetadataOptions): void {
  provider.use(async function noInteractiveEndpoints(ctx, next) {
    if (INTERACTIVE_PATHS.some((p) => ctx.path === p || ctx.path.startsWith(`${p}/`))) {
      ctx.status = 404;
      ctx.body = { error: 'not_found', error_description: 'Deputy has no interactive endpoints; tokens are issued at /token' };
      return;
    }
    await next();
    if ((ctx as unknown as KoaContextWithOIDC).oidc?.route === 'discovery' && ctx.body && typeof ctx.body === 'object') {
      ctx.body = authorizationServerMetadata(ctx.body as Record<string, unknown>, metadata);
    }
  });
}

/**
 * Replaces `ReplayDetection.unique` (find-then-upsert) with one insert-or-fail statement, so a
 * DPoP proof or client assertion `jti` is accepted exactly once even when two requests race on
 * two instances.
 */
function useStrictReplayDetection(provider: Provider, store: Store): void {
  const unique = async (iss: string, jti: string, exp: number): Promise<boolean> => {
    const key = createHash('sha256').update(`${iss}\0${jti}`).digest('base64url');
    return recordOnce(store, 'ReplayDetection', key, exp - Math.floor(Date.now() / 1000));
  };
  Object.defineProperty(provider.ReplayDetection, 'unique', { value: unique, configurable: true });
}
