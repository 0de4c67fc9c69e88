/**
 * Property-based fuzzing of every surface (issue 10 §7): seeded fast-check runs over `/token`,
 * `/introspect`, `/revoke`, the AuthZEN endpoints, `/admin/*` and gateway paths. For every
 * generated request:
 *
 * - no 5xx (the store is up and the upstream answers, so nothing may fail on Deputy's side);
 * - no stack trace, no internal error text, and an error body carries only the protocol's own
 *   codes for that surface;
 * - a refusal changes nothing: row counts of every table that holds grants, agents, secrets or
 *   receipts, and every receipt chain head, are the same before and after.
 *
 * `FC_NUM_RUNS` (or the older `FUZZ_RUNS`) sets the cases per property (default 50, which keeps
 * the default `npm test` quick: the server start dominates the file, and each 100 cases cost ~3 s of CPU on the 2-core
 * machine; a deeper run sets `FC_NUM_RUNS=1000`); `FUZZ_SEED` replays a failing run (fast-check
 * prints the seed and the shrunk case).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, clientAssertion, dpopProof, exchange, testAgent, TOKEN_EXCHANGE, type TestAgent } from '../support/agents.js';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient, type ClientKeys } from '../support/clients.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { propertyRuns } from '../support/property-runs.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';

const RUNS = propertyRuns(50);
const SEED = process.env.FUZZ_SEED === undefined ? 0x5eed : Number(process.env.FUZZ_SEED);
const API_KEY = `sk_fuzz_${randomBytes(16).toString('hex')}`;

/** RFC 6749 §5.2, RFC 8693 §2.2.2, RFC 8707 §2, RFC 9449 §5/§12.2, RFC 7009 §2.2.1, RFC 6750 §3.1. */
const OAUTH_ERRORS = new Set([
  'invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope',
  'invalid_target', 'invalid_dpop_proof', 'use_dpop_nonce', 'unsupported_token_type', 'access_denied', 'invalid_token',
  'insufficient_scope',
]);
/** Deputy's own codes for its admin and gateway routes, beside the OAuth ones above. */
const ROUTE_ERRORS = new Set([...OAUTH_ERRORS, 'not_found', 'method_not_allowed', 'conflict', 'payload_too_large', 'unsupported_media_type', 'connection_required']);

let idp: MockIdp;
let up: MockUpstream;
let deputy: TestDeputy;
let issuer: string;
let agent: TestAgent;
let pep: { id: string; keys: ClientKeys };
let adminToken: string;
let pepToken: string;
let agentToken: string;
let userToken: string;

const TABLES = ['token_records', 'agents', 'connections', 'connection_grants', 'connect_flows', 'vault_secrets', 'receipts', 'receipt_chains'];

/**
 * Receipts a refusal may add: a refusal that is itself a decision (policy or registry rules)
 * is receipted by design as a `deny`; at the gateway a permitted call whose upstream answered an
 * error is receipted as the decision it was. Every other refusal writes nothing.
 */
type ReceiptRule = 'deny-only' | 'gateway-decisions';

/**
 * Row counts of everything a refusal must leave as it was, and the receipt count (a refusal may
 * add decision receipts only, see {@link probe}; each one moves its chain's head).
 */
async function snapshot(): Promise<{ grants: string; receipts: number }> {
  const counts = TABLES.map((t) => `(SELECT count(*) FROM ${t})::text AS ${t}`).join(', ');
  const [row] = await deputy.store.query<Record<string, string>>(
    `SELECT ${counts}, (SELECT count(*) FROM token_records WHERE revoked_at IS NOT NULL)::text AS revoked`,
  );
  const { receipts, receipt_chains: _chains, ...grants } = row!;
  return { grants: JSON.stringify(grants), receipts: Number(receipts) };
}

/** The claims of the receipts added since `count` (in order). */
async function receiptsSince(count: number): Promise<Array<{ event: string; decision: string }>> {
  const rows = await deputy.store.query<{ jws: string }>('SELECT jws FROM receipts ORDER BY created_at, seq OFFSET $1', [count]);
  return rows.map((r) => decodeJwt(r.jws) as { event: string; decision: string });
}

/**
 * The checks every response of every surface must pass. Returns the error code of a refusal
 * Deputy wrote, or undefined (success, or an upstream's own answer relayed by the gateway).
 */
async function checkResponse(res: Response, codes: ReadonlySet<string>): Promise<string | undefined> {
  const text = await res.text();
  expect(res.status, text.slice(0, 300)).toBeLessThan(500);
  expect(text).not.toMatch(/\n\s+at .+:\d+:\d+/);
  expect(text).not.toMatch(/oops! something went wrong|an unexpected error occurred|TypeError|ReferenceError|SyntaxError: /);
  expect(text).not.toContain(API_KEY);
  if (res.status >= 400 && text.length > 0 && (res.headers.get('content-type') ?? '').includes('json')) {
    const body = JSON.parse(text) as { error?: unknown };
    if (body.error !== undefined) {
      expect(codes, `unexpected error code ${String(body.error)}`).toContain(body.error);
      return String(body.error);
    }
  }
  return undefined;
}

/** Sends a request and asserts the surface's rules; a refusal must not change state. */
async function probe(send: () => Promise<Response>, codes: ReadonlySet<string>, receiptRule: ReceiptRule = 'deny-only'): Promise<void> {
  const before = await snapshot();
  const res = await send();
  await checkResponse(res, codes);
  if (res.status < 400) return;
  const after = await snapshot();
  expect(after.grants).toBe(before.grants);
  for (const receipt of await receiptsSince(before.receipts)) {
    if (receiptRule === 'deny-only') expect(receipt.decision, `a refusal added a ${receipt.event} receipt`).toBe('deny');
    else expect(receipt.event).toBe('gateway_call');
  }
}

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMockUpstream();
  const port = await freePort();
  issuer = `http://localhost:${port}`;
  const admin = await adminSetup();
  const pepKeys = await clientKeys();
  pep = { id: 'fuzz-pep', keys: pepKeys };
  const agentKeys = await clientKeys();
  deputy = await startTestDeputy({
    env: { ECHO_KEY: API_KEY },
    config: {
      server: { port },
      admin: { clients: [admin.config, { client_id: pep.id, scopes: ['authzen:evaluate'], jwks: pepKeys.jwks }] },
      trustedIssuers: [idp.issuerConfig('okta'), idp.issuerConfig('entra')],
      agents: [agentConfig('fuzz-agent', agentKeys, { scopes: ['deputy.read', 'deputy.write'], audiences: [`${issuer}/gw/echo`, 'urn:deputy:agent:fuzz-agent'] })],
      connections: [
        { id: 'echo', kind: 'api_key', baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] },
      ],
    },
  });
  agent = await testAgent(deputy.issuer, 'fuzz-agent', agentKeys);
  adminToken = await clientCredentialsToken(await oauthClient(deputy.issuer, admin.clientId, admin.keys), 'deputy:admin');
  pepToken = await clientCredentialsToken(await oauthClient(deputy.issuer, pep.id, pep.keys), 'authzen:evaluate');
  userToken = await idp.oktaAccessToken({ scp: ['deputy.read', 'deputy.write'] });
  agentToken = (await exchange(agent, { subject_token: userToken, resource: `${issuer}/gw/echo`, scope: 'deputy.read' })).access_token;
});
afterAll(async () => {
  await deputy?.stop();
  await up?.close();
  await idp?.close();
});

/** Strings an attacker would try: empty, huge, control characters, JWT-shaped garbage, real tokens in the wrong place. */
function hostileString(): fc.Arbitrary<string> {
  return fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 60 }),
    fc.constantFrom('', ' ', '\u0000', '%00', '../../etc/passwd', 'null', '[]', '{}', 'a'.repeat(20_000), '😀'.repeat(50)),
    fc.tuple(fc.base64String({ maxLength: 40 }), fc.base64String({ maxLength: 80 }), fc.base64String({ maxLength: 40 })).map((p) => p.join('.')),
    fc.constantFrom('eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln'),
    fc.constant('__USER__'),
    fc.constant('__AGENT__'),
    fc.constant('__ADMIN__'),
  );
}

/** Replaces placeholders with the real tokens of this run (tokens are made once, in beforeAll). */
function materialize(value: string): string {
  return value.replace('__USER__', userToken).replace('__AGENT__', agentToken).replace('__ADMIN__', adminToken);
}

const TOKEN_PARAMS = ['grant_type', 'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'resource', 'audience', 'scope', 'client_id', 'token', 'token_type_hint', 'client_assertion', 'client_assertion_type'];

function formArb(): fc.Arbitrary<Array<[string, string]>> {
  return fc.array(
    fc.tuple(
      fc.oneof(fc.constantFrom(...TOKEN_PARAMS), fc.string({ maxLength: 12 })),
      fc.oneof(
        hostileString(),
        fc.constantFrom(TOKEN_EXCHANGE, 'client_credentials', 'urn:ietf:params:oauth:token-type:access_token', 'urn:ietf:params:oauth:token-type:id_token', 'urn:ietf:params:oauth:token-type:jwt', 'deputy.read deputy.write', 'deputy:admin', `${'http://localhost'}/admin`),
      ),
    ),
    { maxLength: 10 },
  );
}

type Auth = 'none' | 'assertion' | 'foreign-assertion' | 'basic-garbage';

async function formRequest(path: string, form: Array<[string, string]>, auth: Auth, withProof: boolean): Promise<Response> {
  const body = new URLSearchParams();
  for (const [k, v] of form) body.append(k, materialize(v));
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (auth === 'assertion' || auth === 'foreign-assertion') {
    body.set('client_id', agent.id);
    body.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    body.set('client_assertion', await clientAssertion(auth === 'assertion' ? agent : { id: agent.id, keys: await clientKeys() }, issuer));
  }
  if (auth === 'basic-garbage') headers.authorization = `Basic ${Buffer.from(`${agent.id}:nope`).toString('base64')}`;
  if (withProof) headers.dpop = await dpopProof(agent.dpop, `${issuer}${path}`);
  return fetch(`${deputy.url}${path}`, { method: 'POST', headers, body });
}

const authArb = fc.constantFrom<Auth>('none', 'assertion', 'foreign-assertion', 'basic-garbage');

describe('fuzzing (fast-check, seeded)', () => {
  it.each(['/token', '/introspect', '/revoke'])('%s: no 5xx, only OAuth error codes, nothing changes on refusal', async (path) => {
    await fc.assert(
      fc.asyncProperty(formArb(), authArb, fc.boolean(), async (form, auth, withProof) => {
        await probe(() => formRequest(path, form, auth, withProof), OAUTH_ERRORS);
      }),
      { numRuns: RUNS, seed: SEED },
    );
  });

  it('/token: a valid exchange with one parameter made hostile is refused with an OAuth code and changes nothing', async () => {
    const valid = (): Record<string, string> => ({
      grant_type: TOKEN_EXCHANGE,
      subject_token: userToken,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      resource: `${issuer}/gw/echo`,
      scope: 'deputy.read',
    });
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('subject_token', 'subject_token_type', 'resource', 'scope', 'audience', 'actor_token', 'actor_token_type', 'requested_token_type', 'grant_type'),
        hostileString(),
        fc.boolean(),
        async (param, value, duplicate) => {
          const form = Object.entries(valid());
          const mutated: Array<[string, string]> = duplicate ? [...form, [param, value]] : [...form.filter(([k]) => k !== param), [param, value]];
          await probe(() => formRequest('/token', mutated, 'assertion', true), OAUTH_ERRORS);
        },
      ),
      { numRuns: RUNS, seed: SEED },
    );
  });

  const authzenPaths = ['/access/v1/evaluation', '/access/v1/evaluations', '/access/v1/search/subject', '/access/v1/search/resource', '/access/v1/search/action'];
  const entityArb = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.record({ type: fc.oneof(fc.constantFrom('user', 'agent', 'Agent', 'User', 'account'), fc.string()), id: fc.oneof(hostileString(), fc.integer()), properties: fc.option(fc.jsonValue({ maxDepth: 2 })) }, { requiredKeys: [] }),
  );
  const authzenBodyArb = fc.oneof(
    fc.jsonValue({ maxDepth: 4 }),
    fc.record(
      {
        subject: entityArb,
        action: fc.oneof(fc.record({ name: fc.oneof(fc.string(), fc.constantFrom('read', 'delegate', 'can_read_user')) }), fc.jsonValue({ maxDepth: 2 })),
        resource: entityArb,
        context: fc.jsonValue({ maxDepth: 3 }),
        evaluations: fc.array(fc.record({ subject: entityArb, action: fc.jsonValue({ maxDepth: 2 }), resource: entityArb }, { requiredKeys: [] }), { maxLength: 5 }),
        options: fc.jsonValue({ maxDepth: 2 }),
        page: fc.jsonValue({ maxDepth: 2 }),
      },
      { requiredKeys: [] },
    ),
  );

  it('AuthZEN endpoints: any JSON is a decision or an AuthZEN 400, never a 5xx or a state change', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...authzenPaths), authzenBodyArb, fc.constantFrom('pep', 'none', 'agent', 'admin'), async (path, body, who) => {
        const token = { pep: pepToken, none: undefined, agent: agentToken, admin: adminToken }[who];
        const text = typeof body === 'string' && body.startsWith('__') ? materialize(body) : JSON.stringify(body);
        await probe(
          () => fetch(`${deputy.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: text }),
          ROUTE_ERRORS,
        );
      }),
      { numRuns: RUNS, seed: SEED },
    );
  });

  it('admin API: hostile paths, methods and bodies are refused cleanly; nothing changes on refusal', async () => {
    const segment = fc.oneof(fc.constantFrom('agents', 'connections', 'policies', 'receipts', 'reload', 'disable', 'enable', 'rotate', 'fuzz-agent', 'echo', '..', '%2e%2e', '%00'), fc.webSegment(), hostileString().map(encodeURIComponent));
    await fc.assert(
      fc.asyncProperty(
        fc.array(segment, { minLength: 1, maxLength: 4 }),
        fc.constantFrom('GET', 'POST', 'PATCH', 'PUT', 'DELETE'),
        fc.oneof(fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)), hostileString()),
        fc.constantFrom('admin', 'agent', 'none', 'pep'),
        async (segments, method, body, who) => {
          const token = { admin: adminToken, agent: agentToken, none: undefined, pep: pepToken }[who];
          // A valid admin may legitimately create or change things; refusals must change nothing.
          const path = `/admin/${segments.join('/')}`;
          await probe(
            () =>
              fetch(`${deputy.url}${path}`, {
                method,
                headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
                ...(method === 'GET' || method === 'DELETE' ? {} : { body }),
              }),
            ROUTE_ERRORS,
          );
        },
      ),
      { numRuns: RUNS, seed: SEED },
    );
  });

  it('gateway: hostile paths, methods, headers and proofs never reach a 5xx, a leak or a state change on refusal', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.webSegment(), fc.constantFrom('..', '%2e%2e', '%2F', '%00', '//', 'a'.repeat(3000))), { maxLength: 5 }),
        fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'OPTIONS'),
        fc.constantFrom('echo', 'missing', '..', ''),
        fc.constantFrom('valid', 'none', 'wrong-url', 'bearer', 'garbage'),
        fc.dictionary(fc.constantFrom('x-api-key', 'cookie', 'forwarded', 'x-forwarded-host', 'x-forwarded-proto', 'x-custom'), fc.string({ maxLength: 30 }).filter((s) => /^[\x20-\x7e]*$/.test(s)), { maxKeys: 3 }),
        async (segments, method, connection, proofKind, extra) => {
          const url = `${deputy.url}/gw/${connection}/${segments.join('/')}`;
          const htu = `${issuer}/gw/${connection}/${segments.join('/')}`;
          const headers: Record<string, string> = { ...extra };
          if (proofKind === 'bearer') headers.authorization = `Bearer ${agentToken}`;
          else if (proofKind === 'garbage') headers.authorization = `DPoP ${randomUUID()}`;
          else if (proofKind !== 'none') {
            headers.authorization = `DPoP ${agentToken}`;
            headers.dpop = await dpopProof(agent.dpop, proofKind === 'valid' ? htu : `${htu}/other`, { htm: method, accessToken: agentToken });
          }
          await probe(() => fetch(url, { method, headers, ...(method === 'POST' || method === 'PUT' ? { body: 'x' } : {}) }), ROUTE_ERRORS, 'gateway-decisions');
        },
      ),
      { numRuns: RUNS, seed: SEED },
    );
  });
});
