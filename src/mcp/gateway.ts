/**
 * The MCP gateway (DESIGN capability 7): an MCP server per upstream at `/mcp/{server}`, speaking
 * Streamable HTTP (MCP 2025-06-18 "Transports": POST and GET on one endpoint, JSON or SSE
 * responses, `Mcp-Session-Id`, `MCP-Protocol-Version` — the SDK's server transport does the
 * framing). Per HTTP request, before any message is looked at:
 *
 * 1. server — 404 when it does not exist.
 * 2. size — a body over `limits.maxMessageBytes` is refused (413, JSON-RPC error).
 * 3. admission (src/enforcement: `authenticate`, `liveChain`) — the agent's DPoP-bound Deputy
 *    token for the audience `{issuer}/mcp/{server}` (RFC 8707), with a proof for this method and
 *    URL, used once (RFC 9449); 401 with a DPoP challenge carrying `resource_metadata`
 *    (RFC 9728 §5.1) otherwise. The token and every token it was exchanged from must be live.
 * 4. parse — malformed JSON (-32700), a message nested deeper than `MAX_JSON_DEPTH`
 *    (src/util/i-json.ts) or a batch over `limits.maxBatch` (-32600): 400.
 * 5. session — a new session on `initialize` (at most `limits.sessionsPerAgent` per agent),
 *    otherwise the session named by `Mcp-Session-Id`, which must belong to the same user and
 *    chain: another agent's session id is "Session not found" (404), as an unknown one is.
 *
 * Then the SDK transport dispatches the messages to the session (./session.ts), which decides
 * each one. A session unused for `limits.idleSeconds` (no request, no POST still answering) is
 * closed here and upstream (DELETE); its id is then "Session not found" (404), and the agent
 * initializes again (MCP 2025-06-18 "Session Management"). The caller of the HTTP request and its admission (the action pipelines run under it)
 * travel with its messages as `authInfo.extra.caller` and `authInfo.extra.admission`.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest, type ClientCapabilities } from '@modelcontextprotocol/sdk/types.js';
import type { ReceiptAppender } from '../audit/index.js';
import { authenticate, dpopChallenger, liveChain, Pipeline, type Admission, type Budgeter, type PepRequest } from '../enforcement/index.js';
import { Conflict, DeputyError, NotFound } from '../errors/index.js';
import { errorCause, type Logger } from '../log.js';
import { readWholeBody } from '../util/http.js';
import { iJsonProblem } from '../util/i-json.js';
import type { AccessTokenVerifier } from '../oauth/access-token.js';
import { dpopReplayed } from '../oauth/dpop.js';
import type { RevocationCache } from '../oauth/token-records.js';
import type { CredentialSource } from '../vault/connections/credentials.js';
import type { ConnectionStore } from '../vault/connections/store.js';
import type { McpAuthorizer, McpCaller } from './authorizer.js';
import type { McpServerConfig } from './config.js';
import type { ToolPins } from './pins.js';
import { RecentProofs } from './recent-proofs.js';
import { MCP_PREFIX, mcpAudience } from './resource.js';
import { UpstreamHttp } from './upstream-http.js';
import { AgentSession, ownerOf, type McpBudgetContext } from './session.js';
import type { McpServerStore } from './store.js';

export { MCP_PREFIX, mcpAudience };

export interface McpGatewayDeps {
  issuer: string;
  verifier: AccessTokenVerifier;
  revocations: RevocationCache;
  servers: McpServerStore;
  connections: ConnectionStore;
  credentials: CredentialSource;
  authorizer: McpAuthorizer;
  pins: ToolPins;
  receipts?: ReceiptAppender;
  logger: Logger;
  /** Per-tool budgets (issue 15): the `tools/call` budget slot (./session.ts). */
  budgeter?: Budgeter<McpBudgetContext>;
  /** Deputy's version, told to upstream servers as its client info. */
  version?: string;
}

/** One HTTP request as the Koa adapter hands it over. */
export interface McpHttpCall {
  serverId: string;
  req: IncomingMessage;
  res: ServerResponse;
  requestId: string;
}

/** A JSON-RPC error answered at the HTTP level (before any message reaches a session). */
export class McpHttpError extends Error {
  constructor(
    readonly status: number,
    readonly rpcCode: number,
    message: string,
  ) {
    super(message);
    this.name = 'McpHttpError';
  }
}

export class McpGateway {
  readonly #d: McpGatewayDeps;
  readonly #sessions = new Map<string, AgentSession>();
  /**
   * The admission of every HTTP request (src/enforcement): the DPoP-bound token for
   * `{issuer}/mcp/{server}` and its live chain. Its 401s get `resource_metadata` (RFC 9728 §5.1)
   * where every protected resource's do: src/http/protected-resource-metadata.ts
   * `protectedResourceChallenges`, which knows each server through `mcpServerLookup`.
   * With receipts on, the proof's `jti` is left unspent by the admission: a request that is one
   * `tools/call` of an open session has it spent by that call's decision receipt, in the
   * receipt's own statement (one commit for both, as the HTTP gateway; {@link deferredToReceipt});
   * every other request spends it on its own before anything else happens ({@link #spendNow}) —
   * it may carry no decided message (a notification, a GET), or reach the upstream before its
   * first receipt (initialize, lists).
   */
  readonly #admission;
  readonly #challenge = dpopChallenger();
  /** The upstream sessions' HTTP client (undici; ./upstream-http.ts says why not the global `fetch`). */
  readonly #http = new UpstreamHttp();
  /** Proof keys this instance admitted or spent lately: a deferred proof's early replay check ({@link #refuseKnownReplay}). */
  #recentProofs = new RecentProofs();

  constructor(deps: McpGatewayDeps) {
    this.#d = deps;
    this.#admission = Pipeline.start<PepRequest>()
      // With receipts, the proof's signature verifies while the body is read and a deferred
      // proof's replay is looked up (a thread-pool job beside a store read, not after it);
      // nothing is spent, remembered or dispatched before it verified (#spendNow, #refuseKnownReplay).
      .then(authenticate({ verifier: deps.verifier, deferProofSpend: deps.receipts !== undefined, deferProofSignature: true, challenge: this.#challenge }))
      .then(liveChain({ revocations: deps.revocations, challenge: this.#challenge }));
  }

  /** Open sessions (tests, metrics). */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Forgets the proofs this instance admitted or spent (tests: a replay then known from the store alone, as on another instance). */
  forgetRecentProofs(): void {
    this.#recentProofs = new RecentProofs();
  }

  /** Handles one HTTP request at `/mcp/{server}`; writes the response itself. */
  async handle(call: McpHttpCall): Promise<void> {
    const stored = await this.#d.servers.cached(call.serverId);
    if (!stored) throw new NotFound(`MCP server "${call.serverId.slice(0, 64)}" does not exist`);
    const server = stored.settings;
    const declared = Number(call.req.headers['content-length'] ?? 0);
    if (declared > server.limits.maxMessageBytes) throw new McpHttpError(413, -32600, `the message exceeds ${server.limits.maxMessageBytes} bytes`);
    const { caller, admission, dpopNonce } = await this.#admit(call, server);
    if (dpopNonce !== undefined) call.res.setHeader('DPoP-Nonce', dpopNonce);
    const body = await this.#body(call, server, admission);
    const sessionId = header(call.req, 'mcp-session-id');
    if (!deferredToReceipt(admission, sessionId, body)) {
      await this.#spendNow(admission);
      return this.#dispatch(call, server, caller, admission, sessionId, body);
    }
    await this.#refuseKnownReplay(admission);
    // Spent by the call's decision receipt. A refusal before the request reaches its session
    // (no such session) spends it first, so a replay is refused as one (401); a message the SDK
    // refuses, or an agent gone before the receipt, leaves it to the end of the response
    // (PendingProof makes a receipt racing that spend wait for it: no forward on a replay).
    call.res.once('close', () => void admission.proof.spendIfPending().catch(() => {}));
    try {
      await this.#dispatch(call, server, caller, admission, sessionId, body);
    } catch (err) {
      await this.#spendNow(admission);
      throw err;
    }
  }

  /** The session part of {@link handle}: open or find the agent's session, hand the request to its transport. */
  async #dispatch(call: McpHttpCall, server: McpServerConfig, caller: McpCaller, admission: Admission, sessionId: string | undefined, body: unknown): Promise<void> {
    let session: AgentSession | undefined;
    if (sessionId === undefined && body !== undefined && isInitializeRequest(Array.isArray(body) ? body[0] : body)) {
      // Checked before an upstream session is opened for a request the transport would refuse.
      const accept = header(call.req, 'accept') ?? '';
      if (!accept.includes('application/json') || !accept.includes('text/event-stream')) throw new McpHttpError(406, -32000, 'Not Acceptable: Client must accept both application/json and text/event-stream');
      session = await this.#open(server, caller, (Array.isArray(body) ? body[0] : body) as { params: { capabilities?: ClientCapabilities } });
    } else if (sessionId !== undefined) {
      session = this.#sessions.get(sessionId);
      // Another user's or chain's session, or one on another server, is as unknown as a made-up
      // id: nothing is forwarded (a token for one server must not drive another's session).
      if (!session || session.owner !== ownerOf(caller) || session.serverId !== server.id) throw new McpHttpError(404, -32001, 'Session not found');
      session.caller = caller;
    } else {
      throw new McpHttpError(400, -32000, 'Bad Request: Mcp-Session-Id header is required');
    }
    session.admission = admission;
    session.touch();
    if (call.req.method === 'POST') session.hold(call.res);
    if (call.req.method === 'GET') session.listen(call.res);
    const req = Object.assign(call.req, { auth: { token: '[agent token]', clientId: caller.agentId, scopes: [...caller.scopes], extra: { caller, admission } } });
    await session.transport!.handleRequest(req, call.res, body);
    // An initialize the transport refused (bad headers) opened an upstream session for nothing.
    if (session.transport?.sessionId === undefined || this.#sessions.get(session.transport.sessionId) !== session) await session.close();
  }

  /**
   * The server's live tool definitions, read by Deputy itself (an operator reviewing or
   * approving pins). The credential is the connection's for no particular user: fine for API
   * keys and client credentials; per-user connections need the definitions given instead.
   *
   * @throws McpHttpError 502 when the upstream cannot be reached.
   */
  async liveTools(server: McpServerConfig): Promise<Array<Record<string, unknown>>> {
    const connection = server.connection === undefined ? undefined : await this.#d.connections.get(server.connection);
    if (connection && (connection.kind === 'oauth2_user' || connection.kind === 'on_behalf_of')) {
      throw new Conflict(`MCP server "${server.id}" is reached with a per-user credential: Deputy cannot list its tools alone; approve the definitions instead`);
    }
    const operator: McpCaller = { token: '', jti: 'operator', userId: 'deputy:operator', agentId: 'deputy', chain: [], scopes: new Set(), upstreamHandle: undefined, requestId: 'operator' };
    const client = new Client({ name: 'deputy', version: this.#d.version ?? '0' }, { capabilities: {} });
    const transport = new StreamableHTTPClientTransport(new URL(server.url), { fetch: (url, init) => this.#upstreamFetch(server, () => operator, url, init), redirectPolicy: 'same-origin' });
    try {
      const timeout = server.limits.upstreamTimeoutSeconds * 1000;
      await client.connect(transport, { timeout });
      const tools: Array<Record<string, unknown>> = [];
      let cursor: string | undefined;
      for (let page = 0; page < 50; page += 1) {
        const res = await client.listTools(cursor === undefined ? undefined : { cursor }, { timeout });
        tools.push(...(res.tools as Array<Record<string, unknown>>));
        cursor = res.nextCursor;
        if (cursor === undefined) break;
      }
      return tools;
    } catch (err) {
      if (err instanceof DeputyError) throw err;
      this.#d.logger.warn({ server: server.id, err: { cause: errorCause(err) } }, 'MCP upstream tools could not be listed');
      throw new McpHttpError(502, -32603, `the upstream MCP server "${server.id}" could not be reached`);
    } finally {
      await client.close().catch(() => {});
    }
  }

  /** Closes every session (shutdown). */
  async close(): Promise<void> {
    const all = [...this.#sessions.values()];
    this.#sessions.clear();
    await Promise.allSettled(all.map((s) => s.close()));
    await this.#http.close();
  }

  /**
   * Step 4: the POST body, parsed (undefined for GET and DELETE). Refused (413, 400) after the
   * proof is spent: a replayed proof is refused as one (401) whatever else is wrong.
   */
  async #body(call: McpHttpCall, server: McpServerConfig, admission: Admission): Promise<unknown> {
    try {
      const body = call.req.method === 'POST' ? await readJson(call, server.limits.maxMessageBytes) : undefined;
      if (Array.isArray(body) && body.length > server.limits.maxBatch) throw new McpHttpError(400, -32600, `a batch may hold at most ${server.limits.maxBatch} messages`);
      if (Array.isArray(body) && body.length === 0) throw new McpHttpError(400, -32600, 'an empty batch is not a JSON-RPC request');
      return body;
    } catch (err) {
      await this.#spendNow(admission);
      throw err;
    }
  }

  /**
   * Spends the proof's `jti` now (RFC 9449 §11.1) unless spent already.
   *
   * @throws DeputyError 401 `invalid_dpop_proof` with the DPoP challenge for a replayed proof.
   */
  async #spendNow(admission: Admission): Promise<void> {
    const key = admission.proof.key;
    await admission.proof.spendIfPending().catch((err: unknown) => {
      throw this.#challenge(err, admission.audience);
    });
    if (key) this.#recentProofs.remember(key);
  }

  /**
   * A deferred `tools/call` proof (spent later by its decision receipt) that is known spent is
   * refused now, before the SDK writes its 200 head: HTTP 401 `invalid_dpop_proof` with the DPoP
   * challenge (RFC 9449 §7.1, §11.1; MCP 2025-06-18 "Authorization": an invalid token is a 401).
   * Known spent: admitted or spent by this instance within the proof's window
   * ({@link RecentProofs}: also a replay racing its original here), or recorded in the store (a
   * read, no commit). Only a replay racing its not yet committed original on another instance
   * passes; the receipt statement refuses it in-band (JSON-RPC -32003, nothing forwarded).
   * The key is then remembered: this request spends it, whatever becomes of it.
   *
   * The proof's signature (still verifying: `authenticate` deferred it) is awaited first, its
   * store read running meanwhile: a forged proof is refused as forged (the 401 of an undeferred
   * check, before a replay's), and neither remembered nor spent (a forgery carrying a live
   * proof's `jti` must not get that proof refused).
   *
   * @throws DeputyError 401 `invalid_dpop_proof` for a proof whose signature does not verify, or a
   *   known replay (nothing spent or written either way).
   */
  async #refuseKnownReplay(admission: Admission): Promise<void> {
    const key = admission.proof.key;
    if (!key) return;
    // A failed read is no verdict: the receipt statement decides (and fails closed without a store).
    const stored = this.#recentProofs.has(key) ? Promise.resolve(true) : this.#d.verifier.proofSpent(key).catch(() => false);
    await admission.proof.verified;
    if (await stored) throw this.#challenge(dpopReplayed(), admission.audience);
    this.#recentProofs.remember(key);
  }

  /** Steps 3 (authenticate) and the live chain, through the enforcement pipeline's shared steps. */
  async #admit(call: McpHttpCall, server: McpServerConfig): Promise<{ caller: McpCaller; admission: Admission; dpopNonce: string | undefined }> {
    const audience = mcpAudience(this.#d.issuer, server.id);
    const admission = await this.#admission.run({
      audience,
      url: audience,
      method: call.req.method ?? 'GET',
      authorization: header(call.req, 'authorization'),
      dpopProofs: proofsOf(call.req.headers.dpop),
      requestId: call.requestId,
    });
    const p = admission.principal;
    return {
      caller: { token: p.token, jti: p.tokenJti, userId: p.userId, agentId: p.agentId, chain: p.chain, scopes: p.scopes, upstreamHandle: p.upstreamHandle, requestId: call.requestId },
      admission,
      dpopNonce: admission.auth.dpopNonce,
    };
  }

  /** A new agent session: the upstream session first (its capabilities shape Deputy's). */
  async #open(server: McpServerConfig, caller: McpCaller, init: { params: { capabilities?: ClientCapabilities } }): Promise<AgentSession> {
    const open = [...this.#sessions.values()].filter((s) => s.agentId === caller.agentId && s.serverId === server.id && s.transport && this.#sessions.get(s.transport.sessionId ?? '') === s);
    if (open.length >= server.limits.sessionsPerAgent) throw new McpHttpError(429, -32000, `agent "${caller.agentId}" has ${open.length} open sessions on MCP server "${server.id}", the most allowed`);
    const agentCaps = init.params.capabilities ?? {};
    const relay = server.serverRequests;
    const capabilities: ClientCapabilities = {
      ...(relay.sampling === 'relay' && agentCaps.sampling ? { sampling: agentCaps.sampling } : {}),
      ...(relay.elicitation === 'relay' && agentCaps.elicitation ? { elicitation: agentCaps.elicitation } : {}),
      ...(relay.roots === 'relay' && agentCaps.roots ? { roots: { listChanged: agentCaps.roots.listChanged ?? false } } : {}),
    };
    const upstream = new Client({ name: 'deputy', version: this.#d.version ?? '0' }, { capabilities });
    let session: AgentSession | undefined;
    let pendingSecrets: string[] = [];
    let credentialError: DeputyError | undefined;
    const transport = new StreamableHTTPClientTransport(new URL(server.url), {
      fetch: (url, reqInit) => this.#upstreamFetch(server, () => session?.caller ?? caller, url, reqInit, (values) => {
        if (session) session.secrets = values;
        else pendingSecrets = values;
      }).catch((err: unknown) => {
        // A credential Deputy cannot get (a user who has not connected: 424 with a connect link)
        // is told to the agent as it is, not as an unreachable upstream.
        if (err instanceof DeputyError) {
          if (session) session.credentialError = err;
          else credentialError = err;
        }
        throw err;
      }),
      redirectPolicy: 'same-origin',
    });
    try {
      await upstream.connect(transport, { timeout: server.limits.upstreamTimeoutSeconds * 1000 });
    } catch (err) {
      await upstream.close().catch(() => {});
      if (credentialError) throw credentialError;
      if (err instanceof DeputyError) throw err;
      this.#d.logger.warn({ server: server.id, err: { cause: errorCause(err) } }, 'MCP upstream could not be initialized');
      throw new McpHttpError(502, -32603, `the upstream MCP server "${server.id}" could not be reached`);
    }
    session = new AgentSession(
      { server, audience: mcpAudience(this.#d.issuer, server.id), authorizer: this.#d.authorizer, pins: this.#d.pins, receipts: this.#d.receipts, logger: this.#d.logger, budgeter: this.#d.budgeter },
      caller, upstream, agentCaps,
    );
    const created = session;
    created.secrets = pendingSecrets;
    created.transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        this.#sessions.set(id, created);
        // Idle (limits.idleSeconds): closed here and upstream; the agent's next request is a 404.
        created.watchIdle(() => void this.#drop(id));
      },
      onsessionclosed: (id) => void this.#drop(id),
      maxRequestBodySize: server.limits.maxMessageBytes,
    });
    await created.agent.connect(created.transport);
    return created;
  }

  /**
   * The upstream transport's fetch: the credential of the server's connection injected on every
   * request (fresh for the session's latest caller: refreshed user tokens, on-behalf-of).
   */
  async #upstreamFetch(server: McpServerConfig, who: () => McpCaller, url: string | URL, init: RequestInit | undefined, onSecrets?: (values: string[]) => void): Promise<Response> {
    // The server's bound of one upstream message; a server stored through the admin API before
    // the setting existed has none in its row: undefined, the client's default (16 MiB).
    const bound = server.limits.maxUpstreamMessageBytes as number | undefined;
    const headers = new Headers(init?.headers);
    let target = new URL(url);
    if (server.connection !== undefined) {
      const connection = await this.#d.connections.get(server.connection);
      if (!connection) throw new Error(`MCP server "${server.id}": connection "${server.connection}" does not exist`);
      const c = who();
      const credential = await this.#d.credentials.credential(connection, {
        userId: c.userId, agentId: c.agentId, chain: c.chain, tokenJti: c.jti, upstreamHandle: c.upstreamHandle,
      });
      for (const [name, value] of credential.headers) headers.set(name, value);
      if (credential.query.length) {
        target = new URL(target);
        for (const [name, value] of credential.query) target.searchParams.set(name, value);
      }
      onSecrets?.([...credential.secrets, ...credential.headers.map(([, value]) => value)]);
      const res = await this.#http.fetch(target, { ...init, headers }, bound);
      // The upstream refused Deputy's credential: cached tokens are dropped so the next request gets new ones.
      if (res.status === 401) await credential.rejected();
      return res;
    }
    return this.#http.fetch(target, { ...init, headers }, bound);
  }

  async #drop(id: string): Promise<void> {
    const s = this.#sessions.get(id);
    this.#sessions.delete(id);
    await s?.close();
  }
}

/**
 * Whether a request's proof is left to its decision receipt: receipts on (the proof still
 * pending), an open session, and the body one JSON-RPC `tools/call` request — whose pipeline
 * writes that receipt before anything of the call reaches the upstream (src/mcp/session.ts).
 * Batches, notifications, lists and initialize spend it at once.
 */
function deferredToReceipt(admission: Admission, sessionId: string | undefined, body: unknown): boolean {
  if (!admission.proof.pending || sessionId === undefined) return false;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return false;
  const message = body as { method?: unknown; id?: unknown };
  return message.method === 'tools/call' && message.id !== undefined;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function proofsOf(v: string | string[] | undefined): string[] {
  const values = v === undefined ? [] : Array.isArray(v) ? v : [v];
  return values.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
}

/**
 * Reads (stream events, src/util/http.ts) and parses a JSON body of at most `limit` bytes, nested
 * no deeper than `MAX_JSON_DEPTH`: the SDK and the upstream request serialize every member
 * (`params._meta` too, not only a tool call's arguments), recursing once per level, and a
 * megabyte nests 500,000 deep; that was `-32603 Maximum call stack size exceeded`, or a tool
 * call answered "the upstream MCP server could not be reached" (issue 16, fourteenth round red team).
 */
async function readJson(call: McpHttpCall, limit: number): Promise<unknown> {
  const raw = await readWholeBody(call.req, call.res, limit, () => new McpHttpError(413, -32600, `the message exceeds ${limit} bytes`));
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8')) as unknown;
  } catch {
    throw new McpHttpError(400, -32700, 'Parse error: the body is not JSON');
  }
  const problem = iJsonProblem(body, 'the message', { depthOnly: true });
  if (problem) throw new McpHttpError(400, -32600, problem);
  return body;
}
