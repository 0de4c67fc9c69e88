/**
 * The providers' wire formats as the LLM gateway reads them: which endpoint a path is, and what
 * a request asks for (model, output cap, stream, tools, prompt text), plus the two rewrites
 * Deputy makes (the output cap it reserved; usage in the stream).
 *
 * - OpenAI: Chat Completions `POST /v1/chat/completions` (`max_completion_tokens` or the older
 *   `max_tokens`; `stream_options.include_usage`), Responses `POST /v1/responses`
 *   (`max_output_tokens`), Embeddings `POST /v1/embeddings`, Models `GET /v1/models[/{id}]`.
 * - Anthropic: Messages `POST /v1/messages` (`max_tokens` required), Models `GET /v1/models`.
 *
 * @module
 */
import { InvalidRequest, NotFound } from '../errors/index.js';
import { countTokens, MESSAGE_OVERHEAD_TOKENS, REQUEST_OVERHEAD_TOKENS } from './tokens.js';

export type Provider = 'openai' | 'anthropic';
export type Endpoint = 'chat' | 'responses' | 'embeddings' | 'messages' | 'models';

/** The endpoint `method path` is for `provider`. @throws NotFound (404) for any other. */
export function endpointOf(provider: Provider, method: string, path: string): Endpoint {
  if (method === 'GET' && /^\/v1\/models(\/[^/]+)?$/.test(path)) return 'models';
  if (method === 'POST') {
    if (provider === 'openai') {
      if (path === '/v1/chat/completions') return 'chat';
      if (path === '/v1/responses') return 'responses';
      if (path === '/v1/embeddings') return 'embeddings';
    } else if (path === '/v1/messages') return 'messages';
  }
  throw new NotFound(`${method} ${path.slice(0, 100)} is not an endpoint of the ${provider} API that Deputy serves`);
}

/** What one model request asks for. */
export interface ModelRequest {
  endpoint: Exclude<Endpoint, 'models'>;
  model: string;
  stream: boolean;
  /** The output cap the request sets; undefined when it sets none (embeddings: 0). */
  maxTokens: number | undefined;
  /** Names of the tools it offers the model. */
  tools: string[];
  /** Estimated input tokens (tokenizer count plus per-message overhead). */
  inputTokens: number;
  /** The request body, parsed. */
  body: Record<string, unknown>;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Reads a model request body.
 *
 * @throws InvalidRequest (400) naming the member: not a JSON object, no `model`, a cap that is
 *   not a positive integer, Anthropic without `max_tokens`.
 */
export function parseModelRequest(endpoint: Exclude<Endpoint, 'models'>, raw: unknown): ModelRequest {
  if (!isObject(raw)) throw new InvalidRequest('the request body must be a JSON object');
  const model = raw.model;
  if (typeof model !== 'string' || model.length === 0 || model.length > 200) throw new InvalidRequest('model is required (a string)');
  const capMember = { chat: raw.max_completion_tokens !== undefined ? 'max_completion_tokens' : 'max_tokens', responses: 'max_output_tokens', messages: 'max_tokens', embeddings: undefined }[endpoint];
  const cap = capMember === undefined ? 0 : raw[capMember];
  if (capMember !== undefined && cap !== undefined && cap !== null && !(Number.isSafeInteger(cap) && (cap as number) > 0)) throw new InvalidRequest(`${capMember} must be a positive integer`);
  if (endpoint === 'messages' && cap === undefined) throw new InvalidRequest('max_tokens is required');
  return {
    endpoint,
    model,
    stream: raw.stream === true,
    maxTokens: cap === null ? undefined : (cap as number | undefined),
    tools: toolNames(raw.tools),
    inputTokens: estimateInput(endpoint, raw),
    body: raw,
  };
}

function toolNames(tools: unknown): string[] {
  if (!Array.isArray(tools)) return [];
  return tools.flatMap((t) => {
    if (!isObject(t)) return [];
    const name = isObject(t.function) ? t.function.name : t.name;
    return typeof name === 'string' ? [name.slice(0, 128)] : typeof t.type === 'string' ? [t.type.slice(0, 128)] : [];
  });
}

/** Every string in a content value (strings, `[{ type: 'text', text }]` parts, nested). */
function textOf(v: unknown, out: string[]): void {
  if (typeof v === 'string') out.push(v);
  else if (Array.isArray(v)) for (const x of v) textOf(x, out);
  else if (isObject(v)) for (const [k, x] of Object.entries(v)) if (k !== 'type' && k !== 'role' && k !== 'cache_control') textOf(x, out);
}

/** A chat completion message's generated text: content, refusal, reasoning, tool calls' arguments. */
function chatMessageText(message: Record<string, unknown>, out: string[]): void {
  for (const key of ['content', 'refusal', 'reasoning_content'] as const) textOf(message[key], out);
  for (const call of Array.isArray(message.tool_calls) ? message.tool_calls : []) {
    if (isObject(call) && isObject(call.function) && typeof call.function.arguments === 'string') out.push(call.function.arguments);
  }
}

/** The input tokens of a request: every text it sends, per-message overhead, tool definitions. */
function estimateInput(endpoint: ModelRequest['endpoint'], body: Record<string, unknown>): number {
  const texts: string[] = [];
  let messages = 0;
  const source = endpoint === 'chat' || endpoint === 'messages' ? body.messages : body.input;
  if (Array.isArray(source)) messages = source.length;
  else if (source !== undefined) messages = 1;
  textOf(source, texts);
  textOf(body.system, texts);
  textOf(body.instructions, texts);
  if (body.tools !== undefined) texts.push(JSON.stringify(body.tools));
  const tokens = texts.reduce((n, t) => n + countTokens(t), 0);
  return endpoint === 'embeddings' ? tokens : tokens + messages * MESSAGE_OVERHEAD_TOKENS + REQUEST_OVERHEAD_TOKENS;
}

/**
 * The body Deputy sends upstream: the output cap set to what was reserved (the provider stops
 * there itself), and for a Chat Completions stream `stream_options.include_usage` so the
 * provider reports usage at the end.
 */
export function upstreamBody(req: ModelRequest, cap: number): Record<string, unknown> {
  const body = { ...req.body };
  if (req.endpoint === 'chat') {
    if (body.max_completion_tokens !== undefined) body.max_completion_tokens = cap;
    else body.max_tokens = cap;
    if (req.stream) body.stream_options = { ...(isObject(body.stream_options) ? body.stream_options : {}), include_usage: true };
  } else if (req.endpoint === 'responses') body.max_output_tokens = cap;
  else if (req.endpoint === 'messages') body.max_tokens = cap;
  return body;
}

/** Token usage as the providers report it, normalised. */
export interface Usage {
  inputTokens: number;
  outputTokens: number;
}

/** `usage` of a (non-streamed) response body or a final stream event, if it has one. */
export function usageOf(endpoint: ModelRequest['endpoint'], body: unknown): Usage | undefined {
  if (!isObject(body) || !isObject(body.usage)) return undefined;
  const u = body.usage;
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : undefined);
  if (endpoint === 'chat' || endpoint === 'embeddings') {
    const input = n(u.prompt_tokens);
    return input === undefined ? undefined : { inputTokens: input, outputTokens: n(u.completion_tokens) ?? 0 };
  }
  const input = n(u.input_tokens);
  const output = n(u.output_tokens);
  if (input === undefined && output === undefined) return undefined;
  // Anthropic counts cached prompt tokens apart; they are input too.
  return { inputTokens: (input ?? 0) + (n(u.cache_creation_input_tokens) ?? 0) + (n(u.cache_read_input_tokens) ?? 0), outputTokens: output ?? 0 };
}

/**
 * The generated text of a non-streamed response (to count it when the provider gives no usage).
 * A chat message's text is what a stream of it meters (./stream.ts): its content, refusal and
 * reasoning, and its tool calls' arguments (counted alone, a message of tool calls only was
 * charged no output).
 */
export function outputTextOf(endpoint: ModelRequest['endpoint'], body: unknown): string {
  if (!isObject(body)) return '';
  const out: string[] = [];
  if (endpoint === 'chat' && Array.isArray(body.choices)) for (const c of body.choices) if (isObject(c) && isObject(c.message)) chatMessageText(c.message, out);
  if (endpoint === 'messages') textOf(body.content, out);
  if (endpoint === 'responses') textOf(body.output, out);
  return out.join('');
}
