/**
 * The LLM gateway's HTTP surface: `/llm/{connection}/v1/…` (src/llm/gateway.ts). Plain
 * middleware like `/gw`: it reads the raw request stream under its own size limit and writes
 * the response straight to the socket, so server-sent events reach the agent as they come.
 *
 * @module
 */
import { pipeline } from 'node:stream';
import type Koa from 'koa';
import { NotFound } from '../errors/index.js';
import { LLM_PREFIX, type LlmGateway } from '../llm/gateway.js';
import type { Logger } from '../log.js';
import { CONNECTION_ID } from '../vault/connections/config.js';

const LLM_PATH = new RegExp(`^${LLM_PREFIX}/([^/]+)(/.*)?$`);

/** `/llm/{connection}/{path…}`. */
export function llmMiddleware(gateway: LlmGateway): Koa.Middleware {
  return async function llmCall(ctx, next) {
    const m = LLM_PATH.exec(ctx.path);
    if (!m) return next();
    // Errors in the shape the providers' SDKs read (src/http/errors.ts).
    ctx.state.providerErrorShape = true;
    if (!CONNECTION_ID.test(m[1]!)) throw new NotFound(`LLM connection "${m[1]!.slice(0, 64)}" does not exist`);
    const abort = new AbortController();
    ctx.res.once('close', () => {
      if (!ctx.res.writableFinished) abort.abort();
    });
    const res = await gateway.handle({
      connectionId: m[1]!,
      path: m[2] ?? '',
      query: ctx.querystring,
      method: ctx.method,
      headers: ctx.req.headers,
      body: ctx.req,
      requestId: String(ctx.state.requestId),
      signal: abort.signal,
    });
    ctx.status = res.status;
    ctx.respond = false;
    ctx.res.writeHead(res.status, { ...res.headers, 'x-request-id': String(ctx.state.requestId) });
    if (!res.body) {
      ctx.res.end();
      return;
    }
    pipeline(res.body, ctx.res, (err) => {
      if (err) (ctx.state.log as Logger).warn({ err: { message: err.message } }, 'llm response stream ended early');
    });
  };
}
