/**
 * One agent session at the MCP gateway: Deputy is the MCP server the agent talks to (SDK
 * `Server` over `StreamableHTTPServerTransport`) and the MCP client of the upstream (SDK `Client`
 * over `StreamableHTTPClientTransport`), holding one upstream session per agent session.
 *
 * Every request the agent sends is decided here before anything reaches the upstream:
 *
 * 1. pins — `tools/list` compares each live definition with its pin (./pins.ts); a changed tool
 *    (or, under `pinning: enforce`, an unpinned one) is hidden, and `tools/call` of it refused
 *    with an error naming the tool and what changed; a mismatch leaves its own receipt.
 * 2. decision — the PDP, with the whole delegation chain as subject (./authorizer.ts); lists
 *    are filtered with one batch decision, calls and reads decided one by one.
 * 3. receipt — written before the upstream is called (fail closed: no receipt, no call).
 * 4. budget — (slot) the budget step of issue 13 reserves here, before forwarding.
 * 5. forward — through the upstream session, the credential injected by the transport's fetch;
 *    progress notifications relayed while the call runs.
 * 6. settle — the upstream outcome receipted.
 *
 * A refusal is a JSON-RPC error (code {@link MCP_DENIED}) with a reason the agent can show.
 *
 * @module
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema,
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
import { createHash } from 'node:crypto';
import type { McpReceiptDetail, ReceiptAppender } from '../audit/index.js';
import type { BudgetHold, Budgeter, Outcome } from '../enforcement/index.js';
import { receiptText } from '../audit/index.js';
import type { DeputyError } from '../errors/index.js';
import { Redactor } from '../gateway/redact.js';
import type { Logger } from '../log.js';
import type { McpAuthorizer, McpCaller, McpDecision, McpQuestion } from './authorizer.js';
import type { McpServerConfig } from './config.js';
import { pinRefusal, type PinVerdict, type ToolPins } from './pins.js';
import { PIN_META_KEY } from './tool-pin.js';

/** JSON-RPC error code of a refusal by Deputy (policy, pin): in the implementation-defined range. */
export const MCP_DENIED = -32003;

type Extra = {
  authInfo?: { extra?: Record<string, unknown> };
  signal: AbortSignal;
  _meta?: { progressToken?: string | number } | undefined;
  sendNotification: (n: { method: 'notifications/progress'; params: { progressToken: string | number; progress: number; total?: number; message?: string } }) => Promise<void>;
  sendRequest: <U extends AnySchema>(request: { method: string; params?: Record<string, unknown> }, resultSchema: U) => Promise<SchemaOutput<U>>;
};

/** What a per-tool budget (issue 15) reads to reserve for one `tools/call`. */
export interface McpBudgetContext {
  caller: McpCaller;
  server: McpServerConfig;
  tool: string;
  arguments: Readonly<Record<string, unknown>>;
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

const argumentsDigest = (args: unknown): string => `sha-256:${createHash('sha256').update(canonicalize(args ?? {}) ?? '{}', 'utf8').digest('base64url')}`;

/** The parameters of a `tools/call` (MCP 2025-06-18 "Calling Tools"). */
type ToolCall = { name: string; arguments?: Record<string, unknown> | undefined; _meta?: Record<string, unknown> | undefined };

/** A refusal by Deputy: JSON-RPC error {@link MCP_DENIED} with the reason in `data`. */
function refusal(message: string, data: Record<string, unknown>): McpError {
  return new McpError(MCP_DENIED, message, data);
}

export class AgentSession {
  readonly upstream: Client;
  readonly agent: Server;
  /** The owner: user and chain (a session id presented by anyone else is unknown). */
  readonly owner: string;
  readonly agentId: string;
  readonly serverId: string;
  lastUsed = Date.now();
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
  /** Verdicts and definitions from the last `tools/list` (undefined: list again before a call). */
  #tools: Map<string, { tool: Tool; verdict: PinVerdict }> | undefined;
  /** Agent requests being forwarded now: the upstream's requests during a call go back on its stream. */
  readonly #inflight: Extra[] = [];
  /** Pin mismatches already receipted in this session (`tool\0digest`). */
  readonly #mismatchReceipted = new Set<string>();
  readonly #d: SessionDeps;
  transport: StreamableHTTPServerTransport | undefined;

  constructor(deps: SessionDeps, caller: McpCaller, upstream: Client, agentCapabilities: AgentCapabilities) {
    this.#d = deps;
    this.caller = caller;
    this.owner = ownerOf(caller);
    this.agentId = caller.agentId;
    this.serverId = deps.server.id;
    this.idleMs = deps.server.limits.idleSeconds * 1000;
    this.upstream = upstream;
    const caps = upstream.getServerCapabilities() ?? {};
    const capabilities: ServerCapabilities = {
      ...(caps.tools ? { tools: { listChanged: true } } : {}),
      ...(caps.resources ? { resources: { listChanged: caps.resources.listChanged ?? false } } : {}),
      ...(caps.prompts ? { prompts: { listChanged: caps.prompts.listChanged ?? false } } : {}),
      ...(caps.logging ? { logging: {} } : {}),
    };
    const info = upstream.getServerVersion();
    const instructions = upstream.getInstructions();
    this.agent = new Server(
      { name: `deputy/${deps.server.id}`, version: info?.version ?? '0' },
      { capabilities, ...(instructions !== undefined ? { instructions } : {}) },
    );
    this.#handlers(caps);
    this.#relay(agentCapabilities);
  }

  /** Closes both sides. */
  async close(): Promise<void> {
    await Promise.allSettled([this.agent.close(), this.upstream.close()]);
  }

  #handlers(caps: ServerCapabilities): void {
    if (caps.tools) {
      this.agent.setRequestHandler(ListToolsRequestSchema, (req, extra) => this.#listTools(req.params, extra as unknown as Extra));
      this.agent.setRequestHandler(CallToolRequestSchema, (req, extra) => this.#callTool(req.params, extra as unknown as Extra));
    }
    if (caps.resources) {
      this.agent.setRequestHandler(ListResourcesRequestSchema, async (req, extra) => {
        const caller = callerOf(extra);
        const page = await this.upstream.listResources(req.params, this.#options(extra));
        const allowed = await this.#filter(caller, 'resources/list', page.resources, (r) => ({ method: 'resources/list', action: 'read', uri: r.uri }));
        return { ...page, resources: allowed };
      });
      this.agent.setRequestHandler(ListResourceTemplatesRequestSchema, async (req, extra) => {
        await this.#decideOne(callerOf(extra), { method: 'resources/templates/list', action: 'read' });
        return this.upstream.listResourceTemplates(req.params, this.#options(extra));
      });
      this.agent.setRequestHandler(ReadResourceRequestSchema, async (req, extra) => {
        const caller = callerOf(extra);
        await this.#decideOne(caller, { method: 'resources/read', action: 'read', uri: req.params.uri });
        return this.#settle(caller, { server: this.#d.server.id, method: 'resources/read' }, () => this.upstream.readResource(req.params, this.#options(extra)));
      });
    }
    if (caps.prompts) {
      this.agent.setRequestHandler(ListPromptsRequestSchema, async (req, extra) => {
        const caller = callerOf(extra);
        const page = await this.upstream.listPrompts(req.params, this.#options(extra));
        const allowed = await this.#filter(caller, 'prompts/list', page.prompts, (p) => ({ method: 'prompts/list', action: 'read', prompt: p.name }));
        return { ...page, prompts: allowed };
      });
      this.agent.setRequestHandler(GetPromptRequestSchema, async (req, extra) => {
        const caller = callerOf(extra);
        await this.#decideOne(caller, { method: 'prompts/get', action: 'read', prompt: req.params.name, arguments: req.params.arguments ?? {} });
        return this.#settle(caller, { server: this.#d.server.id, method: 'prompts/get' }, () => this.upstream.getPrompt(req.params, this.#options(extra)));
      });
    }
  }

  /**
   * Upstream → agent: list changes trigger re-verification (tools) and are passed on; other
   * notifications (logging, resource updates) are relayed. Server-initiated requests are
   * relayed only when configured and the agent declared the capability; otherwise Deputy never
   * declared it upstream, so a conforming server does not ask (and gets "method not found").
   */
  #relay(agentCapabilities: AgentCapabilities): void {
    this.upstream.fallbackNotificationHandler = async (n) => {
      if (n.method === 'notifications/tools/list_changed') this.#tools = undefined;
      if (n.method === 'notifications/progress' || n.method === 'notifications/cancelled') return; // per request, see #callTool
      await this.agent.notification(n as Parameters<Server['notification']>[0]).catch(() => {});
    };
    const relay = this.#d.server.serverRequests;
    // During a call, on that call's own stream (the agent may have no standalone GET stream open).
    const current = () => this.#inflight.at(-1);
    if (relay.sampling === 'relay' && agentCapabilities.sampling) {
      this.upstream.setRequestHandler(CreateMessageRequestSchema, (req) => current()?.sendRequest(req, CreateMessageResultSchema) ?? this.agent.createMessage(req.params));
    }
    if (relay.elicitation === 'relay' && agentCapabilities.elicitation) {
      this.upstream.setRequestHandler(ElicitRequestSchema, (req) => current()?.sendRequest(req, ElicitResultSchema) ?? this.agent.elicitInput(req.params as Parameters<Server['elicitInput']>[0]));
    }
    if (relay.roots === 'relay' && agentCapabilities.roots) {
      this.upstream.setRequestHandler(ListRootsRequestSchema, (req) => current()?.sendRequest(req, ListRootsResultSchema) ?? this.agent.listRoots(req.params));
    }
  }

  #options(extra: { signal: AbortSignal }): { signal: AbortSignal; timeout: number } {
    return { signal: extra.signal, timeout: this.#d.server.limits.upstreamTimeoutSeconds * 1000 };
  }

  async #listTools(params: { cursor?: string | undefined } | undefined, extra: Extra): Promise<{ tools: Tool[]; nextCursor?: string }> {
    const caller = callerOf(extra);
    const page = await this.upstream.listTools(params, this.#options(extra));
    const verdicts = await this.#verify(caller, page.tools, params?.cursor === undefined);
    const shown = page.tools.filter((t) => this.#pinAllows(verdicts.get(t.name)!));
    const decisions = await this.#d.authorizer.decide(caller, this.#d.server, shown.map((t) => ({ method: 'tools/list', action: 'invoke' as const, tool: t.name })));
    const allowed = shown.filter((_, i) => decisions[i]!.allowed);
    await this.#receipt(caller, { server: this.#d.server.id, method: 'tools/list' }, { allowed: true, policies: [] });
    return {
      ...page,
      tools: allowed.map((t) => {
        const v = verdicts.get(t.name)!;
        return v.status === 'pinned' ? { ...t, _meta: { ...(t._meta ?? {}), [PIN_META_KEY]: { jws: v.pin.jws, digest: v.digest } } } : t;
      }),
    };
  }

  /**
   * `tools/call`, in the enforcement pipeline's order: decide (policy, then the tool's pin) →
   * budget → receipt → refuse a denial → forward (progress relayed) → settle (outcome receipt,
   * budget hold). Each refusal is receipted before the agent gets its JSON-RPC error.
   */
  async #callTool(params: ToolCall, extra: Extra) {
    const caller = callerOf(extra);
    const { detail, decision } = await this.#decideCall(caller, params);
    const { hold, denial } = await this.#reserve(caller, params, decision);
    await this.#receipt(caller, detail, denial ?? decision).catch(async (err: unknown) => {
      await hold?.settle({ kind: 'refused', step: 'receipt', error: err });
      throw err;
    });
    if (denial) throw refusal(`Deputy refused tools/call "${params.name.slice(0, 128)}": ${denial.reason}`, { reason: denial.reason, ...denial.data });
    return this.#forwardCall(caller, params, extra, detail, hold);
  }

  /**
   * The policy first, so that a call the chain may not make causes no upstream request at all
   * (not even the tools/list that learns a definition this session has not seen); then the
   * tool's pin. A refusal here is receipted and thrown.
   */
  async #decideCall(caller: McpCaller, params: ToolCall): Promise<{ detail: McpReceiptDetail; decision: McpDecision & { allowed: true } }> {
    const server = this.#d.server.id;
    const detail: McpReceiptDetail = { server, method: 'tools/call', tool: params.name, arguments_digest: argumentsDigest(params.arguments) };
    const [decision] = await this.#d.authorizer.decide(caller, this.#d.server, [{ method: 'tools/call', action: 'invoke', tool: params.name, arguments: params.arguments ?? {} }]);
    if (!decision!.allowed) {
      await this.#receipt(caller, detail, decision!);
      throw refusal(`Deputy refused tools/call "${params.name.slice(0, 128)}": ${decision!.reason}`, { reason: decision!.reason });
    }
    const entry = await this.#tool(caller, params.name);
    if (!entry) {
      const reason = `tool "${params.name.slice(0, 128)}" is not offered by MCP server "${server}"`;
      await this.#receipt(caller, detail, { allowed: false, reason, policies: [] });
      throw new McpError(ErrorCode.InvalidParams, reason);
    }
    const pinned = { ...detail, pin_digest: entry.verdict.digest, pin: entry.verdict.status };
    if (!this.#pinAllows(entry.verdict)) {
      const reason = pinRefusal(server, params.name, entry.verdict);
      await this.#receipt(caller, pinned, { allowed: false, reason, policies: decision!.policies });
      throw refusal(reason, { reason, tool: params.name, ...(entry.verdict.status === 'changed' ? { changed: entry.verdict.changed } : {}) });
    }
    return { detail: pinned, decision: decision! };
  }

  /** The budget slot (issue 15): a hold, a denial (402, receipted as one), or nothing. */
  async #reserve(caller: McpCaller, params: ToolCall, decision: McpDecision): Promise<{ hold?: BudgetHold; denial?: McpDecision & { allowed: false; data: Record<string, unknown> } }> {
    const held = await this.#d.budgeter?.reserve({ caller, server: this.#d.server, tool: params.name, arguments: params.arguments ?? {} });
    if (held === undefined) return {};
    if ('settle' in held) return { hold: held };
    const data = held.refusal ? { status: held.refusal.status, error: held.refusal.code } : {};
    return { denial: { allowed: false, reason: held.reason, policies: decision.policies, data } };
  }

  /** The upstream call: the agent's progress token relayed, the hold settled with the outcome. */
  #forwardCall(caller: McpCaller, params: ToolCall, extra: Extra, detail: McpReceiptDetail, hold: BudgetHold | undefined) {
    const progressToken = extra._meta?.progressToken;
    const { _meta, ...forwarded } = params;
    // The agent's progress token is its own: the upstream gets Deputy's, and progress is mapped back.
    const meta = _meta ? Object.fromEntries(Object.entries(_meta).filter(([k]) => k !== 'progressToken')) : undefined;
    this.#inflight.push(extra);
    let outcome: Outcome = { kind: 'completed' };
    const done = () => {
      this.#inflight.splice(this.#inflight.indexOf(extra), 1);
      void hold?.settle(outcome).catch((err: unknown) => this.#d.logger.error({ err, server: this.#d.server.id }, 'MCP budget hold could not be settled'));
    };
    return this.#settle(caller, detail, () =>
      this.upstream
        .callTool({ ...forwarded, ...(meta && Object.keys(meta).length ? { _meta: meta } : {}) }, undefined, {
          ...this.#options(extra),
          resetTimeoutOnProgress: true,
          ...(progressToken !== undefined
            ? { onprogress: (p) => void extra.sendNotification({ method: 'notifications/progress', params: { ...p, progressToken } }).catch(() => {}) }
            : {}),
        })
        .catch((err: unknown) => {
          outcome = { kind: 'refused', step: 'forward', error: err };
          throw err;
        })
        .finally(done),
    );
  }

  /** The tool's live definition and verdict, listing upstream first when not known (after list_changed). */
  async #tool(caller: McpCaller, name: string): Promise<{ tool: Tool; verdict: PinVerdict } | undefined> {
    if (!this.#tools?.has(name)) {
      const tools: Tool[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < 50; page += 1) {
        const res = await this.upstream.listTools(cursor === undefined ? undefined : { cursor }, { timeout: this.#d.server.limits.upstreamTimeoutSeconds * 1000 });
        tools.push(...res.tools);
        cursor = res.nextCursor;
        if (cursor === undefined) break;
      }
      await this.#verify(caller, tools, true);
    }
    return this.#tools?.get(name);
  }

  /** Pins of `tools` checked; mismatches receipted once per session and digest. */
  async #verify(caller: McpCaller, tools: readonly Tool[], fresh: boolean): Promise<Map<string, PinVerdict>> {
    const verdicts = await this.#d.pins.check(this.#d.server, tools as unknown as ReadonlyArray<Record<string, unknown>>);
    const known = fresh || !this.#tools ? new Map<string, { tool: Tool; verdict: PinVerdict }>() : this.#tools;
    for (const tool of tools) {
      const verdict = verdicts.get(tool.name)!;
      known.set(tool.name, { tool, verdict });
      if (verdict.status === 'changed' || verdict.status === 'invalid') {
        const key = `${tool.name}\0${verdict.digest}`;
        if (this.#mismatchReceipted.has(key)) continue;
        this.#mismatchReceipted.add(key);
        const reason = pinRefusal(this.#d.server.id, tool.name, verdict);
        this.#d.logger.warn({ server: this.#d.server.id, tool: tool.name, pin: verdict.status, ...(verdict.status === 'changed' ? { changed: verdict.changed } : {}) }, 'MCP tool does not match its pin; hidden');
        await this.#receipt(caller, { server: this.#d.server.id, method: 'tools/list', tool: tool.name, pin_digest: verdict.digest, pin: verdict.status }, { allowed: false, reason, policies: [] });
      } else if (verdict.status === 'unpinned' && this.#d.server.pinning === 'warn') {
        this.#d.logger.warn({ server: this.#d.server.id, tool: tool.name }, 'MCP tool is not pinned (pinning: warn)');
      }
    }
    this.#tools = known;
    return verdicts;
  }

  #pinAllows(v: PinVerdict): boolean {
    if (v.status === 'pinned') return true;
    if (v.status === 'unpinned') return this.#d.server.pinning !== 'enforce';
    return false;
  }

  async #filter<T>(caller: McpCaller, method: string, items: readonly T[], question: (t: T) => McpQuestion): Promise<T[]> {
    const decisions = items.length ? await this.#d.authorizer.decide(caller, this.#d.server, items.map(question)) : [];
    await this.#receipt(caller, { server: this.#d.server.id, method }, { allowed: true, policies: [] });
    return items.filter((_, i) => decisions[i]!.allowed);
  }

  async #decideOne(caller: McpCaller, q: McpQuestion): Promise<void> {
    const [decision] = await this.#d.authorizer.decide(caller, this.#d.server, [q]);
    const detail: McpReceiptDetail = {
      server: this.#d.server.id, method: q.method,
      ...(q.tool ?? q.prompt ? { tool: q.tool ?? q.prompt } : {}),
      ...(q.arguments !== undefined ? { arguments_digest: argumentsDigest(q.arguments) } : {}),
    };
    await this.#receipt(caller, detail, decision!, q.uri);
    if (!decision!.allowed) throw refusal(`Deputy refused ${q.method}: ${decision!.reason}`, { reason: decision!.reason });
  }

  /** Runs the upstream request and receipts its outcome. */
  async #settle<T>(caller: McpCaller, detail: McpReceiptDetail, run: () => Promise<T>): Promise<T> {
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
      void this.#receipt(caller, { ...detail, outcome }, { allowed: true, policies: [] }, undefined, true).catch((err: unknown) => {
        this.#d.logger.error({ err, server: this.#d.server.id }, 'MCP outcome receipt could not be written');
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
    const ranges = new Redactor(this.secrets).find(bytes);
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
   * A receipt for a decided message; written before the upstream is called. Fail closed: a
   * receipt that cannot be written refuses the message.
   */
  async #receipt(caller: McpCaller, mcp: McpReceiptDetail, decision: McpDecision, uri?: string, settled = false): Promise<void> {
    const receipts = this.#d.receipts;
    if (!receipts) return;
    const target = mcp.tool !== undefined ? `/tools/${mcp.tool}` : uri !== undefined ? `/resources/${uri}` : '';
    try {
      await receipts.append({
        agent: caller.agentId,
        user: caller.userId,
        chain: caller.chain,
        event: 'mcp_message',
        action: settled ? `${mcp.method}:outcome` : mcp.method,
        resource: receiptText(`${this.#d.audience}${target}`),
        decision: decision.allowed ? 'permit' : 'deny',
        policies: decision.policies,
        ...(decision.allowed ? {} : { reason: receiptText(decision.reason) }),
        scope: [...caller.scopes].join(' ') || undefined,
        requestId: caller.requestId,
        tokenId: caller.jti,
        mcp: Object.fromEntries(Object.entries(mcp).map(([k, v]) => [k, receiptText(String(v))])) as unknown as McpReceiptDetail,
      });
    } catch (cause) {
      this.#d.logger.error({ err: cause, server: this.#d.server.id }, 'MCP receipt could not be written');
      throw new McpError(ErrorCode.InternalError, 'the message could not be recorded; it was not forwarded');
    }
  }
}

/** The session owner key: the user and the whole chain (another agent's session id is unknown to it). */
export function ownerOf(caller: McpCaller): string {
  return `${caller.userId}\n${caller.chain.join('\n')}`;
}
