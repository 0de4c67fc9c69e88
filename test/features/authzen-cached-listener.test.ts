/**
 * The PDP's cached path as a request listener in front of Koa's (src/http/authzen-cached.ts,
 * `listener`): a hit is answered before Koa, with the request metrics and span recorded by the
 * path itself; a request it does not take (a query string, a traceparent's span aside) reaches
 * Koa with its body intact.
 */
import { ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { REPO, countEvaluations, startPdpHarness, type PdpHarness } from '../support/authzen.js';

let h: PdpHarness;
let evaluatedSoFar: () => number;

beforeAll(async () => {
  h = await startPdpHarness({ policies: `${REPO}test/fixtures/policies/chain` });
  // The PEP token's first use verifies it on the routes; from then on it is known to the cached path.
  expect((await post('/access/v1/evaluation', body('doc-l0'))).status).toBe(200);
  evaluatedSoFar = countEvaluations(h);
});
afterAll(async () => {
  await h?.stop();
});

const body = (id: string): string => JSON.stringify({ subject: { type: 'User', id: 'alice@example.com', properties: { email: 'alice@example.com' } }, action: { name: 'read' }, resource: { type: 'Document', id, properties: {} } });

async function post(path: string, text: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  const res = await fetch(`${h.deputy.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${h.pepToken}`, ...headers }, body: text });
  return { status: res.status, text: await res.text() };
}

async function httpCount(): Promise<number> {
  const text = await (await fetch(`${h.deputy.url}/metrics`, { headers: { authorization: `Bearer ${h.adminToken}` } })).text();
  return Number(text.match(/deputy_http_requests_total\{route="\/access\/v1\/evaluation",method="POST",status="200"\} (\d+)/)?.[1] ?? 0);
}

describe('the cached listener', () => {
  it('answers a repeated request (with a traceparent) without the routes, counted once per request', async () => {
    const first = await post('/access/v1/evaluation', body('doc-l1'));
    expect(first.status).toBe(200);
    const [before, evaluations] = [await httpCount(), evaluatedSoFar()];
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const second = await post('/access/v1/evaluation', body('doc-l1'), { traceparent });
    expect(second).toEqual(first);
    expect(evaluatedSoFar()).toBe(evaluations);
    const after = await httpCount();
    expect(after - before).toBe(1);
  });

  it('leaves a query string to Koa, which gets the same decision for the same bytes', async () => {
    const first = await post('/access/v1/evaluation', body('doc-l2'));
    const queried = await post('/access/v1/evaluation?x=1', body('doc-l2'));
    expect(queried).toEqual(first);
  });

  it('hands the body it read to the routes on a miss (new bytes, a malformed body)', async () => {
    const evaluations = evaluatedSoFar();
    expect((await post('/access/v1/evaluation', body('doc-l3'))).status).toBe(200);
    expect(evaluatedSoFar()).toBe(evaluations + 1);
    const malformed = await post('/access/v1/evaluation', '{"subject":');
    expect(malformed.status).toBe(400);
  });

  it('a hit whose write fails before its head is sent goes on to Koa, which answers it (no unhandled rejection, no hung request)', async () => {
    const first = await post('/access/v1/evaluation', body('doc-l4'));
    expect(first.status).toBe(200);
    // The listener's promise is dropped by the HTTP server: a throw there would end the process.
    const writeHead = vi.spyOn(ServerResponse.prototype, 'writeHead').mockImplementationOnce(() => {
      throw new Error('the write failed');
    });
    try {
      const second = await post('/access/v1/evaluation', body('doc-l4'));
      expect(writeHead).toHaveBeenCalledTimes(2); // the listener's (failed), then Koa's
      expect(second).toEqual(first);
    } finally {
      writeHead.mockRestore();
    }
  });

  it('a request whose client goes away mid-body is handed on with that failure, quietly (no unhandled rejection); the next hit is answered', async () => {
    const first = await post('/access/v1/evaluation', body('doc-l5'));
    const text = body('doc-l5');
    const { port } = new URL(h.deputy.url);
    const socket = connect(Number(port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(`POST /access/v1/evaluation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer ${h.pepToken}\r\nContent-Length: ${text.length}\r\n\r\n${text.slice(0, 20)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await post('/access/v1/evaluation', body('doc-l5'))).toEqual(first);
  });
});
