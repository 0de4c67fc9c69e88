/**
 * The HTTP client of Deputy's upstream MCP sessions: the `fetch` the SDK's
 * `StreamableHTTPClientTransport` is given, on an undici `Agent`'s `request` — the client the
 * HTTP gateway forwards with (src/gateway/forward.ts) — instead of the global WHATWG `fetch`.
 *
 * Why (issue 16, tenth round): the SDK sends every POST with `redirect: 'manual'` (it follows
 * same-origin redirects itself), and for any redirect mode but `error` the global `fetch` clones
 * the request (Fetch §4.5 "HTTP-network-or-cache fetch" step 8.2), teeing the body's
 * `ReadableStream`, then writes the body through an async generator over it; its response body is
 * another web stream fed by a pull loop. Per `tools/call` that was ~80 promises and ~70 KiB of
 * heap more than this adapter (scripts/bench/mcp-fetch-micro.ts), for a string body the SDK
 * already serialized.
 *
 * What stays as `fetch` had it: no redirect is followed (`manual`: the 3xx response is returned
 * as it is, the SDK decides; in any other mode neither: the request carries the server's credential); the abort signal cancels the request or the body being read (the
 * SDK's transport-wide signal on close); a response body the upstream compressed is decoded
 * (gzip, deflate, br, stacked as `fetch` decodes them; an unknown coding errors the body), and
 * bounded after decoding, per JSON answer or SSE event (`fetch` bounded neither: a compression
 * bomb filled the heap), as `fetch` does — Deputy asks for `identity`, which `fetch` did not, so
 * that is only an upstream's choice against the request; the same headers and body timeouts
 * as the global dispatcher's (300 s each: the SDK's GET stream may be idle that long). Nothing
 * goes to the global `fetch` (it followed another mode's redirects, credential and all, and bounded
 * no body): a body other than a string, bytes or `URLSearchParams` is refused.
 *
 * @module
 */
import { pipeline, type Readable } from 'node:stream';
import { Agent } from 'undici';
import { decoderFor } from '../gateway/forward.js';

/** Redirect statuses (Fetch "redirect status"). */
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** Statuses whose response has no body (Fetch "null body status"): `Response` refuses one. */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/**
 * The default bound of one upstream message after decoding: the largest `limits.maxMessageBytes`
 * a server's config may set (src/mcp/config.ts). A JSON answer is bounded whole, an SSE stream
 * per event (a long-lived stream of small events is not).
 */
export const UPSTREAM_MESSAGE_MAX_BYTES = 16 * 1024 * 1024;

/** At most this many stacked content codings are decoded (as undici's `fetch`: a deeper stack is refused). */
const MAX_CODINGS = 5;

/** Options of {@link UpstreamHttp}. */
export interface UpstreamHttpOptions {
  /** Bound of one upstream message after decoding (a JSON body, or one SSE event); default {@link UPSTREAM_MESSAGE_MAX_BYTES}. */
  maxMessageBytes?: number;
}

/** One undici connection pool per upstream origin, shared by every MCP session of the gateway. */
export class UpstreamHttp {
  readonly #agent = new Agent({ keepAliveTimeout: 10_000, headersTimeout: 300_000, bodyTimeout: 300_000 });
  readonly #maxMessageBytes: number;

  constructor(options: UpstreamHttpOptions = {}) {
    this.#maxMessageBytes = options.maxMessageBytes ?? UPSTREAM_MESSAGE_MAX_BYTES;
  }

  /**
   * `fetch(url, init)` for the SDK's client transport (the subset it sends: GET, POST with a
   * JSON string body, DELETE; `redirect: 'manual'`), answered with a WHATWG `Response` whose
   * `url` is empty (the SDK falls back to the request's URL). Rejects as `fetch` does: with the
   * signal's reason when aborted, else the connection's error.
   *
   * Every request goes this way, whatever its redirect mode: none is followed here (the request
   * carries the server's credential, which `fetch` would hand to another origin's redirect but
   * for `Authorization` and `Cookie`; the SDK follows within the origin itself), and `error`
   * rejects on a redirect as `fetch` does.
   *
   * @throws TypeError for a body other than a string, bytes or `URLSearchParams` (the SDK sends none).
   */
  readonly fetch = async (url: string | URL, init: RequestInit = {}): Promise<Response> => {
    const target = typeof url === 'string' ? new URL(url) : url;
    const headers: Record<string, string> = {};
    // The gateway's fetch hands a `Headers` already (not copied again); anything else is normalized as `fetch` would.
    (init.headers instanceof Headers ? init.headers : new Headers(init.headers)).forEach((value, name) => {
      headers[name] = value;
    });
    const body = bodyOf(init.body, headers);
    headers['accept-encoding'] ??= 'identity';
    const method = (init.method ?? 'GET').toUpperCase();
    const res = await this.#agent.request({
      origin: target.origin,
      path: `${target.pathname}${target.search}`,
      method: method as 'GET',
      headers,
      body,
      signal: init.signal ?? undefined,
    });
    if (init.redirect === 'error' && REDIRECTS.has(res.statusCode)) {
      res.body.on('error', () => {}).destroy();
      throw new TypeError('fetch failed: the upstream redirected a request whose redirect mode is "error"');
    }
    return toResponse(res, method, this.#maxMessageBytes);
  };

  /**
   * Ends the pooled connections (shutdown, after the sessions closed): destroyed rather than
   * drained, so a request an upstream never answers cannot hold the shutdown for its 300 s.
   */
  async close(): Promise<void> {
    await this.#agent.destroy();
  }
}

/**
 * undici's answer as a WHATWG `Response`: headers as received, the body as a web stream, decoded
 * when compressed (every stacked coding, as `fetch`) and bounded after decoding ({@link MessageLimit}:
 * a compression bomb or an endless body errors the stream instead of filling the heap). A coding
 * that cannot be decoded errors the body: its bytes are not the message (`/gw` refuses it too).
 */
function toResponse(res: { statusCode: number; headers: Record<string, string | string[] | undefined>; body: Readable }, method: string, maxBytes: number): Response {
  const headers = new Headers();
  for (const name in res.headers) {
    const value = res.headers[name];
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else if (value !== undefined) headers.append(name, value);
  }
  if (NULL_BODY.has(res.statusCode) || method === 'HEAD') {
    res.body.resume();
    return new Response(null, { status: res.statusCode, headers });
  }
  const decoders = decodersFor(headers.get('content-encoding'));
  if (decoders === undefined) {
    // undici reports a body destroyed without a reason as an error (UND_ERR_ABORTED): expected here.
    res.body.on('error', () => {}).destroy();
    return new Response(failing('the upstream answered with a content-encoding that cannot be decoded'), { status: res.statusCode, headers });
  }
  // Decoding changes the length: the declared one is no longer the body's.
  if (decoders.length > 0) headers.delete('content-length');
  const events = (headers.get('content-type') ?? '').toLowerCase().startsWith('text/event-stream');
  // An error on any stage destroys them all (the upstream's body too: its connection is not reused).
  const stream = decoders.length === 0 ? res.body : (pipeline([res.body, ...decoders], () => {}) as unknown as Readable);
  return new Response(boundedWebStream(stream, new MessageLimit(maxBytes, events)), { status: res.statusCode, headers });
}

/**
 * `Readable.toWeb` with {@link MessageLimit} folded into its `data` listener (a `Transform` stage
 * on every response cost ~13 KiB of heap per call): backpressure by pausing the node stream,
 * `cancel` destroys it, a message over the bound errors the web stream and destroys the node one.
 */
function boundedWebStream(stream: Readable, limit: MessageLimit): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      stream.on('data', (chunk: Buffer) => {
        const exceeded = limit.count(chunk);
        if (exceeded) {
          controller.error(exceeded);
          stream.destroy();
          return;
        }
        controller.enqueue(chunk);
        if ((controller.desiredSize ?? 0) <= 0) stream.pause();
      });
      stream.once('end', () => controller.close());
      stream.once('error', (err) => controller.error(err));
    },
    pull() {
      stream.resume();
    },
    cancel(reason) {
      stream.on('error', () => {}).destroy(reason instanceof Error ? reason : undefined);
    },
  });
}

/** The decoders of a `content-encoding` value, last applied first (none for `identity`); undefined when one is unknown or there are too many. */
function decodersFor(header: string | null): NodeJS.ReadWriteStream[] | undefined {
  if (header === null) return [];
  const codings = header.toLowerCase().split(',').map((c) => c.trim()).filter((c) => c !== '' && c !== 'identity');
  if (codings.length > MAX_CODINGS) return undefined;
  const decoders: NodeJS.ReadWriteStream[] = [];
  for (const coding of codings.reverse()) {
    const decoder = decoderFor(coding);
    if (!decoder) return undefined;
    decoders.push(decoder);
  }
  return decoders;
}

/**
 * A request body as undici's `request` takes it: a string or bytes as they are, `URLSearchParams`
 * as `fetch` encodes it (with its default `content-type`), no body as null.
 *
 * @throws TypeError for any other body (a stream, a form, a blob): the SDK sends none.
 */
function bodyOf(body: RequestInit['body'], headers: Record<string, string>): string | Uint8Array | null {
  if (body === undefined || body === null || typeof body === 'string') return body ?? null;
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  if (body instanceof URLSearchParams) {
    headers['content-type'] ??= 'application/x-www-form-urlencoded;charset=UTF-8';
    return body.toString();
  }
  throw new TypeError('the MCP upstream client sends a string, bytes or URLSearchParams as a body');
}

/** A body stream that errors at once (what the SDK reads from a response it must not use). */
function failing(message: string): ReadableStream<Uint8Array> {
  return new ReadableStream({ start: (controller) => controller.error(new Error(message)) });
}

/**
 * Bounds an upstream message after decoding: a JSON body whole; an SSE stream per event (the
 * bytes since its last blank line, found per chunk and across one chunk edge — a boundary split
 * over more chunks is missed, which only counts longer until the next one).
 */
class MessageLimit {
  #since = 0;
  #lastByte = -1;
  constructor(readonly max: number, readonly events: boolean) {}

  /** Counts `chunk`: the error to end the body with once the message passes the bound, else undefined. */
  count(chunk: Buffer): Error | undefined {
    let since = this.#since + chunk.length;
    if (this.events && chunk.length > 0) {
      const end = eventEnd(chunk, this.#lastByte);
      if (end >= 0) since = chunk.length - end;
      this.#lastByte = chunk[chunk.length - 1]!;
    }
    this.#since = since;
    return since > this.max ? new Error(`the upstream MCP message exceeds ${this.max} bytes`) : undefined;
  }
}

const LF = 0x0a;
const CR = 0x0d;

/** The offset just past the last SSE event boundary (a blank line) in `chunk`, -1 for none; `before` is the previous chunk's last byte. */
function eventEnd(chunk: Buffer, before: number): number {
  const end = Math.max(at(chunk.lastIndexOf('\n\n'), 2), at(chunk.lastIndexOf('\r\r'), 2), at(chunk.lastIndexOf('\n\r\n'), 3));
  if (end >= 0) return end;
  if (before === LF && chunk[0] === LF) return 1;
  if (before === CR && chunk[0] === CR) return 1;
  if (before === LF && chunk[0] === CR && chunk[1] === LF) return 2;
  return -1;
}

const at = (index: number, length: number): number => (index < 0 ? -1 : index + length);
