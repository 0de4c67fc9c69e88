/**
 * `readWholeBody` (src/util/http.ts) on a request that can no longer be read: a client gone
 * before the body was asked for (the MCP gateway reads it after admission, which awaits the
 * store), or a body another reader already took. It must settle (reject), never wait forever:
 * the MCP gateway spends the call's DPoP proof only once the read settled.
 */
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setImmediate as tick } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { readWholeBody } from '../../src/util/http.js';

const tooLarge = () => new Error('too large');
let close: (() => Promise<void>) | undefined;
afterEach(async () => close?.());

/** A server whose handler hands the request to `handler`; the returned promise is its outcome. */
async function serve(handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>): Promise<{ port: number; outcome: Promise<string> }> {
  let settle!: (v: string) => void;
  const outcome = new Promise<string>((resolve) => (settle = resolve));
  const server = createServer((req, res) => void handler(req, res).then(() => settle('resolved'), (err: Error) => settle(`rejected: ${err.message}`)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  close = () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); });
  return { port: (server.address() as AddressInfo).port, outcome };
}

/** Waits a bounded number of event-loop turns for `p` (no clock): its value, or 'pending'. */
async function within(p: Promise<string>, turns = 50): Promise<string> {
  let value = 'pending';
  void p.then((v) => (value = v));
  for (let i = 0; i < turns && value === 'pending'; i += 1) await tick();
  return value;
}

describe('readWholeBody on a request that cannot be read any more', () => {
  it('rejects when the client was gone before the body was asked for', async () => {
    let arrived!: () => void;
    const handling = new Promise<void>((resolve) => (arrived = resolve));
    const { port, outcome } = await serve(async (req, res) => {
      arrived();
      if (!req.destroyed) await new Promise((resolve) => req.once('close', resolve));
      await readWholeBody(req, res, 1024, tooLarge);
    });
    const out = request({ port, host: '127.0.0.1', method: 'POST', headers: { 'content-length': '100' } });
    out.on('error', () => {});
    out.write('{"jsonrpc":');
    await handling;
    out.destroy();
    expect(await within(outcome, 500)).toMatch(/^rejected: the request ended before its body was read/);
  });

  it('rejects when another reader took the body already', async () => {
    const { port, outcome } = await serve(async (req, res) => {
      await readWholeBody(req, res, 1024, tooLarge);
      await readWholeBody(req, res, 1024, tooLarge).finally(() => res.end());
    });
    const out = request({ port, host: '127.0.0.1', method: 'POST', headers: { 'content-length': '2' } });
    out.on('error', () => {});
    out.on('response', (r) => r.resume());
    out.end('{}');
    expect(await within(outcome, 500)).toMatch(/^rejected: the request ended before its body was read/);
  });
});
