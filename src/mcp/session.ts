/**
 * One agent session at the MCP gateway: Deputy is the MCP server the agent talks to (SDK
 * `Server` over `StreamableHTTPServerTransport`) and the MCP client of the upstream (SDK `Client`
 * over `StreamableHTTPClientTransport`), holding one upstream session per agent session.
 *
 * Every request the agent sends is decided here before anything reaches the upstream, each
 * decided message (`tools/call`, `resources/read`, `prompts/get`) by an action pipeline of the
 * enforcement steps (src/enforcement; the MCP ones in ./steps.ts), run under the HTTP request's
 * admission:
 *
 * 1. `decide` — the PDP, with the whole delegation chain as subject (./authorizer.ts).
 * 2. `checkPin` (`tools/call`) — the tool's live definition against its pin (./pins.ts); a
 *    changed tool (or, under `pinning: enforce`, an unpinned one) is refused with an error
 *    naming the tool and what changed. `tools/list` hides such tools, and a mismatch leaves its
 *    own receipt.
 * 3. `budget` (`tools/call`) — the budget slot: reserve before forwarding, settle after.
 * 4. `receipt` — written before the upstream is called (fail closed: no receipt, no call).
 * 5. `refuseDenied` — a denial stops here.
 * 6. `forward` — through the upstream session, the credential injected by the transport's
 *    fetch; progress notifications relayed while the call runs; the upstream outcome receipted.
 *
 * Lists are filtered with one batch decision and receipted through the same `receipt` step.
 * `resources/subscribe`/`unsubscribe`, `completion/complete` and `logging/setLevel` go through
 * the same `read` pipeline as `resources/read` (./authorizer.ts says what each is decided as).
 * A refusal is a JSON-RPC error (code {@link MCP_DENIED}) with a reason the agent can show
 * (./steps.ts `toJsonRpcError`). `ping` is answered on each hop by that hop.
 *
 * Upstream → agent: notifications and (where configured) server requests go back on the stream
 * of the agent's call they came with, else on its GET stream; `tools/list_changed` re-verifies
 * the pins first, once per burst (./list-changed.ts), and reaches the agent only when the tools
 * the upstream lists (or their verdicts) differ from what the agent last learned — on its GET
 * stream, or, while none is open, once when it opens one (./list-changed.ts). The session
 * closes itself when idle (`limits.idleSeconds`), ending the upstream session with a DELETE.
 *
 * @module
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { ServerResponse } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema,
  type CallToolResult,
  CompleteRequestSchema,
  ResourceUpdatedNotificationSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  ToolListChangedNotificationSchema,
  UnsubscribeRequestSchema,
  CreateMessageRequestSchema,
  CreateMessageResultSchema,
  ElicitRequestSchema,
  ElicitResultSchema,
  ErrorCode,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListRootsRequestSchema,
  ListRootsResultSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  type ClientCapabilities,
  type ServerCapabilities,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import type { AnySchema, SchemaOutput } from '@modelcontextprotocol/sdk/server/zod-compat.js';
import canonicalize from 'canonicalize';
import type { McpReceiptDetail, ReceiptAppender } from '../audit/index.js';
import {
  budget,
  decide,
  Pipeline,
  receipt,
  refuseDenied,
  spendProofOnRefusal,
  type ActionContext,
  type Admission,
  type Budgeter,
  type Decided,
  type Described,
} from '../enforcement/index.js';
import type { DeputyError } from '../errors/index.js';
import { RedactorMemo } from '../gateway/redact.js';
import { errorCause, unexpectedError, type Logger } from '../log.js';
import type { McpAuthorizer, McpCaller, McpDecision, McpQuestion } from './authorizer.js';
import type { McpServerConfig } from './config.js';
import { ListChangedCoalescer, ListChangedDelivery } from './list-changed.js';
import { pinRefusal, type PinVerdict, type ToolPins } from './pins.js';
import { askPdp, checkPin, describeMessage, forwardToSession, MCP_DENIED, pepDecision, toJsonRpcError, type McpMessage, type PinLookup, type Sending } from './steps.js';
import { PIN_META_KEY } from './tool-pin.js';
import { sha256Base64url } from '../util/sha256.js';
import { hasLoneSurrogate, iJsonProblem } from '../util/i-json.js';

export { MCP_DENIED };

type Extra = {
  authInfo?: { extra?: Record<string, unknown> };
  signal: AbortSignal;
  _meta?: { progressToken?: string | number } | undefined;
  sendNotification: (n: { method: string; params?: Record<string, unknown> }) => Promise<void>;
  sendRequest: <U extends AnySchema>(request: { method: string; params?: Record<string, unknown> }, resultSchema: U) => Promise<SchemaOutput<U>>;
};

/**
 * What a per-tool budget (issue 15, ./budget.ts) reads to reserve for one `tools/call`: the
 * admission (principal, request id) and the receipt's description, besides the tool.
 */
export interface McpBudgetContext extends ActionContext, Described {
  caller: McpCaller;
  server: McpServerConfig;
  tool: string;
  arguments: Readonly<Record<string, unknown>>;
}

/** The MCP action pipelines of a session: built once per session, run per decided message. */
function pipelines(deps: SessionDeps, pins: PinLookup) {
  const ask = askPdp(deps.authorizer);
  const recorded = receipt({ receipts: deps.receipts, logger: deps.logger });
  const refuse = refuseDenied({ logger: deps.logger, message: 'MCP message denied' });
  const gate = <C extends McpMessage & Described>() => Pipeline.start<C>().then(decide(ask)).then(recorded).then(refuse);
  return {
    call: Pipeline.start<McpMessage & Described & McpBudgetContext & Sending>()
      // A `tools/call` alone in its request has its proof spent by its receipt (./gateway.ts):
      // a refusal before that receipt spends it first, and a replay is the error the agent gets.
      .then(spendProofOnRefusal())
      .then(decide(ask))
      .then(checkPin(pins))
      .then(budget<McpMessage & Described & McpBudgetContext & Sending & Decided>(deps.budgeter))
      .then(recorded)
      .then(refuse)
      .then(forwardToSession()),
    read: gate<McpMessage & Described & Sending>().then(forwardToSession()),
    gate: gate<McpMessage & Described>(),
    record: Pipeline.start<ActionContext & Decided & Described>().then(recorded),
  };
}

export interface SessionDeps {
  /**
   * The budget slot of the enforcement pipeline (src/enforcement/steps/budget.ts) for
   * `tools/call`: reserved after the decision, before the receipt; a denial (402) is receipted
   * and refused; the hold is settled with the upstream outcome. Absent: no budget applies.
   */
  budgeter?: Budgeter<McpBudgetContext> | undefined;
  server: McpServerConfig;
  /** `{issuer}/mcp/{server}`: receipts' resource prefix. */
  audience: string;
  authorizer: McpAuthorizer;
  pins: ToolPins;
  receipts: ReceiptAppender | undefined;
  logger: Logger;
}

/** The agent's own client capabilities, as declared in its `initialize`. */
export type AgentCapabilities = ClientCapabilities;

/** The caller of the HTTP request that carried a message (set by the gateway on `authInfo.extra`). */
export function callerOf(extra: { authInfo?: { extra?: Record<string, unknown> } }): McpCaller {
  const caller = extra.authInfo?.extra?.caller as McpCaller | undefined;
  // Fail closed: a message that did not come through authentication is never decided as anyone.
  if (!caller) throw new McpError(ErrorCode.InternalError, 'unauthenticated message');
  return caller;
}

/** The admission of the HTTP request that carried a message (beside its caller on `authInfo.extra`). */
export function admissionOf(extra: { authInfo?: { extra?: Record<string, unknown> } }): Admission {
  const admission = extra.authInfo?.extra?.admission as Admission | undefined;
  if (!admission) throw new McpError(ErrorCode.InternalError, 'unauthenticated message');
  return admission;
}

/**
 * `sha-256:<base64url>` of the RFC 8785 canonical JSON of a call's arguments.
 *
 * @throws McpError InvalidParams (-32602) when the arguments are not I-JSON (a lone surrogate,
 *   RFC 7493 §2.1; a non-finite number) or nest deeper than `MAX_JSON_DEPTH` (src/util/i-json.ts):
 *   refused before any decision, receipt or upstream request, as the HTTP surfaces refuse such a
 *   request with 400 invalid_request (src/audit/digest.ts).
 */
const argumentsDigest = (args: unknown): string => {
  const problem = iJsonProblem(args ?? {}, 'the arguments');
  if (problem) throw new McpError(ErrorCode.InvalidParams, problem);
  return `sha-256:${sha256Base64url(canonicalize(args ?? {}) ?? '{}')}`;
};

/**
 * A whole tool list as an agent would learn it, as one comparable value: every definition as
 * listed (RFC 8785 canonical JSON, so member order is no change) with its pin verdict, by name.
 * Two listings with equal views are no change to tell the agent about.
 */
function toolListView(tools: readonly Tool[], verdicts: ReadonlyMap<string, PinVerdict>): string {
  // A malformed definition (not I-JSON) has no canonical JSON: its verdict's digest stands in for it.
  const entries = [...tools].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map((t) => {
    const verdict = verdicts.get(t.name);
    return [verdict?.status === 'malformed' ? verdict.digest : t, verdict?.status ?? null];
  });
  return sha256Base64url(canonicalize(entries) ?? '');
}

/** How many times a call lists the upstream's tools itself before refusing a tool whose list keeps changing. */
const OWN_LISTINGS = 3;

/** The parameters of a `tools/call` (MCP 2025-06-18 "Calling Tools"). */
type ToolCall = { name: string; arguments?: Record<string, unknown> | undefined; _meta?: Record<string, unknown> | undefined };

export class AgentSession {
  readonly upstream: Client;
  readonly agent: Server;
  /** The owner: user and chain (a session id presented by anyone else is unknown). */
  readonly owner: string;
  readonly agentId: string;
  readonly serverId: string;
  /** Closed after this long unused (the server's `limits.idleSeconds`). */
  readonly idleMs: number;
  /**
   * The credential values last injected upstream (secrets and header values): redacted from
   * everything relayed back, in the encodings src/gateway/redact.ts finds.
   */
  secrets: readonly string[] = [];
  /** Why the last credential could not be obtained (set by the gateway's upstream fetch). */
  credentialError: DeputyError | undefined;
  /** The latest caller: the identity credentials are derived for (its token is the freshest). */
  caller: McpCaller;
  /** The latest HTTP request's admission: receipts of what the upstream starts (re-verification after `list_changed`). */
  admission: Admission | undefined;
  /** Verdicts and definitions from the last `tools/list` (undefined: list again before a call). */
  #tools: Map<string, { tool: Tool; verdict: PinVerdict }> | undefined;
  /** The upstream's `tools/list_changed`, one refresh at a time (a burst costs at most two). */
  readonly #listChanged = new ListChangedCoalescer((generation) => this.#refreshTools(generation));
  /** Tells the agent on its GET stream, or once it opens one (./list-changed.ts). */
  readonly #listChangedDelivery = new ListChangedDelivery(() => this.agent.notification({ method: 'notifications/tools/list_changed' }).catch(() => {}));
  /**
   * The whole tool list as the agent last learned it ({@link toolListView}): from a complete
   * listing, or with the last `list_changed` it was sent. Undefined: unknown (tell it).
   */
  #toldView: string | undefined;
  /** URIs the agent subscribed to (permitted): only their `notifications/resources/updated` are relayed. */
  readonly #subscribed = new Set<string>();
  /** The idle clock ({@link AgentSession.watchIdle}); unref'd, cleared on close. */
  #idle: NodeJS.Timeout | undefined;
  /** Agent POSTs whose responses are still open: the session is not idle while one runs. */
  #busy = 0;
  #closed = false;
  /** Pin mismatches already receipted in this session (`tool\0digest`). */
  readonly #mismatchReceipted = new Set<string>();
  /** Redactors of the credential values injected upstream: built once per value set, not per answer. */
  readonly #redactors = new RedactorMemo(4);
  readonly #d: SessionDeps;
  readonly #p: ReturnType<typeof pipelines>;
  transport: StreamableHTTPServerTransport | undefined;

  constructor(deps: SessionDeps, caller: McpCaller, upstream: Client, agentCapabilities: AgentCapabilities) {
    this.#d = deps;
    this.#p = pipelines(deps, (ctx, tool) => this.#pinOf(ctx.admission, tool));
    this.caller = caller;
    this.owner = ownerOf(caller);
    this.agentId = caller.agentId;
    this.serverId = deps.server.id;
    this.idleMs = deps.server.limits.idleSeconds * 1000;
    this.upstream = upstream;
    const caps = upstream.getServerCapabilities() ?? {};
    const capabilities = relayedCapabilities(caps);
    const info = upstream.getServerVersion();
    const instructions = upstream.getInstructions();
    this.agent = new Server(
      { name: `deputy/${deps.server.id}`, version: info?.version ?? '0' },
      { capabilities, ...(instructions !== undefined ? { instructions } : {}) },
    );
    this.#handlers(caps);
    this.#relay(agentCapabilities);
  }

  /**
   * Starts the idle clock: `onIdle` runs once the session has had no request for `idleMs` and no
   * POST of the agent is still being answered. The timer never keeps the process alive.
   */
  watchIdle(onIdle: () => void): void {
    clearTimeout(this.#idle);
    this.#idle = setTimeout(() => (this.#busy > 0 ? this.#idle?.refresh() : onIdle()), this.idleMs);
    this.#idle.unref();
  }

  /** A request of the agent arrived: the idle clock starts again. */
  touch(): void {
    this.#idle?.refresh();
  }

  /**
   * The agent's GET (its stream for messages unrelated to a call) being answered on `res`: a
   * `tools/list_changed` that could not be sent while none was open is sent on it, once.
   */
  listen(res: ServerResponse): void {
    this.#listChangedDelivery.listen(res);
  }

  /** A POST being answered on `res`: not idle until its response ends (an SSE stream may run long). */
  hold(res: ServerResponse): void {
    this.#busy += 1;
    res.once('close', () => {
      this.#busy -= 1;
      this.touch();
    });
  }

  /**
   * Closes both sides, once: the upstream session is ended with an HTTP DELETE (MCP "Session
   * Management"; a courtesy, so bounded by the upstream timeout and at most 5 s: a shutdown does
   * not wait on an upstream that does not answer), then both connections are closed.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#idle);
    const upstream = this.upstream.transport as StreamableHTTPClientTransport | undefined;
    if (upstream?.sessionId !== undefined) await withDeadline(upstream.terminateSession(), Math.min(this.#d.server.limits.upstreamTimeoutSeconds, 5) * 1000);
    await Promise.allSettled([this.agent.close(), this.upstream.close()]);
  }

  #handlers(caps: ServerCapabilities): void {
    if (caps.tools) {
      this.agent.setRequestHandler(ListToolsRequestSchema, (req, extra) => this.#listTools(req.params, extra as unknown as Extra));
      this.agent.setRequestHandler(CallToolRequestSchema, (req, extra) => this.#callTool(req.params, extra as unknown as Extra));
    }
    if (caps.resources) this.#resourceHandlers(caps.resources.subscribe === true);
    if (caps.prompts) this.#promptHandlers();
    if (caps.completions) {
      // Decided like what it completes: the prompt (`prompts/get`) or the resource template (`resources/read`).
      this.agent.setRequestHandler(CompleteRequestSchema, (req, extra) => {
        const ref = req.params.ref;
        const about = ref.type === 'ref/prompt' ? { prompt: (ref as { name: string }).name } : { uri: (ref as { uri: string }).uri };
        return this.#decided(extra as unknown as Extra, { method: 'completion/complete', action: 'read', ...about }, () => this.upstream.complete(req.params, this.#options(extra)));
      });
    }
    if (caps.logging) {
      this.agent.setRequestHandler(SetLevelRequestSchema, (req, extra) =>
        this.#decided(extra as unknown as Extra, { method: 'logging/setLevel', action: 'write' }, () => this.upstream.setLoggingLevel(req.params.level, this.#options(extra))),
      );
    }
  }

  /** `resources/*`: lists filtered per resource; read, subscribe and unsubscribe decided on the URI. */
  #resourceHandlers(subscribe: boolean): void {
    this.agent.setRequestHandler(ListResourcesRequestSchema, async (req, extra) => {
      const page = await this.upstream.listResources(req.params, this.#options(extra));
      const allowed = await this.#filter(extra, 'resources/list', page.resources, (r) => ({ method: 'resources/list', action: 'read', uri: r.uri }));
      return { ...page, resources: allowed };
    });
    this.agent.setRequestHandler(ListResourceTemplatesRequestSchema, async (req, extra) => {
      await this.#run(this.#p.gate, this.#message(extra, { method: 'resources/templates/list', action: 'read' }), 'resources/templates/list');
      return this.upstream.listResourceTemplates(req.params, this.#options(extra));
    });
    this.agent.setRequestHandler(ReadResourceRequestSchema, (req, extra) =>
      this.#decided(extra as unknown as Extra, { method: 'resources/read', action: 'read', uri: req.params.uri }, () => this.upstream.readResource(req.params, this.#options(extra))),
    );
    if (!subscribe) return;
    this.agent.setRequestHandler(SubscribeRequestSchema, async (req, extra) => {
      const result = await this.#decided(extra as unknown as Extra, { method: 'resources/subscribe', action: 'read', uri: req.params.uri }, () => this.upstream.subscribeResource(req.params, this.#options(extra)));
      this.#subscribed.add(req.params.uri);
      return result;
    });
    this.agent.setRequestHandler(UnsubscribeRequestSchema, (req, extra) => {
      // Relaying stops whatever the decision: the agent asked for no more updates.
      this.#subscribed.delete(req.params.uri);
      return this.#decided(extra as unknown as Extra, { method: 'resources/unsubscribe', action: 'read', uri: req.params.uri }, () => this.upstream.unsubscribeResource(req.params, this.#options(extra)));
    });
  }

  /** `prompts/*`: the list filtered per prompt; `prompts/get` decided with its arguments. */
  #promptHandlers(): void {
    this.agent.setRequestHandler(ListPromptsRequestSchema, async (req, extra) => {
      const page = await this.upstream.listPrompts(req.params, this.#options(extra));
      const allowed = await this.#filter(extra, 'prompts/list', page.prompts, (p) => ({ method: 'prompts/list', action: 'read', prompt: p.name }));
      return { ...page, prompts: allowed };
    });
    this.agent.setRequestHandler(GetPromptRequestSchema, (req, extra) =>
      this.#decided(extra as unknown as Extra, { method: 'prompts/get', action: 'read', prompt: req.params.name, arguments: req.params.arguments ?? {} }, () => this.upstream.getPrompt(req.params, this.#options(extra))),
    );
  }

  /**
   * One decided message other than `tools/call` through the `read` pipeline (decide → receipt →
   * refuse → forward); `send` runs as the agent request's own (server-initiated requests it
   * causes go back on its stream) and its outcome is receipted.
   */
  async #decided<T>(extra: Extra, question: McpQuestion, send: () => Promise<T>): Promise<T> {
    const message = this.#message(extra, question);
    const forward = (ctx: McpMessage) => this.#settle(ctx, { server: this.#d.server.id, method: question.method }, () => relatedCall.run(extra, send));
    return (await this.#run(this.#p.read, { ...message, send: forward }, question.method)).result as T;
  }

  /**
   * Upstream → agent. `notifications/tools/list_changed` re-verifies every tool's pin at once
   * (a mismatch is receipted even if the agent never lists again), then tells the agent;
   * `notifications/resources/updated` only for a URI the agent subscribed to (a permitted
   * subscription); other notifications (logging, list changes) are relayed on the stream of the
   * agent's call they came with ({@link relatedCall}), else on its GET stream. Progress and
   * cancellation belong to their request (see #forwardCall).
   */
  #relayNotifications(): void {
    this.upstream.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      // Nothing verified before this notification is trusted for a call any more (#tool waits).
      this.#tools = undefined;
      return this.#listChanged.notify();
    });
    this.upstream.setNotificationHandler(ResourceUpdatedNotificationSchema, async (n) => {
      if (this.#subscribed.has(n.params.uri)) await this.agent.notification(n).catch(() => {});
    });
    this.upstream.fallbackNotificationHandler = async (n) => {
      if (n.method === 'notifications/progress' || n.method === 'notifications/cancelled') return;
      const call = relatedCall.getStore();
      await (call ? call.sendNotification(n) : this.agent.notification(n as Parameters<Server['notification']>[0])).catch(() => {});
    };
  }

  /**
   * Server-initiated requests (MCP "Client features") are relayed only when configured and the
   * agent declared the capability; otherwise Deputy never declared it upstream, and the SDK
   * answers the upstream with a JSON-RPC error ("Method not found", -32601). A request the
   * upstream sends on the response stream of one of the agent's calls goes back on that call's
   * stream ({@link relatedCall}: the SDK handles it in the context of the call whose stream
   * carried it); any other on the agent's GET stream.
   */
  #relay(agentCapabilities: AgentCapabilities): void {
    this.#relayNotifications();
    const relay = this.#d.server.serverRequests;
    if (relay.sampling === 'relay' && agentCapabilities.sampling) {
      this.upstream.setRequestHandler(CreateMessageRequestSchema, (req) => relatedCall.getStore()?.sendRequest(req, CreateMessageResultSchema) ?? this.agent.createMessage(req.params));
    }
    if (relay.elicitation === 'relay' && agentCapabilities.elicitation) {
      this.upstream.setRequestHandler(ElicitRequestSchema, (req) => relatedCall.getStore()?.sendRequest(req, ElicitResultSchema) ?? this.agent.elicitInput(req.params as Parameters<Server['elicitInput']>[0]));
    }
    if (relay.roots === 'relay' && agentCapabilities.roots) {
      this.upstream.setRequestHandler(ListRootsRequestSchema, (req) => relatedCall.getStore()?.sendRequest(req, ListRootsResultSchema) ?? this.agent.listRoots(req.params));
    }
  }

  #options(extra: { signal: AbortSignal }): { signal: AbortSignal; timeout: number } {
    return { signal: extra.signal, timeout: this.#d.server.limits.upstreamTimeoutSeconds * 1000 };
  }

  async #listTools(params: { cursor?: string | undefined } | undefined, extra: Extra): Promise<{ tools: Tool[]; nextCursor?: string }> {
    const caller = callerOf(extra);
    const admission = admissionOf(extra);
    const generation = this.#listChanged.generation;
    const page = await this.upstream.listTools(params, this.#options(extra));
    const first = params?.cursor === undefined;
    const verdicts = await this.#verify(admission, page.tools, { fresh: first, complete: first && page.nextCursor === undefined, generation });
    const shown = page.tools.filter((t) => this.#pinAllows(verdicts.get(t.name)!));
    const decisions = await this.#d.authorizer.decide(caller, this.#d.server, shown.map((t) => ({ method: 'tools/list', action: 'invoke' as const, tool: t.name })));
    const allowed = shown.filter((_, i) => decisions[i]!.allowed);
    await this.#receipt(admission, { server: this.#d.server.id, method: 'tools/list' }, { allowed: true, policies: [] });
    return {
      ...page,
      tools: allowed.map((t) => {
        const v = verdicts.get(t.name)!;
        if (v.status === 'pinned') return { ...t, _meta: { ...(t._meta ?? {}), [PIN_META_KEY]: { jws: v.pin.jws, digest: v.digest } } };
        // Deputy's key is Deputy's alone: an unpinned tool (warn, off) never shows the upstream's own
        // (a pin copied from another tool would pass for this one's).
        if (t._meta === undefined || !Object.hasOwn(t._meta, PIN_META_KEY)) return t;
        const { [PIN_META_KEY]: _upstream, ...meta } = t._meta;
        const { _meta: _listed, ...rest } = t;
        return Object.keys(meta).length > 0 ? { ...rest, _meta: meta } : rest;
      }),
    };
  }

  /**
   * `tools/call` through the action pipeline: decide (policy first, so that a call the chain
   * may not make causes no upstream request at all) → the tool's pin → budget → receipt →
   * refuse a denial → forward (progress relayed, outcome receipted). Each refusal is receipted
   * before the agent gets its JSON-RPC error.
   */
  async #callTool(params: ToolCall, extra: Extra): Promise<CallToolResult> {
    const args = params.arguments ?? {};
    const detail: McpReceiptDetail = { server: this.#d.server.id, method: 'tools/call', tool: params.name, arguments_digest: argumentsDigest(params.arguments) };
    const message = this.#message(extra, { method: 'tools/call', action: 'invoke', tool: params.name, arguments: args }, detail);
    const send = (ctx: McpMessage & Described) => this.#forwardCall(ctx, params, extra);
    const done = await this.#run(this.#p.call, { ...message, tool: params.name, arguments: args, send }, `tools/call "${params.name.slice(0, 128)}"`);
    return done.result as CallToolResult;
  }

  /** A decided message's pipeline input: its admission and caller, the question and its receipt description. */
  #message(extra: { authInfo?: { extra?: Record<string, unknown> } }, question: McpQuestion, detail?: McpReceiptDetail): McpMessage & Described {
    // A name or URI with a lone surrogate is no tool, prompt or resource, and Cedar cannot take it
    // (a 500, -32603, before): refused as the arguments are, before any decision or receipt.
    for (const name of [question.tool, question.prompt, question.uri]) {
      if (name !== undefined && hasLoneSurrogate(name)) throw new McpError(ErrorCode.InvalidParams, `the ${question.method} name is not I-JSON (RFC 7493 §2.1): a lone surrogate`);
    }
    const mcp: McpReceiptDetail = detail ?? {
      server: this.#d.server.id, method: question.method,
      ...(question.tool ?? question.prompt ? { tool: question.tool ?? question.prompt } : {}),
      ...(question.arguments !== undefined ? { arguments_digest: argumentsDigest(question.arguments) } : {}),
    };
    const action = describeMessage(this.#d.audience, question.method, mcp, question.uri);
    return { admission: admissionOf(extra), caller: callerOf(extra), server: this.#d.server, question, action };
  }

  /** Runs a message through `pipeline`; what leaves it as a refusal becomes the agent's JSON-RPC error. */
  async #run<In extends { admission: Admission }, Out extends object>(pipeline: Pipeline<In, Out>, input: In, label: string): Promise<Out> {
    try {
      return await pipeline.run(input, { onSettleError: this.#settleError });
    } catch (err) {
      throw toJsonRpcError(err, label, this.#messageLog(input.admission));
    }
  }

  /** The logger for one message's unexpected failure: its request id and this server's. */
  #messageLog(admission: Admission): Logger {
    return this.#d.logger.child({ reqId: admission.requestId, server: this.#d.server.id });
  }

  readonly #settleError = (err: unknown, step: string): void => {
    this.#d.logger.error({ err: unexpectedError(err), step, server: this.#d.server.id }, 'MCP step could not settle');
  };

  /** The `checkPin` step's lookup: the tool's verdict, or undefined when the server does not offer it. */
  async #pinOf(admission: Admission, name: string): ReturnType<PinLookup> {
    const entry = await this.#tool(admission, name);
    if (!entry) return undefined;
    const pin = { pin_digest: entry.verdict.digest, pin: entry.verdict.status };
    if (this.#pinAllows(entry.verdict)) return { allowed: true, pin };
    const data = entry.verdict.status === 'changed' ? { changed: entry.verdict.changed } : {};
    return { allowed: false, reason: pinRefusal(this.#d.server.id, name, entry.verdict), pin, data };
  }

  /** The upstream call: the agent's progress token relayed, the outcome receipted. */
  #forwardCall(ctx: McpMessage & Described, params: ToolCall, extra: Extra): Promise<CallToolResult> {
    const progressToken = extra._meta?.progressToken;
    const { _meta, ...forwarded } = params;
    // The agent's progress token is its own: the upstream gets Deputy's, and progress is mapped back.
    const meta = _meta ? Object.fromEntries(Object.entries(_meta).filter(([k]) => k !== 'progressToken')) : undefined;
    return this.#settle(ctx, ctx.action.claims!.mcp!, () =>
      relatedCall.run(extra, () =>
        this.upstream.callTool({ ...forwarded, ...(meta && Object.keys(meta).length ? { _meta: meta } : {}) }, undefined, {
          ...this.#options(extra),
          resetTimeoutOnProgress: true,
          ...(progressToken !== undefined
            ? { onprogress: (p) => void extra.sendNotification({ method: 'notifications/progress', params: { ...p, progressToken } }).catch(() => {}) }
            : {}),
        }),
      ),
    ) as Promise<CallToolResult>;
  }

  /**
   * The tool's live definition and verdict, listing upstream first when not known (after
   * list_changed): never a verdict from a listing that a later `list_changed` may have made
   * stale. A `list_changed` refresh running is waited for; a listing of this call's own that one
   * overtakes is done again, at most {@link OWN_LISTINGS} times, then the tool is refused as not
   * offered (an upstream changing its tools that fast gets no call through).
   */
  async #tool(admission: Admission, name: string): Promise<{ tool: Tool; verdict: PinVerdict } | undefined> {
    for (let attempt = 0; attempt < OWN_LISTINGS; attempt += 1) {
      await this.#listChanged.settled();
      const known = this.#tools?.get(name);
      if (known) return known;
      const generation = this.#listChanged.generation;
      const tools = await this.#allTools();
      // Not `complete`: the agent did not see this listing (a change found here is still told).
      const verdicts = await this.#verify(admission, tools, { fresh: true, complete: false, generation });
      if (!this.#listChanged.isCurrent(generation)) continue;
      const tool = tools.find((t) => t.name === name);
      return tool && { tool, verdict: verdicts.get(name)! };
    }
    return undefined;
  }

  /** Every tool the upstream lists now (at most 50 pages). */
  async #allTools(): Promise<Tool[]> {
    const tools: Tool[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 50; page += 1) {
      const res = await this.upstream.listTools(cursor === undefined ? undefined : { cursor }, { timeout: this.#d.server.limits.upstreamTimeoutSeconds * 1000 });
      tools.push(...res.tools);
      cursor = res.nextCursor;
      if (cursor === undefined) break;
    }
    return tools;
  }

  /**
   * One coalesced refresh after `notifications/tools/list_changed` (./list-changed.ts): every
   * live definition checked against its pin now, mismatches receipted under the latest request's
   * admission, then the agent told — when what the upstream lists differs from what the agent
   * last learned, and only by a refresh no later notification overtook (the refresh queued after
   * it tells instead). A failure is logged and the agent told (it lists again, verified then);
   * the next list or call verifies again, so nothing unverified gets through.
   */
  async #refreshTools(generation: number): Promise<void> {
    const admission = this.admission;
    let view: string | undefined;
    try {
      if (admission) {
        const tools = await this.#allTools();
        if (!this.#listChanged.isCurrent(generation)) return;
        view = toolListView(tools, await this.#verify(admission, tools, { fresh: true, complete: false, generation }));
        if (!this.#listChanged.isCurrent(generation)) return;
      }
    } catch (err) {
      this.#tools = undefined;
      this.#d.logger.warn({ server: this.#d.server.id, err: { cause: errorCause(err) } }, 'MCP tools could not be re-verified after list_changed');
    }
    if (view !== undefined && view === this.#toldView) return;
    this.#toldView = view;
    await this.#listChangedDelivery.tell();
  }

  /**
   * Pins of `tools` checked; mismatches receipted once per session and digest. The verdicts
   * become the session's (`fresh`: replacing the ones known, else added to them) only when no
   * `list_changed` arrived since `generation` was read before listing; a `complete` listing (the
   * agent's own `tools/list`, every tool on one page) is then also what the agent learned.
   */
  async #verify(admission: Admission, tools: readonly Tool[], install: { fresh: boolean; complete: boolean; generation: number }): Promise<Map<string, PinVerdict>> {
    const verdicts = await this.#d.pins.check(this.#d.server, tools as unknown as ReadonlyArray<Record<string, unknown>>);
    const known = install.fresh || !this.#tools ? new Map<string, { tool: Tool; verdict: PinVerdict }>() : new Map(this.#tools);
    for (const tool of tools) {
      const verdict = verdicts.get(tool.name)!;
      known.set(tool.name, { tool, verdict });
      if (verdict.status === 'changed' || verdict.status === 'invalid' || verdict.status === 'malformed') {
        const key = `${tool.name}\0${verdict.digest}`;
        if (this.#mismatchReceipted.has(key)) continue;
        this.#mismatchReceipted.add(key);
        const reason = pinRefusal(this.#d.server.id, tool.name, verdict);
        this.#d.logger.warn({ server: this.#d.server.id, tool: tool.name, pin: verdict.status, ...(verdict.status === 'changed' ? { changed: verdict.changed } : {}) }, 'MCP tool does not match its pin; hidden');
        await this.#receipt(admission, { server: this.#d.server.id, method: 'tools/list', tool: tool.name, pin_digest: verdict.digest, pin: verdict.status }, { allowed: false, reason, policies: [] });
      } else if (verdict.status === 'unpinned' && this.#d.server.pinning === 'warn') {
        this.#d.logger.warn({ server: this.#d.server.id, tool: tool.name }, 'MCP tool is not pinned (pinning: warn)');
      }
    }
    if (this.#listChanged.isCurrent(install.generation)) {
      this.#tools = known;
      if (install.complete) {
        this.#toldView = toolListView(tools, verdicts);
        this.#listChangedDelivery.learned();
      }
    }
    return verdicts;
  }

  #pinAllows(v: PinVerdict): boolean {
    if (v.status === 'pinned') return true;
    if (v.status === 'unpinned') return this.#d.server.pinning !== 'enforce';
    return false;
  }

  async #filter<T>(extra: { authInfo?: { extra?: Record<string, unknown> } }, method: string, items: readonly T[], question: (t: T) => McpQuestion): Promise<T[]> {
    const caller = callerOf(extra);
    const decisions = items.length ? await this.#d.authorizer.decide(caller, this.#d.server, items.map(question)) : [];
    await this.#receipt(admissionOf(extra), { server: this.#d.server.id, method }, { allowed: true, policies: [] });
    return items.filter((_, i) => decisions[i]!.allowed);
  }

  /** Runs the upstream request and receipts its outcome (`{method}:outcome`). */
  async #settle<T>(ctx: ActionContext, detail: McpReceiptDetail, run: () => Promise<T>): Promise<T> {
    let outcome = 'ok';
    this.credentialError = undefined;
    try {
      const result = this.#redacted(await run());
      if ((result as { isError?: boolean }).isError) outcome = 'tool_error';
      return result;
    } catch (err) {
      const credential = this.#takeCredentialError();
      if (credential) {
        outcome = `credential:${credential.code}`;
        throw new McpError(MCP_DENIED, credential.description, { error: credential.code, status: credential.status, ...credential.details });
      }
      outcome = err instanceof McpError ? (err.code === ErrorCode.RequestTimeout ? 'timeout' : `error:${err.code}`) : 'unreachable';
      if (err instanceof McpError) throw err;
      throw new McpError(ErrorCode.InternalError, `the upstream MCP server "${this.#d.server.id}" could not be reached`);
    } finally {
      // Not awaited: the answer is the agent's already, and the receipt service's group commit
      // (flushed at shutdown) writes it; a failure is logged, the decision receipt stands.
      void this.#receipt(ctx.admission, { ...detail, outcome }, { allowed: true, policies: [] }, `${detail.method}:outcome`).catch((err: unknown) => {
        this.#d.logger.error({ err: unexpectedError(err), server: this.#d.server.id }, 'MCP outcome receipt could not be written');
      });
    }
  }

  /** The credential error of the request that just failed, forgotten once read. */
  #takeCredentialError(): DeputyError | undefined {
    const err = this.credentialError;
    this.credentialError = undefined;
    return err;
  }

  /**
   * `result` with any injected credential value replaced by `[redacted]` (an upstream that echoes
   * its Authorization header must not hand Deputy's credential to the agent). A result that is
   * no longer JSON after redaction is refused (fail closed).
   */
  #redacted<T>(result: T): T {
    if (this.secrets.length === 0) return result;
    const bytes = Buffer.from(JSON.stringify(result), 'utf8');
    const ranges = this.#redactors.get(this.secrets).find(bytes);
    if (ranges.length === 0) return result;
    const parts: Buffer[] = [];
    let at = 0;
    for (const [start, end] of ranges) {
      parts.push(bytes.subarray(at, start), Buffer.from('[redacted]'));
      at = end;
    }
    parts.push(bytes.subarray(at));
    this.#d.logger.warn({ server: this.#d.server.id }, 'the upstream MCP server echoed the injected credential; redacted');
    try {
      return JSON.parse(Buffer.concat(parts).toString('utf8')) as T;
    } catch {
      throw new McpError(ErrorCode.InternalError, `the answer of MCP server "${this.#d.server.id}" contained Deputy's credential and was withheld`);
    }
  }

  /**
   * A receipt outside a decided message's pipeline (lists, pin mismatches, outcomes), through
   * the same `receipt` step. Fail closed: a receipt that cannot be written refuses the message.
   */
  async #receipt(admission: Admission, detail: McpReceiptDetail, decision: McpDecision, name: string = detail.method): Promise<void> {
    try {
      await this.#p.record.run({ admission, decision: pepDecision(decision), action: describeMessage(this.#d.audience, name, detail) });
    } catch (err) {
      throw toJsonRpcError(err, detail.method, this.#messageLog(admission));
    }
  }
}

/** The session owner key: the user and the whole chain (another agent's session id is unknown to it). */
export function ownerOf(caller: McpCaller): string {
  return `${caller.userId}\n${caller.chain.join('\n')}`;
}

/**
 * The agent request (its handler's `extra`) an upstream request is being made for. The SDK
 * client reads a POST's response stream, and handles the server-initiated requests on it, in
 * the async context of the request that POSTed: so a relayed `elicitation/create` finds the
 * call it belongs to, and goes back on that call's stream, however many calls run at once.
 */
const relatedCall = new AsyncLocalStorage<Extra>();

/**
 * What Deputy advertises to the agent: only what the upstream has and Deputy relays — tools
 * (list changes always: re-verification may hide a tool), resources (with subscriptions when the
 * upstream has them), prompts, completions and logging. Anything else (experimental, tasks) is
 * not relayed, so not advertised.
 */
export function relayedCapabilities(caps: ServerCapabilities): ServerCapabilities {
  return {
    ...(caps.tools ? { tools: { listChanged: true } } : {}),
    ...(caps.resources ? { resources: { listChanged: caps.resources.listChanged ?? false, ...(caps.resources.subscribe ? { subscribe: true } : {}) } } : {}),
    ...(caps.prompts ? { prompts: { listChanged: caps.prompts.listChanged ?? false } } : {}),
    ...(caps.completions ? { completions: {} } : {}),
    ...(caps.logging ? { logging: {} } : {}),
  };
}

/** Waits for `work` at most `ms` (a shutdown does not hang on an upstream that does not answer). */
async function withDeadline(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    timer.unref();
  });
  try {
    await Promise.race([work.catch(() => {}), deadline]);
  } finally {
    clearTimeout(timer);
  }
}
