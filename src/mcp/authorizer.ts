/**
 * The MCP gateway's authorization questions, asked of the PDP (Cedar behind AuthZEN's
 * evaluation model) with the whole delegation chain as subject — the PEP side of DESIGN
 * capability 2 for MCP messages.
 *
 * | MCP message | AuthZEN action | resource id | `context.mcp` |
 * | --- | --- | --- | --- |
 * | `tools/call` | `invoke` | `{server}/tools/{name}` | `server`, `method`, `tool`, `arguments` (RFC 8785 JSON text) |
 * | `tools/list` (one per tool, one batch) | `invoke` | `{server}/tools/{name}` | `server`, `method`, `tool` |
 * | `prompts/get` | `read` | `{server}/prompts/{name}` | `server`, `method`, `prompt`, `arguments` |
 * | `prompts/list` (per prompt) | `read` | `{server}/prompts/{name}` | `server`, `method`, `prompt` |
 * | `resources/read`, `resources/list` (per resource) | `read` | `{server}/resources/{uri}` | `server`, `method`, `uri` |
 * | `resources/subscribe`, `resources/unsubscribe` | `read` | `{server}/resources/{uri}` | `server`, `method`, `uri` |
 * | `resources/templates/list` | `read` | `{server}/resources` | `server`, `method` |
 * | `completion/complete` | `read` | the prompt's or the resource template's, as above | `server`, `method`, `prompt` or `uri` |
 * | `logging/setLevel` | `write` | `{server}` | `server`, `method` |
 *
 * The resource is a `Resource` with `audience` = `{issuer}/mcp/{server}` (the token's audience),
 * `scope` = the server's first required scope (default `mcp:{server}`) and `owner` = the user:
 * Deputy's default policies then let an agent use an MCP server with that scope delegated to it.
 * `context.mcp` is declared in the Cedar schema (config/policies/schema.cedarschema, type `Mcp`),
 * so policies can name tools and match their arguments (`like`).
 *
 * @module
 */
import canonicalize from 'canonicalize';
import type { EvaluationInput } from '../pdp/authzen.js';
import type { Decision } from '../pdp/decision.js';
import type { EvaluationsSemantic } from '../pdp/authzen.js';
import { serverScope, type McpServerConfig } from './config.js';
import { mcpAudience } from './resource.js';

/** Who sends an MCP message: from the agent token of the HTTP request that carried it. */
export interface McpCaller {
  /** The verified agent token (the PDP evaluates the chain from it). */
  token: string;
  jti: string;
  userId: string;
  /** The agent presenting the token. */
  agentId: string;
  /** Agents in delegation order, the current actor last. */
  chain: readonly string[];
  scopes: ReadonlySet<string>;
  /** Vault handle of the user's upstream IdP token (on-behalf-of credentials). */
  upstreamHandle: string | undefined;
  requestId: string;
}

/** One question: may the caller do this MCP operation on this server? */
export interface McpQuestion {
  method: string;
  action: 'invoke' | 'read' | 'write';
  tool?: string;
  prompt?: string;
  uri?: string;
  /** The call's arguments (tools/call, prompts/get); passed to policies as RFC 8785 JSON text. */
  arguments?: unknown;
}

export type McpDecision = { allowed: true; policies: readonly string[] } | { allowed: false; reason: string; policies: readonly string[] };

export interface McpAuthorizer {
  /** One decision per question, in order (a batch: the subject is prepared once). */
  decide(caller: McpCaller, server: McpServerConfig, questions: readonly McpQuestion[]): Promise<McpDecision[]>;
}

/** What the adapter needs from the PDP (src/pdp/pdp.ts `PolicyDecisionPoint` fits). */
export interface PdpBatchEvaluator {
  evaluateAll(items: ReadonlyArray<{ ok: true; evaluation: EvaluationInput }>, semantic: EvaluationsSemantic): Promise<Array<Decision | { error: string }>>;
}

/** Longest `arguments` text handed to policies; longer arguments are refused, not truncated. */
export const MAX_ARGUMENTS_TEXT = 64 * 1024;

export class PdpMcpAuthorizer implements McpAuthorizer {
  constructor(
    readonly pdp: PdpBatchEvaluator,
    readonly options: { issuer: string; adminReasons: boolean },
  ) {}

  /** The AuthZEN evaluation of one question (exported for tests and documentation). */
  evaluation(caller: McpCaller, server: McpServerConfig, q: McpQuestion): EvaluationInput {
    const id = q.tool !== undefined ? `${server.id}/tools/${q.tool}` : q.prompt !== undefined ? `${server.id}/prompts/${q.prompt}` : q.uri !== undefined ? `${server.id}/resources/${q.uri}` : q.method.startsWith('resources/') ? `${server.id}/resources` : server.id;
    const args = q.arguments === undefined ? undefined : canonicalize(q.arguments);
    return {
      subject: { type: 'Agent', id: caller.agentId, properties: { token: caller.token } },
      action: { name: q.action, properties: {} },
      resource: { type: 'Resource', id, properties: { audience: mcpAudience(this.options.issuer, server.id), owner: caller.userId, scope: serverScope(server) } },
      context: {
        mcp: {
          server: server.id,
          method: q.method,
          ...(q.tool !== undefined ? { tool: q.tool } : {}),
          ...(q.prompt !== undefined ? { prompt: q.prompt } : {}),
          ...(q.uri !== undefined ? { uri: q.uri } : {}),
          ...(args !== undefined ? { arguments: args } : {}),
        },
      },
    };
  }

  async decide(caller: McpCaller, server: McpServerConfig, questions: readonly McpQuestion[]): Promise<McpDecision[]> {
    // The server's required scopes come first, as at the HTTP gateway (ScopeAuthorizer).
    const missing = server.requiredScopes.filter((s) => !caller.scopes.has(s));
    if (missing.length > 0) {
      const reason = `MCP server "${server.id}" needs the scope "${missing.join(' ')}" in the agent token`;
      return questions.map(() => ({ allowed: false, reason, policies: [] }));
    }
    // Oversized arguments are refused without being handed to the policy engine.
    const tooLong = questions.map((q) => q.arguments !== undefined && (canonicalize(q.arguments)?.length ?? 0) > MAX_ARGUMENTS_TEXT);
    const asked = questions.filter((_, i) => !tooLong[i]);
    const results = asked.length ? await this.pdp.evaluateAll(asked.map((q) => ({ ok: true as const, evaluation: this.evaluation(caller, server, q) })), 'execute_all') : [];
    let next = 0;
    return questions.map((_, i) => {
      if (tooLong[i]) return { allowed: false, reason: `the arguments exceed ${MAX_ARGUMENTS_TEXT} bytes`, policies: [] };
      const r = results[next++];
      if (!r || !('decision' in r)) return { allowed: false, reason: r && 'error' in r ? r.error : 'not evaluated', policies: [] };
      if (r.decision) return { allowed: true, policies: r.policies };
      return { allowed: false, reason: this.options.adminReasons ? r.denial.admin : r.denial.user, policies: r.denial.policies };
    });
  }
}
