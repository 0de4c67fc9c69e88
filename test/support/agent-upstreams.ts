/**
 * Upstreams for the agent library's tests, over real HTTP (127.0.0.1, random port), each
 * recording the headers that reached it (the gateway must inject the credential and strip the
 * agent's `Authorization` and `DPoP`):
 *
 * - {@link startLlmUpstream}: the JSON endpoints the official SDKs call — OpenAI
 *   `POST …/v1/chat/completions` (also streamed, SSE) and Anthropic `POST …/v1/messages` —
 *   answering in each format;
 * - {@link startMcpUpstream}: an MCP server of the official SDK (Streamable HTTP, stateless,
 *   SSE responses) at `…/mcp` with one tool, `lookup`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

export interface RecordingUpstream {
  readonly base: string;
  /** Headers of every request, in arrival order. */
  readonly requests: Array<{ method: string; path: string; headers: IncomingMessage['headers'] }>;
  close(): Promise<void>;
}

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>): Promise<{ server: Server; base: string }> {
  const server = createServer((req, res) => {
    void handler(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function closer(server: Server): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
}

/** A mock OpenAI- and Anthropic-compatible API that answers with who called it (the injected key's header name). */
export async function startLlmUpstream(): Promise<RecordingUpstream> {
  const requests: RecordingUpstream['requests'] = [];
  const { server, base } = await listen(async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    requests.push({ method: req.method ?? '', path, headers: { ...req.headers } });
    const body = await readJson(req);
    const json = (status: number, value: unknown): void => void res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
    if (req.method === 'POST' && path.endsWith('/v1/chat/completions') && body.stream === true) {
      // Server-sent events (the OpenAI streaming format), one chunk per word, then [DONE].
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      for (const word of ['hello', ' from', ' a', ' stream']) {
        res.write(`data: ${JSON.stringify({ id: 'chatcmpl-2', object: 'chat.completion.chunk', created: 0, model: body.model, choices: [{ index: 0, delta: { content: word }, finish_reason: null }] })}\n\n`);
      }
      res.write(`data: ${JSON.stringify({ id: 'chatcmpl-2', object: 'chat.completion.chunk', created: 0, model: body.model, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
      return void res.end('data: [DONE]\n\n');
    }
    if (req.method === 'POST' && path.endsWith('/v1/chat/completions')) {
      return json(200, {
        id: 'chatcmpl-1', object: 'chat.completion', created: Math.floor(Date.now() / 1000), model: body.model,
        choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'hello from the mock OpenAI', refusal: null } }],
        usage: { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 },
      });
    }
    if (req.method === 'POST' && path.endsWith('/v1/messages')) {
      return json(200, {
        id: 'msg_1', type: 'message', role: 'assistant', model: body.model, stop_reason: 'end_turn', stop_sequence: null,
        content: [{ type: 'text', text: 'hello from the mock Anthropic' }], usage: { input_tokens: 3, output_tokens: 5 },
      });
    }
    return json(404, { error: { type: 'not_found', message: 'no such endpoint' } });
  });
  return { base, requests, close: closer(server) };
}

/** An MCP server (official SDK, Streamable HTTP, stateless) at `/mcp` with a `lookup` tool. */
export async function startMcpUpstream(): Promise<RecordingUpstream> {
  const requests: RecordingUpstream['requests'] = [];
  const { server, base } = await listen(async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    requests.push({ method: req.method ?? '', path, headers: { ...req.headers } });
    if (!path.endsWith('/mcp')) return void res.writeHead(404).end();
    // Stateless (no session ids): one server and transport per request, as the SDK documents.
    const mcp = new McpServer({ name: 'crm-mcp', version: '1.0.0' });
    mcp.registerTool('lookup', { description: 'Looks a customer up', inputSchema: { customer: z.string() } }, ({ customer }) => ({
      content: [{ type: 'text', text: `customer ${customer}: ACME Corp` }],
    }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => {
      void transport.close();
      void mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res);
  });
  return { base, requests, close: closer(server) };
}
