/**
 * The MCP gateway's upstream HTTP client (src/mcp/upstream-http.ts) against a hostile upstream:
 * what it hands the SDK is bounded after decoding (a compression bomb, an endless JSON body, an
 * SSE event that never ends), stacked content codings are decoded as `fetch` would, and a coding
 * it cannot decode is refused rather than handed on as if it were the message.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpstreamHttp } from '../../src/mcp/upstream-http.js';

const LIMIT = 64 * 1024;
const MESSAGE = Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { ok: true } }));
let url = '';
let server: ReturnType<typeof createServer>;
const http = new UpstreamHttp({ maxMessageBytes: LIMIT });
/** Bytes the upstream wrote for the endless answers (they stop once the client stops reading). */
let written = 0;

const routes: Record<string, (res: ServerResponse) => void> = {
  '/bomb': (res) => res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }).end(gzipSync(Buffer.alloc(LIMIT * 64, 0x20))),
  '/endless-json': (res) => endless(res, 'application/json', Buffer.alloc(16 * 1024, 0x20)),
  '/endless-event': (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('event: message\ndata: ');
    endless(res, undefined, Buffer.alloc(16 * 1024, 0x61));
  },
  '/events': (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const event = Buffer.from(`event: message\ndata: ${JSON.stringify({ pad: 'x'.repeat(LIMIT / 4) })}\n\n`);
    for (let i = 0; i < 16; i += 1) res.write(event);
    res.end();
  },
  // Three events in one write (one chunk at the client): the middle one over the limit.
  '/one-chunk': (res) => {
    const event = (n: number, sep: string) => `event: message${sep}data: ${JSON.stringify({ pad: 'x'.repeat(n) })}${sep}${sep}`;
    res.writeHead(200, { 'content-type': 'text/event-stream' }).end(event(10, '\n') + event(LIMIT * 2, '\r\n') + event(10, '\n'));
  },
  '/one-chunk-fits': (res) => {
    const event = (sep: string) => `event: message${sep}data: ${JSON.stringify({ pad: 'x'.repeat(LIMIT / 2) })}${sep}${sep}`;
    res.writeHead(200, { 'content-type': 'text/event-stream' }).end(event('\n') + event('\r\n') + event('\r') + event('\n'));
  },
  '/small-one-chunk': (res) => {
    const event = (n: number) => `event: message\ndata: ${JSON.stringify({ pad: 'x'.repeat(n) })}\n\n`;
    res.writeHead(200, { 'content-type': 'text/event-stream' }).end(event(10) + event(2048) + event(10));
  },
  // A refusal labelled as an event stream: many small events, together four times the limit.
  '/error-events': (res) => {
    res.writeHead(500, { 'content-type': 'text/event-stream' });
    const event = Buffer.from(`event: message\ndata: ${'e'.repeat(1000)}\n\n`);
    for (let i = 0; i < (LIMIT * 4) / event.length; i += 1) res.write(event);
    res.end();
  },
  // Events ended by LF then CR (an LF-ended line, then an empty line ended by CR: a blank line).
  '/lf-cr-events': (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const event = Buffer.from(`event: message\ndata: ${JSON.stringify({ pad: 'x'.repeat(1000) })}\n\r`);
    for (let i = 0; i < (LIMIT * 4) / event.length; i += 1) res.write(event);
    res.end();
  },
  // `?n=` bytes: a JSON body of exactly n bytes; an event of exactly n bytes with its blank line, written
  // in one chunk or split just before its blank line (`&split`); multi-byte characters in both.
  '/exact': () => undefined,
  '/json': (res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ pad: 'x'.repeat(2048) })),
  '/stacked': (res) => res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip, br' }).end(brotliCompressSync(gzipSync(MESSAGE))),
  '/capitals': (res) => res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': ' GZIP , identity,Br' }).end(brotliCompressSync(gzipSync(MESSAGE))),
  '/six': (res) => res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip, gzip, gzip, gzip, gzip, gzip' }).end([0, 1, 2, 3, 4, 5].reduce((b) => gzipSync(b), MESSAGE)),
  '/stacked-bomb': (res) => res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip, gzip' }).end(gzipSync(gzipSync(Buffer.alloc(LIMIT * 64, 0x20)))),
  '/unknown': (res) => res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'zstd-ish' }).end(MESSAGE),
};

/** `/exact`: a body of exactly `n` bytes (JSON, or one SSE event with its blank line), padded with 'é' (2 bytes each). */
function exact(q: URLSearchParams, res: ServerResponse): void {
  const n = Number(q.get('n'));
  const sse = q.has('sse');
  const head = sse ? 'data: "' : '"';
  const tail = sse ? '"\n\n' : '"';
  const room = n - Buffer.byteLength(head + tail);
  const body = Buffer.from(head + 'é'.repeat(Math.floor(room / 2)) + 'x'.repeat(room % 2) + tail);
  res.writeHead(200, { 'content-type': sse ? 'text/event-stream' : 'application/json' });
  if (q.has('split')) {
    res.write(body.subarray(0, body.length - 2));
    setTimeout(() => res.end(body.subarray(body.length - 2)), 20);
  } else res.end(body);
}

/** Writes `chunk` while the client reads (a body with no end). */
function endless(res: ServerResponse, type: string | undefined, chunk: Buffer): void {
  if (type) res.writeHead(200, { 'content-type': type });
  const more = () => {
    while (!res.destroyed && res.write(chunk)) written += chunk.length;
  };
  res.on('drain', more);
  more();
}

beforeAll(async () => {
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    if (req.url?.startsWith('/exact?')) return exact(new URL(req.url, 'http://x').searchParams, res);
    (routes[req.url ?? ''] ?? ((r: ServerResponse) => r.writeHead(404).end()))(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await http.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const post = (path: string) => http.fetch(`${url}${path}`, { method: 'POST', body: '{}', redirect: 'manual', headers: { 'content-type': 'application/json' } });

describe('UpstreamHttp bounds what a hostile upstream sends', () => {
  it('refuses a compression bomb once its decoded size passes the limit', async () => {
    const res = await post('/bomb');
    await expect(res.arrayBuffer()).rejects.toThrow();
  });

  it('refuses an endless JSON body', async () => {
    const res = await post('/endless-json');
    await expect(res.text()).rejects.toThrow();
    expect(written).toBeLessThan(LIMIT * 64);
  });

  it('refuses an SSE event that never ends, but not a long stream of small events', async () => {
    const res = await post('/endless-event');
    await expect(res.text()).rejects.toThrow();
    const fine = await post('/events');
    expect((await fine.text()).length).toBeGreaterThan(LIMIT * 2);
  });

  it('refuses an SSE event over the limit that begins and ends inside one chunk; events that fit pass, whatever their line ends (issue 16, eleventh round)', async () => {
    await expect((await post('/one-chunk')).text()).rejects.toThrow(/exceeds/);
    expect((await (await post('/one-chunk-fits')).text()).length).toBeGreaterThan(LIMIT * 2);
    // Small enough to arrive in one chunk: only the bytes after the chunk's last blank line were counted.
    const small = new UpstreamHttp({ maxMessageBytes: 1024 });
    try {
      await expect((await small.fetch(`${url}/small-one-chunk`, { method: 'POST', body: '{}' })).text()).rejects.toThrow(/exceeds 1024 bytes/);
    } finally {
      await small.close();
    }
  });

  it('a request\'s own bound (a server\'s limits.maxUpstreamMessageBytes) replaces the client\'s', async () => {
    const fetchWith = (path: string, bound: number) => http.fetch(`${url}${path}`, { method: 'POST', body: '{}', redirect: 'manual' }, bound);
    await expect((await fetchWith('/json', 1024)).text()).rejects.toThrow(/exceeds 1024 bytes/);
    expect((await (await fetchWith('/json', 4096)).text()).length).toBeGreaterThan(2048);
    await expect((await fetchWith('/one-chunk-fits', 1024)).text()).rejects.toThrow(/exceeds 1024 bytes/);
  });

  it('red team, eleventh round: a non-2xx answer labelled text/event-stream is bounded whole — the SDK reads it with text(), never as events', async () => {
    // The SDK (client/streamableHttp.js) parses events only from an ok answer; any other it reads
    // whole for its error message. Counted per event, small events reset the count and an
    // upstream could stream a refusal without end into the heap.
    await expect((await post('/error-events')).text()).rejects.toThrow(/exceeds/);
  });

  it('red team, eleventh round: an event ended by LF then CR (a blank line, SSE §9.2.5) ends the count, as the SDK\'s parser dispatches it', async () => {
    const text = await (await post('/lf-cr-events')).text();
    expect(text.length).toBeGreaterThan(LIMIT * 2);
  });

  it('red team, eleventh round: exactly the bound passes, one byte over fails — JSON whole, an event with its blank line, in one chunk or two, multi-byte characters counted as bytes', async () => {
    const get = (q: string) => http.fetch(`${url}/exact?${q}`, { method: 'POST', body: '{}', redirect: 'manual' }, 1024);
    for (const shape of ['', '&sse', '&sse&split']) {
      expect(Buffer.byteLength(await (await get(`n=1024${shape}`)).text())).toBe(1024);
      await expect((await get(`n=1025${shape}`)).text()).rejects.toThrow(/exceeds 1024 bytes/);
    }
  });

  it('decodes stacked content codings (gzip, br) as fetch does', async () => {
    const res = await post('/stacked');
    expect(await res.json()).toEqual(JSON.parse(MESSAGE.toString()));
  });

  it('refuses a content coding it cannot decode', async () => {
    const res = await post('/unknown');
    await expect(res.text()).rejects.toThrow();
  });

  it('red team, second pass: codings in capitals, with spaces and identity mixed in are decoded; a bomb under two codings is bounded; six stacked codings are refused', async () => {
    expect(await (await post('/capitals')).json()).toEqual(JSON.parse(MESSAGE.toString()));
    await expect((await post('/stacked-bomb')).arrayBuffer()).rejects.toThrow();
    await expect((await post('/six')).text()).rejects.toThrow();
  });
});
