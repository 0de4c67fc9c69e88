/**
 * The LLM gateway's HTTP surface: `/llm/{connection}/v1/…` (src/llm/gateway.ts). Plain
 * middleware like `/gw`: it reads the raw request stream under its own size limit and writes
 * the response straight to the socket, so server-sent events reach the agent as they come.
 *
 * @module
 */
import type Koa from 'koa';
import { LLM_PREFIX, type LlmGateway } from '../llm/gateway.js';
import { streamedPepMiddleware } from './streamed-pep.js';

/** `/llm/{connection}/{path…}`; errors in the shape the providers' SDKs read. */
export function llmMiddleware(gateway: LlmGateway): Koa.Middleware {
  return streamedPepMiddleware({
    prefix: LLM_PREFIX,
    label: 'LLM connection',
    handle: (call) => gateway.handle(call),
    providerErrorShape: true,
    echoRequestId: true,
  });
}
