/**
 * The MCP gateway's upstream HTTP client (src/mcp/upstream-http.ts: undici's `request` as the
 * SDK client transport's `fetch`, issue 16, tenth round) keeps what the global `fetch` did, driven
 * through the official MCP SDK on both sides with a front server before the upstream that can
 * compress, redirect and count: a compressed answer is decoded (and Deputy asks for `identity`),
 * a redirect within the upstream's origin is followed by the SDK, one to another origin is not
 * (nothing reaches that origin), and a session's upstream requests (POSTs, its GET stream, its
 * DELETE) leave no connection open once the session is closed.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { clientKeys } from '../support/clients.js';
import { mcpAgent, startMcpUpstream, type McpUpstream } from '../support/mcp.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';

const SERVERS = ['gzip', 'moved', 'away'] as const;

/** What the front server saw. */
interface Front {
  url: string;
  /** `METHOD path accept-encoding` of every request, in order. */
  seen: string[];
  /** Requests whose response is still open. */
  open: number;
  close(): Promise<void>;
}

/**
 * A server before `upstream`: `/gzip` answers POSTs gzip-compressed whatever the request's
 * `Accept-Encoding`; `/moved` redirects (307) to `/gzip` on this origin; `/away` redirects (307)
 * to `elsewhere` (another origin); everything else is proxied as it is.
 */
async function startFront(upstream: string, elsewhere: string): Promise<Front> {
  const front: Omit<Front, 'url' | 'close'> = { seen: [], open: 0 };
  const server: HttpServer = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://front').pathname;
    front.seen.push(`${req.method} ${path} ${req.headers['accept-encoding'] ?? '-'}`);
    if (path === '/moved' || path === '/away') {
      req.resume();
      res.writeHead(307, { location: path === '/moved' ? '/gzip' : elsewhere }).end();
      return;
    }
    front.open += 1;
    res.once('close', () => (front.open -= 1));
    const target = new URL(upstream);
    const headers = { ...req.headers, host: target.host };
    delete headers['accept-encoding'];
    const out = httpRequest(target, { method: req.method, headers }, (answer) => {
      const compress = req.method === 'POST' && answer.headers['content-type']?.startsWith('text/event-stream');
      if (!compress) {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      answer.on('data', (c: Buffer) => chunks.push(c));
      answer.on('end', () => {
        const body = gzipSync(Buffer.concat(chunks));
        const { 'content-length': _length, 'transfer-encoding': _te, ...rest } = answer.headers;
        res.writeHead(answer.statusCode ?? 502, { ...rest, 'content-encoding': 'gzip', 'content-length': String(body.length) }).end(body);
      });
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    ...front,
    get seen() { return front.seen; },
    get open() { return front.open; },
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

let idp: MockIdp;
let up: McpUpstream;
let other: McpUpstream;
let front: Front;
let deputy: TestDeputy;
let agent: TestAgent;
const mcpUrl = (server: string) => `${deputy.issuer}/mcp/${server}`;

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMcpUpstream();
  other = await startMcpUpstream();
  front = await startFront(up.url, other.url);
  const keys = await clientKeys();
  const port = await freePort();
  const base = `http://localhost:${port}`;
  deputy = await startTestDeputy({
    config: {
      server: { port },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [agentConfig('agent-a', keys, { scopes: ['deputy.read'], audiences: SERVERS.map((s) => `${base}/mcp/${s}`) })],
      mcpServers: SERVERS.map((id) => ({ id, url: `${front.url}/${id}`, allowInsecureHttp: true, requiredScopes: ['deputy.read'], pinning: 'off' as const })),
    },
  });
  agent = await testAgent(deputy.issuer, 'agent-a', keys);
}, 90_000);
afterAll(async () => {
  await deputy?.stop();
  await front?.close();
  await Promise.all([up?.close(), other?.close()]);
  await idp?.close();
});

async function tokenFor(resource: string): Promise<string> {
  const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
  return (await exchange(agent, { subject_token: subject, resource, scope: 'deputy.read' })).access_token;
}

describe('the MCP gateway’s upstream HTTP client', () => {
  it('decodes an answer the upstream compressed although Deputy asked for identity', async () => {
    const { client } = await mcpAgent(mcpUrl('gzip'), agent, await tokenFor(mcpUrl('gzip')));
    const result = await client.callTool({ name: 'echo', arguments: { text: 'über ✓ compressed' } });
    expect(result.content).toEqual([{ type: 'text', text: `echo: ${JSON.stringify({ text: 'über ✓ compressed' })}` }]);
    const posts = front.seen.filter((s) => s.startsWith('POST /gzip'));
    expect(posts.length).toBeGreaterThanOrEqual(2);
    // Every request Deputy sent asked for no content coding.
    expect(front.seen.filter((s) => s.includes('/gzip')).every((s) => s.endsWith(' identity'))).toBe(true);
    await client.close();
  });

  it('follows a redirect within the upstream’s origin (the SDK’s same-origin policy), every request', async () => {
    const before = front.seen.length;
    const { client } = await mcpAgent(mcpUrl('moved'), agent, await tokenFor(mcpUrl('moved')));
    const result = await client.callTool({ name: 'echo', arguments: { text: 'moved' } });
    expect(result.content).toEqual([{ type: 'text', text: `echo: ${JSON.stringify({ text: 'moved' })}` }]);
    const seen = front.seen.slice(before);
    // initialize, notifications/initialized and the call: each redirected, then sent to the target.
    expect(seen.filter((s) => s.startsWith('POST /moved')).length).toBeGreaterThanOrEqual(3);
    expect(seen.filter((s) => s.startsWith('POST /gzip')).length).toBe(seen.filter((s) => s.startsWith('POST /moved')).length);
    await client.close();
  });

  it('does not follow a redirect to another origin: the session is refused and nothing reaches that origin', async () => {
    const requests = other.requests;
    await expect(mcpAgent(mcpUrl('away'), agent, await tokenFor(mcpUrl('away')))).rejects.toThrow(/502|could not be reached/);
    expect(other.requests).toBe(requests);
    expect(front.seen.some((s) => s.startsWith('POST /away'))).toBe(true);
  });

  it('leaves no upstream request open once the sessions are closed (POSTs, the GET stream, the DELETE)', async () => {
    const { client } = await mcpAgent(mcpUrl('gzip'), agent, await tokenFor(mcpUrl('gzip')));
    for (let i = 0; i < 5; i += 1) await client.callTool({ name: 'echo', arguments: { text: `n${i}` } });
    await client.close();
    // The session closes after the agent's DELETE is answered (upstream DELETE, then both transports).
    await expect.poll(() => front.open, { timeout: 15_000 }).toBe(0);
  });
});
