/**
 * Pure budget and LLM-gateway logic: windows in a time zone (DST included), prices, reading
 * provider requests, and the metered stream's clean cut in each provider's format.
 */
import { text } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { costOf, PriceTable, windowAt, zonedMidnight } from '../../src/budgets/index.js';
import { budgetsConfigSchema } from '../../src/budgets/config.js';
import { meteredStream, newMeter } from '../../src/llm/stream.js';
import { endpointOf, outputTextOf, parseModelRequest, upstreamBody, usageOf } from '../../src/llm/wire.js';

describe('budget windows', () => {
  it('day and month windows start at local midnight in the configured zone, across DST', () => {
    // 2026-03-29: Paris moves from UTC+1 to UTC+2 at 02:00; the day is 23 hours long.
    const w = windowAt('day', new Date('2026-03-29T12:00:00Z'), 'Europe/Paris');
    expect(w.start.toISOString()).toBe('2026-03-28T23:00:00.000Z');
    expect(w.resetsAt!.toISOString()).toBe('2026-03-29T22:00:00.000Z');
    expect(windowAt('month', new Date('2026-03-31T22:30:00Z'), 'Europe/Paris')).toEqual({ start: new Date('2026-03-31T22:00:00.000Z'), resetsAt: new Date('2026-04-30T22:00:00.000Z') });
    expect(windowAt('month', new Date('2026-12-31T23:59:59Z'), 'UTC')).toEqual({ start: new Date('2026-12-01T00:00:00Z'), resetsAt: new Date('2027-01-01T00:00:00Z') });
    expect(windowAt('day', new Date('2026-06-01T03:00:00Z'), 'America/Los_Angeles').start.toISOString()).toBe('2026-05-31T07:00:00.000Z');
    expect(windowAt('total', new Date(), 'UTC')).toEqual({ start: new Date(0), resetsAt: undefined });
    expect(zonedMidnight(2026, 1, 1, 'Asia/Kolkata').toISOString()).toBe('2025-12-31T18:30:00.000Z');
  });

  it('the window found last is reused only for instants inside it: walking forward and back across DST and month ends, each answer holds its instant and starts at local midnight', () => {
    const localHour = (d: Date, timeZone: string) => Number(new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', hour: 'numeric' }).format(d));
    const localDay = (d: Date, timeZone: string) => Number(new Intl.DateTimeFormat('en-US', { timeZone, day: 'numeric' }).format(d));
    const from = Date.parse('2026-03-27T00:00:00Z');
    // Every 7 hours over a week holding Paris's spring DST change and a month end, then back again
    // (a clock stepped back, a test's injected `now`), in two zones alternately.
    const steps = Array.from({ length: 24 }, (_, i) => from + i * 7 * 3600_000);
    for (const at of [...steps, ...steps.reverse()]) {
      for (const timeZone of ['Europe/Paris', 'America/Los_Angeles']) {
        const now = new Date(at);
        const day = windowAt('day', now, timeZone);
        const month = windowAt('month', now, timeZone);
        for (const w of [day, month]) {
          expect(w.start.getTime()).toBeLessThanOrEqual(at);
          expect(w.resetsAt!.getTime()).toBeGreaterThan(at);
          expect(localHour(w.start, timeZone)).toBe(0);
        }
        expect(localDay(month.start, timeZone)).toBe(1);
        expect(day.resetsAt!.getTime() - day.start.getTime()).toBeLessThanOrEqual(25 * 3600_000);
      }
    }
  });

  it('a DST jump at local midnight west of UTC (Santiago in September, Havana in March): the new day starts at its first instant, every instant\'s window holds it, whatever window was found before', () => {
    const cases = [
      { timeZone: 'America/Santiago', before: '2026-09-06T03:30:00Z', dayStart: '2026-09-06T04:00:00.000Z', monthEnd: '2026-09-01T04:00:00.000Z' },
      { timeZone: 'America/Havana', before: '2026-03-08T04:30:00Z', dayStart: '2026-03-08T05:00:00.000Z', monthEnd: '2026-03-01T05:00:00.000Z' },
    ];
    for (const { timeZone, before, dayStart, monthEnd } of cases) {
      // The last local hour of the day before the jump, asked fresh and after the next day was found.
      const at = new Date(before);
      const fresh = windowAt('day', at, timeZone);
      windowAt('day', new Date(Date.parse(dayStart) + 3600_000), timeZone);
      const afterNextDay = windowAt('day', at, timeZone);
      for (const w of [fresh, afterNextDay]) {
        expect(w.start.getTime()).toBeLessThanOrEqual(at.getTime());
        expect(w.resetsAt!.toISOString()).toBe(dayStart);
      }
      const [y, m, d] = dayStart.slice(0, 10).split('-').map(Number) as [number, number, number];
      // The day's first instant is 01:00 local (00:00 does not exist), not 23:00 the day before.
      expect(zonedMidnight(y, m, d + 1, timeZone).toISOString() > dayStart).toBe(true);
      expect(zonedMidnight(y, m, d, timeZone).toISOString()).toBe(dayStart);
      expect(windowAt('day', new Date(dayStart), timeZone).start.toISOString()).toBe(dayStart);
      expect(zonedMidnight(y, m, 1, timeZone).toISOString()).toBe(monthEnd);
    }
  });

  it('the configuration refuses an unknown time zone, a bad currency and duplicate budget ids', () => {
    expect(budgetsConfigSchema.safeParse({ timeZone: 'Mars/Olympus' }).success).toBe(false);
    expect(budgetsConfigSchema.safeParse({ currency: 'usd' }).success).toBe(false);
    const dup = { id: 'a', unit: 'requests', window: 'day', limit: 1 };
    expect(budgetsConfigSchema.safeParse({ limits: [dup, dup] }).success).toBe(false);
    expect(budgetsConfigSchema.parse({})).toMatchObject({ timeZone: 'UTC', currency: 'USD', limits: [], prices: {} });
  });
});

describe('prices', () => {
  it('costs round up, per million tokens plus a per-request price', () => {
    const p = { input: 150_000, output: 600_000, request: 0 };
    expect(costOf(p, { inputTokens: 1, outputTokens: 0 })).toBe(1);
    expect(costOf(p, { inputTokens: 1000, outputTokens: 1000 })).toBe(750);
    expect(new PriceTable({ m: { ...p, request: 7 } }).cost('m', { inputTokens: 0, outputTokens: 0 })).toBe(7);
    expect(new PriceTable({}).cost('m', { inputTokens: 1, outputTokens: 1 })).toBeUndefined();
  });
});

describe('provider requests', () => {
  it('routes only the endpoints of the connection\'s provider', () => {
    expect(endpointOf('openai', 'POST', '/v1/chat/completions')).toBe('chat');
    expect(endpointOf('anthropic', 'GET', '/v1/models')).toBe('models');
    expect(() => endpointOf('anthropic', 'POST', '/v1/chat/completions')).toThrow(/not an endpoint/);
    expect(() => endpointOf('openai', 'POST', '/v1/files')).toThrow(/not an endpoint/);
  });

  it('reads model, cap, tools and the prompt estimate; refuses what it cannot read', () => {
    const r = parseModelRequest('chat', { model: 'm', max_completion_tokens: 9, stream: true, messages: [{ role: 'user', content: 'hello' }], tools: [{ type: 'function', function: { name: 'search' } }] });
    expect(r).toMatchObject({ model: 'm', maxTokens: 9, stream: true, tools: ['search'] });
    expect(r.inputTokens).toBeGreaterThan(1 + 4);
    expect(upstreamBody(r, 5)).toMatchObject({ max_completion_tokens: 5, stream_options: { include_usage: true } });
    expect(() => parseModelRequest('chat', [])).toThrow(/JSON object/);
    expect(() => parseModelRequest('chat', { messages: [] })).toThrow(/model is required/);
    expect(() => parseModelRequest('messages', { model: 'c', messages: [] })).toThrow(/max_tokens is required/);
    expect(() => parseModelRequest('chat', { model: 'm', max_tokens: 1.5 })).toThrow(/positive integer/);
    expect(parseModelRequest('embeddings', { model: 'e', input: ['a', 'b'] }).maxTokens).toBe(0);
    // Special-token text in a prompt is counted as text, not refused.
    expect(parseModelRequest('chat', { model: 'm', max_tokens: 1, messages: [{ role: 'user', content: '<|endoftext|>' }] }).inputTokens).toBeGreaterThan(1);
  });

  it('normalises usage of each format', () => {
    expect(usageOf('chat', { usage: { prompt_tokens: 3, completion_tokens: 4 } })).toEqual({ inputTokens: 3, outputTokens: 4 });
    expect(usageOf('messages', { usage: { input_tokens: 3, cache_read_input_tokens: 2, output_tokens: 4 } })).toEqual({ inputTokens: 5, outputTokens: 4 });
    expect(usageOf('chat', { usage: { prompt_tokens: -1 } })).toBeUndefined();
    expect(usageOf('chat', {})).toBeUndefined();
  });
});

/** A provider stream made of the given SSE text, delivered in small pieces (events split across reads). */
function upstream(sse: string): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(sse);
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (i >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(i, i + 7));
      i += 7;
    },
  });
}

const never = new AbortController().signal;

describe('metered streams', () => {
  it('OpenAI chat: a delta past the cap is truncated and the stream ends with finish_reason length and [DONE]', async () => {
    const chunk = (content: string) => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
    const req = parseModelRequest('chat', { model: 'm', max_tokens: 99, stream: true, messages: [] });
    const meter = newMeter();
    const out = await text(meteredStream({ req, upstream: upstream(chunk(' hello hello') + chunk(' hello hello') + 'data: [DONE]\n\n'), cap: 3, meter, deadline: never }));
    const events = out.trim().split('\n\n').map((e) => e.replace(/^data: /, ''));
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { choices: Array<{ delta: { content?: string }; finish_reason: string | null }> });
    expect(chunks.map((c) => c.choices[0]!.delta.content ?? '').join('')).toBe(' hello hello hello');
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('length');
    expect(meter).toMatchObject({ delivered: 3, cut: 'budget' });
  });

  it('Anthropic: the cut closes the block, says max_tokens with the tokens delivered, then message_stop', async () => {
    const ev = (type: string, o: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...o })}\n\n`;
    const req = parseModelRequest('messages', { model: 'c', max_tokens: 99, stream: true, messages: [] });
    const meter = newMeter();
    const sse = ev('message_start', { message: { usage: { input_tokens: 7 } } }) + ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } })
      + ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: ' hello hello' } }) + ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: ' hello' } });
    const out = await text(meteredStream({ req, upstream: upstream(sse), cap: 1, meter, deadline: never }));
    const types = [...out.matchAll(/^event: (\S+)$/gm)].map((m) => m[1]);
    expect(types).toEqual(['message_start', 'content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
    expect(out).toContain('"stop_reason":"max_tokens"');
    expect(out).toContain('"output_tokens":1');
    expect(meter).toMatchObject({ delivered: 1, cut: 'budget', usage: { inputTokens: 7 } });
  });

  it('OpenAI Responses: the cut ends with response.incomplete (max_output_tokens) carrying the usage delivered', async () => {
    const ev = (type: string, o: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...o })}\n\n`;
    const req = parseModelRequest('responses', { model: 'm', max_output_tokens: 99, stream: true, input: 'hi' });
    const meter = newMeter();
    const sse = ev('response.created', { sequence_number: 0, response: { id: 'resp_1', object: 'response', model: 'm', status: 'in_progress', output: [] } })
      + ev('response.output_text.delta', { sequence_number: 1, item_id: 'msg_1', output_index: 0, content_index: 0, delta: ' hello hello' })
      + ev('response.output_text.delta', { sequence_number: 2, item_id: 'msg_1', output_index: 0, content_index: 0, delta: ' hello' });
    const out = await text(meteredStream({ req, upstream: upstream(sse), cap: 2, meter, deadline: never }));
    const last = JSON.parse(out.trim().split('\n').at(-1)!.replace(/^data: /, '')) as { type: string; sequence_number: number; response: { id: string; status: string; incomplete_details: { reason: string }; usage: { output_tokens: number } } };
    expect(last).toMatchObject({ type: 'response.incomplete', sequence_number: 3, response: { id: 'resp_1', status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' }, usage: { output_tokens: 2 } } });
    expect(meter).toMatchObject({ delivered: 2, cut: 'budget' });
  });

  it('OpenAI Responses: a cut mid-message closes the open part and item (incomplete) and the final response carries the text delivered', async () => {
    const ev = (type: string, o: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...o })}\n\n`;
    const req = parseModelRequest('responses', { model: 'm', max_output_tokens: 99, stream: true, input: 'hi' });
    const at = { item_id: 'msg_1', output_index: 0, content_index: 0 };
    const sse = ev('response.created', { sequence_number: 0, response: { id: 'resp_1', object: 'response', model: 'm', status: 'in_progress', output: [] } })
      + ev('response.output_item.added', { sequence_number: 1, output_index: 0, item: { type: 'message', id: 'msg_1', status: 'in_progress', role: 'assistant', content: [] } })
      + ev('response.content_part.added', { sequence_number: 2, ...at, part: { type: 'output_text', text: '', annotations: [] } })
      + ev('response.output_text.delta', { sequence_number: 3, ...at, delta: ' hello' })
      + ev('response.output_text.delta', { sequence_number: 4, ...at, delta: ' hello hello' });
    const out = await text(meteredStream({ req, upstream: upstream(sse), cap: 2, meter: newMeter(), deadline: never }));
    const events = out.trim().split('\n\n').map((e) => JSON.parse(e.split('\n').at(-1)!.replace(/^data: /, '')) as { type: string; sequence_number: number } & Record<string, unknown>);
    expect(events.slice(4).map((e) => [e.type, e.sequence_number])).toEqual([
      ['response.output_text.delta', 4], ['response.output_text.done', 5], ['response.content_part.done', 6], ['response.output_item.done', 7], ['response.incomplete', 8],
    ]);
    expect(events[5]).toMatchObject({ text: ' hello hello' });
    const item = { type: 'message', id: 'msg_1', status: 'incomplete', content: [{ type: 'output_text', text: ' hello hello' }] };
    expect(events[7]).toMatchObject({ item });
    expect(events[8]).toMatchObject({ response: { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' }, output: [item], usage: { output_tokens: 2 } } });
  });

  it('ends cleanly at the deadline, with what was delivered so far', async () => {
    const req = parseModelRequest('chat', { model: 'm', max_tokens: 99, stream: true, messages: [] });
    const meter = newMeter();
    const deadline = new AbortController();
    const first = `data: ${JSON.stringify({ id: 'c1', choices: [{ index: 0, delta: { content: ' hello' } }] })}\n\n`;
    const stalled = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(first));
        queueMicrotask(() => deadline.abort());
      },
    });
    const out = await text(meteredStream({ req, upstream: stalled, cap: 99, meter, deadline: deadline.signal }));
    expect(out).toContain('"finish_reason":"length"');
    expect(out.trim().endsWith('data: [DONE]')).toBe(true);
    expect(meter).toMatchObject({ delivered: 1, cut: 'deadline' });
  });
});

describe('output counted without usage', () => {
  it('a non-streamed chat message of tool calls only is counted as the stream of it would be (it counted nothing)', () => {
    const args = JSON.stringify({ repo: 'acme/site', body: 'x'.repeat(400) });
    const body = { choices: [{ index: 0, message: { role: 'assistant', content: null, refusal: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'create_issue', arguments: args } }] } }] };
    expect(outputTextOf('chat', body)).toBe(args);
    const both = { choices: [{ message: { role: 'assistant', content: 'Filing it.', tool_calls: [{ type: 'function', function: { name: 'f', arguments: '{"a":1}' } }] } }] };
    expect(outputTextOf('chat', both)).toBe('Filing it.{"a":1}');
    expect(outputTextOf('chat', { choices: [{ message: { role: 'assistant', refusal: 'No.' } }] })).toBe('No.');
  });
});
