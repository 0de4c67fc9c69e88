/**
 * HTTP facts shared by Deputy's surfaces.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * `Cache-Control` of every response that carries or refuses a credential, token or
 * authorization decision (RFC 6749 §5.1, RFC 9111 §5.2.2.5): never stored by any cache.
 */
export const NO_STORE = 'no-store';

/** Sets `Cache-Control: no-store` ({@link NO_STORE}) on a response (anything with Koa's `set`). */
export function noStore(ctx: { set(field: string, value: string): void }): void {
  ctx.set('Cache-Control', NO_STORE);
}

/**
 * A request body read whole with plain stream events rather than an async iterator (`for await`
 * costs a promise per chunk and per step: issue 16, fifth and tenth rounds). For bodies read
 * before answering (the AuthZEN routes, the MCP gateway's messages); `limitBytes` is a guard.
 *
 * @returns the body's bytes.
 * @throws what `tooLarge()` returns once more than `limitBytes` arrived (the request is paused
 *   and `Connection: close` set on `res`: the rest is never read), or an `Error` when the
 *   request ended before its body did — also when it could not be read any more when asked
 *   (the client gone while the caller awaited something else, or the body read already): its
 *   `end`/`close` events were emitted before and will not come again, so waiting would never settle.
 */
export function readWholeBody(req: IncomingMessage, res: ServerResponse, limitBytes: number, tooLarge: () => Error): Promise<Buffer> {
  if (req.destroyed || req.readableEnded) return Promise.reject(new Error('the request ended before its body was read'));
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limitBytes) return void chunks.push(chunk);
      done();
      res.setHeader('Connection', 'close');
      reject(tooLarge());
    };
    const onEnd = () => {
      done();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    };
    const onClose = () => {
      done();
      reject(new Error('the request ended before its body was read'));
    };
    const done = () => {
      req.off('data', onData).off('end', onEnd).off('error', onClose).off('close', onClose);
      req.pause();
    };
    req.on('data', onData).once('end', onEnd).once('error', onClose).once('close', onClose);
  });
}
