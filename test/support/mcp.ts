/**
 * MCP on both sides of Deputy, with the official SDK: an upstream MCP server (low-level SDK
 * `Server` over Streamable HTTP, one per session, sharing mutable tool definitions so a test can
 * "rug pull" them) that counts what reaches it, and an agent-side fetch that makes every SDK
 * client request DPoP-bound (RFC 9449: `Authorization: DPoP`, a fresh proof per request).
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema, CompleteRequestSchema, ElicitResultSchema, EmptyResultSchema, ErrorCode, McpError, GetPromptRequestSchema, ListPromptsRequestSchema, ListResourcesRequestSchema, ListToolsRequestSchema,
  ReadResourceRequestSchema, SetLevelRequestSchema, SubscribeRequestSchema, UnsubscribeRequestSchema, type ServerCapabilities, type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { expect } from 'vitest';
import { dpopProof, type TestAgent } from './agents.js';

export interface McpUpstream {
  url: string;
  /** Tool definitions listed now (mutate to rug-pull; call `changed()` to notify sessions). */
  tools: Tool[];
  /** tools/call, resources/read and prompts/get that reached the upstream, by name. */
  hits: Map<string, number>;
  /** `Authorization` header values the upstream received. */
  authorizations: string[];
  /**
   * HTTP requests received, except the DELETEs that end a session: Deputy sends those on its own,
   * asynchronously, when a session closes or idles out (they are in `deleted`), so they may land
   * during a later test and say nothing about what an agent's message caused.
   */
  requests: number;
  /** Session ids the upstream was sent an HTTP DELETE for (sessions ended by their client). */
  deleted: string[];
  /** `resources/subscribe` and `resources/unsubscribe` received, as `method uri`. */
  subscriptions: string[];
  /** `logging/setLevel` levels received. */
  levels: string[];
  changed(): Promise<void>;
  /** `tools/list` requests received. */
  lists: number;
  /**
   * Holds every `tools/list` from now on (each answered with the tools listed when it arrived)
   * until the returned function is called: a re-list that is "in flight" for as long as a test needs.
   */
  holdLists(): () => void;
  /** Sends `n` `notifications/tools/list_changed` on every session, one after the other, running `change` before the `at`-th (0-based). */
  burst(n: number, options?: { at: number; change: () => void }): Promise<void>;
  /** Sends a `notifications/message` with `data` on every session (a marker: notifications arrive in order). */
  log(data: string): Promise<void>;
  /** Sends `notifications/resources/updated` for `uri` on every session. */
  updated(uri: string): Promise<void>;
  close(): Promise<void>;
}

export const baseTools = (): Tool[] => [
  { name: 'echo', description: 'Echoes text.', inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] } },
  { name: 'secret_tool', description: 'Reads secrets.', inputSchema: { type: 'object', properties: {} } },
  {
    name: 'create_issue', title: 'Create issue', description: 'Creates an issue in an acme repository.',
    inputSchema: { type: 'object', properties: { repo: { type: 'string', pattern: '^acme/' }, title: { type: 'string' } }, required: ['repo', 'title'] },
    annotations: { destructiveHint: false },
  },
  { name: 'delete_thing', description: 'Deletes a thing.', inputSchema: { type: 'object', properties: { id: { type: 'string' } } } },
  { name: 'count', description: 'Counts to n, reporting progress.', inputSchema: { type: 'object', properties: { n: { type: 'number' } } } },
  { name: 'ask', description: 'Asks the user (elicitation) and returns the answer.', inputSchema: { type: 'object', properties: {} } },
  { name: 'whoami', description: 'Echoes the Authorization header it received (a leaky upstream).', inputSchema: { type: 'object', properties: {} } },
];

/** Tools for relaying tests (not in {@link baseTools}: add them to `tools` where wanted). */
export const relayTools = (): Tool[] => [
  { name: 'ask_together', description: 'Waits until `of` calls are running, then each asks its own question (elicitation).', inputSchema: { type: 'object', properties: { question: { type: 'string' }, of: { type: 'number' } } } },
  { name: 'pingback', description: 'Pings its client (Deputy) during the call.', inputSchema: { type: 'object', properties: {} } },
  { name: 'log', description: 'Sends a logging message during the call.', inputSchema: { type: 'object', properties: { text: { type: 'string' } } } },
];

/** Every capability the test upstream has (a narrower set makes a bare server). */
const FULL_CAPABILITIES: ServerCapabilities = { tools: { listChanged: true }, resources: { subscribe: true }, prompts: {}, completions: {}, logging: {}, experimental: { 'example.com/x': {} } };

const hit = (hits: Map<string, number>, name: string) => hits.set(name, (hits.get(name) ?? 0) + 1);

export async function startMcpUpstream(capabilities: ServerCapabilities = FULL_CAPABILITIES): Promise<McpUpstream> {
  const state: McpUpstream = {
    url: '', tools: baseTools(), hits: new Map(), authorizations: [], requests: 0, deleted: [], subscriptions: [], levels: [], lists: 0,
    changed: async () => {
      await Promise.allSettled([...servers.values()].map((s) => s.sendToolListChanged()));
    },
    holdLists: () => {
      held = [];
      return () => {
        const waiting = held ?? [];
        held = undefined;
        waiting.forEach((release) => release());
      };
    },
    burst: async (n, options) => {
      for (let i = 0; i < n; i += 1) {
        if (i === options?.at) options.change();
        await Promise.allSettled([...servers.values()].map((s) => s.sendToolListChanged()));
      }
    },
    log: async (data) => {
      await Promise.allSettled([...servers.values()].map((s) => s.notification({ method: 'notifications/message', params: { level: 'info', data } })));
    },
    updated: async (uri) => {
      await Promise.allSettled([...servers.values()].map((s) => s.sendResourceUpdated({ uri })));
    },
    close: async () => {},
  };
  const servers = new Map<string, Server>();
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const together: Array<() => void> = [];
  /** Releases of the held `tools/list` requests (undefined: lists are answered at once). */
  let held: Array<() => void> | undefined;

  const newServer = (): Server => {
    const server = new Server({ name: 'upstream', version: '1.0.0' }, { capabilities });
    server.setRequestHandler(ListToolsRequestSchema, async () => {
      state.lists += 1;
      const tools = state.tools;
      if (held) await new Promise<void>((release) => held!.push(release));
      return { tools };
    });
    if (capabilities.resources) addResources(server, state);
    if (capabilities.prompts) addPrompts(server, state);
    if (capabilities.logging) {
      server.setRequestHandler(SetLevelRequestSchema, async (req) => {
        state.levels.push(req.params.level);
        return {};
      });
    }
    server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
      hit(state.hits, req.params.name);
      if (req.params.name === 'ask_together') {
        // Every call waits for the others, so all are in flight when each one asks.
        const of = Number(req.params.arguments?.of ?? 2);
        await new Promise<void>((resolve) => {
          together.push(resolve);
          if (together.length >= of) together.splice(0).forEach((r) => r());
        });
        const question = String(req.params.arguments?.question ?? '?');
        const answer = await extra.sendRequest({ method: 'elicitation/create', params: { message: question, requestedSchema: { type: 'object', properties: { answer: { type: 'string' } } } } }, ElicitResultSchema);
        return { content: [{ type: 'text', text: `${question} ${JSON.stringify(answer.content)}` }] };
      }
      if (req.params.name === 'pingback') {
        await extra.sendRequest({ method: 'ping' }, EmptyResultSchema);
        return { content: [{ type: 'text', text: 'pong' }] };
      }
      if (req.params.name === 'log') {
        await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', logger: 'upstream', data: String(req.params.arguments?.text ?? '') } });
        return { content: [{ type: 'text', text: 'logged' }] };
      }
      if (req.params.name === 'count') {
        const n = Number(req.params.arguments?.n ?? 3);
        const token = req.params._meta?.progressToken;
        for (let i = 1; i <= n; i += 1) {
          if (token !== undefined) await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: i, total: n } });
        }
        return { content: [{ type: 'text', text: `counted to ${n}` }] };
      }
      if (req.params.name === 'ask') {
        try {
          const answer = await extra.sendRequest({ method: 'elicitation/create', params: { message: 'Proceed?', requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } } } } }, ElicitResultSchema);
          return { content: [{ type: 'text', text: `answer: ${JSON.stringify(answer)}` }] };
        } catch (err) {
          return { isError: true, content: [{ type: 'text', text: `could not ask: ${(err as Error).message}` }] };
        }
      }
      // Not listed by default: a test that wants a tool failing with a JSON-RPC error lists it.
      if (req.params.name === 'fail') throw new McpError(ErrorCode.InternalError, 'the tool failed upstream');
      if (req.params.name === 'whoami') {
        const auth = String(extra.requestInfo?.headers.authorization ?? '');
        return { content: [{ type: 'text', text: `you sent ${auth} (${Buffer.from(auth).toString('base64')})` }] };
      }
      return { content: [{ type: 'text', text: `${req.params.name}: ${JSON.stringify(req.params.arguments ?? {})}` }] };
    });
    return server;
  };

  const http: HttpServer = createServer(async (req: IncomingMessage, res) => {
    if (req.headers.authorization) state.authorizations.push(req.headers.authorization);
    const id = req.headers['mcp-session-id'];
    if (req.method === 'DELETE' && typeof id === 'string') state.deleted.push(id);
    else state.requests += 1;
    let transport = typeof id === 'string' ? transports.get(id) : undefined;
    if (!transport) {
      const server = newServer();
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (sid) => {
          transports.set(sid, transport!);
          servers.set(sid, server);
        },
      });
      await server.connect(transport);
    }
    await transport.handleRequest(req, res);
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
  state.close = async () => {
    await Promise.allSettled([...transports.values()].map((t) => t.close()));
    http.closeAllConnections();
    await new Promise<void>((resolve) => http.close(() => resolve()));
  };
  return state;
}

/** Resources (subscribable, completable) of the test upstream; reads and subscriptions counted. */
function addResources(server: Server, state: McpUpstream): void {
  server.setRequestHandler(ListResourcesRequestSchema, async () => ({ resources: [{ uri: 'file:///readme.md', name: 'readme' }, { uri: 'file:///secrets.txt', name: 'secrets' }] }));
  server.setRequestHandler(ReadResourceRequestSchema, async (req) => {
    hit(state.hits, req.params.uri);
    return { contents: [{ uri: req.params.uri, text: `contents of ${req.params.uri}` }] };
  });
  server.setRequestHandler(SubscribeRequestSchema, async (req) => {
    state.subscriptions.push(`subscribe ${req.params.uri}`);
    return {};
  });
  server.setRequestHandler(UnsubscribeRequestSchema, async (req) => {
    state.subscriptions.push(`unsubscribe ${req.params.uri}`);
    return {};
  });
}

/** One prompt, `greet`, and completions of its argument and of resource URIs (counted as `complete:…`). */
function addPrompts(server: Server, state: McpUpstream): void {
  server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts: [{ name: 'greet', arguments: [{ name: 'who' }] }] }));
  server.setRequestHandler(GetPromptRequestSchema, async (req) => {
    hit(state.hits, `prompt:${req.params.name}`);
    return { messages: [{ role: 'user', content: { type: 'text', text: `Hello ${req.params.arguments?.who ?? 'you'}` } }] };
  });
  server.setRequestHandler(CompleteRequestSchema, async (req) => {
    const ref = req.params.ref as { type: string; name?: string; uri?: string };
    hit(state.hits, `complete:${ref.name ?? ref.uri}`);
    return { completion: { values: [`${req.params.argument.value}a`, `${req.params.argument.value}b`] } };
  });
}

/**
 * A fetch for the SDK client transport: `Authorization: DPoP <token>` and a fresh proof per request.
 * `via`: the origin actually fetched (another instance behind the same issuer); the proof's `htu`
 * stays the URL asked for.
 */
export function dpopFetch(agent: TestAgent, token: () => string, via?: string): (url: string | URL, init?: RequestInit) => Promise<Response> {
  return async (url, init) => {
    const u = new URL(url);
    const htu = `${u.origin}${u.pathname}`;
    const headers = new Headers(init?.headers);
    headers.set('authorization', `DPoP ${token()}`);
    headers.set('dpop', await dpopProof(agent.dpop, htu, { htm: init?.method ?? 'GET', accessToken: token() }));
    return fetch(via === undefined ? u : new URL(`${u.pathname}${u.search}`, via), { ...init, headers });
  };
}

/** An SDK client connected to Deputy's `/mcp/{server}` as `agent` with `token` (through origin `via`: see {@link dpopFetch}). */
export async function mcpAgent(url: string, agent: TestAgent, token: string | (() => string), capabilities: Record<string, unknown> = {}, via?: string): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const get = typeof token === 'string' ? () => token : token;
  const client = new Client({ name: `agent-${agent.id}`, version: '1.0.0' }, { capabilities });
  const transport = new StreamableHTTPClientTransport(new URL(url), { fetch: dpopFetch(agent, get, via) });
  await client.connect(transport);
  // Closing ends the session at the server too (HTTP DELETE), as a well-behaved agent does.
  const close = client.close.bind(client);
  client.close = async () => {
    await transport.terminateSession().catch(() => {});
    await close();
  };
  return { client, transport };
}

/**
 * What became of a raw `tools/call` that raced a replay of its DPoP proof: `forwarded` (its result),
 * or `refused` — HTTP 401 `invalid_dpop_proof` (RFC 9449 §7.1) when the gateway knew before the
 * SDK answered, else in-band JSON-RPC -32003 carrying that error (the receipt statement refused it).
 */
export async function toolCallOutcome(res: Response): Promise<'forwarded' | 'refused'> {
  if (res.status === 401) {
    expect(res.headers.get('www-authenticate')).toMatch(/error="invalid_dpop_proof"/);
    await res.text();
    return 'refused';
  }
  expect(res.status).toBe(200);
  const line = (await res.text()).split('\n').find((l) => l.startsWith('data: {'))!;
  const answer = JSON.parse(line.slice(6)) as { result?: unknown; error?: { code: number; data?: Record<string, unknown> } };
  if (answer.error) {
    expect(answer.error.code).toBe(-32003);
    expect(answer.error.data).toMatchObject({ status: 401, error: 'invalid_dpop_proof' });
    return 'refused';
  }
  expect(answer.result).toMatchObject({ content: [{ type: 'text' }] });
  return 'forwarded';
}
