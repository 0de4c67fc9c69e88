/**
 * Mock LLM providers for the LLM gateway's tests: an OpenAI-compatible server (Chat Completions,
 * Responses, Embeddings, Models) and an Anthropic-compatible one (Messages, Models), streaming
 * (SSE) and not. Each generated token is the word " hello" (one token in every OpenAI encoding),
 * so a test knows exactly how many tokens were delivered. `behavior` switches what the next calls
 * do: honour the output cap or ignore it, report usage in the stream or not, fail, hang.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface LlmBehavior {
  /** Tokens generated when the request's cap allows (default 8). */
  words: number;
  /** Generate `words` whatever the request's cap says (a provider that overruns). */
  ignoreMaxTokens: boolean;
  /** Report usage in streams (OpenAI: when asked with include_usage; Anthropic: in message_delta). */
  usageInStream: boolean;
  /** Prompt tokens reported in usage. */
  promptTokens: number;
  /** Answer every model call with this error status. */
  failWith: number | undefined;
  /** Stream the first delta, then send nothing more (wall-clock tests). */
  hangAfterFirst: boolean;
}

export interface SeenRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown> | undefined;
}

export interface MockLlm {
  base: string;
  behavior: LlmBehavior;
  requests: SeenRequest[];
  reset(): void;
  close(): Promise<void>;
}

const DEFAULTS: LlmBehavior = { words: 8, ignoreMaxTokens: false, usageInStream: true, promptTokens: 12, failWith: undefined, hangAfterFirst: false };
export const WORD = ' hello';

export async function startMockLlm(): Promise<MockLlm> {
  const requests: SeenRequest[] = [];
  const behavior: LlmBehavior = { ...DEFAULTS };
  const hanging = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (raw += c));
    req.on('end', () => {
      const body = raw ? (JSON.parse(raw) as Record<string, unknown>) : undefined;
      const path = (req.url ?? '').split('?')[0]!;
      requests.push({ method: req.method ?? '', path, headers: req.headers, body });
      route(req.method ?? '', path, body, res);
    });
  });

  function words(body: Record<string, unknown> | undefined): number {
    const cap = (body?.max_completion_tokens ?? body?.max_tokens ?? body?.max_output_tokens) as number | undefined;
    return behavior.ignoreMaxTokens || cap === undefined ? behavior.words : Math.min(cap, behavior.words);
  }

  function route(method: string, path: string, body: Record<string, unknown> | undefined, res: ServerResponse): void {
    if (method === 'GET' && path === '/v1/models') return json(res, 200, { object: 'list', data: [{ id: 'gpt-test', object: 'model', created: 1, owned_by: 'mock' }] });
    if (behavior.failWith !== undefined) return json(res, behavior.failWith, { error: { message: 'mock provider failure', type: 'server_error' } });
    const n = words(body);
    const model = String(body?.model);
    const stream = body?.stream === true;
    if (path === '/v1/chat/completions') return stream ? chatStream(res, model, n, body) : json(res, 200, chat(model, n));
    if (path === '/v1/messages') return stream ? messagesStream(res, model, n) : json(res, 200, message(model, n));
    // The openai SDK asks for base64 (little-endian float32) unless told otherwise.
    const vector = body?.encoding_format === 'base64' ? Buffer.from(new Float32Array([0.1, 0.2]).buffer).toString('base64') : [0.1, 0.2];
    if (path === '/v1/embeddings') return json(res, 200, { object: 'list', data: [{ object: 'embedding', index: 0, embedding: vector }], model, usage: { prompt_tokens: behavior.promptTokens, total_tokens: behavior.promptTokens } });
    if (path === '/v1/responses') return stream ? responsesStream(res, model, n) : json(res, 200, response(model, n));
    json(res, 404, { error: { message: 'no such route' } });
  }

  const text = (n: number) => WORD.repeat(n);
  const chat = (model: string, n: number) => ({
    id: 'chatcmpl-mock', object: 'chat.completion', created: 1_700_000_000, model,
    choices: [{ index: 0, message: { role: 'assistant', content: text(n), refusal: null }, logprobs: null, finish_reason: n < behavior.words ? 'length' : 'stop' }],
    usage: { prompt_tokens: behavior.promptTokens, completion_tokens: n, total_tokens: behavior.promptTokens + n },
  });
  const message = (model: string, n: number) => ({
    id: 'msg_mock', type: 'message', role: 'assistant', model, content: [{ type: 'text', text: text(n) }],
    stop_reason: n < behavior.words ? 'max_tokens' : 'end_turn', stop_sequence: null, usage: { input_tokens: behavior.promptTokens, output_tokens: n },
  });
  const response = (model: string, n: number) => ({
    id: 'resp_mock', object: 'response', created_at: 1_700_000_000, status: 'completed', model,
    output: [{ type: 'message', id: 'msg_1', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: text(n), annotations: [] }] }],
    usage: { input_tokens: behavior.promptTokens, output_tokens: n, total_tokens: behavior.promptTokens + n },
  });

  function startSse(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-request-id': 'req_mock' });
  }

  function chatStream(res: ServerResponse, model: string, n: number, body: Record<string, unknown> | undefined): void {
    startSse(res);
    const base = { id: 'chatcmpl-mock', object: 'chat.completion.chunk', created: 1_700_000_000, model };
    const send = (o: unknown) => res.write(`data: ${JSON.stringify(o)}\n\n`);
    send({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] });
    for (let i = 0; i < n; i++) {
      send({ ...base, choices: [{ index: 0, delta: { content: WORD }, logprobs: null, finish_reason: null }] });
      if (behavior.hangAfterFirst) {
        hanging.add(res);
        return;
      }
    }
    send({ ...base, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: n < behavior.words ? 'length' : 'stop' }] });
    const wantsUsage = (body?.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
    if (wantsUsage && behavior.usageInStream) send({ ...base, choices: [], usage: { prompt_tokens: behavior.promptTokens, completion_tokens: n, total_tokens: behavior.promptTokens + n } });
    res.end('data: [DONE]\n\n');
  }

  function messagesStream(res: ServerResponse, model: string, n: number): void {
    startSse(res);
    const send = (type: string, o: Record<string, unknown>) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...o })}\n\n`);
    send('message_start', { message: { id: 'msg_mock', type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: behavior.promptTokens, output_tokens: 1 } } });
    send('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
    for (let i = 0; i < n; i++) {
      send('content_block_delta', { index: 0, delta: { type: 'text_delta', text: WORD } });
      if (behavior.hangAfterFirst) {
        hanging.add(res);
        return;
      }
    }
    send('content_block_stop', { index: 0 });
    send('message_delta', { delta: { stop_reason: n < behavior.words ? 'max_tokens' : 'end_turn', stop_sequence: null }, usage: behavior.usageInStream ? { output_tokens: n } : {} });
    send('message_stop', {});
    res.end();
  }

  /** The Responses API's events (`response.created` … `response.completed`), usage in the last when `usageInStream`. */
  function responsesStream(res: ServerResponse, model: string, n: number): void {
    startSse(res);
    let seq = 0;
    const send = (type: string, o: Record<string, unknown>) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...o })}\n\n`);
    const base = { id: 'resp_mock', object: 'response', created_at: 1_700_000_000, model, output: [] as unknown[], usage: null as unknown };
    const at = { item_id: 'msg_1', output_index: 0, content_index: 0 };
    send('response.created', { response: { ...base, status: 'in_progress' } });
    send('response.in_progress', { response: { ...base, status: 'in_progress' } });
    send('response.output_item.added', { output_index: 0, item: { type: 'message', id: 'msg_1', status: 'in_progress', role: 'assistant', content: [] } });
    send('response.content_part.added', { ...at, part: { type: 'output_text', text: '', annotations: [] } });
    for (let i = 0; i < n; i++) {
      send('response.output_text.delta', { ...at, delta: WORD, logprobs: [] });
      if (behavior.hangAfterFirst) {
        hanging.add(res);
        return;
      }
    }
    const part = { type: 'output_text', text: text(n), annotations: [] };
    const item = { type: 'message', id: 'msg_1', status: n < behavior.words ? 'incomplete' : 'completed', role: 'assistant', content: [part] };
    send('response.output_text.done', { ...at, text: text(n), logprobs: [] });
    send('response.content_part.done', { ...at, part });
    send('response.output_item.done', { output_index: 0, item });
    const usage = behavior.usageInStream ? { input_tokens: behavior.promptTokens, output_tokens: n, total_tokens: behavior.promptTokens + n } : null;
    const done = n < behavior.words ? 'response.incomplete' : 'response.completed';
    send(done, { response: { ...base, status: done === 'response.completed' ? 'completed' : 'incomplete', ...(done === 'response.incomplete' ? { incomplete_details: { reason: 'max_output_tokens' } } : {}), output: [item], usage } });
    res.end();
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    behavior,
    requests,
    reset() {
      Object.assign(behavior, DEFAULTS);
      for (const res of hanging) res.destroy();
      hanging.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-request-id': 'req_mock' });
  res.end(text);
}
