/**
 * DEVELOPMENT ONLY: a stand-in downstream API (a "CRM") on plain HTTP (127.0.0.1) for
 * `deputy dev`. Every request is answered `200` with JSON describing what arrived — method,
 * path, query and headers — so a gateway call shows what Deputy forwarded. It echoes the
 * injected API key on purpose: the gateway redacts it from what the agent receives.
 *
 * @module
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { closeServer } from './idp.js';

export interface DevUpstream {
  /** `http://127.0.0.1:<port>`. */
  readonly base: string;
  close(): Promise<void>;
}

/** Starts the echo API on `port` (0 = any free port). */
export async function startDevUpstream(port = 0): Promise<DevUpstream> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://upstream');
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({ upstream: 'dev CRM', method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), headers: req.headers }),
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => closeServer(server) };
}
