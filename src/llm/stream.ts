/**
 * Server-sent event streams of model calls, metered as they flow and cut cleanly at a cap.
 *
 * The provider's events are parsed (`eventsource-parser`) and passed on as they came; the
 * generated text of each delta is counted (./tokens.ts) and the provider's `usage` noted. When
 * a delta would take the delivered output past the cap (what the budgets reserved), the delta is
 * truncated to the cap and the stream is ended **in the provider's own format**, so the official
 * SDKs see a normal end with a length stop:
 *
 * - OpenAI Chat Completions: a final chunk with `finish_reason: "length"` (then the usage chunk
 *   when the agent asked for usage), then `data: [DONE]`;
 * - Anthropic Messages: `content_block_stop`, `message_delta` with `stop_reason: "max_tokens"`
 *   and the output tokens delivered, then `message_stop`;
 * - OpenAI Responses: the open text part and output item closed (`response.output_text.done`,
 *   `response.content_part.done`, `response.output_item.done` with status `incomplete`), then
 *   `response.incomplete` with `incomplete_details.reason: "max_output_tokens"`, the output
 *   delivered and its usage.
 *
 * The same clean end closes a stream that reaches the call's wall-clock deadline.
 *
 * @module
 */
import { Readable } from 'node:stream';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { countTokens, truncateToTokens } from './tokens.js';
import type { ModelRequest, Usage } from './wire.js';

/** What a metered call delivered, filled in while it flows. */
export interface Meter {
  /** Output tokens passed on to the agent, by Deputy's count. */
  delivered: number;
  /** The provider's own usage report, when it sent one (complete only for an uncut stream). */
  usage: Partial<Usage>;
  /** Why Deputy ended the stream, if it did. */
  cut?: 'budget' | 'deadline';
  /** The upstream answered with an error status: nothing is charged. */
  failed?: boolean;
}

export function newMeter(): Meter {
  return { delivered: 0, usage: {} };
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function sse(data: string, event?: string): string {
  return `${event ? `event: ${event}\n` : ''}data: ${data}\n\n`;
}

/** One format's view of the events: pass on, count, and how to end cleanly. */
interface Format {
  /** The text to send for `e` (possibly truncated), and whether the stream is over. */
  onEvent(e: EventSourceMessage): { out: string[]; done: boolean };
  /** The events that end the stream cleanly now. */
  end(): string[];
}

class Budget {
  constructor(readonly meter: Meter, readonly cap: number) {}
  /** How much of `text` may still go out: all of it, or a truncation at the cap. */
  take(text: string): { text: string; full: boolean } {
    const n = countTokens(text);
    if (this.meter.delivered + n <= this.cap) {
      this.meter.delivered += n;
      return { text, full: true };
    }
    const left = this.cap - this.meter.delivered;
    const cut = truncateToTokens(text, left);
    this.meter.delivered += countTokens(cut);
    return { text: cut, full: false };
  }
}

/** Chat Completions chunks (`chat.completion.chunk`). */
function chatFormat(req: ModelRequest, budget: Budget): Format {
  let last: Json = {};
  const wantsUsage = isObject(req.body.stream_options) && req.body.stream_options.include_usage === true;
  const end = (): string[] => {
    const base = { id: last.id ?? 'chatcmpl-deputy', object: 'chat.completion.chunk', created: last.created ?? Math.floor(Date.now() / 1000), model: last.model ?? req.model };
    const out = [sse(JSON.stringify({ ...base, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'length' }] }))];
    if (wantsUsage) {
      const input = budget.meter.usage.inputTokens ?? req.inputTokens;
      out.push(sse(JSON.stringify({ ...base, choices: [], usage: { prompt_tokens: input, completion_tokens: budget.meter.delivered, total_tokens: input + budget.meter.delivered } })));
    }
    out.push(sse('[DONE]'));
    return out;
  };
  return {
    end,
    onEvent(e) {
      if (e.data === '[DONE]') return { out: [sse('[DONE]')], done: true };
      const chunk = parse(e.data);
      if (!chunk) return { out: [sse(e.data, e.event)], done: false };
      last = chunk;
      if (isObject(chunk.usage)) {
        const u = chunk.usage;
        if (typeof u.prompt_tokens === 'number') budget.meter.usage.inputTokens = u.prompt_tokens;
        if (typeof u.completion_tokens === 'number') budget.meter.usage.outputTokens = u.completion_tokens;
      }
      // A chunk the agent did not ask for (usage requested by Deputy) is dropped.
      if (Array.isArray(chunk.choices) && chunk.choices.length === 0 && isObject(chunk.usage) && !wantsUsage) return { out: [], done: false };
      let over = false;
      for (const choice of Array.isArray(chunk.choices) ? chunk.choices : []) {
        if (!isObject(choice) || !isObject(choice.delta)) continue;
        const delta = choice.delta;
        for (const key of ['content', 'refusal', 'reasoning_content'] as const) {
          if (typeof delta[key] !== 'string') continue;
          const t = budget.take(delta[key] as string);
          delta[key] = t.text;
          over ||= !t.full;
        }
        for (const call of Array.isArray(delta.tool_calls) ? delta.tool_calls : []) {
          if (!isObject(call) || !isObject(call.function) || typeof call.function.arguments !== 'string') continue;
          const t = budget.take(call.function.arguments);
          call.function.arguments = t.text;
          over ||= !t.full;
        }
      }
      if (!over) return { out: [sse(JSON.stringify(chunk))], done: false };
      budget.meter.cut = 'budget';
      return { out: [sse(JSON.stringify(chunk)), ...end()], done: true };
    },
  };
}

/** Anthropic Messages events. */
function messagesFormat(budget: Budget): Format {
  let openBlock: number | undefined;
  const end = (): string[] => [
    ...(openBlock === undefined ? [] : [sse(JSON.stringify({ type: 'content_block_stop', index: openBlock }), 'content_block_stop')]),
    sse(JSON.stringify({ type: 'message_delta', delta: { stop_reason: 'max_tokens', stop_sequence: null }, usage: { output_tokens: budget.meter.delivered } }), 'message_delta'),
    sse(JSON.stringify({ type: 'message_stop' }), 'message_stop'),
  ];
  return {
    end,
    onEvent(e) {
      const ev = parse(e.data);
      const type = ev?.type ?? e.event;
      if (!ev) return { out: [sse(e.data, e.event)], done: false };
      if (type === 'message_start' && isObject(ev.message) && isObject(ev.message.usage)) {
        const u = ev.message.usage;
        budget.meter.usage.inputTokens = num(u.input_tokens) + num(u.cache_creation_input_tokens) + num(u.cache_read_input_tokens);
      }
      if (type === 'message_delta' && isObject(ev.usage) && typeof ev.usage.output_tokens === 'number') budget.meter.usage.outputTokens = ev.usage.output_tokens;
      if (type === 'content_block_start') openBlock = typeof ev.index === 'number' ? ev.index : 0;
      if (type === 'content_block_stop') openBlock = undefined;
      if (type === 'content_block_delta' && isObject(ev.delta)) {
        const d = ev.delta;
        const key = typeof d.text === 'string' ? 'text' : typeof d.partial_json === 'string' ? 'partial_json' : typeof d.thinking === 'string' ? 'thinking' : undefined;
        if (key) {
          const t = budget.take(d[key] as string);
          d[key] = t.text;
          if (!t.full) {
            budget.meter.cut = 'budget';
            return { out: [sse(JSON.stringify(ev), e.event ?? 'content_block_delta'), ...end()], done: true };
          }
        }
      }
      return { out: [sse(JSON.stringify(ev), e.event ?? (typeof type === 'string' ? type : undefined))], done: type === 'message_stop' };
    },
  };
}

/**
 * The output items of a Responses stream as passed on (deltas after truncation): what a cut's
 * `response.incomplete` carries, since the SDK replaces its snapshot with that event's `response`
 * (openai `ResponseAccumulator`): without the items, the agent would lose the text it was sent.
 */
class ResponsesOutput {
  readonly items: Json[] = [];
  /** Parts already closed (`response.content_part.done`), as `output:content`. */
  readonly #closed = new Set<string>();

  apply(ev: Json): void {
    const oi = typeof ev.output_index === 'number' ? ev.output_index : -1;
    const ci = typeof ev.content_index === 'number' ? ev.content_index : -1;
    if ((ev.type === 'response.output_item.added' || ev.type === 'response.output_item.done') && isObject(ev.item) && oi >= 0) this.items[oi] = structuredClone(ev.item);
    else if (ev.type === 'response.content_part.added' && isObject(ev.part)) this.#content(oi)?.splice(ci, 1, structuredClone(ev.part));
    else if (ev.type === 'response.content_part.done') this.#closed.add(`${oi}:${ci}`);
    else if (ev.type === 'response.output_text.delta' && typeof ev.delta === 'string') {
      const part = this.#content(oi)?.[ci];
      if (isObject(part)) part.text = `${typeof part.text === 'string' ? part.text : ''}${ev.delta}`;
    }
  }

  #content(oi: number): unknown[] | undefined {
    const item = this.items[oi];
    if (!isObject(item) || !Array.isArray(item.content)) return undefined;
    return item.content;
  }

  /**
   * The events that close every item still in progress, as the provider does at a length stop:
   * `response.output_text.done` and `response.content_part.done` per open text part, then
   * `response.output_item.done` with the item's status `incomplete`.
   */
  close(next: () => number): string[] {
    const out: string[] = [];
    const emit = (type: string, o: Json) => out.push(sse(JSON.stringify({ type, sequence_number: next(), ...o }), type));
    this.items.forEach((item, oi) => {
      if (!isObject(item) || item.status !== 'in_progress') return;
      item.status = 'incomplete';
      (Array.isArray(item.content) ? item.content : []).forEach((part, ci) => {
        if (!isObject(part) || part.type !== 'output_text' || this.#closed.has(`${oi}:${ci}`)) return;
        emit('response.output_text.done', { item_id: item.id, output_index: oi, content_index: ci, text: part.text ?? '', logprobs: [] });
        emit('response.content_part.done', { item_id: item.id, output_index: oi, content_index: ci, part });
      });
      emit('response.output_item.done', { output_index: oi, item });
    });
    return out;
  }
}

/** OpenAI Responses events. */
function responsesFormat(req: ModelRequest, budget: Budget): Format {
  let response: Json = { id: 'resp_deputy', object: 'response', model: req.model, output: [] };
  let seq = 0;
  const output = new ResponsesOutput();
  const end = (): string[] => {
    const closing = output.close(() => ++seq);
    const input = budget.meter.usage.inputTokens ?? req.inputTokens;
    const usage = { input_tokens: input, output_tokens: budget.meter.delivered, total_tokens: input + budget.meter.delivered };
    const r = { ...response, status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' }, output: output.items.filter(isObject), usage };
    return [...closing, sse(JSON.stringify({ type: 'response.incomplete', sequence_number: ++seq, response: r }), 'response.incomplete')];
  };
  return {
    end,
    onEvent(e) {
      const ev = parse(e.data);
      if (!ev) return { out: [sse(e.data, e.event)], done: false };
      if (typeof ev.sequence_number === 'number') seq = ev.sequence_number;
      if (isObject(ev.response)) {
        response = ev.response;
        if (isObject(ev.response.usage)) {
          const u = ev.response.usage;
          if (typeof u.input_tokens === 'number') budget.meter.usage.inputTokens = u.input_tokens;
          if (typeof u.output_tokens === 'number') budget.meter.usage.outputTokens = u.output_tokens;
        }
      }
      let full = true;
      if (typeof ev.type === 'string' && ev.type.endsWith('.delta') && typeof ev.delta === 'string') {
        const t = budget.take(ev.delta);
        ev.delta = t.text;
        full = t.full;
      }
      output.apply(ev);
      if (!full) {
        budget.meter.cut = 'budget';
        // A delta cut to nothing is not passed on (the provider never sends an empty one).
        return { out: [...(ev.delta === '' ? [] : [sse(JSON.stringify(ev), e.event)]), ...end()], done: true };
      }
      const done = ev.type === 'response.completed' || ev.type === 'response.incomplete' || ev.type === 'response.failed';
      return { out: [sse(JSON.stringify(ev), e.event)], done };
    },
  };
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0;
}

function parse(data: string): Json | undefined {
  try {
    const v = JSON.parse(data) as unknown;
    return isObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

export interface MeteredStreamOptions {
  req: ModelRequest;
  upstream: ReadableStream<Uint8Array>;
  /** Output tokens the agent may receive (what the budgets hold). */
  cap: number;
  meter: Meter;
  /** Aborted at the call's wall-clock cap: the stream is then ended cleanly. */
  deadline: AbortSignal;
}

const DEADLINE = Symbol('deadline');

/**
 * The agent's copy of a provider's SSE stream: passed on event by event, metered into
 * `meter`, ended cleanly at `cap` output tokens or at `deadline`. Destroying it (the agent went
 * away) cancels the upstream read.
 */
export function meteredStream(options: MeteredStreamOptions): Readable {
  const { req, upstream, meter, deadline } = options;
  const budget = new Budget(meter, options.cap);
  const format = req.endpoint === 'messages' ? messagesFormat(budget) : req.endpoint === 'responses' ? responsesFormat(req, budget) : chatFormat(req, budget);
  async function* events(): AsyncGenerator<string> {
    const reader = upstream.getReader();
    const decoder = new TextDecoder();
    const pending: EventSourceMessage[] = [];
    const parser = createParser({ onEvent: (e) => pending.push(e) });
    const aborted = new Promise<typeof DEADLINE>((resolve) => {
      if (deadline.aborted) resolve(DEADLINE);
      else deadline.addEventListener('abort', () => resolve(DEADLINE), { once: true });
    });
    try {
      for (;;) {
        const next = await Promise.race([reader.read(), aborted]);
        if (next === DEADLINE) {
          meter.cut = 'deadline';
          yield format.end().join('');
          return;
        }
        if (next.done) return;
        parser.feed(decoder.decode(next.value, { stream: true }));
        while (pending.length) {
          const { out, done } = format.onEvent(pending.shift()!);
          if (out.length) yield out.join('');
          if (done) return;
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }
  return Readable.from(events(), { objectMode: false });
}
