/**
 * The MCP gateway's own enforcement steps (src/enforcement, "Composing a PEP"): what a decided
 * MCP message adds to the shared steps `decide`, `budget`, `receipt` and `refuseDenied` —
 * the question put to the PDP, the tool's pin check and the forward to the upstream session —
 * and the one mapping of a pipeline refusal (a typed `DeputyError`) to the agent's JSON-RPC error.
 *
 * @module
 */
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { McpReceiptDetail } from '../audit/index.js';
import { receiptText } from '../audit/index.js';
import type { ActionContext, ActionDescription, Decided, Described, PepDecision, Step } from '../enforcement/index.js';
import { NOTHING } from '../enforcement/index.js';
import { AccessDenied, DeputyError, ProblemError, serializeError } from '../errors/index.js';
import { classifyError, logError } from '../http/errors.js';
import type { Logger } from '../log.js';
import type { McpAuthorizer, McpCaller, McpDecision, McpQuestion } from './authorizer.js';
import type { McpServerConfig } from './config.js';

/** JSON-RPC error code of a refusal by Deputy (policy, pin): in the implementation-defined range. */
export const MCP_DENIED = -32003;

/** One decided MCP message: the per-action context's input (`tools/call`, `resources/read`, `prompts/get`, lists, outcomes). */
export interface McpMessage extends ActionContext {
  readonly caller: McpCaller;
  readonly server: McpServerConfig;
  /** The question put to the PDP (./authorizer.ts). */
  readonly question: McpQuestion;
}

/** A message's upstream request, run by {@link forwardToSession} (the receipt's description at hand for the outcome receipt). */
export interface Sending {
  send(ctx: McpMessage & Described): Promise<unknown>;
}

/** Added by {@link forwardToSession}: the upstream's answer, relayed to the agent. */
export interface Answered {
  result: unknown;
}

/**
 * A denial that carries its own JSON-RPC error: the code (MCP_DENIED, or InvalidParams for a
 * tool the server does not offer) and `data` for the agent.
 */
export class McpRefusal extends AccessDenied {
  constructor(
    readonly rpcCode: number,
    description: string,
    readonly data: Readonly<Record<string, unknown>>,
  ) {
    super(description);
  }
}

/**
 * The `receipt` step's description of a message: event `mcp_message`, resource
 * `{audience}/tools/{name}` or `{audience}/resources/{uri}`, the `mcp` claim (receipt text).
 *
 * @param audience - `{issuer}/mcp/{server}`.
 * @param name - the action: the method, or `{method}:outcome` for an upstream outcome.
 */
export function describeMessage(audience: string, name: string, detail: McpReceiptDetail, uri?: string): ActionDescription {
  const target = detail.tool !== undefined ? `/tools/${detail.tool}` : uri !== undefined ? `/resources/${uri}` : '';
  const mcp = Object.fromEntries(Object.entries(detail).map(([k, v]) => [k, receiptText(String(v))])) as unknown as McpReceiptDetail;
  return { event: 'mcp_message', name, resource: `${audience}${target}`, digest: { ...mcp }, claims: { mcp } };
}

/** The `decide` question of a message: its one {@link McpQuestion} to the authorizer, policies kept for the receipt. */
export function askPdp(authorizer: McpAuthorizer): (ctx: McpMessage) => Promise<PepDecision> {
  return async ({ caller, server, question }) => {
    const [decision] = await authorizer.decide(caller, server, [question]);
    return pepDecision(decision!);
  };
}

/** An MCP decision as the pipeline's. */
export function pepDecision(d: McpDecision): PepDecision {
  return d.allowed ? { allowed: true, policies: d.policies } : { allowed: false, reason: d.reason, policies: d.policies };
}

/** What the pin step learns of a tool: undefined when the server does not offer it. */
export type PinLookup = (ctx: McpMessage & Described, tool: string) => Promise<{ allowed: true; pin: Pick<McpReceiptDetail, 'pin' | 'pin_digest'> } | { allowed: false; reason: string; pin?: Pick<McpReceiptDetail, 'pin' | 'pin_digest'>; data?: Record<string, unknown> } | undefined>;

/**
 * Step `checkPin` (`tools/call`, after `decide`): the tool's live definition against its pin
 * (./pins.ts). Only a permitted call looks (a call the chain may not make causes no upstream
 * request). Adds the pin to the receipt's `mcp` claim; replaces the decision with a denial for
 * a changed (or, under `pinning: enforce`, unpinned) tool, or one the server does not offer.
 */
export function checkPin(lookup: PinLookup): Step<McpMessage & Decided & Described, Partial<Decided & Described>> {
  return {
    name: 'checkPin',
    async run(ctx) {
      if (!ctx.decision.allowed) return NOTHING;
      const tool = ctx.question.tool!;
      const found = await lookup(ctx, tool);
      const policies = ctx.decision.policies ?? [];
      if (!found) {
        const reason = `tool "${tool.slice(0, 128)}" is not offered by MCP server "${ctx.server.id}"`;
        return { decision: { allowed: false, reason, policies: [], refusal: new McpRefusal(ErrorCode.InvalidParams, reason, {}) } };
      }
      const mcp = { ...ctx.action.claims?.mcp, ...found.pin } as McpReceiptDetail;
      const action: ActionDescription = { ...ctx.action, digest: { ...mcp }, claims: { mcp } };
      if (found.allowed) return { action };
      return { action, decision: { allowed: false, reason: found.reason, policies, refusal: new McpRefusal(MCP_DENIED, found.reason, { reason: found.reason, tool, ...found.data }) } };
    },
  };
}

/**
 * Step `forward`: the message sent through the upstream session ({@link Sending}, the session's own:
 * credential, progress, redaction, outcome receipt). `observe: 'upstream'`: a client span and
 * `deputy_gateway_upstream_duration_seconds` cover it.
 */
export function forwardToSession<C extends McpMessage & Described & Sending>(): Step<C, Answered> {
  return {
    name: 'forward',
    observe: 'upstream',
    async run(ctx) {
      return { result: await ctx.send(ctx) };
    },
  };
}

/**
 * The agent's JSON-RPC error for what left the pipeline: a denial → {@link MCP_DENIED} naming
 * the method (and tool) with the reason in `data`; a problem (an exhausted budget's 402) →
 * {@link MCP_DENIED} with {@link problemData} as `data`; {@link McpRefusal} as it says; a Deputy failure (a receipt not written: 503) →
 * InternalError with its safe description (and, for a 503, {@link retryData}); an upstream McpError unchanged; anything else
 * (a store that cannot serve, a bug) typed as the HTTP surfaces type it (src/http/errors.ts
 * `classifyError`: 503 `temporarily_unavailable`, or a 500 whose message is not shown) and
 * logged once on `log` as the HTTP error boundary logs it (`logError`: a bug at error with its
 * name, code, causes and frames, never its message). The MCP SDK answers a thrown error with its
 * `message`; unmapped, the store's reason or a bug's message reached the agent, and mapped but
 * unlogged, a bug answered "an unexpected error occurred" and left no trace (issue 16, tenth
 * round red team).
 *
 * @param label - `tools/call "name"` or the method, for the message.
 * @param log - the message's logger (carrying its request id), for an unexpected error only.
 */
export function toJsonRpcError(err: unknown, label: string, log: Logger): unknown {
  if (err instanceof McpRefusal) return new McpError(err.rpcCode, err.description, err.data);
  if (err instanceof McpError) return err;
  if (!(err instanceof DeputyError)) {
    const typed = classifyError(err);
    logError(log, typed);
    return toJsonRpcError(typed, label, log);
  }
  if (err.status >= 500) return new McpError(ErrorCode.InternalError, err.expose ? err.description : 'internal error', retryData(err));
  if (err instanceof ProblemError) return new McpError(MCP_DENIED, `Deputy refused ${label}: ${err.description}`, problemData(err));
  const data = err instanceof AccessDenied ? {} : { status: err.status, error: err.code };
  return new McpError(MCP_DENIED, `Deputy refused ${label}: ${err.description}`, { reason: err.description, ...data });
}

/**
 * The JSON-RPC `data` of a failure worth retrying — a `503` (`temporarily_unavailable`: the store
 * cannot serve, the call could not be recorded) — as the HTTP gateways say it: `status`, `error`
 * and `retry_after` (seconds, their `Retry-After`), so that an agent tells it from a bug's
 * InternalError (no `data`) and knows when to try again. Nothing was forwarded.
 */
function retryData(err: DeputyError): Record<string, unknown> | undefined {
  const retryAfter = err.headers['Retry-After'];
  if (err.status !== 503 || retryAfter === undefined) return undefined;
  return { status: err.status, error: err.code, retry_after: Number(retryAfter) };
}

/**
 * A problem's JSON-RPC `data`: the RFC 9457 problem object the HTTP gateways answer with (one
 * serializer, src/errors/serialize.ts: `type`, `title`, `status`, `detail`, the problem's members
 * — for a budget `budget`, `unit`, `limit`, `spent`, `reserved`, `requested`, `resets_at` —
 * `error`, `error_description`), plus `reason` (as every refusal's data) and `retry_after`
 * (seconds, what the HTTP answer says in `Retry-After`, RFC 9110 §10.2.3) when the window resets.
 */
export function problemData(err: ProblemError): Record<string, unknown> {
  const retryAfter = err.headers['Retry-After'];
  return { reason: err.description, ...serializeError(err).body, ...(retryAfter !== undefined ? { retry_after: Number(retryAfter) } : {}) };
}
