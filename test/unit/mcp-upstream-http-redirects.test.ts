/**
 * The MCP gateway's upstream HTTP client (src/mcp/upstream-http.ts) never follows a redirect
 * itself, whatever the request's redirect mode or body: the gateway's fetch puts the server's
 * credential on every request (headers, query), and following a 3xx to another origin would hand
 * it there (`fetch` drops only `Authorization` and `Cookie` on such a hop). The SDK follows
 * redirects within the origin itself (`redirectPolicy: 'same-origin'`); mode `error` still
 * rejects on a redirect, as `fetch` does.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpstreamHttp } from '../../src/mcp/upstream-http.js';

const http = new UpstreamHttp();
const servers: Array<ReturnType<typeof createServer>> = [];
/** Requests the other origin received (it must receive none). */
const elsewhere: string[] = [];
let upstream = '';

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  const other = await listen((req, res) => {
    elsewhere.push(`${req.method} ${req.url} ${req.headers['x-api-key'] ?? '-'}`);
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
  upstream = await listen((req, res) => {
    req.resume();
    res.writeHead(307, { location: `${other}/stolen` }).end();
  });
});
afterAll(async () => {
  await http.close();
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
});

const credential = { 'x-api-key': 'upstream-secret' };

describe('UpstreamHttp never follows a redirect with the credential', () => {
  it.each([
    ['no redirect mode', { method: 'GET' }],
    ['redirect follow', { method: 'GET', redirect: 'follow' as const }],
    ['a byte body', { method: 'POST', body: new TextEncoder().encode('{}'), redirect: 'manual' as const }],
    ['a byte body, no redirect mode', { method: 'POST', body: new TextEncoder().encode('{}') }],
  ])('%s: the 3xx comes back as it is, the other origin sees nothing', async (_name, init) => {
    const res = await http.fetch(`${upstream}/mcp?api_key=upstream-secret`, { ...init, headers: credential });
    await res.body?.cancel();
    expect(res.status).toBe(307);
    expect(elsewhere).toEqual([]);
  });

  it('redirect error rejects on a redirect, as fetch does', async () => {
    await expect(http.fetch(`${upstream}/mcp`, { method: 'GET', redirect: 'error', headers: credential })).rejects.toThrow(TypeError);
    expect(elsewhere).toEqual([]);
  });
});
