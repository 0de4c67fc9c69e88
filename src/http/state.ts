/**
 * Koa's `ctx.state` as Deputy's middleware fills it, typed once: `requestContext`
 * (./middleware.ts) sets `requestId` and `log` on every request before anything else runs, so
 * every middleware and route reads them typed, without casts.
 *
 * @module
 */
import type { Logger } from '../log.js';

/** What every request's `ctx.state` carries. */
export interface DeputyState {
  /** `X-Request-ID`: the caller's when valid, generated otherwise. */
  requestId: string;
  /** A child logger carrying `reqId`. */
  log: Logger;
  /**
   * Errors in the model providers' shape (`error` an object, src/errors/serialize.ts): set by the
   * LLM gateway (./llm.ts), whose clients are the providers' SDKs.
   */
  providerErrorShape?: boolean;
}

declare module 'koa' {
  // Koa's documented way to type `ctx.state` application-wide (DefaultState is meant to be augmented).
  interface DefaultState extends DeputyState {}
}
