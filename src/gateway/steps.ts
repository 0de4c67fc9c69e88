/**
 * The HTTP gateway's own steps (the shared ones are in src/enforcement): the declared body
 * size, what a call is (connection, path, route action), the authorizer's decision, and the
 * forward to the upstream. The composition is in ./gateway.ts.
 *
 * @module
 */
import type { IncomingHttpHeaders } from 'node:http';
import { PassThrough, pipeline, type Readable } from 'node:stream';
import {
  NOTHING,
  streamEnding,
  type ActionContext,
  type Credentialed,
  type Described,
  type Forwarded,
  type PepDecision,
  type PepRequest,
  type Step,
  type Targeted,
} from '../enforcement/index.js';
import { BadGateway, InvalidRequest, NotFound, PayloadTooLarge } from '../errors/index.js';
import type { Logger } from '../log.js';
import type { RouteConfig } from '../vault/connections/config.js';
import type { Credential } from '../vault/connections/credentials.js';
import type { Connection, ConnectionStore } from '../vault/connections/store.js';
import { actionFor, type GatewayAuthorizer } from './authorizer.js';
import { RequestBodyLimit, upstreamHeaders, type Forwarder, type UpstreamResponse } from './forward.js';

/** One call as the HTTP layer hands it over: plain values and the raw body stream. */
export interface GatewayCall {
  connectionId: string;
  /** The raw (still percent-encoded) path after `/gw/{connection}`: `''` or starting with `/`. */
  path: string;
  /** The raw query string without `?` (may be empty). */
  query: string;
  method: string;
  headers: IncomingHttpHeaders;
  body: Readable | undefined;
  requestId: string;
  /** Aborted when the agent goes away: the upstream request is abandoned too. */
  signal?: AbortSignal;
}

/** The admission's input at the HTTP gateway: the protected-resource request and the call. */
export interface GatewayRequest extends PepRequest {
  call: GatewayCall;
}

/** The per-call context's input: the admission and the call. */
export interface GatewayAction extends ActionContext {
  readonly call: GatewayCall;
}

/** Added by `resolveCall`: the upstream path and the matching route, if any. */
export interface ResolvedCall extends Targeted, Described {
  /** Path below the connection's base URL, starting with `/` (no query). */
  path: string;
  route: RouteConfig | undefined;
}

/** Added by `forwardUpstream`: the shaped upstream response. */
export interface Responded extends Forwarded {
  response: UpstreamResponse;
}

/**
 * Step `refuseOversized`: a declared body over `maxBytes` is refused before anything else
 * (413); a body that turns out longer is cut while it streams (./forward.ts).
 */
export function refuseOversized(maxBytes: number): Step<GatewayRequest, typeof NOTHING> {
  return {
    name: 'refuseOversized',
    run({ call }) {
      if (declaredLength(call.headers) > maxBytes) throw new PayloadTooLarge(maxBytes);
      return NOTHING;
    },
  };
}

/**
 * Step `resolveCall`: the connection (404 when it does not exist or is of kind `llm`), the path (400 for one that
 * could leave the base, {@link upstreamPath}) and the route's action (./authorizer.ts).
 *
 * @param audienceOf - the connection's gateway URL (`{issuer}/gw/{connection}`), the receipt's resource prefix.
 */
export function resolveCall(connections: ConnectionStore, audienceOf: (connectionId: string) => string): Step<GatewayAction, ResolvedCall> {
  return {
    name: 'resolveCall',
    async run({ call }) {
      const connection = await connections.get(call.connectionId);
      if (!connection) throw new NotFound(`connection "${call.connectionId}" does not exist`);
      // An LLM connection is served by /llm only, where its budgets and wire format are enforced.
      if (connection.kind === 'llm') throw new NotFound(`connection "${call.connectionId}" is an LLM connection: call it at /llm/${call.connectionId}`);
      const path = upstreamPath(call.path);
      const { name, route } = actionFor(connection, call.method, path);
      return {
        connection,
        path,
        route,
        action: {
          event: 'gateway_call',
          name,
          resource: `${audienceOf(connection.id)}${path}`,
          digest: { method: call.method, connection: connection.id, path, query: call.query },
        },
      };
    },
  };
}

/** The gateway's question to its {@link GatewayAuthorizer}: this chain, this call, this connection. */
export function askAuthorizer(authorizer: GatewayAuthorizer): (ctx: GatewayAction & ResolvedCall) => PepDecision | Promise<PepDecision> {
  return ({ admission, call, connection, path, route, action }) => {
    const { principal } = admission;
    return authorizer.authorize({
      subject: { userId: principal.userId, userAttrs: principal.userAttrs, chain: principal.chain, agentId: principal.agentId, scopes: principal.scopes, token: principal.token, jti: principal.tokenJti },
      action: { name: action.name, method: call.method, path, route },
      resource: { type: 'connection', id: connection.id, kind: connection.kind, connection },
    });
  };
}

export interface ForwardOptions {
  forwarder: Forwarder;
  logger: Logger;
  /** Headers timeout when the connection sets none (`timeoutSeconds`). */
  upstreamTimeoutMs: number;
  maxRequestBytes: number;
  audienceOf: (connectionId: string) => string;
}

type ForwardInput = GatewayAction & ResolvedCall & Credentialed;

/**
 * Step `forwardUpstream`: the call with the agent's `Authorization` / `DPoP` and hop-by-hop
 * headers stripped and the credential injected, bodies streamed both ways (./forward.ts).
 * An upstream 401 means the credential was refused: cached tokens are dropped and the agent
 * gets 502 (the upstream's challenge is about Deputy's credential, not the agent's).
 * Adds the shaped response and its `ended`.
 */
export function forwardUpstream(options: ForwardOptions): Step<ForwardInput, Responded> {
  const { forwarder, logger } = options;
  return {
    name: 'forwardUpstream',
    observe: 'upstream',
    async run(ctx) {
      const { call, connection, credential, admission } = ctx;
      const url = upstreamUrl(connection, ctx.path, call.query, credential.query);
      const res = await forwarder.send(upstreamRequest(ctx, url, options));
      if (res.status === 401) await credentialRefused(res, credential, ctx, logger);
      const { principal } = admission;
      // The line's object is not built when `info` is off (the default `warn`: issue 16, eighth round).
      if (logger.isLevelEnabled('info')) {
        logger.info(
          { reqId: call.requestId, connection: connection.id, agent: principal.agentId, user: principal.userId, chain: principal.chain, action: ctx.action.name, method: call.method, upstreamStatus: res.status },
          'gateway call',
        );
      }
      const response = await shapeResponse(forwarder, res, ctx, url, options.audienceOf(connection.id));
      return { response, ended: () => streamEnding(response.body) };
    },
  };
}

const BODYLESS = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE']);

/** The upstream request: filtered headers with the credential, the body counted as it streams. */
function upstreamRequest({ call, connection, credential }: ForwardInput, url: URL, options: ForwardOptions): Parameters<Forwarder['send']>[0] {
  const declared = declaredLength(call.headers);
  // pipeline(), not pipe(): an agent that aborts its upload must abort the upstream request too
  // (undestroyed() passes the abort on, but a refused upload leaves the agent's request intact).
  const body = call.body && (!BODYLESS.has(call.method) || declared > 0 || call.headers['transfer-encoding'] !== undefined)
    ? pipeline(undestroyed(call.body), new RequestBodyLimit(options.maxRequestBytes), () => {})
    : undefined;
  if (call.body && !body) call.body.resume();
  const headers = upstreamHeaders(call.headers, credential.headers, {
    'x-request-id': call.requestId,
    ...(declared > 0 ? { 'content-length': String(declared) } : {}),
  });
  const headersTimeoutMs = (connection.settings.timeoutSeconds ?? 0) * 1000 || options.upstreamTimeoutMs;
  return { method: call.method, url, headers, body, headersTimeoutMs, ...(call.signal ? { signal: call.signal } : {}) };
}

/** An upstream 401: the injected credential was refused. Always throws (502). */
async function credentialRefused(res: UpstreamResponse, credential: Credential, { call, connection }: ForwardInput, logger: Logger): Promise<never> {
  res.body?.resume();
  await credential.rejected();
  logger.warn({ reqId: call.requestId, connection: connection.id }, 'upstream refused the injected credential');
  throw new BadGateway(`the upstream of connection "${connection.id}" refused Deputy's credential for it`);
}

/**
 * Headers filtered, the credential redacted, `Location` under the base rewritten to the gateway;
 * a small body read whole (one write to the agent), a larger one streamed (./forward.ts `shapeWhole`).
 */
async function shapeResponse(forwarder: Forwarder, res: UpstreamResponse, { call, connection, credential, admission }: ForwardInput, url: URL, gatewayBase: string): Promise<UpstreamResponse> {
  const shaped = await forwarder.shapeWhole(res, {
    // The header value too (`Bearer <token>`): its encodings differ from the bare secret's.
    secrets: [...credential.secrets, ...credential.headers.map(([, value]) => value)],
    credentialHeaders: credential.headers.map(([n]) => n),
    method: call.method,
    rewriteLocation: (location) => {
      try {
        // Parsed only for a response with a `Location` (most have none).
        const base = new URL(connection.settings.baseUrl);
        const target = new URL(location, url);
        const prefix = base.pathname.replace(/\/$/, '');
        if (target.origin !== base.origin || !(target.pathname === prefix || target.pathname.startsWith(`${prefix}/`))) return undefined;
        return `${gatewayBase}${target.pathname.slice(prefix.length)}${target.search}`;
      } catch {
        return undefined;
      }
    },
  });
  // DPoP-Nonce is about Deputy's origin, where the agent's client keeps one nonce (RFC 9449 §8.2,
  // §9): an upstream's own nonce must not reach it; Deputy's fresher one does.
  delete shaped.headers['dpop-nonce'];
  if (admission.auth.dpopNonce !== undefined) shaped.headers['dpop-nonce'] = admission.auth.dpopNonce;
  return shaped;
}

/** `{baseUrl}{path}?{agent's query minus injected names}&{injected}`. */
function upstreamUrl(connection: Connection, path: string, query: string, inject: ReadonlyArray<readonly [string, string]>): URL {
  const base = baseOf(connection.settings);
  const url = new URL(base.href);
  url.pathname = `${base.path}${path}`;
  if (query !== '' || inject.length > 0) {
    const params = new URLSearchParams(query);
    for (const [name] of inject) params.delete(name);
    for (const [name, value] of inject) params.append(name, value);
    const search = params.toString();
    url.search = search ? `?${search}` : '';
  } else {
    url.search = '';
  }
  // Belt and braces after upstreamPath(): the result must stay under the base.
  if (url.origin !== base.origin || !url.pathname.startsWith(base.path)) throw new InvalidRequest('the path leaves the connection\'s base URL');
  return url;
}

/**
 * A connection's base URL, parsed once per settings object (issue 16, sixth round: not per
 * call). Keyed by the object, so a connection changed in the store (new settings object) is
 * parsed afresh: nothing here can be stale.
 */
const bases = new WeakMap<Connection['settings'], { href: string; origin: string; path: string }>();

function baseOf(settings: Connection['settings']): { href: string; origin: string; path: string } {
  let base = bases.get(settings);
  if (!base) {
    const url = new URL(settings.baseUrl);
    base = { href: url.href, origin: url.origin, path: url.pathname.replace(/\/$/, '') };
    bases.set(settings, base);
  }
  return base;
}

/**
 * The path below the base: `''` → `/`; dot segments (also percent-encoded) and backslashes are
 * refused rather than resolved, so no spelling of `..` can leave the base path (RFC 3986 §5.2.4
 * would resolve them upstream, after Deputy's policy decision).
 *
 * @throws InvalidRequest (400) for a malformed path.
 */
export function upstreamPath(raw: string): string {
  const path = raw === '' ? '/' : raw;
  if (!path.startsWith('/')) throw new InvalidRequest('malformed gateway path');
  if (/\\|%5c|%00/i.test(path)) throw new InvalidRequest('backslashes and NUL are not allowed in gateway paths');
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    throw new InvalidRequest('malformed percent-encoding in the gateway path');
  }
  // Checked on the decoded path: an upstream that decodes `%2F` before resolving must not be
  // able to turn `..%2F` into a step up. Encoded slashes themselves stay allowed (GitLab ids).
  if (decoded.split(/[/\\]/).some((s) => s === '.' || s === '..')) throw new InvalidRequest('dot segments are not allowed in gateway paths');
  return path;
}

function declaredLength(headers: IncomingHttpHeaders): number {
  return Number(headers['content-length'] ?? 0);
}

/**
 * `body` as a stream pipeline() may destroy without destroying `body` itself: an upload refused
 * part-way (413) or an upstream that fails must not destroy the agent's request, whose socket
 * still has to carry the error response (the rest of the body is drained by the HTTP layer).
 * An agent that aborts its upload still errors the stream, so the upstream request is aborted.
 */
function undestroyed(body: Readable): Readable {
  const copy = new PassThrough();
  body.pipe(copy); // pipe(), not pipeline(): destroying `copy` only unpipes `body`
  const abort = () => {
    if (!body.readableEnded) copy.destroy(new Error('the agent aborted its upload'));
  };
  body.once('error', abort);
  body.once('close', abort);
  copy.once('close', () => {
    body.off('error', abort);
    body.off('close', abort);
  });
  return copy;
}
