/**
 * The Koa adapter shared by the streaming enforcement points (`/gw/{connection}`,
 * `/llm/{connection}`): plain middleware, not router routes, because each must see the raw
 * request stream (no body parser, its own size limit) and write the response straight to the
 * socket so bodies (server-sent events included) reach the agent as they come.
 *
 * @module
 */
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type Koa from 'koa';
import { NotFound } from '../errors/index.js';
import { errorCause } from '../log.js';
import type { GatewayCall } from '../gateway/index.js';
import type { UpstreamResponse } from '../gateway/forward.js';
import { CONNECTION_ID } from '../vault/connections/config.js';

/** How one streaming PEP is mounted. */
export interface StreamedPepOptions {
  /** The route prefix, e.g. `/gw`: requests to `{prefix}/{connection}{/path…}` are handled. */
  prefix: string;
  /** Names the PEP in refusals and logs ("connection", "LLM connection"). */
  label: string;
  /** The PEP's entry point over plain values (the HTTP gateway's or the LLM gateway's `handle`). */
  handle(call: GatewayCall): Promise<UpstreamResponse>;
  /** Render errors in the providers' own shape (src/http/errors.ts), for SDKs that parse them. */
  providerErrorShape?: boolean;
  /** Echo `x-request-id` on the response. */
  echoRequestId?: boolean;
}

/**
 * `{prefix}/{connection}/{path…}`, every method, streamed both ways.
 *
 * @throws {NotFound} a connection segment that is not a connection id (never reaches the PEP).
 */
export function streamedPepMiddleware(options: StreamedPepOptions): Koa.Middleware {
  const route = new RegExp(`^${options.prefix}/([^/]+)(/.*)?$`);
  return async function streamedPep(ctx, next) {
    const m = route.exec(ctx.path);
    if (!m) return next();
    if (options.providerErrorShape) ctx.state.providerErrorShape = true;
    if (!CONNECTION_ID.test(m[1]!)) throw new NotFound(`${options.label} "${m[1]!.slice(0, 64)}" does not exist`);
    // The agent went away before the response was written: abandon the upstream request.
    const abort = new AbortController();
    ctx.res.once('close', () => {
      if (!ctx.res.writableFinished) abort.abort();
    });
    const requestId = String(ctx.state.requestId);
    const res = await options.handle({
      connectionId: m[1]!,
      path: m[2] ?? '',
      query: ctx.querystring,
      method: ctx.method,
      headers: ctx.req.headers,
      body: ctx.req,
      requestId,
      signal: abort.signal,
    });
    ctx.status = res.status;
    ctx.respond = false;
    ctx.res.writeHead(res.status, options.echoRequestId ? { ...res.headers, 'x-request-id': requestId } : res.headers);
    // A body read whole goes out with the head in one write (src/gateway/forward.ts `shapeWhole`).
    if (!res.body) {
      ctx.res.end(res.bytes);
      return;
    }
    streamBody(res.body, ctx.res, (err) => ctx.state.log.warn({ err: { cause: errorCause(err) } }, `${options.prefix} response stream ended early`));
  };
}

/**
 * Pipes `body` to the agent. Headers are gone: a body that fails midway (upstream reset, size
 * limit) can only be cut off, and an agent that goes away stops the body. `pipe()` and two
 * listeners rather than `stream.pipeline`, whose per-call `AbortController` builds an
 * `AbortError` with a stack trace each time it finishes (issue 16).
 */
function streamBody(body: Readable, res: ServerResponse, onError: (err: Error) => void): void {
  body.on('error', (err) => {
    onError(err);
    res.destroy();
  });
  res.once('close', () => {
    if (!body.readableEnded) body.destroy();
  });
  body.pipe(res);
}
