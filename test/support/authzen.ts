/**
 * A Deputy serving a given Cedar policy folder, with a PEP client that holds a real
 * `authzen:evaluate` token (client_credentials, private_key_jwt), and JSON POST helpers.
 */
import { request } from 'node:http';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import Koa from 'koa';
import { decodeJwt } from 'jose';
import { vi } from 'vitest';
import { OperatorTokenRevocations } from '../../src/oauth/operator-token-revocation.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { agentConfig, exchange, testAgent, type TestAgent } from './agents.js';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient, type ClientKeys } from './clients.js';
import type { MockIdp } from './mock-idp.js';
import { json, type Json } from './http.js';
import { startTestDeputy, type TestDeputy } from './server.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const EXAMPLES = `${REPO}config/policies/examples`;
export const FIXTURES = `${REPO}test/fixtures/authzen`;

export interface PdpHarness {
  deputy: TestDeputy;
  /** A PEP access token (scope authzen:evaluate, audience <issuer>/access). */
  pepToken: string;
  /** An admin token (scope deputy:admin). */
  adminToken: string;
  pep: { id: string; keys: ClientKeys };
  admin: { id: string; keys: ClientKeys };
  /** POSTs JSON to `path` as the PEP; returns status, headers and parsed body. */
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<{ status: number; headers: Headers; body: Json }>;
  stop(): Promise<void>;
}

export async function startPdpHarness(options: { policies: string; config?: ConfigInput; env?: Readonly<Record<string, string>> }): Promise<PdpHarness> {
  const adminClient = await adminSetup();
  const pepKeys = await clientKeys();
  const input = options.config ?? {};
  const deputy = await startTestDeputy({
    ...(options.env ? { env: options.env } : {}),
    config: {
      ...input,
      pdp: { policies: options.policies, watch: false, ...input.pdp },
      admin: { clients: [adminClient.config, { client_id: 'test-pep', scopes: ['authzen:evaluate'], jwks: pepKeys.jwks }, ...(input.admin?.clients ?? [])] },
    },
  });
  const pepToken = await clientCredentialsToken(await oauthClient(deputy.issuer, 'test-pep', pepKeys), 'authzen:evaluate');
  const adminToken = await clientCredentialsToken(await oauthClient(deputy.issuer, adminClient.clientId, adminClient.keys), 'deputy:admin');
  return {
    deputy,
    pepToken,
    adminToken,
    pep: { id: 'test-pep', keys: pepKeys },
    admin: { id: adminClient.clientId, keys: adminClient.keys },
    async post(path, body, headers = {}) {
      const res = await fetch(`${deputy.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${pepToken}`, ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as Json) : {} };
    },
    stop: () => deputy.stop(),
  };
}

export { json };

/**
 * Counts the PDP's `evaluate` calls from now on (the cached path answers without them).
 * @returns a function giving the number of calls so far.
 */
export function countEvaluations(h: PdpHarness): () => number {
  let calls = 0;
  const pdp = h.deputy.pdp.pdp;
  const evaluate = pdp.evaluate.bind(pdp);
  pdp.evaluate = (...args) => {
    calls++;
    return evaluate(...args);
  };
  return () => calls;
}

/**
 * From the harness's `/metrics` (admin token): 200 answers of `POST /access/v1/evaluation` in
 * `deputy_http_requests_total`, and permits in `deputy_pdp_decisions_total{source="evaluation"}`.
 */
export async function evaluationCounts(h: PdpHarness): Promise<[number, number]> {
  const text = await (await fetch(`${h.deputy.url}/metrics`, { headers: { authorization: `Bearer ${h.adminToken}` } })).text();
  const http = text.match(/deputy_http_requests_total\{route="\/access\/v1\/evaluation",method="POST",status="200"\} (\d+)/);
  const decisions = text.match(/deputy_pdp_decisions_total\{decision="permit",source="evaluation"\} (\d+)/);
  return [Number(http?.[1]), Number(decisions?.[1])];
}

/** An answer as sent: status, header names and values in order (without `Date`), the body's text. */
export interface RawAnswer {
  status: number;
  headers: string[];
  body: string;
}

/**
 * POSTs `body` (bytes as given) to `path` as the PEP over `node:http`, with a fixed request id
 * unless `headers` says otherwise: the answer as sent, for byte-for-byte comparisons of the PDP's
 * paths (the lean path, the cached path, the routes).
 */
export function rawPost(h: PdpHarness, path: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const all = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), authorization: `Bearer ${h.pepToken}`, 'x-request-id': 'lean-1', ...headers };
    const req = request(`${h.deputy.url}${path}`, { method: 'POST', headers: all }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve({ status: res.statusCode!, headers: res.rawHeaders.filter((_, i, raw) => raw[i - (i % 2)] !== 'Date'), body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject).end(body);
  });
}

/**
 * Counts the Koa contexts built for `/access/…` from now on (a request answered before Koa, on
 * the cached or the lean path, builds none). Only those paths: other Koa apps in the process
 * (oidc-provider's own, a JWKS re-read, an earlier file's server in a reused worker) build their own.
 * Undone by `vi.restoreAllMocks()`.
 */
export function countKoaContexts(): () => number {
  const spy = vi.spyOn(Koa.prototype, 'createContext');
  return () => spy.mock.results.filter((r) => r.type === 'return' && String((r.value as { path?: unknown }).path).startsWith('/access/')).length;
}

/**
 * Holds the harness's PEP token "known not revoked": the PDP's paths before Koa take a request
 * only while that answer is fresh (2 s, tested in pep-token-revocation*.test.ts); on a loaded
 * machine the steps between two requests can outlast it and the request then goes, rightly, to
 * Koa. For files whose PEP token is never revoked and which assert which path answered.
 * Undone by `vi.restoreAllMocks()`.
 */
export function holdPepTokenLive(h: PdpHarness): void {
  const pepJti = decodeJwt(h.pepToken).jti;
  const knownLive = OperatorTokenRevocations.prototype.knownLive;
  vi.spyOn(OperatorTokenRevocations.prototype, 'knownLive').mockImplementation(function (this: OperatorTokenRevocations, jti, now) {
    return jti === pepJti || knownLive.call(this, jti, now);
  });
}

/** The development IdP's Alice, as the chain fixtures' users know her. */
export const ALICE = { uid: '00ualice00000000001', email: 'alice@example.com' } as const;

/** The `sub` of a JWT (the delegated subject's id in an AuthZEN request), read without verifying. */
export const subOf = (token: string): string => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sub;

/** An AuthZEN subject carrying a delegated agent token (`properties.token`). */
export const delegated = (token: string) => ({ type: 'User', id: subOf(token), properties: { token } });

/** Alice as a plain AuthZEN subject (no token). */
export const plainAlice = { type: 'User', id: ALICE.email, properties: { email: ALICE.email } };

/** A `Document` resource with no properties. */
export const doc = (id: string) => ({ type: 'Document', id, properties: {} });

/** The resource the chain agents read ({@link chainAgents}). */
export const DOCS = 'https://docs.example.com';
/** The audience an agent hands a token to another agent with (`urn:deputy:agent:{id}`). */
export const handoff = (id: string): string => `urn:deputy:agent:${id}`;

/** The tokens of Alice's three-link chain ({@link chainTokens}). */
export interface ChainTokens {
  /** agent-a for Alice at {@link DOCS} (depth 1). */
  one: string;
  /** agent-a for Alice, handed to agent-b. */
  handToB: string;
  /** agent-b (from `handToB`), handed to agent-c. */
  handToC: string;
  /** agent-c (from `handToC`) at {@link DOCS} (depth 3). */
  three: string;
}

/**
 * The chain agents agent-a → agent-b → agent-c: their keys and their configuration (each reads
 * `docs.read` at {@link DOCS} and may hand off to the next; depth 3), for `config.agents`.
 */
export async function chainAgents(): Promise<{ keys: Record<string, ClientKeys>; configs: Array<ReturnType<typeof agentConfig>> }> {
  const keys: Record<string, ClientKeys> = {};
  for (const id of ['agent-a', 'agent-b', 'agent-c']) keys[id] = await clientKeys();
  const configs = [
    agentConfig('agent-a', keys['agent-a']!, { scopes: ['docs.read'], audiences: [DOCS, handoff('agent-b')], maxDelegationDepth: 3 }),
    agentConfig('agent-b', keys['agent-b']!, { scopes: ['docs.read'], audiences: [DOCS, handoff('agent-c')], maxDelegationDepth: 3 }),
    agentConfig('agent-c', keys['agent-c']!, { scopes: ['docs.read'], audiences: [DOCS], maxDelegationDepth: 3 }),
  ];
  return { keys, configs };
}

/**
 * The chain agents ({@link chainAgents}) as clients of the Deputy at `issuer`, and Alice's chain
 * exchanged through them from an Okta token of `idp` (see {@link ChainTokens}).
 */
export async function chainTokens(issuer: string, idp: MockIdp, keys: Record<string, ClientKeys>): Promise<{ agents: Record<string, TestAgent>; tokens: ChainTokens }> {
  const agents: Record<string, TestAgent> = {};
  for (const id of Object.keys(keys)) agents[id] = await testAgent(issuer, id, keys[id]!);
  const user = await idp.oktaAccessToken({ uid: ALICE.uid, email: ALICE.email, scp: ['openid', 'docs.read'] });
  const one = (await exchange(agents['agent-a']!, { subject_token: user, resource: DOCS, scope: 'docs.read' })).access_token;
  const handToB = (await exchange(agents['agent-a']!, { subject_token: user, audience: handoff('agent-b'), scope: 'docs.read' })).access_token;
  const handToC = (await exchange(agents['agent-b']!, { subject_token: handToB, audience: handoff('agent-c') })).access_token;
  const three = (await exchange(agents['agent-c']!, { subject_token: handToC, resource: DOCS })).access_token;
  return { agents, tokens: { one, handToB, handToC, three } };
}

/**
 * Writes `parts` (raw HTTP/1.x bytes, in order, each after the server answered what `waitFor`
 * names, when given) on one connection and returns everything the server sent until it closed,
 * without `Date` lines (the server's clock).
 */
export function rawExchange(h: PdpHarness, parts: ReadonlyArray<{ bytes: string; waitFor?: string }>): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(new URL(h.deputy.url).port), '127.0.0.1');
    let received = '';
    let waiting: { text: string; then: () => void } | undefined;
    socket.on('data', (b: Buffer) => {
      received += b.toString('latin1');
      if (waiting && received.includes(waiting.text)) {
        const then = waiting.then;
        waiting = undefined;
        then();
      }
    });
    socket.on('error', reject).on('close', () => resolve(received.replace(/^Date: .*\r\n/gim, '')));
    const send = (i: number): void => {
      if (i === parts.length) return;
      const part = parts[i]!;
      const write = () => socket.write(part.bytes, () => send(i + 1));
      if (part.waitFor === undefined || received.includes(part.waitFor)) write();
      else waiting = { text: part.waitFor, then: write };
    };
    socket.on('connect', () => send(0));
  });
}
