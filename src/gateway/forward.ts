/**
 * Forwarding one call upstream (undici) and shaping what comes back. No framework, no policy:
 * the pipeline (./gateway.ts) has already authenticated, authorized and chosen the credential.
 *
 * Request (RFC 9110 §7.6 intermediaries): hop-by-hop fields (`Connection` and the fields it
 * names, `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, `Proxy-*`) and the
 * agent's own credentials (`Authorization`, `DPoP`, `Cookie`) are removed, as are forwarding
 * headers a client could forge (`Forwarded`, `X-Forwarded-*`). The injected credential is set
 * last, so an agent cannot pre-empt it. `Accept-Encoding: identity` is requested so the
 * response can be checked for the credential (below).
 *
 * Response: hop-by-hop fields, credential-bearing ones (`Set-Cookie`, `WWW-Authenticate`,
 * `Authentication-Info`, the injected header's name) and the upstream's CORS fields
 * (`Access-Control-*`) are removed; `Location` under the upstream
 * base is rewritten to the gateway URL. Header values and the body (streamed through) have any
 * occurrence of the injected secret or header value — as it is or in a common encoding, see
 * ./redact.ts — replaced by `[redacted]`: an upstream that echoes the credential (an error
 * page quoting the API key, a redirect carrying it) must not hand it to the agent. A body the
 * upstream compressed anyway is decoded first (gzip, deflate, br); any other encoding cannot be
 * checked and is refused (502).
 *
 * @module
 */
import type { IncomingHttpHeaders } from 'node:http';
import { finished, Readable, Transform, type TransformCallback } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { Agent } from 'undici';
import { BadGateway, GatewayTimeout, PayloadTooLarge } from '../errors/index.js';
import { withTraceContext } from '../observability/tracing.js';
import { setMember } from '../util/own-member.js';
import { Redactor, RedactorMemo } from './redact.js';

/** RFC 9110 §7.6.1 hop-by-hop fields, plus `Proxy-Connection` (non-standard, still sent). */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authenticate', 'proxy-authorization'];

/** Agent-side fields that must never reach the upstream. */
const STRIP_REQUEST = new Set([
  ...HOP_BY_HOP,
  'host', // undici sets the upstream's
  'authorization', // the agent's Deputy token
  'dpop', // the agent's proof
  'cookie', // Deputy's or the browser's, never the upstream's
  'expect', // 100-continue is between the agent and Deputy
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-real-ip',
  'accept-encoding', // replaced by identity
  'content-length', // set again from the checked value
]);

/** Upstream fields that carry or solicit credentials, or belong to the upstream's origin only. */
const STRIP_RESPONSE = new Set([
  ...HOP_BY_HOP,
  'set-cookie',
  'set-cookie2',
  'www-authenticate',
  'authentication-info',
  'proxy-authentication-info',
  'authorization',
  'strict-transport-security', // the upstream's policy is not Deputy's origin's
  'alt-svc',
]);

export const REDACTED = Buffer.from('[redacted]');

export interface ForwarderOptions {
  connectionsPerOrigin: number;
  connectTimeoutMs: number;
  bodyTimeoutMs: number;
  maxResponseBytes: number;
}

export interface UpstreamRequest {
  method: string;
  url: URL;
  headers: Record<string, string>;
  body: Readable | undefined;
  headersTimeoutMs: number;
  signal?: AbortSignal;
}

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[]>;
  body: Readable | undefined;
  /**
   * The whole body, already read and redacted, in place of `body` ({@link Forwarder.shapeWhole}):
   * written to the agent in one write with the response head, with its length.
   */
  bytes?: Buffer;
}

/**
 * Bodies at most this long (declared `content-length`, no content coding) are read whole before
 * answering: one write to the agent with their length, instead of a chunked stream (issue 16:
 * two writes and two stream pipelines per call).
 */
export const WHOLE_BODY_MAX_BYTES = 64 * 1024;

export interface ShapeOptions {
  /** Credential values to redact wherever they appear, in any encoding ./redact.ts knows: the secrets and the injected header values. */
  secrets: readonly string[];
  /** Header names the credential was injected in (removed from the response too). */
  credentialHeaders: readonly string[];
  /** Maps an absolute upstream URL under the base to the gateway URL; undefined when outside. */
  rewriteLocation: (location: string) => string | undefined;
  method: string;
}

/** Upstream connections pooled per origin (undici Agent: one keep-alive pool per origin). */
export class Forwarder {
  readonly #agent: Agent;
  readonly #o: ForwarderOptions;
  /** One redactor per credential's values, not one per response (./redact.ts). */
  readonly #redactors = new RedactorMemo();

  constructor(options: ForwarderOptions) {
    this.#o = options;
    this.#agent = new Agent({
      connections: options.connectionsPerOrigin,
      connect: { timeout: options.connectTimeoutMs },
      bodyTimeout: options.bodyTimeoutMs,
      keepAliveTimeout: 10_000,
    });
  }

  /** Sends the request; resolves once the upstream's response headers arrived. */
  async send(req: UpstreamRequest): Promise<UpstreamResponse> {
    const limit = req.body ? requestLimitOf(req.body) : undefined;
    try {
      const res = await this.#agent.request({
        origin: req.url.origin,
        path: `${req.url.pathname}${req.url.search}`,
        method: req.method as 'GET',
        // W3C `traceparent` of the active (client) span, when traces are on (src/observability).
        headers: withTraceContext(req.headers),
        body: req.body ?? null,
        headersTimeout: req.headersTimeoutMs,
        bodyTimeout: this.#o.bodyTimeoutMs,
        ...(req.signal ? { signal: req.signal } : {}),
      });
      return { status: res.statusCode, headers: compact(res.headers), body: res.body };
    } catch (err) {
      if (limit?.exceeded) throw new PayloadTooLarge(limit.max);
      throw upstreamError(err);
    }
  }

  /**
   * {@link shape}, except that a small body framed by its length (declared `content-length` at
   * most {@link WHOLE_BODY_MAX_BYTES} and the gateway's limit, no content coding) is read whole
   * and redacted in memory ({@link UpstreamResponse.bytes}, `content-length` set to the redacted
   * length): the agent gets head and body in one write. Anything else streams as {@link shape}.
   *
   * @throws BadGateway (502) when the upstream fails before the whole body arrived (nothing was
   *   sent to the agent yet), or as {@link shape}.
   */
  async shapeWhole(res: UpstreamResponse, options: ShapeOptions): Promise<UpstreamResponse> {
    const declared = Number(res.headers['content-length']);
    const encoding = String(res.headers['content-encoding'] ?? 'identity').toLowerCase().trim();
    if (!res.body || bodyless(res.status, options.method) || (encoding !== 'identity' && encoding !== '')
      || !(declared >= 0 && declared <= Math.min(WHOLE_BODY_MAX_BYTES, this.#o.maxResponseBytes))) {
      return this.shape(res, options);
    }
    const redactor = this.#redactors.get(options.secrets);
    const headers = shapeHeaders(res, options, redactor);
    const bytes = redactor.redact(await readWhole(res.body, declared), REDACTED);
    headers['content-length'] = String(bytes.length);
    return { status: res.status, headers, body: undefined, bytes };
  }

  /** Filters headers and wraps the body (decode, size limit, redaction). */
  shape(res: UpstreamResponse, options: ShapeOptions): UpstreamResponse {
    // Headers and every body chunk share the needles (built once per credential's values).
    const redactor = this.#redactors.get(options.secrets);
    const headers = shapeHeaders(res, options, redactor);
    const declared = Number(res.headers['content-length']);
    if (Number.isFinite(declared) && declared > this.#o.maxResponseBytes) {
      res.body?.destroy();
      throw new BadGateway(`the upstream response (${declared} bytes) exceeds the gateway limit of ${this.#o.maxResponseBytes} bytes`);
    }
    if (bodyless(res.status, options.method) || !res.body) {
      res.body?.resume();
      return { status: res.status, headers, body: undefined };
    }
    const stages: Array<NodeJS.ReadableStream | NodeJS.ReadWriteStream> = [res.body];
    const encoding = String(res.headers['content-encoding'] ?? 'identity').toLowerCase().trim();
    if (encoding !== 'identity' && encoding !== '') {
      const decoder = decoderFor(encoding);
      if (!decoder) {
        res.body.destroy();
        throw new BadGateway(`the upstream answered with content-encoding "${encoding.slice(0, 40)}", which the gateway cannot inspect`);
      }
      stages.push(decoder);
      delete headers['content-encoding'];
    }
    stages.push(new ByteLimit(this.#o.maxResponseBytes));
    if (!redactor.empty) stages.push(new SecretScrubber(redactor));
    // Decoding and redaction change the length: the response is re-framed (chunked).
    if (stages.length > 2) delete headers['content-length'];
    return { status: res.status, headers, body: chained(stages as Readable[]) };
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}

/** Whether a response to `method` with `status` has no body (RFC 9110 §6.4.1). */
function bodyless(status: number, method: string): boolean {
  return method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200);
}

/**
 * The response headers the agent gets: hop-by-hop, credential-bearing and CORS fields removed,
 * values redacted, `Location` under the upstream base rewritten to the gateway.
 */
function shapeHeaders(res: UpstreamResponse, options: ShapeOptions, redactor: Redactor): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  const named = connectionTokens(res.headers.connection);
  // Checked name by name rather than merged into a new Set per call (issue 16, eighth round: allocation per call).
  const dropped = (name: string) => STRIP_RESPONSE.has(name) || named.includes(name) || options.credentialHeaders.some((h) => h.length === name.length && h.toLowerCase() === name);
  for (const name in res.headers) {
    if (!Object.hasOwn(res.headers, name)) continue;
    const value = res.headers[name]!;
    // The upstream's CORS is not Deputy's: Deputy's origin answers cross-origin by its own rules (src/http/cors.ts).
    if (dropped(name) || name.startsWith('access-control-')) continue;
    // setMember: a field named `__proto__` (undici keeps it as an own key) stays a field, not the prototype.
    setMember(headers, name, Array.isArray(value) ? value.map((v) => redactText(v, redactor)) : redactText(value, redactor));
  }
  if (Object.hasOwn(headers, 'location') && typeof headers.location === 'string') {
    const rewritten = options.rewriteLocation(headers.location);
    if (rewritten !== undefined) headers.location = rewritten;
  }
  return headers;
}

/**
 * A body of `declared` bytes, read whole; 502 when the upstream fails, closes early or sends a
 * different length. Read with `data` listeners and `finished` rather than `for await`, whose
 * async iterator costs a promise per chunk and per step (issue 16, eighth round).
 */
function readWhole(body: Readable, declared: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    body.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.length;
    });
    finished(body, (err) => {
      if (err) {
        body.destroy();
        reject(upstreamError(err));
      } else if (length !== declared) reject(new BadGateway('the upstream response body does not match its declared length'));
      else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length));
    });
  });
}

/**
 * `stages` piped one into the next; the last is returned. An error or early close anywhere
 * destroys them all (what `stream.pipeline` does, without its per-call `AbortController`, whose
 * abort at the end builds an `AbortError` with a stack trace: issue 16).
 */
export function chained(stages: readonly Readable[]): Readable {
  const last = stages.at(-1)!;
  if (stages.length === 1) return last;
  const destroyAll = (err?: Error | null) => {
    for (const s of stages) if (!s.destroyed) s.destroy(err ?? undefined);
  };
  for (let i = 0; i < stages.length; i++) {
    const stage = stages[i]!;
    if (i + 1 < stages.length) stage.pipe(stages[i + 1] as unknown as NodeJS.WritableStream);
    stage.on('error', destroyAll);
  }
  // The consumer went away (or the last stage was destroyed) before the end: stop the upstream.
  last.once('close', () => {
    if (!last.readableEnded) destroyAll(new Error('the response stream closed early'));
  });
  return last;
}

/** The upstream request headers: the agent's, filtered, with the credential set last. */
export function upstreamHeaders(incoming: IncomingHttpHeaders, inject: ReadonlyArray<readonly [string, string]>, extra: Record<string, string>): Record<string, string> {
  const named = connectionTokens(incoming.connection);
  // Checked name by name rather than merged into a new Set per call (issue 16, eighth round: allocation per call).
  const dropped = (name: string) => STRIP_REQUEST.has(name) || named.includes(name) || inject.some(([n]) => n.length === name.length && n.toLowerCase() === name);
  const out: Record<string, string> = {};
  for (const name in incoming) {
    // Own fields only: a key inherited from a polluted Object.prototype is no field of the agent's.
    if (!Object.hasOwn(incoming, name)) continue;
    const value = incoming[name];
    if (value === undefined || dropped(name)) continue;
    setMember(out, name, Array.isArray(value) ? value.join(', ') : value);
  }
  Object.assign(out, extra);
  out['accept-encoding'] = 'identity';
  for (const [name, value] of inject) out[name.toLowerCase()] = value;
  return out;
}

const NO_TOKENS: readonly string[] = Object.freeze([]);
const KEEP_ALIVE: readonly string[] = Object.freeze(['keep-alive']);
const CLOSE: readonly string[] = Object.freeze(['close']);

/** Field names listed in `Connection` (RFC 9110 §7.6.1): hop-by-hop for this hop only. */
function connectionTokens(value: string | string[] | undefined): readonly string[] {
  // The usual values, answered without splitting (both names are hop-by-hop already).
  if (value === undefined || value === '') return NO_TOKENS;
  if (value === 'keep-alive') return KEEP_ALIVE;
  if (value === 'close') return CLOSE;
  const text = Array.isArray(value) ? value.join(',') : (value ?? '');
  return text.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean);
}

function compact(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const k in headers) {
    const v = headers[k];
    if (v !== undefined && Object.hasOwn(headers, k)) setMember(out, k, v);
  }
  return out;
}

/** The decoder of a response's `content-encoding` (gzip, deflate, br), undefined for any other (also the MCP gateway's upstream client, src/mcp/upstream-http.ts). */
export function decoderFor(encoding: string): NodeJS.ReadWriteStream | undefined {
  if (encoding === 'gzip' || encoding === 'x-gzip') return createGunzip();
  if (encoding === 'deflate') return createInflate();
  if (encoding === 'br') return createBrotliDecompress();
  return undefined;
}

/** Maps undici / socket failures to 504 (no answer in time) or 502 (no usable answer). */
export function upstreamError(err: unknown): BadGateway | GatewayTimeout {
  const code = (err as { code?: unknown })?.code;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return new GatewayTimeout('the upstream did not answer in time', { cause: err });
  }
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EHOSTUNREACH') {
    return new BadGateway('the upstream could not be reached', { cause: err });
  }
  return new BadGateway('the upstream connection failed', { cause: err });
}

/**
 * Replaces each credential value, in any encoding {@link Redactor} knows, in a header value.
 *
 * @param value a response header value.
 * @param secrets the secrets and injected header values, or a {@link Redactor} built from them.
 */
export function redactText(value: string, secrets: readonly string[] | Redactor): string {
  const redactor = secrets instanceof Redactor ? secrets : new Redactor(secrets);
  if (redactor.empty) return value;
  const bytes = Buffer.from(value, 'utf8');
  const out = redactor.redact(bytes, REDACTED);
  return out === bytes ? value : out.toString('utf8');
}

/**
 * Replaces every occurrence of the credential values (in the encodings of {@link Redactor}) in
 * a byte stream, also across chunk boundaries: the last (longest occurrence − 1) bytes are held
 * back until the next chunk shows whether they start an occurrence. An occurrence that starts
 * before the held-back bytes lies wholly in the buffer, so it is found whole.
 */
export class SecretScrubber extends Transform {
  readonly #redactor: Redactor;
  readonly #keep: number;
  #tail = Buffer.alloc(0);

  /** @param secrets the secrets and injected header values, or a {@link Redactor} built from them (once per response). */
  constructor(secrets: readonly string[] | Redactor) {
    super();
    this.#redactor = secrets instanceof Redactor ? secrets : new Redactor(secrets);
    this.#keep = Math.max(0, this.#redactor.maxOccurrenceLength - 1);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const buf = this.#tail.length ? Buffer.concat([this.#tail, chunk]) : chunk;
    const safe = buf.length - Math.min(this.#keep, buf.length);
    const out: Buffer[] = [];
    let i = 0;
    for (const [start, end] of this.#redactor.find(buf)) {
      // Occurrences starting in the held-back bytes are found again with the next chunk.
      if (start >= safe) break;
      out.push(buf.subarray(i, start), REDACTED);
      i = end;
    }
    const from = Math.max(i, safe);
    out.push(buf.subarray(i, from));
    this.#tail = Buffer.from(buf.subarray(from));
    done(null, Buffer.concat(out));
  }

  override _flush(done: TransformCallback): void {
    done(null, this.#redactor.redact(this.#tail, REDACTED));
  }
}

/** Errors the stream once more than `max` bytes passed. */
class ByteLimit extends Transform {
  #seen = 0;
  constructor(readonly max: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#seen += chunk.length;
    if (this.#seen > this.max) return done(new Error(`body exceeds ${this.max} bytes`));
    done(null, chunk);
  }
}

/** The request-side limit, found again when undici reports the body stream's error. */
const requestLimits = new WeakMap<Readable, RequestBodyLimit>();

function requestLimitOf(body: Readable): RequestBodyLimit | undefined {
  return requestLimits.get(body);
}

/** An agent's request body, counted as it streams: more than `max` bytes aborts the upload. */
export class RequestBodyLimit extends Transform {
  #seen = 0;
  exceeded = false;
  constructor(readonly max: number) {
    super();
    requestLimits.set(this, this);
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#seen += chunk.length;
    if (this.#seen > this.max) {
      this.exceeded = true;
      return done(new PayloadTooLarge(this.max));
    }
    done(null, chunk);
  }
}
