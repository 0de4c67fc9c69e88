/**
 * The gateway against a hostile upstream speaking raw HTTP/1.1 (a TCP server writing exactly the
 * bytes each test scripts), a hostile agent that goes away mid-response, and budgets changed
 * while "no budget applies" is remembered (issue 16, fourth round: small bodies answered whole,
 * streamed bodies piped without stream.pipeline, the no-budget memo).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BudgetDefinition } from '../../src/budgets/index.js';
import { agentConfig, claimsOf, dpopProof, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { clientKeys } from '../support/clients.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';

const API_KEY = `sk_live_${randomBytes(16).toString('hex')}`;
const WHOLE = 64 * 1024;

let idp: MockIdp;
let deputy: TestDeputy;
let upstream: Server;
let upBase: string;
let issuer: string;
const agents: Record<string, TestAgent> = {};
/** Upstream sockets the gateway opened, and whether each was closed. */
const sockets: Array<{ path: string; closed: Promise<void> }> = [];

/** What the raw upstream writes for a request path (the injected key is `key`). */
type Script = (socket: Socket, key: string) => void;

const head = (status: string, fields: string[]) => `HTTP/1.1 ${status}\r\n${[...fields, 'connection: close'].join('\r\n')}\r\n\r\n`;

/** `text` written a few bytes at a time, so the key crosses write (and chunk) boundaries. */
function dribble(socket: Socket, text: Buffer, step = 3): void {
  for (let i = 0; i < text.length; i += step) socket.write(text.subarray(i, i + step));
}

/** `size` bytes of padding with the key at `at`, and again at the end. */
function padded(key: string, size: number, at: number): Buffer {
  const body = Buffer.alloc(size, 'x');
  body.write(key, at);
  body.write(key, size - key.length);
  return body;
}

const scripts: Record<string, Script> = {
  '/split': (s, key) => {
    const body = Buffer.from(JSON.stringify({ echoed: key, b64: Buffer.from(key).toString('base64') }));
    s.write(head('200 OK', ['content-type: application/json', `content-length: ${body.length}`, `x-echo: ${key}`]));
    dribble(s, body);
    s.end();
  },
  '/exact': (s, key) => {
    const body = padded(key, WHOLE, WHOLE / 2 - 5);
    s.write(head('200 OK', [`content-length: ${body.length}`]));
    dribble(s, body, 1000);
    s.end();
  },
  '/over': (s, key) => {
    const body = padded(key, WHOLE + 1, WHOLE / 2 - 5);
    s.write(head('200 OK', [`content-length: ${body.length}`]));
    dribble(s, body, 1000);
    s.end();
  },
  '/identity-upper': (s, key) => {
    const body = Buffer.from(`key=${key}`);
    s.end(head('200 OK', ['content-encoding: IDENTITY', `content-length: ${body.length}`]) + body.toString());
  },
  '/gzip-upper': (s, key) => {
    const body = gzipSync(Buffer.from(`key=${key}`));
    s.write(head('200 OK', ['content-encoding: GZip', `content-length: ${body.length}`]));
    s.end(body);
  },
  '/short': (s) => {
    s.write(head('200 OK', ['content-length: 100']));
    s.end('0123456789');
  },
  '/long': (s) => {
    s.write(head('200 OK', ['content-length: 10']));
    s.end('0123456789ABCDEFGHIJ');
  },
  '/te-and-cl': (s) => {
    s.end(head('200 OK', ['transfer-encoding: chunked', 'content-length: 5']) + '5\r\nhello\r\n0\r\n\r\n');
  },
  '/no-content': (s) => {
    s.end(head('204 No Content', ['content-length: 5']));
  },
  '/not-modified': (s) => {
    s.end(head('304 Not Modified', ['content-length: 5', 'etag: "x"']));
  },
  '/head': (s) => {
    s.end(head('200 OK', ['content-length: 10']));
  },
  // Declares a small body, sends part of it and waits: the agent gives up first.
  '/stall-small': (s) => {
    s.write(head('200 OK', ['content-length: 100']));
    s.write('0123456789');
  },
  // `__proto__` is a valid field name (RFC 9110 §5.1 token); undici keeps it as an own key.
  '/proto-header': (s, key) => {
    s.end(head('200 OK', [`__proto__: ${key}`, 'x-after: 1', 'content-length: 2']) + 'ok');
  },
  '/proto-headers': (s) => {
    s.end(head('200 OK', ['__proto__: one', '__proto__: two', 'x-after: 1', 'content-length: 2']) + 'ok');
  },
  // A streamed body (over the whole-body size) that stalls after its first chunk.
  '/stall-big': (s) => {
    s.write(head('200 OK', [`content-length: ${WHOLE * 4}`]));
    s.write(Buffer.alloc(WHOLE * 2, 'y'));
  },
};

function startRawUpstream(): Promise<Server> {
  const server = createServer((socket) => {
    let buffered = '';
    socket.on('error', () => {});
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      const end = buffered.indexOf('\r\n\r\n');
      if (end === -1 || buffered.startsWith('DONE')) return;
      const [requestLine, ...fields] = buffered.slice(0, end).split('\r\n');
      buffered = 'DONE';
      const path = new URL(requestLine!.split(' ')[1]!, 'http://x').pathname.replace(/^\/api/, '');
      const key = fields.find((f) => f.toLowerCase().startsWith('x-api-key:'))?.slice('x-api-key:'.length).trim() ?? '';
      sockets.push({ path, closed });
      const script = scripts[path];
      if (script) script(socket, key);
      else socket.end(head('404 Not Found', ['content-length: 0']));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

beforeAll(async () => {
  idp = await startMockIdp();
  upstream = await startRawUpstream();
  upBase = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  const port = await freePort();
  issuer = `http://localhost:${port}`;
  const keys = { 'agent-a': await clientKeys(), 'agent-b': await clientKeys() };
  const audiences = [`${issuer}/gw/raw`];
  deputy = await startTestDeputy({
    env: { RAW_KEY: API_KEY },
    config: {
      server: { port },
      trustedIssuers: [idp.issuerConfig('okta')],
      // Longer than a test: a leak cannot pass by timing out.
      gateway: { bodyTimeoutSeconds: 120 },
      agents: [
        agentConfig('agent-a', keys['agent-a'], { scopes: ['deputy.read'], audiences: [...audiences, 'urn:deputy:agent:agent-b'] }),
        agentConfig('agent-b', keys['agent-b'], { scopes: ['deputy.read'], audiences }),
      ],
      connections: [
        { id: 'raw', kind: 'api_key', baseUrl: `${upBase}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'RAW_KEY' }, requiredScopes: ['deputy.read'] },
      ],
    },
  });
  for (const id of Object.keys(keys) as Array<keyof typeof keys>) agents[id] = await testAgent(deputy.issuer, id, keys[id]);
});
afterAll(async () => {
  await deputy?.stop();
  await new Promise((resolve) => upstream?.close(resolve));
  await idp?.close();
});

/** An agent token for the raw connection, for a fresh user (or `uid`). */
async function tokenFor(agent: TestAgent, uid = `00u${randomUUID().slice(0, 12)}`): Promise<string> {
  const subject = await idp.oktaAccessToken({ uid, scp: ['deputy.read'] });
  return (await exchange(agent, { subject_token: subject, resource: `${issuer}/gw/raw`, scope: 'deputy.read' })).access_token;
}

function call(agent: TestAgent, token: string, path: string, init: { method?: string } = {}): Promise<Response> {
  return client.fetchProtectedResource(agent.config, token, new URL(`${issuer}/gw/raw${path}`), init.method ?? 'GET', null, new Headers(), { DPoP: agent.handle });
}

/** A GET the test can abort (openid-client takes no signal): its own DPoP proof. */
async function abortable(agent: TestAgent, token: string, path: string, signal: AbortSignal): Promise<Response> {
  const url = `${issuer}/gw/raw${path}`;
  const proof = await dpopProof(agent.dpop, url, { htm: 'GET', accessToken: token });
  return fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: proof }, signal });
}

const socketOf = async (path: string) => {
  for (let i = 0; i < 500 && !sockets.some((s) => s.path === path); i++) await new Promise((r) => setTimeout(r, 10));
  return sockets.filter((s) => s.path === path).at(-1)!;
};

describe('a hostile upstream: small bodies read whole, larger ones streamed, the key redacted in both', () => {
  it('a key echoed across write boundaries, in a header, in base64: redacted in a whole body', async () => {
    const res = await call(agents['agent-a']!, await tokenFor(agents['agent-a']!), '/split');
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text).not.toContain(API_KEY);
    expect(text).not.toContain(Buffer.from(API_KEY).toString('base64').replace(/=+$/, ''));
    expect(JSON.parse(text)).toMatchObject({ echoed: '[redacted]' });
    expect(res.headers.get('x-echo')).toBe('[redacted]');
    expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength(text)));
  });

  it('a response field named __proto__ reaches the agent, redacted, once or repeated (it was dropped: assigned as the prototype)', async () => {
    const a = agents['agent-a']!;
    const once = await call(a, await tokenFor(a), '/proto-header');
    expect(once.status).toBe(200);
    expect(await once.text()).toBe('ok');
    expect(once.headers.get('__proto__')).toBe('[redacted]');
    expect(once.headers.get('x-after')).toBe('1');
    const twice = await call(a, await tokenFor(a), '/proto-headers');
    expect(twice.status).toBe(200);
    expect(await twice.text()).toBe('ok');
    expect(twice.headers.get('__proto__')).toBe('one, two');
    expect(twice.headers.get('x-after')).toBe('1');
    expect(twice.headers.get('0')).toBeNull();
  });

  it('a body of exactly 64 KiB is read whole, one byte more streams: the same redaction either way', async () => {
    const a = agents['agent-a']!;
    const exact = await call(a, await tokenFor(a), '/exact');
    const over = await call(a, await tokenFor(a), '/over');
    const [e, o] = [await exact.text(), await over.text()];
    expect(exact.headers.get('content-length')).toBe(String(e.length));
    expect(over.headers.get('transfer-encoding')).toBe('chunked');
    for (const text of [e, o]) {
      expect(text).not.toContain(API_KEY);
      expect(text.split('[redacted]').length).toBe(3);
    }
    // The streamed body is the whole one with one more padding byte in front of the last key.
    expect(o).toBe(e.replace(/\[redacted\]$/, 'x[redacted]'));
  });

  it('content coding in any case: IDENTITY is read whole, GZip decoded and streamed; the key redacted in both', async () => {
    const a = agents['agent-a']!;
    const identity = await call(a, await tokenFor(a), '/identity-upper');
    expect(await identity.text()).toBe('key=[redacted]');
    const gzip = await call(a, await tokenFor(a), '/gzip-upper');
    expect(gzip.headers.get('content-encoding')).toBeNull();
    expect(await gzip.text()).toBe('key=[redacted]');
  });

  it('a body shorter than declared is a 502; extra bytes are not passed on; chunked with a length is refused', async () => {
    const a = agents['agent-a']!;
    const short = await call(a, await tokenFor(a), '/short');
    expect(short.status).toBe(502);
    const long = await call(a, await tokenFor(a), '/long');
    if (long.status === 200) expect(await long.text()).toBe('0123456789');
    else expect(long.status).toBe(502);
    const both = await call(a, await tokenFor(a), '/te-and-cl');
    expect(both.status).toBe(502);
  });

  it('204 and 304 with a length, and HEAD, have no body', async () => {
    const a = agents['agent-a']!;
    const none = await call(a, await tokenFor(a), '/no-content');
    expect([none.status, await none.text()]).toEqual([204, '']);
    const same = await call(a, await tokenFor(a), '/not-modified');
    expect([same.status, await same.text()]).toEqual([304, '']);
    const onlyHead = await call(a, await tokenFor(a), '/head', { method: 'HEAD' });
    expect([onlyHead.status, await onlyHead.text()]).toEqual([200, '']);
  });
});

describe('an agent that goes away mid-response leaks nothing', () => {
  async function budget(def: Omit<BudgetDefinition, 'id'>): Promise<string> {
    const id = `b-${randomUUID().slice(0, 8)}`;
    await deputy.budgets.definitions.create({ ...def, id });
    return id;
  }

  async function released(id: string): Promise<{ spent: number; reserved: number }> {
    const b = (await deputy.budgets.definitions.get(id))!;
    for (let i = 0; i < 500; i++) {
      const usage = await deputy.budgets.ledger.usage(b);
      if (usage.reserved === 0) return usage;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`budget ${id} still holds a reservation`);
  }

  for (const path of ['/stall-small', '/stall-big']) {
    it(`${path}: the upstream connection is closed and the budget hold is settled`, async () => {
      const a = agents['agent-a']!;
      const token = await tokenFor(a);
      const id = await budget({ user: String(claimsOf(token).sub), unit: 'requests', window: 'total', limit: 10 });
      const abort = new AbortController();
      const pending = abortable(a, token, path, abort.signal).then(async (res) => {
        await res.body?.getReader().read();
        abort.abort();
      });
      const socket = await socketOf(path);
      if (path === '/stall-small') abort.abort(); // no head reaches the agent before the body is whole
      await pending.catch(() => {});
      await socket.closed;
      expect((await released(id)).reserved).toBe(0);
    });
  }
});

describe('the no-budget memo, over HTTP', () => {
  async function budget(def: Omit<BudgetDefinition, 'id'>): Promise<string> {
    const id = `b-${randomUUID().slice(0, 8)}`;
    await deputy.budgets.definitions.create({ ...def, id });
    return id;
  }

  it('a budget of any kind created while "none applies" is remembered applies to the very next call, also to a delegated chain', async () => {
    const a = agents['agent-a']!;
    const b = agents['agent-b']!;
    const uid = `00u${randomUUID().slice(0, 12)}`;
    const t = await tokenFor(a, uid);
    const user = String(claimsOf(t).sub);
    expect((await call(a, await tokenFor(a, uid), '/head', { method: 'HEAD' })).status).toBe(200);
    // user × agent: the scope is remembered as free; the budget applies to the next call.
    await budget({ user, agent: 'agent-a', unit: 'requests', window: 'total', limit: 1 });
    expect((await call(a, await tokenFor(a, uid), '/head', { method: 'HEAD' })).status).toBe(200);
    expect((await call(a, await tokenFor(a, uid), '/head', { method: 'HEAD' })).status).toBe(402);
    // A chain user → agent-a → agent-b: remembered free, then a budget on the connection.
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    const handoff = (await exchange(a, { subject_token: subject, audience: 'urn:deputy:agent:agent-b', scope: 'deputy.read' })).access_token;
    const chained = async () => (await exchange(b, { subject_token: handoff, resource: `${issuer}/gw/raw`, scope: 'deputy.read' })).access_token;
    expect((await call(b, await chained(), '/head', { method: 'HEAD' })).status).toBe(200);
    await budget({ agent: 'agent-a', user: String(claimsOf(handoff).sub), unit: 'requests', window: 'total', limit: 1 });
    expect((await call(b, await chained(), '/head', { method: 'HEAD' })).status).toBe(200);
    expect((await call(b, await chained(), '/head', { method: 'HEAD' })).status).toBe(402);
  });
});

describe('an upstream that stalls inside a small body', () => {
  let quick: TestDeputy;
  let quickAgent: TestAgent;

  beforeAll(async () => {
    const port = await freePort();
    const keys = await clientKeys();
    quick = await startTestDeputy({
      env: { RAW_KEY: API_KEY },
      config: {
        server: { port },
        trustedIssuers: [idp.issuerConfig('okta')],
        gateway: { bodyTimeoutSeconds: 1 },
        agents: [agentConfig('agent-a', keys, { scopes: ['deputy.read'], audiences: [`http://localhost:${port}/gw/raw`] })],
        connections: [
          { id: 'raw', kind: 'api_key', baseUrl: `${upBase}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'RAW_KEY' }, requiredScopes: ['deputy.read'] },
        ],
      },
    });
    quickAgent = await testAgent(quick.issuer, 'agent-a', keys);
  });
  afterAll(async () => {
    await quick?.stop();
  });

  it('is a 504 once the body timeout passes (nothing was sent to the agent yet), and its connection is closed', async () => {
    const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
    const url = `${quick.issuer}/gw/raw`;
    const token = (await exchange(quickAgent, { subject_token: subject, resource: url, scope: 'deputy.read' })).access_token;
    const res = await client.fetchProtectedResource(quickAgent.config, token, new URL(`${url}/stall-small`), 'GET', null, new Headers(), { DPoP: quickAgent.handle });
    expect(res.status).toBe(504);
    expect(await res.json()).toMatchObject({ error: 'gateway_timeout' });
    await (await socketOf('/stall-small')).closed;
  });
});
