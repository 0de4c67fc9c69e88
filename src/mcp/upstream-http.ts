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
import { DEFAULT_UPSTREAM_MESSAGE_BYTES } from './config.js';

/** Redirect statuses (Fetch "redirect status"). */
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** Statuses whose response has no body (Fetch "null body status"): `Response` refuses one. */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/**
 * The default bound of one upstream message after decoding: a server's
 * `limits.maxUpstreamMessageBytes` when its config does not set it (src/mcp/config.ts). A JSON
 * answer is bounded whole, an SSE stream per event (a long-lived stream of small events is not).
 */
export const UPSTREAM_MESSAGE_MAX_BYTES = DEFAULT_UPSTREAM_MESSAGE_BYTES;

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
   * `maxMessageBytes`: this request's bound of one message after decoding (the server's
   * `limits.maxUpstreamMessageBytes`); the client's own ({@link UpstreamHttpOptions}) when absent.
   *
   * @throws TypeError for a body other than a string, bytes or `URLSearchParams` (the SDK sends none).
   */
  readonly fetch = async (url: string | URL, init: RequestInit = {}, maxMessageBytes: number = this.#maxMessageBytes): Promise<Response> => {
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
    return toResponse(res, method, maxMessageBytes);
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
  // Per event only for an ok answer: the SDK parses events from nothing else, and reads any other
  // answer whole (`response.text()`, its error message) — counted per event, a refusal labelled
  // `text/event-stream` made of small events would fill the heap without end (red team, issue 16
  // eleventh round).
  const events = res.statusCode >= 200 && res.statusCode < 300 && (headers.get('content-type') ?? '').toLowerCase().startsWith('text/event-stream');
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
 * Bounds an upstream message after decoding: a JSON body (and any answer other than 2xx) whole; an SSE stream per event — every
 * event, including those that begin and end inside one chunk (before issue 16's eleventh round
 * only the bytes after a chunk's last blank line were counted, so an oversize event that arrived
 * in one chunk passed: harmless at 16 MiB, whose events span many chunks, not at a server's
 * small `maxUpstreamMessageBytes`). Boundaries are blank lines (`\n\n`, `\r\r`, `\n\r`, `\n\r\n`), found
 * across chunk edges too (the previous chunk's last two bytes are kept).
 */
class MessageLimit {
  #since = 0;
  /** The previous chunk's last two bytes (-1: none), for a boundary split over the edge. */
  #prev = -1;
  #prev2 = -1;
  constructor(readonly max: number, readonly events: boolean) {}

  /** Counts `chunk`: the error to end the body with once a message passes the bound, else undefined. */
  count(chunk: Buffer): Error | undefined {
    if (!this.events) {
      this.#since += chunk.length;
      return this.#since > this.max ? this.#tooLarge() : undefined;
    }
    let start = 0;
    // The next LF and the next CR, each searched again only once passed: linear in the chunk.
    let lf = chunk.indexOf(LF);
    let cr = chunk.indexOf(CR);
    while (lf >= 0 || cr >= 0) {
      const i = lf < 0 ? cr : cr < 0 ? lf : Math.min(lf, cr);
      if (i === lf) lf = chunk.indexOf(LF, i + 1);
      else cr = chunk.indexOf(CR, i + 1);
      const b = chunk[i]!;
      const p = i > 0 ? chunk[i - 1]! : this.#prev;
      const p2 = i > 1 ? chunk[i - 2]! : i === 1 ? this.#prev : this.#prev2;
      // Two line ends in a row (CRLF, LF or CR each: SSE §9.2.5): LF LF, LF CRLF, CR CR, and LF CR
      // (an LF-ended line, then an empty one ended by CR: the SDK's parser dispatches there too).
      const blank = (b === LF && (p === LF || (p === CR && p2 === LF))) || (b === CR && (p === CR || p === LF));
      if (!blank) continue;
      // An event ends here: its bytes are those carried over plus this chunk's up to the boundary.
      if (this.#since + (i + 1 - start) > this.max) return this.#tooLarge();
      this.#since = 0;
      start = i + 1;
    }
    this.#since += chunk.length - start;
    if (chunk.length >= 2) {
      this.#prev2 = chunk[chunk.length - 2]!;
      this.#prev = chunk[chunk.length - 1]!;
    } else if (chunk.length === 1) {
      this.#prev2 = this.#prev;
      this.#prev = chunk[0]!;
    }
    return this.#since > this.max ? this.#tooLarge() : undefined;
  }

  #tooLarge(): Error {
    return new Error(`the upstream MCP message exceeds ${this.max} bytes`);
  }
}

const LF = 0x0a;
const CR = 0x0d;

