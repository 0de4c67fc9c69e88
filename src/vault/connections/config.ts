/**
 * Connections: the downstream APIs agents reach through the gateway, each with the credential
 * Deputy injects. One schema serves configuration (`connections:` in the YAML, where secrets
 * come from the environment or a file) and the admin API (where a secret is sent once, inline,
 * and never returned).
 *
 * ```yaml
 * connections:
 *   - id: github
 *     kind: api_key
 *     baseUrl: https://api.github.com
 *     header: Authorization
 *     scheme: Bearer
 *     secret: { env: GITHUB_TOKEN }
 *     requiredScopes: [github]
 *     routes:
 *       - { methods: [GET], path: /repos/**, action: github.read }
 *       - { methods: [POST], path: /repos/*\/*\/issues, action: github.create_issue, scopes: [github.write] }
 * ```
 *
 * Kinds: `api_key` (a static secret in a header or query parameter), `oauth2_client_credentials`
 * (Deputy's own token at the downstream AS, RFC 6749 §4.4), `oauth2_user` (each user connects
 * their account once: authorization code + PKCE, RFC 6749 §4.1 / RFC 7636; Deputy keeps the
 * refresh token), `on_behalf_of` (the user's upstream IdP token, captured at token exchange, is
 * exchanged at the IdP: Entra OBO `jwt-bearer` or RFC 8693).
 *
 * @module
 */
import { z } from 'zod';
import { SCOPE_TOKEN } from '../../util/scope.js';

/** Connection ids appear in URLs (`/gw/{id}/…`, audience `{issuer}/gw/{id}`): lowercase slugs. */
export const CONNECTION_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
/** An HTTP method a route may allow. */
export type HttpMethod = (typeof HTTP_METHODS)[number];

/** RFC 9110 §5.1 field-name (token). */
const headerName = z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/, 'must be an HTTP header name');
const scopeToken = z.string().max(200).regex(SCOPE_TOKEN, 'must be a valid scope token (RFC 6749 §3.3)');

function parseUrl(value: string): URL | undefined {
  try {
    return new URL(value);
  } catch {
    return undefined;
  }
}

const httpUrl = (label: string) =>
  z.string().refine(
    (v) => {
      const u = parseUrl(v);
      return u !== undefined && /^https?:$/.test(u.protocol) && u.hash === '' && u.username === '' && u.password === '';
    },
    { message: `${label} must be an absolute http(s) URL without fragment or credentials` },
  );

/** Where a configured secret comes from. The value itself never sits in the YAML. */
export const secretSourceSchema = z.union([
  z.strictObject({ env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be an environment variable name') }),
  z.strictObject({ file: z.string().min(1) }),
]);
/** Where a configured connection's secret is read from (environment variable or file). */
export type SecretSource = z.infer<typeof secretSourceSchema>;

/** A secret as the admin API receives it: once, inline; stored in the vault, never returned. */
const inlineSecret = z.string().min(1).max(16 * 1024);

/**
 * A route the policy knows by name: calls matching `methods` and `path` are the action
 * `action` (a tool name), and need `scopes` in the agent token besides the connection's
 * `requiredScopes`. `path` is relative to `baseUrl`; `*` matches one segment, a trailing `**`
 * any rest. When a connection lists routes, a call matching none is refused.
 */
export const routeSchema = z.strictObject({
  methods: z.array(z.enum(HTTP_METHODS)).min(1).default(['GET']),
  path: z.string().regex(/^\/[^?#\s]*$/, 'must start with / and contain no query, fragment or spaces'),
  action: z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, 'must be 1-128 characters of A-Z a-z 0-9 . _ : -'),
  scopes: z.array(scopeToken).max(20).default([]),
  /** What one call of this route costs, for `cost` budgets (micro-units of `budgets.currency`); overrides `costPerCall`. */
  cost: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
});
/** One allowed route of a connection: methods and path pattern. */
export type RouteConfig = z.infer<typeof routeSchema>;

const common = {
  /** The id in `/gw/{id}/…` and in the audience `{issuer}/gw/{id}` agents request. */
  id: z
    .string()
    .regex(CONNECTION_ID, 'must be a lowercase slug: a-z 0-9 _ - (1-63, starting with a letter or digit)')
    .refine((id) => id !== 'callback', { message: '"callback" is reserved (/connect/callback)' }),
  /** Shown in listings and receipts. */
  name: z.string().min(1).max(200).optional(),
  /** Upstream base URL; `/gw/{id}/x/y` is forwarded to `{baseUrl}/x/y`, never outside its path. */
  baseUrl: httpUrl('baseUrl'),
  /** Allow `http://` URLs (base, token and authorization endpoints): development and tests only. */
  allowInsecureHttp: z.boolean().default(false),
  /** Scopes every agent token must carry to use this connection at all. */
  requiredScopes: z.array(scopeToken).max(20).default([]),
  /** Named routes (actions / tool names for policy), see {@link routeSchema}. */
  routes: z.array(routeSchema).max(200).default([]),
  /** Upstream answer deadline for this connection (overrides `gateway.upstreamTimeoutSeconds`). */
  timeoutSeconds: z.number().int().min(1).max(300).optional(),
  /** What one gateway call costs, for `cost` budgets (micro-units of `budgets.currency`; a route's `cost` wins). */
  costPerCall: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
};

/** Where Deputy reaches a downstream authorization server: discovery or explicit endpoints. */
const authorizationServer = {
  /**
   * The server's issuer identifier. Alone, it is discovered (RFC 8414 / OpenID Discovery); with
   * explicit endpoints, nothing is discovered and it is what authorization responses' `iss`
   * (RFC 9207) is checked against.
   */
  issuer: httpUrl('issuer').optional(),
  /** Token endpoint: set it (and `authorizationEndpoint` for `oauth2_user`) to skip discovery. */
  tokenEndpoint: httpUrl('tokenEndpoint').optional(),
  /** Deputy's client id at that server. */
  clientId: z.string().min(1).max(512),
  /** How Deputy authenticates there (RFC 6749 §2.3.1); `none` for a public client (PKCE only). */
  clientAuth: z.enum(['client_secret_basic', 'client_secret_post', 'none']).default('client_secret_basic'),
  /** Scopes Deputy asks the downstream server for. */
  scopes: z.array(scopeToken).max(50).default([]),
};

/** `api_key`: a static key sent in a header or a query parameter. */
function apiKeyConnection<S extends z.ZodType>(secret: S) {
  return z.strictObject({
    kind: z.literal('api_key'),
    ...common,
    /** Send the key in this request header (e.g. `Authorization`, `X-API-Key`). Exactly one of `header` / `query`. */
    header: headerName.optional(),
    /** Send the key in this query parameter (e.g. `api_key`). */
    query: z.string().regex(/^[A-Za-z0-9._~-]{1,128}$/, 'must be a query parameter name').optional(),
    /** Header only: a scheme put before the key, e.g. `Bearer` gives `Authorization: Bearer <key>`. */
    scheme: z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/).optional(),
    secret: secret.optional(),
  });
}

/** `oauth2_client_credentials`: Deputy's own token from the downstream server (RFC 6749 §4.4). */
function clientCredentialsConnection<S extends z.ZodType>(secret: S) {
  return z.strictObject({
    kind: z.literal('oauth2_client_credentials'),
    ...common,
    ...authorizationServer,
    /** RFC 8707 resource indicator to request. */
    resource: z.string().min(1).max(2048).optional(),
    /** `audience` parameter (Auth0 and others). */
    audience: z.string().min(1).max(2048).optional(),
    /** The client secret (unless `clientAuth: none`). */
    secret: secret.optional(),
  });
}

/** `oauth2_user`: the user's grant, obtained once through the connect flow (RFC 6749 §4.1, RFC 7636). */
function userConnection<S extends z.ZodType>(secret: S) {
  return z.strictObject({
    kind: z.literal('oauth2_user'),
    ...common,
    ...authorizationServer,
    /** Authorization endpoint (when not discovered). */
    authorizationEndpoint: httpUrl('authorizationEndpoint').optional(),
    /** Extra authorization request parameters, e.g. `{ access_type: offline, prompt: consent }` for Google. */
    authorizationParams: z.record(z.string().regex(/^[a-z_]{1,64}$/), z.string().max(512)).default({}),
    secret: secret.optional(),
  });
}

/** `on_behalf_of`: the user's IdP token exchanged downstream (Entra OBO or RFC 8693). */
function onBehalfOfConnection<S extends z.ZodType>(secret: S) {
  return z.strictObject({
    kind: z.literal('on_behalf_of'),
    ...common,
    ...authorizationServer,
    /**
     * `entra_obo`: Microsoft identity platform OBO (`grant_type` jwt-bearer,
     * `requested_token_use=on_behalf_of`); `token_exchange`: RFC 8693 at any other AS.
     */
    grant: z.enum(['entra_obo', 'token_exchange']),
    /** RFC 8693 only: `resource` / `audience` of the requested token. */
    resource: z.string().min(1).max(2048).optional(),
    audience: z.string().min(1).max(2048).optional(),
    secret: secret.optional(),
  });
}

function llmConnection<S extends z.ZodType>(secret: S) {
  return z.strictObject({
    kind: z.literal('llm'),
    ...common,
    /**
     * The wire format the provider speaks: `openai` (OpenAI and compatible servers:
     * `/v1/chat/completions`, `/v1/responses`, `/v1/embeddings`, `/v1/models`) or `anthropic`
     * (`/v1/messages`, `/v1/models`). Agents call `/llm/{id}/v1/…` in that format (src/llm).
     */
    provider: z.enum(['openai', 'anthropic']),
    /** Models agents may ask for; empty: any model (a model without a price still cannot be charged in cost). */
    models: z.array(z.string().min(1).max(200)).max(500).default([]),
    /** `max_tokens` used (and enforced) when a request sets none; absent: such requests are refused. */
    maxOutputTokens: z.number().int().min(1).max(10_000_000).optional(),
    /** Largest prompt accepted, in estimated input tokens (400 beyond). */
    maxInputTokens: z.number().int().min(1).max(10_000_000).default(200_000),
    /** Wall-clock cap of one call, streams included, in seconds: the stream is ended cleanly after it. */
    maxCallSeconds: z.number().int().min(1).max(3600).default(300),
    /** The provider's API key (`Authorization: Bearer` for openai, `x-api-key` for anthropic). */
    secret: secret.optional(),
  });
}

/** What {@link refineConnection} reads of a parsed connection (any secret representation). */
type ConnectionShape =
  | { kind: 'llm'; baseUrl: string; allowInsecureHttp: boolean }
  | { kind: 'api_key'; baseUrl: string; allowInsecureHttp: boolean; header?: string; query?: string; scheme?: string }
  | {
      kind: 'oauth2_client_credentials' | 'oauth2_user' | 'on_behalf_of';
      baseUrl: string;
      allowInsecureHttp: boolean;
      issuer?: string;
      tokenEndpoint?: string;
      authorizationEndpoint?: string;
      clientAuth: 'client_secret_basic' | 'client_secret_post' | 'none';
    };

/** Rules across fields: https only unless allowed, one of header / query, a reachable token endpoint, public clients for `oauth2_user` only. */
function refineConnection(c: ConnectionShape, ctx: z.RefinementCtx): void {
  const urls = [c.baseUrl, ...('issuer' in c ? [c.issuer, c.tokenEndpoint] : []), ...('authorizationEndpoint' in c ? [c.authorizationEndpoint] : [])];
  for (const u of urls) {
    if (u !== undefined && u.startsWith('http:') && !c.allowInsecureHttp) {
      ctx.addIssue({ code: 'custom', message: `${u.slice(0, 200)} is http: set allowInsecureHttp (development only) or use https` });
    }
  }
  if (c.kind === 'api_key') {
    if ((c.header === undefined) === (c.query === undefined)) ctx.addIssue({ code: 'custom', path: ['header'], message: 'give exactly one of header or query' });
    if (c.header !== undefined && /^(host|connection|content-length|transfer-encoding|te|upgrade|keep-alive|dpop|cookie)$/i.test(c.header)) {
      ctx.addIssue({ code: 'custom', path: ['header'], message: `"${c.header}" cannot carry a credential` });
    }
    if (c.query !== undefined && c.scheme !== undefined) ctx.addIssue({ code: 'custom', path: ['scheme'], message: 'scheme applies to headers only' });
    return;
  }
  if (c.kind === 'llm') return;
  if (c.issuer === undefined && c.tokenEndpoint === undefined) ctx.addIssue({ code: 'custom', path: ['issuer'], message: 'give issuer (discovery) or tokenEndpoint' });
  if (c.kind === 'oauth2_user' && c.tokenEndpoint !== undefined && c.authorizationEndpoint === undefined) {
    ctx.addIssue({ code: 'custom', path: ['authorizationEndpoint'], message: 'give authorizationEndpoint with tokenEndpoint (or only issuer, for discovery)' });
  }
  if (c.clientAuth === 'none' && c.kind !== 'oauth2_user') {
    ctx.addIssue({ code: 'custom', path: ['clientAuth'], message: 'only oauth2_user connections may be public clients (clientAuth: none)' });
  }
}

function kinds<S extends z.ZodType>(secret: S) {
  return z
    .discriminatedUnion('kind', [apiKeyConnection(secret), clientCredentialsConnection(secret), userConnection(secret), onBehalfOfConnection(secret), llmConnection(secret)])
    .superRefine(refineConnection);
}

/** A connection in the configuration file: secrets by reference (`{ env }` / `{ file }`). */
export const connectionConfigSchema = kinds(secretSourceSchema);
/** A connection as configured in the file (parsed). */
export type ConnectionConfig = z.infer<typeof connectionConfigSchema>;
/** A connection as written in the file (before defaults). */
export type ConnectionConfigInput = z.input<typeof connectionConfigSchema>;

/** A connection created through the admin API: the secret inline, write-only. */
export const connectionInputSchema = kinds(inlineSecret);
/** A connection as created through the admin API. */
export type ConnectionInput = z.infer<typeof connectionInputSchema>;

/** What `POST /admin/connections/{id}/secret` takes. */
export const secretRotationSchema = z.strictObject({ secret: inlineSecret });

/** A connection's settings as stored and used: everything but the secret. */
export type ConnectionSettings = DistributiveOmit<ConnectionConfig, 'secret'>;
/** How a connection obtains its credential: `api_key`, `client_credentials`, `on_behalf_of`, `oauth2_user`. */
export type ConnectionKind = ConnectionSettings['kind'];

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** Gateway options (`gateway:` in the configuration). */
export const gatewayConfigSchema = z
  .strictObject({
    /**
     * Who decides each call: `pdp` — the connection's scopes and routes, then the Cedar PDP with
     * the whole delegation chain as subject (src/gateway/pdp-authorizer.ts); `scopes` — the
     * connection's scopes and routes only.
     */
    authorizer: z.enum(['pdp', 'scopes']).default('pdp'),
    /** Deadline for the upstream's response headers, in seconds (504 after it). */
    upstreamTimeoutSeconds: z.number().int().min(1).max(300).default(30),
    /** Longest silence while streaming a body either way, in seconds. */
    bodyTimeoutSeconds: z.number().int().min(1).max(600).default(60),
    /** Deadline for opening a TCP/TLS connection to an upstream, in seconds. */
    connectTimeoutSeconds: z.number().int().min(1).max(60).default(10),
    /** Largest request body an agent may send through the gateway (413 beyond). */
    maxRequestBytes: z.number().int().min(0).max(1024 * 1024 * 1024).default(10 * 1024 * 1024),
    /** Largest upstream response body passed back (502 if announced larger; cut off beyond). */
    maxResponseBytes: z.number().int().min(0).max(4 * 1024 * 1024 * 1024).default(50 * 1024 * 1024),
    /** Pooled keep-alive connections per upstream origin. */
    connectionsPerOrigin: z.number().int().min(1).max(1024).default(32),
    /** Lifetime of a connect link (`connect_uri`) handed out with a 424, in seconds. */
    connectTicketSeconds: z.number().int().min(60).max(86_400).default(900),
    /** Timeout of calls to downstream token endpoints (client credentials, refresh, OBO), in seconds. */
    tokenEndpointTimeoutSeconds: z.number().int().min(1).max(120).default(15),
  })
  .prefault({});
/** The gateway section of the configuration. */
export type GatewayConfig = z.infer<typeof gatewayConfigSchema>;
