/**
 * MCP servers: the upstream MCP servers agents reach through Deputy's MCP gateway at
 * `/mcp/{id}` (Streamable HTTP). One schema serves configuration (`mcpServers:` in the YAML)
 * and the admin API (`/admin/mcp-servers`).
 *
 * ```yaml
 * mcpServers:
 *   - id: github
 *     url: https://mcp.example.com/mcp      # the upstream's Streamable HTTP endpoint
 *     connection: github                    # its credential: any connection kind of the vault
 *     requiredScopes: [mcp:github]
 *     pinning: enforce                      # enforce | warn | off
 *     trustedPublishers:
 *       - { issuer: https://publisher.example, jwks: { keys: [ … ] } }
 *     serverRequests: { sampling: refuse, elicitation: relay, roots: refuse }
 *     costPerCall: 1000                     # micro-units per tools/call, for cost budgets
 *     toolCosts: { create_issue: 50000 }    # per tool, overriding costPerCall
 * ```
 *
 * The credential is a connection's (src/vault/connections): an `api_key`, client credentials, a
 * per-user OAuth grant (an MCP server with its own authorization server) or on-behalf-of. The
 * connection's own `baseUrl` is not used by the MCP gateway.
 *
 * @module
 */
import { z } from 'zod';
import { SCOPE_TOKEN } from '../util/scope.js';
import { CONNECTION_ID } from '../vault/connections/config.js';

/** Server ids appear in URLs (`/mcp/{id}`, audience `{issuer}/mcp/{id}`): lowercase slugs. */
export const MCP_SERVER_ID = CONNECTION_ID;

/**
 * The default bound of one message from an upstream MCP server, after decoding (bytes): a JSON
 * answer whole, an SSE event each (src/mcp/upstream-http.ts). `limits.maxUpstreamMessageBytes`
 * sets it per server, between 1 KiB and {@link MAX_UPSTREAM_MESSAGE_BYTES}.
 */
export const DEFAULT_UPSTREAM_MESSAGE_BYTES = 16 * 1024 * 1024;

/**
 * The largest bound a server may set: a message is held whole in the heap (parsed, checked
 * against its pins, relayed), several at once across sessions, so a bound is a heap budget.
 */
export const MAX_UPSTREAM_MESSAGE_BYTES = 256 * 1024 * 1024;

const scopeToken = z.string().max(200).regex(SCOPE_TOKEN, 'must be a valid scope token (RFC 6749 §3.3)');

/** A publisher's public keys (RFC 7517 JWK Set); private members refused. */
const publicJwks = z.object({
  keys: z
    .array(
      z.looseObject({ kty: z.string() }).refine((k) => !('d' in k) && !('p' in k) && !('k' in k), {
        message: 'must contain public keys only (found a private or symmetric key member)',
      }),
    )
    .min(1, 'must contain at least one key'),
});

/** A key trusted to sign pins for this server offline. */
export const trustedPublisherSchema = z.strictObject({
  /** The `iss` of the publisher's pins. */
  issuer: z.string().min(1).max(2048),
  jwks: publicJwks,
  /** The `server` claim of the publisher's pins (default: this server's id). */
  server: z.string().min(1).max(256).optional(),
});

const relay = z.enum(['relay', 'refuse']);

/** The fields of an MCP server, shared by configuration and the admin API. */
export const mcpServerSchema = z
  .strictObject({
    /** The id in `/mcp/{id}` and in the audience `{issuer}/mcp/{id}` agents request. */
    id: z.string().regex(MCP_SERVER_ID, 'must be a lowercase slug: a-z 0-9 _ - (1-63, starting with a letter or digit)'),
    /** Shown in listings. */
    name: z.string().min(1).max(200).optional(),
    /** The upstream's Streamable HTTP endpoint (MCP 2025-06-18 "Transports"). */
    url: z.url({ protocol: /^https?$/ }),
    /** Allow an `http://` upstream: development and tests only. */
    allowInsecureHttp: z.boolean().default(false),
    /** The connection whose credential Deputy injects upstream (none: the upstream is called without one). */
    connection: z.string().regex(CONNECTION_ID, 'must be a connection id').optional(),
    /** Scopes every agent token must carry; the first is the PDP resource's `scope` (default `mcp:{id}`). */
    requiredScopes: z.array(scopeToken).max(20).default([]),
    /**
     * Tools without a pin: `enforce` hides and refuses them, `warn` lets them through with a
     * warning in the log, `off` lets them through. A tool whose pin does not match is hidden
     * and refused whatever this says.
     */
    pinning: z.enum(['enforce', 'warn', 'off']).default('enforce'),
    /** Publisher keys trusted to sign this server's pins offline. */
    trustedPublishers: z.array(trustedPublisherSchema).max(20).default([]),
    /**
     * What one `tools/call` costs, for `cost` budgets (micro-units of `budgets.currency`; a
     * tool's entry in `toolCosts` wins). Every call also counts one against `requests` budgets.
     */
    costPerCall: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
    /** Per-tool cost of one `tools/call` (tool name → micro-units), overriding `costPerCall`. */
    toolCosts: z.record(z.string().min(1).max(128), z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)).optional(),
    /** Server-initiated requests (MCP "Client features"): relayed to the agent, or refused upstream. */
    serverRequests: z
      .strictObject({ sampling: relay.default('refuse'), elicitation: relay.default('refuse'), roots: relay.default('refuse') })
      .prefault({}),
    limits: z
      .strictObject({
        /** Largest HTTP body an agent may POST, in bytes (413 beyond). */
        maxMessageBytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(1024 * 1024),
        /** Most JSON-RPC messages in one POSTed batch. */
        maxBatch: z.number().int().min(1).max(100).default(20),
        /** Open MCP sessions one agent may hold on this server. */
        sessionsPerAgent: z.number().int().min(1).max(1000).default(10),
        /** A session unused this long is closed (seconds). */
        idleSeconds: z.number().int().min(1).max(86_400).default(900),
        /** Deadline of one upstream request (seconds); progress notifications extend it. */
        upstreamTimeoutSeconds: z.number().int().min(1).max(3600).default(60),
        /**
         * Largest message the upstream may answer, in bytes after decoding (a JSON answer whole,
         * each SSE event; {@link DEFAULT_UPSTREAM_MESSAGE_BYTES} by default): a larger one fails
         * the request (502 at `initialize`, a JSON-RPC error after). Lower it for a server whose
         * answers are small; raise it (up to {@link MAX_UPSTREAM_MESSAGE_BYTES}) for one that
         * returns large resources.
         */
        maxUpstreamMessageBytes: z.number().int().min(1024).max(MAX_UPSTREAM_MESSAGE_BYTES).default(DEFAULT_UPSTREAM_MESSAGE_BYTES),
      })
      .prefault({}),
  })
  .superRefine((s, ctx) => {
    if (s.url.startsWith('http:') && !s.allowInsecureHttp) ctx.addIssue({ code: 'custom', path: ['url'], message: 'is http: set allowInsecureHttp (development only) or use https' });
  });

export type McpServerConfig = z.infer<typeof mcpServerSchema>;
export type McpServerInput = z.input<typeof mcpServerSchema>;

/** `mcpServers:` in the configuration: unique ids. */
export const mcpServersConfigSchema = z
  .array(mcpServerSchema)
  .default([])
  .refine((list) => new Set(list.map((s) => s.id)).size === list.length, { message: 'MCP server ids must be unique' });

/** The scope the PDP resource carries for this server (its first required scope, else `mcp:{id}`). */
export function serverScope(server: McpServerConfig): string {
  return server.requiredScopes[0] ?? `mcp:${server.id}`;
}
