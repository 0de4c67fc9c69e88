/**
 * Deputy's configuration: one typed, documented object.
 *
 * Every option is documented here, where it is defined; `config/deputy.yaml` carries the same
 * defaults with the same words for operators. `loadConfig()` (./load.ts) is the only reader of
 * files and environment variables; everything else receives the frozen result.
 *
 * @module
 */
import { z } from 'zod';
import { budgetsConfigSchema } from '../budgets/config.js';
import { SIGNING_ALGS } from '../util/algorithms.js';
import { registeredAudience, registeredScope } from './agent-limits.js';
import { MAX_JSON_DEPTH } from '../util/i-json.js';
import { trustedIssuerSchema } from '../federation/config.js';
import { authorizationCodeSchema } from '../oauth/authorization-code/config.js';
import { ADMIN_SCOPE, AUTHZEN_SCOPE, deputyScopeMessage, isDeputyScope } from '../oauth/deputy-own.js';
import { connectionConfigSchema, gatewayConfigSchema } from '../vault/connections/config.js';
import { mcpServersConfigSchema } from '../mcp/config.js';

/** A positive whole number of seconds; the type message names the unit, range checks keep zod's own. */
const seconds = () =>
  z
    .number({ error: (issue) => (issue.code === 'invalid_type' ? 'must be a number of seconds' : undefined) })
    .int()
    .positive();

/** An agent's public keys, inline (RFC 7517 JWK Set). Private members are refused. */
const publicJwks = z.object({
  keys: z
    .array(
      z
        .looseObject({ kty: z.string() })
        .refine((k) => !('d' in k) && !('p' in k) && !('k' in k), {
          message: 'must contain public keys only (found a private or symmetric key member)',
        }),
    )
    .min(1, 'must contain at least one key'),
});

const agentId = z
  .string()
  .regex(/^[A-Za-z0-9._~:-]{1,128}$/, 'must be 1-128 characters of A-Z a-z 0-9 . _ ~ : -')
  // Reserved for clients identified by a metadata document (src/agents/document-client.ts).
  .refine((id) => !id.startsWith('cimd-'), { message: 'ids starting with "cimd-" are reserved for client metadata document clients' });
/** A scope an agent may hold: never one of Deputy's own (src/oauth/deputy-own.ts). */
const agentScope = registeredScope.refine((s) => !isDeputyScope(s), { message: deputyScopeMessage });
const agentFields = {
  /** Human-readable name shown in receipts and admin listings. */
  name: z.string().min(1).max(200),
  /** The accountable human (an email or IdP subject) who answers for this agent. */
  owner: z.string().min(1).max(320),
  /** Scopes the agent may ever hold; an exchange can only narrow them. Never Deputy's own (`deputy:*`, `authzen:*`). */
  scopes: z.array(agentScope).max(100),
  /**
   * Audiences the agent may obtain tokens for: RFC 8707 §2 resource indicators (absolute URIs
   * without a fragment, at most 2048 characters) or RFC 8693 §2.1 logical names (at most 256;
   * `isRegisteredAudience` in ./agent-limits.ts).
   * Never Deputy's own resources (a URL under the issuer other than `<issuer>/gw/{connection}`);
   * that check needs the issuer, so it runs where the issuer is known (load.ts, main.ts, the admin API).
   */
  audiences: z.array(registeredAudience).max(100),
  /** Longest delegation chain (number of agents, this one included) the agent may appear at the end of. */
  maxDelegationDepth: z.number().int().min(1).max(10),
  /** `disabled` agents cannot authenticate, and their tokens stop working. */
  status: z.enum(['active', 'disabled']),
  /** Inline public keys (`private_key_jwt`). Exactly one of `jwks` / `jwks_uri`. */
  jwks: publicJwks,
  /** Where the agent publishes its public keys. Exactly one of `jwks` / `jwks_uri`. */
  jwks_uri: z.url({ protocol: /^https?$/ }),
};

/**
 * A registered agent: an OAuth client that authenticates with `private_key_jwt`
 * (RFC 7523 §2.2) using the keys in `jwks` or at `jwks_uri`.
 */
export const agentSchema = z
  .strictObject({
    /** The OAuth `client_id`. */
    id: agentId,
    name: agentFields.name,
    owner: agentFields.owner,
    scopes: agentFields.scopes.default([]),
    audiences: agentFields.audiences.default([]),
    maxDelegationDepth: agentFields.maxDelegationDepth.default(3),
    status: agentFields.status.default('active'),
    jwks: agentFields.jwks.optional(),
    jwks_uri: agentFields.jwks_uri.optional(),
  })
  .refine((a) => (a.jwks === undefined) !== (a.jwks_uri === undefined), {
    message: 'exactly one of "jwks" or "jwks_uri" is required',
  });

/** A change to an agent through the admin API: any field but `id`, no defaults. */
export const agentPatchSchema = z
  .strictObject({
    name: agentFields.name.optional(),
    owner: agentFields.owner.optional(),
    scopes: agentFields.scopes.optional(),
    audiences: agentFields.audiences.optional(),
    maxDelegationDepth: agentFields.maxDelegationDepth.optional(),
    status: agentFields.status.optional(),
    jwks: agentFields.jwks.optional(),
    jwks_uri: agentFields.jwks_uri.optional(),
  })
  .refine((a) => a.jwks === undefined || a.jwks_uri === undefined, { message: 'give at most one of "jwks" or "jwks_uri"' })
  .refine((a) => Object.keys(a).length > 0, { message: 'nothing to change' });

/** An agent as configured (or created through the admin API): client id, keys, owner, delegation limits. */
export type AgentConfig = z.infer<typeof agentSchema>;

/** An administrative client: obtains `deputy:admin` tokens with client_credentials. */
export const adminClientSchema = z
  .strictObject({
    client_id: z.string().regex(/^[A-Za-z0-9._~:-]{1,128}$/),
    /** Scopes this client may request: `deputy:admin` for the admin API, `authzen:evaluate` for the PDP. */
    scopes: z.array(z.enum([ADMIN_SCOPE, AUTHZEN_SCOPE])).min(1),
    jwks: publicJwks.optional(),
    jwks_uri: z.url({ protocol: /^https?$/ }).optional(),
  })
  .refine((a) => (a.jwks === undefined) !== (a.jwks_uri === undefined), {
    message: 'exactly one of "jwks" or "jwks_uri" is required',
  });

/** An operator client (admin API, AuthZEN, receipts) as configured. */
export type AdminClientConfig = z.infer<typeof adminClientSchema>;

/** The issuer identifier without its trailing slash(es): `https://deputy.example/` → `https://deputy.example`. */
export function withoutTrailingSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

/** The whole configuration (zod, strict: unknown keys are refused, naming the path). */
export const configSchema = z.strictObject({
  server: z
    .strictObject({
      /** TCP port (env `PORT`). 0 picks a free port (tests). */
      port: z.number().int().min(0).max(65535).default(3000),
      /** Interface to bind (env `HOST`). */
      host: z.string().default('0.0.0.0'),
      /**
       * The issuer identifier (RFC 8414 §2), env `DEPUTY_ISSUER`. Must be the externally visible
       * base URL. Every advertised URL and every DPoP `htu` / client assertion `aud` check derives
       * from it alone, whatever the transport, `Host` or `X-Forwarded-*` say (RFC 9449 §4.3).
       * Defaults to `http://localhost:<port>`. Normalized here, once: a trailing `/` is dropped, so
       * every other module appends paths (`${issuer}/admin`) without stripping it again.
       */
      issuer: z.url({ protocol: /^https?$/ }).transform(withoutTrailingSlash).optional(),
      /** Trust `X-Forwarded-*` headers (the client address) from a TLS-terminating proxy; URLs never depend on them. */
      trustProxy: z.boolean().default(false),
      /** Largest accepted request body in bytes, for every endpoint. */
      bodyLimitBytes: z.number().int().min(1024).max(10 * 1024 * 1024).default(64 * 1024),
      /** How long SIGTERM waits for in-flight requests before closing connections. */
      shutdownGraceSeconds: seconds().default(10),
      /**
       * Worker processes sharing the port (`node:cluster`, env `DEPUTY_WORKERS`), to use every
       * core. More than 1 needs PostgreSQL: PGlite is one process's database. Every piece of
       * state instances must agree on (replay, nonces, revocation, receipts) is in the store.
       */
      workers: z.number().int().min(1).max(64).default(1),
    })
    .prefault({}),
  store: z
    .strictObject({
      /** PostgreSQL URL (env `DATABASE_URL`). When absent, Deputy runs on embedded PGlite. */
      databaseUrl: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL').optional(),
      /** PGlite data folder when no `databaseUrl` is set (env `DEPUTY_DATA_DIR`). `memory://` keeps nothing. */
      dataDir: z.string().default('./data'),
      /** Connection pool size for PostgreSQL. */
      poolSize: z.number().int().min(1).max(200).default(10),
      /**
       * When embedded PGlite checkpoints (src/store/checkpointer.ts). PGlite has no checkpointer of
       * its own while it runs, so Deputy issues `CHECKPOINT` itself, as PostgreSQL would by
       * `max_wal_size` / `checkpoint_timeout`. Ignored on PostgreSQL (its own checkpointer runs).
       */
      checkpoint: z
        .strictObject({
          /**
           * Checkpoint once this many MB of WAL were written since the last one (env
           * `DEPUTY_CHECKPOINT_MAX_WAL_MB`). The checkpoint pauses the process for ~1 ms of CPU per
           * MB (BENCHMARKS.md, issue 16 eighth round), so this bounds the pause as well as the WAL.
           */
          maxWalMegabytes: z.number().int().min(1).max(1024).default(16),
          /** Checkpoint once WAL written since the last one is this old (env `DEPUTY_CHECKPOINT_TIMEOUT`); PostgreSQL's range and default. */
          timeoutSeconds: seconds().min(30).max(86_400).default(300),
        })
        .prefault({}),
      /** Embedded PGlite only; ignored on PostgreSQL. */
      pglite: z
        .strictObject({
          /**
           * Where the embedded database runs (env `DEPUTY_PGLITE_THREAD`): `main`, in the thread that
           * serves HTTP (src/store/pglite.ts), or `worker`, in a worker thread of its own
           * (src/store/pglite-thread.ts), so its statements and checkpoints use another core. The
           * worker takes ~0.2 ms of main-thread CPU off each statement and adds ~0.2 ms of latency to
           * each (a thread hop), so it pays where the main thread is saturated (BENCHMARKS.md, issue
           * 16 twelfth round).
           */
          thread: z.enum(['main', 'worker']).default('main'),
        })
        .prefault({}),
    })
    .prefault({}),
  keys: z
    .strictObject({
      /** Folder holding signing keys and the vault key-encryption key (env `DEPUTY_KEYS_DIR`). */
      dir: z.string().default('./keys'),
      /** Algorithm of newly generated token-signing keys. */
      signingAlg: z.enum(SIGNING_ALGS).default('ES256'),
      /**
       * Generate missing keys on start. Meant for development: defaults to true unless
       * `NODE_ENV=production`, where missing keys stop the start.
       */
      generate: z.boolean().optional(),
    })
    .prefault({}),
  tokens: z
    .strictObject({
      /** Lifetime of issued access tokens. Kept short: JWT access tokens are self-contained. */
      accessTokenTTL: seconds().max(3600).default(300),
      /**
       * Longest delegation chain (agents in `act`, RFC 8693 §4.1) any token may carry, whatever
       * the agents' own `maxDelegationDepth`.
       */
      maxChainDepth: z.number().int().min(1).max(10).default(5),
    })
    .prefault({}),
  dpop: z
    .strictObject({
      /** Require server-provided nonces in DPoP proofs (RFC 9449 §8). */
      requireNonce: z.boolean().default(false),
      /** Accepted proof age window in seconds around the server clock (RFC 9449 §11.1). */
      iatWindowSeconds: seconds().max(300).default(60),
    })
    .prefault({}),
  oauth: z
    .strictObject({
      /**
       * Accepted `aud` of `private_key_jwt` client assertions (RFC 7523 §3,
       * draft-ietf-oauth-rfc7523bis): a single string. `issuer`: Deputy's issuer identifier only.
       * `issuer-or-token-endpoint`: the token endpoint URL too — a legacy switch for clients that
       * still address assertions to the endpoint. Env `DEPUTY_CLIENT_ASSERTION_AUDIENCE`.
       */
      clientAssertionAudience: z.enum(['issuer', 'issuer-or-token-endpoint']).default('issuer'),
      /** The authorization endpoint and Client ID Metadata Documents: src/oauth/authorization-code/config.ts. */
      authorizationCode: authorizationCodeSchema,
      /**
       * The RFC 7523 jwt-bearer grant with an Identity Assertion JWT Authorization Grant (ID-JAG,
       * draft-ietf-oauth-identity-assertion-authz-grant; Okta Cross App Access, MCP
       * enterprise-managed authorization): src/oauth/identity-assertion.ts. Off while `issuers`
       * is empty (the grant is then neither registered nor advertised).
       */
      idJag: z
        .strictObject({
          /** Ids of `trustedIssuers` whose ID-JAGs Deputy accepts. */
          issuers: z.array(z.string().min(1)).max(50).default([]),
          /** Longest accepted ID-JAG age (now − `iat`) and lifetime (`exp` − `iat`), in seconds. */
          maxAgeSeconds: seconds().max(3600).default(300),
        })
        .prefault({}),
    })
    .prefault({}),
  /**
   * The AuthZEN PDP (`/access/v1/*`): Cedar policies, PEP authentication, caches and limits.
   * README "Authorization (PDP)" describes the policy folder and the delegation-chain semantics.
   */
  pdp: z
    .strictObject({
      /**
       * Folder holding the active Cedar policy set: one schema (`*.cedarschema` or
       * `*.cedarschema.json`), policies (`*.cedar`), and optionally `entities.json` (Cedar
       * entities the PDP holds as its own data) and `aliases.json`. Relative to the working folder.
       */
      policies: z.string().min(1).default('config/policies'),
      /** Reload the policy set when a file in the folder changes (debounced). SIGHUP and the admin API always reload. */
      watch: z.boolean().default(true),
      /**
       * How PEPs authenticate. `token`: an access token Deputy issued (client_credentials) for the
       * resource `<issuer>/access` with the `authzen:evaluate` scope. `none`: no authentication —
       * only for a PDP reachable solely by trusted PEPs (it is never the default; decisions then
       * carry no administrator reasons).
       */
      auth: z.enum(['token', 'none']).default('token'),
      /**
       * Send `reason_admin` (which chain link denied, which policies) to authenticated PEPs.
       * `reason_user` is always sent with a deny.
       */
      adminReasons: z.boolean().default(true),
      /** Most evaluations accepted in one `/access/v1/evaluations` request. */
      maxBatch: z.number().int().min(1).max(10_000).default(500),
      /** Deepest JSON nesting accepted in a request body (AuthZEN 1.0 §11.7: nested JSON attacks); at most MAX_JSON_DEPTH (src/util/i-json.ts). */
      maxJsonDepth: z.number().int().min(4).max(MAX_JSON_DEPTH).default(32),
      /** Page size of search responses when the request gives no `page.limit`, and the largest accepted. */
      searchPageSize: z.number().int().min(1).max(10_000).default(100),
      searchMaxPageSize: z.number().int().min(1).max(10_000).default(1000),
      /**
       * How long the list of registered agents (candidates of a subject search over agents) is
       * cached. Changes made through this instance apply at once. Single agents come from the
       * registry's own read cache (src/agents/registry.ts).
       */
      entityCacheSeconds: z.number().int().min(0).max(3600).default(5),
      /** Decisions kept in the in-memory decision cache (0 disables it). Emptied on every reload. */
      decisionCacheSize: z.number().int().min(0).max(1_000_000).default(50_000),
    })
    .prefault({}),
  /** Clients of the admin API and PDP (PEPs). */
  admin: z.strictObject({ clients: z.array(adminClientSchema).default([]) }).prefault({}),
  /**
   * Prometheus metrics (`GET /metrics`, text format 0.0.4). Without `listen`, served by the main
   * listener to an admin client's token (`deputy:admin`, like `/admin/*`). With `listen`
   * (`host:port`, env `DEPUTY_METRICS_LISTEN`; port 0 picks a free one), served there only,
   * without authentication — for scrapers inside the network; bind it to an address the
   * outside cannot reach — and the main listener answers `/metrics` with 404.
   */
  metrics: z
    .strictObject({
      listen: z
        .string()
        .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, { message: 'must be host:port (e.g. 127.0.0.1:9464 or [::1]:9464)' })
        .refine((v) => Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, { message: 'port must be at most 65535' })
        .optional(),
    })
    .prefault({}),
  /**
   * Enterprise IdPs whose tokens agents may exchange (RFC 8693 `subject_token`), each with a
   * preset: `okta`, `entra` or `oidc`. See src/federation/config.ts for every option.
   */
  trustedIssuers: z
    .array(trustedIssuerSchema)
    .default([])
    .refine((list) => new Set(list.map((i) => i.id)).size === list.length, { message: 'trusted issuer ids must be unique' }),
  /** Agents defined in configuration. They are kept in sync with the registry at each start. */
  agents: z.array(agentSchema).default([]),
  /**
   * Downstream APIs reached through the gateway (`/gw/{id}/…`), each with the credential Deputy
   * injects. Secrets are referenced (`secret: { env: NAME }` or `{ file: path }`), never written
   * here. Every option: src/vault/connections/config.ts.
   */
  connections: z
    .array(connectionConfigSchema)
    .default([])
    .refine((list) => new Set(list.map((c) => c.id)).size === list.length, { message: 'connection ids must be unique' }),
  /** The credential-injecting gateway: timeouts, size limits, pooling. See src/vault/connections/config.ts. */
  gateway: gatewayConfigSchema,
  /** Upstream MCP servers behind the MCP gateway (`/mcp/{id}`), with pinning and limits. See src/mcp/config.ts. */
  mcpServers: mcpServersConfigSchema,
  /**
   * Budgets (reserve, then settle; 402 when exhausted): time zone of day / month windows,
   * currency, per-model price table, reservation lifetime and budgets defined in the file.
   * Every option: src/budgets/config.ts.
   */
  budgets: budgetsConfigSchema,
  log: z
    .strictObject({
      /** pino level (env `LOG_LEVEL`). */
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
}).superRefine((config, ctx) => {
  const trusted = new Set(config.trustedIssuers.map((i) => i.id));
  config.oauth.idJag.issuers.forEach((id, i) => {
    if (!trusted.has(id)) ctx.addIssue({ code: 'custom', path: ['oauth', 'idJag', 'issuers', i], message: `"${id}" is not the id of a trusted issuer (trustedIssuers[].id)` });
  });
  if (config.server.workers > 1 && config.store.databaseUrl === undefined) {
    ctx.addIssue({ code: 'custom', path: ['server', 'workers'], message: 'more than one worker needs PostgreSQL (store.databaseUrl / DATABASE_URL): embedded PGlite serves one process' });
  }
});

/** The configuration file as written (input), before defaults. */
export type ConfigInput = z.input<typeof configSchema>;

/** The validated configuration, with defaults applied. */
export type DeputyConfig = Readonly<
  Omit<z.infer<typeof configSchema>, 'keys'> & {
    keys: z.infer<typeof configSchema>['keys'] & { generate: boolean };
  }
>;
