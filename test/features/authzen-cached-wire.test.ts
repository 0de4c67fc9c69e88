/**
 * The PDP's cached hit path on the wire (src/http/authzen-cached.ts `hitReceiver`, src/http/json-body.ts
 * `receiveBody`; issue 16, ninth round red team): a hit answered in the turn its last chunk arrives must
 * answer exactly what the routes would, for exactly the requests they would answer so — pipelined
 * requests on one keep-alive connection, a body one byte per write, `Expect: 100-continue`, the same
 * bytes on the other evaluation path, other methods and path spellings, concurrent identical misses,
 * a second PEP and the PEP token found last revoked.
 */
import { connect } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { authenticatedPost } from '../support/agents.js';
import { REPO, countEvaluations, countKoaContexts, holdPepTokenLive, rawExchange, startPdpHarness, type PdpHarness } from '../support/authzen.js';
import { clientCredentialsToken, clientKeys, oauthClient, type ClientKeys } from '../support/clients.js';

let h: PdpHarness;
let evaluatedSoFar: () => number;
let second: { id: string; keys: ClientKeys };

beforeAll(async () => {
  second = { id: 'second-pep', keys: await clientKeys() };
  h = await startPdpHarness({
    policies: `${REPO}test/fixtures/policies/chain`,
    config: { admin: { clients: [{ client_id: second.id, scopes: ['authzen:evaluate'], jwks: second.keys.jwks }] } },
  });
  // The PEP token's first use verifies it on the routes; from then on it is known to the cached path.
  expect((await post('/access/v1/evaluation', body('doc-w0'))).status).toBe(200);
  evaluatedSoFar = countEvaluations(h);
});
afterAll(async () => {
  await h?.stop();
});
beforeEach(() => {
  // Which path answered is asserted: the PEP token's "not revoked" answer (2 s) must not lapse between steps.
  holdPepTokenLive(h);
});
afterEach(() => {
  vi.restoreAllMocks();
});

const body = (id: string, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ subject: { type: 'User', id: 'alice@example.com', properties: { email: 'alice@example.com' } }, action: { name: 'read' }, resource: { type: 'Document', id, properties: {} }, ...extra });

async function post(path: string, text: string, headers: Record<string, string> = {}, token = h.pepToken): Promise<{ status: number; text: string; requestId: string | null }> {
  const res = await fetch(`${h.deputy.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, ...headers }, body: text });
  return { status: res.status, text: await res.text(), requestId: res.headers.get('x-request-id') };
}

/** The request's bytes as a PEP writes them (HTTP/1.1, keep-alive unless `close`). */
function requestBytes(path: string, text: string, requestId: string, more = ''): string {
  return `POST ${path} HTTP/1.1\r\nHost: pdp\r\nContent-Type: application/json\r\nAuthorization: Bearer ${h.pepToken}\r\nX-Request-ID: ${requestId}\r\nContent-Length: ${Buffer.byteLength(text)}\r\n${more}\r\n${text}`;
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Splits what a server sent on one connection into its responses (each with `Content-Length`; a 1xx has no body). */
function answers(received: string): Answer[] {
  const out: Answer[] = [];
  let rest = received;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
    const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
    const length = Number(headers['content-length'] ?? 0);
    out.push({ status: Number(statusLine!.split(' ')[1]), headers, body: rest.slice(end + 4, end + 4 + length) });
    rest = rest.slice(end + 4 + length);
  }
  return out;
}

/** Writes `bytes` one byte per write (each after the previous was flushed, with a pause), then reads until the server closes. */
function dribble(bytes: string, pauseMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(new URL(h.deputy.url).port), '127.0.0.1');
    socket.setNoDelay(true);
    let received = '';
    socket.on('data', (b: Buffer) => (received += b.toString('latin1')));
    socket.on('error', reject).on('close', () => resolve(received.replace(/^Date: .*\r\n/gim, '')));
    const send = (i: number): void => {
      if (i === bytes.length) return;
      socket.write(bytes[i]!, () => setTimeout(() => send(i + 1), pauseMs));
    };
    socket.on('connect', () => send(0));
  });
}

describe('the cached hit path on the wire', () => {
  it('pipelined on one keep-alive connection (hit, miss, malformed, hit): each answer in order, with its own request id and body', async () => {
    const known = await post('/access/v1/evaluation', body('doc-w1'));
    const other = body('doc-w2');
    const before = evaluatedSoFar();
    const received = await rawExchange(h, [
      {
        bytes:
          requestBytes('/access/v1/evaluation', body('doc-w1'), 'pipe-1') +
          requestBytes('/access/v1/evaluation', other, 'pipe-2') +
          requestBytes('/access/v1/evaluation', '{"subject":', 'pipe-3') +
          requestBytes('/access/v1/evaluation', body('doc-w1'), 'pipe-4', 'Connection: close\r\n'),
      },
    ]);
    const got = answers(received);
    expect(got.map((a) => [a.status, a.headers['x-request-id']])).toEqual([
      [200, 'pipe-1'],
      [200, 'pipe-2'],
      [400, 'pipe-3'],
      [200, 'pipe-4'],
    ]);
    expect(got[0]!.body).toBe(known.text);
    expect(got[3]!.body).toBe(known.text);
    expect(got[1]!.body).toBe((await post('/access/v1/evaluation', other)).text);
    expect(JSON.parse(got[2]!.body)).toMatchObject({ error: 'invalid_request' });
    expect(evaluatedSoFar()).toBe(before + 1); // the miss alone
  });

  it('a body sent one byte per write: answered from the cached path with the routes\' bytes', async () => {
    const text = body('doc-w3');
    const known = await post('/access/v1/evaluation', text, { 'x-request-id': 'drip-1' });
    const [before, contexts] = [evaluatedSoFar(), countKoaContexts()];
    const [answer] = answers(await dribble(requestBytes('/access/v1/evaluation', text, 'drip-1', 'Connection: close\r\n'), 1));
    expect(answer).toMatchObject({ status: 200, body: known.text });
    expect(answer!.headers['x-request-id']).toBe('drip-1');
    expect(evaluatedSoFar()).toBe(before);
    expect(contexts()).toBe(0); // the listener's hit, received chunk by chunk
  });

  it('Expect: 100-continue: 100 Continue, then the remembered answer', async () => {
    const text = body('doc-w4');
    const known = await post('/access/v1/evaluation', text);
    const before = evaluatedSoFar();
    const head = requestBytes('/access/v1/evaluation', '', 'cont-1', `Expect: 100-continue\r\nConnection: close\r\n`).replace(/Content-Length: 0/, `Content-Length: ${text.length}`);
    const got = answers(await rawExchange(h, [{ bytes: head }, { bytes: text, waitFor: '100 Continue' }]));
    expect(got.map((a) => a.status)).toEqual([100, 200]);
    expect(got[1]!.body).toBe(known.text);
    expect(evaluatedSoFar()).toBe(before);
  });

  it('the same bytes on the other evaluation path: that path\'s own answer, never the remembered one', async () => {
    // Valid on both: one decision on /evaluation (the batch member ignored), a batch on /evaluations.
    const text = body('doc-w5', { evaluations: [{ resource: { type: 'Document', id: 'doc-w6', properties: {} } }, {}] });
    const single = await post('/access/v1/evaluation', text);
    expect(await post('/access/v1/evaluation', text)).toMatchObject({ status: 200, text: single.text });
    const before = evaluatedSoFar();
    const batch = await post('/access/v1/evaluations', text);
    expect(batch.status).toBe(200);
    expect(Object.keys(JSON.parse(batch.text) as object)).toEqual(['evaluations']);
    expect(Object.keys(JSON.parse(single.text) as object)).toContain('decision');
    expect(evaluatedSoFar()).toBeGreaterThan(before);
    // Each path's answer stays its own.
    expect((await post('/access/v1/evaluation', text)).text).toBe(single.text);
    expect((await post('/access/v1/evaluations', text)).text).toBe(batch.text);
  });

  it('other methods and path spellings: never a remembered answer (the routes decide)', async () => {
    const text = body('doc-w7');
    const known = await post('/access/v1/evaluation', text);
    expect(known.status).toBe(200);
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${h.pepToken}` };
    for (const method of ['PUT', 'PATCH', 'DELETE']) {
      const res = await fetch(`${h.deputy.url}/access/v1/evaluation`, { method, headers, body: text });
      expect(res.status, method).toBe(405);
      expect(await res.text(), method).not.toBe(known.text);
    }
    expect((await fetch(`${h.deputy.url}/access/v1/evaluation`, { method: 'HEAD', headers })).status).toBe(405);
    // A trailing slash is the router's path (not strict): evaluated there, the same decision.
    const before = evaluatedSoFar();
    const slash = await post('/access/v1/evaluation/', text);
    expect(slash).toMatchObject({ status: 200, text: known.text });
    expect(evaluatedSoFar()).toBe(before + 1);
    // The search endpoints are never answered from it either.
    expect((await post('/access/v1/search/resource', text)).text).not.toBe(known.text);
  });

  it('a batch within 16 KiB whose parsed form counts past the whole answer budget: answered, never remembered (evaluated each time)', async () => {
    const properties = Object.fromEntries([['email', 'alice@example.com'], ...Array.from({ length: 1200 }, (_, i) => [`p${i}`, i])]);
    const text = JSON.stringify({ subject: { type: 'User', id: 'alice@example.com', properties }, action: { name: 'read' }, resource: { type: 'Document', id: 'doc-big', properties: {} }, evaluations: Array.from({ length: 500 }, () => ({})) });
    expect(text.length).toBeLessThanOrEqual(16 * 1024);
    const pdp = h.deputy.pdp.pdp;
    const evaluateAll = vi.spyOn(pdp, 'evaluateAll');
    const first = await post('/access/v1/evaluations', text);
    expect(first.status).toBe(200);
    expect(evaluateAll).toHaveBeenCalledTimes(1);
    // Before: remembered (one entry counted at tens of MB, the whole set emptied for it), and the repeat a hit.
    expect(await post('/access/v1/evaluations', text)).toMatchObject({ status: 200, text: first.text });
    expect(evaluateAll).toHaveBeenCalledTimes(2);
  });

  it('concurrent identical misses: one answer for all, then hits', async () => {
    const text = body('doc-w8');
    const all = await Promise.all(Array.from({ length: 8 }, () => post('/access/v1/evaluation', text)));
    expect(new Set(all.map((a) => `${a.status} ${a.text}`)).size).toBe(1);
    const before = evaluatedSoFar();
    expect((await post('/access/v1/evaluation', text)).text).toBe(all[0]!.text);
    expect(evaluatedSoFar()).toBe(before);
  });

  it('a second PEP: its first token verified by the routes, a forged one refused; revoking the token found last refuses it at once, the other still answered', async () => {
    const secondToken = await clientCredentialsToken(await oauthClient(h.deputy.issuer, second.id, second.keys), 'authzen:evaluate');
    const text = body('doc-w9');
    const known = await post('/access/v1/evaluation', text);
    const [header, payload] = secondToken.split('.');
    expect((await post('/access/v1/evaluation', text, {}, `${header}.${payload}.AAAA`)).status).toBe(401);
    expect(await post('/access/v1/evaluation', text, {}, secondToken)).toMatchObject({ status: 200, text: known.text });
    // The second PEP's token is now the one found last; revoked, the very next request with it is refused.
    expect(await post('/access/v1/evaluation', text, {}, secondToken)).toMatchObject({ status: 200, text: known.text });
    expect((await authenticatedPost(`${h.deputy.url}/revoke`, h.deputy.issuer, second, { token: secondToken })).status).toBe(200);
    expect((await post('/access/v1/evaluation', text, {}, secondToken)).status).toBe(401);
    expect(await post('/access/v1/evaluation', text)).toMatchObject({ status: 200, text: known.text });
    expect((await post('/access/v1/evaluation', text, {}, secondToken)).status).toBe(401);
  });
});
