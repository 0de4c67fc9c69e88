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
 * as it is, the SDK decides); the abort signal cancels the request or the body being read (the
 * SDK's transport-wide signal on close); a response body the upstream compressed is decoded
 * (gzip, deflate, br), as `fetch` does — Deputy asks for `identity`, which `fetch` did not, so
 * that is only an upstream's choice against the request; the same headers and body timeouts
 * as the global dispatcher's (300 s each: the SDK's GET stream may be idle that long). A request
 * this adapter does not take as it is (a body other than a string, another redirect mode) goes to
 * the global `fetch` unchanged.
 *
 * @module
 */
import { pipeline, Readable } from 'node:stream';
import { Agent } from 'undici';
import { decoderFor } from '../gateway/forward.js';

/** Statuses whose response has no body (Fetch "null body status"): `Response` refuses one. */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/** One undici connection pool per upstream origin, shared by every MCP session of the gateway. */
export class UpstreamHttp {
  readonly #agent = new Agent({ keepAliveTimeout: 10_000, headersTimeout: 300_000, bodyTimeout: 300_000 });

  /**
   * `fetch(url, init)` for the SDK's client transport (the subset it sends: GET, POST with a
   * JSON string body, DELETE; `redirect: 'manual'`), answered with a WHATWG `Response` whose
   * `url` is empty (the SDK falls back to the request's URL). Rejects as `fetch` does: with the
   * signal's reason when aborted, else the connection's error.
   */
  readonly fetch = async (url: string | URL, init: RequestInit = {}): Promise<Response> => {
    const body = init.body ?? undefined;
    if ((body !== undefined && typeof body !== 'string') || init.redirect !== 'manual') return fetch(url, init);
    const target = typeof url === 'string' ? new URL(url) : url;
    const headers: Record<string, string> = {};
    // The gateway's fetch hands a `Headers` already (not copied again); anything else is normalized as `fetch` would.
    (init.headers instanceof Headers ? init.headers : new Headers(init.headers)).forEach((value, name) => {
      headers[name] = value;
    });
    headers['accept-encoding'] ??= 'identity';
    const method = (init.method ?? 'GET').toUpperCase();
    const res = await this.#agent.request({
      origin: target.origin,
      path: `${target.pathname}${target.search}`,
      method: method as 'GET',
      headers,
      body: body ?? null,
      signal: init.signal ?? undefined,
    });
    return toResponse(res, method);
  };

  /**
   * Ends the pooled connections (shutdown, after the sessions closed): destroyed rather than
   * drained, so a request an upstream never answers cannot hold the shutdown for its 300 s.
   */
  async close(): Promise<void> {
    await this.#agent.destroy();
  }
}

/** undici's answer as a WHATWG `Response`: headers as received, the body as a web stream (decoded when compressed). */
function toResponse(res: { statusCode: number; headers: Record<string, string | string[] | undefined>; body: Readable }, method: string): Response {
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
  const encoding = (headers.get('content-encoding') ?? '').toLowerCase().trim();
  const decoder = encoding === '' || encoding === 'identity' ? undefined : decoderFor(encoding);
  let stream: Readable = res.body;
  if (decoder) {
    // What `fetch` hands over decoded (an error on either side destroys both); the length is no longer the declared one.
    stream = pipeline(res.body, decoder, () => {}) as unknown as Readable;
    headers.delete('content-length');
  }
  return new Response(Readable.toWeb(stream) as ReadableStream<Uint8Array>, { status: res.statusCode, headers });
}
