/**
 * HTTP facts shared by Deputy's surfaces.
 *
 * @module
 */

/**
 * `Cache-Control` of every response that carries or refuses a credential, token or
 * authorization decision (RFC 6749 §5.1, RFC 9111 §5.2.2.5): never stored by any cache.
 */
export const NO_STORE = 'no-store';

/** Sets `Cache-Control: no-store` ({@link NO_STORE}) on a response (anything with Koa's `set`). */
export function noStore(ctx: { set(field: string, value: string): void }): void {
  ctx.set('Cache-Control', NO_STORE);
}
