/**
 * Token exchange across instances and under concurrency: DPoP replay refused exactly once-only
 * (insert-or-fail in the shared store), server nonces valid on every instance.
 */
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, clientAssertion, dpopProof, dpopKeys, exchange, rawExchange, testAgent, TOKEN_EXCHANGE, ACCESS_TOKEN_TYPE } from '../support/agents.js';
import { clientKeys, type ClientKeys } from '../support/clients.js';
import { createTestDatabase, usingPostgres, type TestDatabase } from '../support/database.js';
import { json } from '../support/http.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const API = 'https://api.example.com';
let idp: MockIdp;
let agentKeys: ClientKeys;
let keysDir: string;

beforeAll(async () => {
  idp = await startMockIdp();
  agentKeys = await clientKeys();
  keysDir = mkdtempSync(join(tmpdir(), 'deputy-shared-keys-'));
});
afterAll(async () => {
  await idp?.close();
  rmSync(keysDir, { recursive: true, force: true });
});

const config = (extra: ConfigInput = {}): ConfigInput => ({
  trustedIssuers: [idp.issuerConfig('okta')],
  agents: [agentConfig('agent-a', agentKeys, { scopes: ['deputy.read'], audiences: [API] })],
  ...extra,
});

describe('concurrency on one instance', () => {
  let deputy: TestDeputy;
  beforeAll(async () => {
    deputy = await startTestDeputy({ config: config() });
  });
  afterAll(() => deputy?.stop());

  it('accepts one DPoP proof exactly once when the same proof races', async () => {
    const agent = { id: 'agent-a', keys: agentKeys, dpop: await dpopKeys() };
    const subject = await idp.oktaAccessToken();
    const proof = await dpopProof(agent.dpop, `${deputy.issuer}/token`);
    const results = await Promise.all(
      Array.from({ length: 8 }, () => rawExchange(deputy.url, deputy.issuer, agent, { subject_token: subject, resource: API }, { proof }).then((r) => json(r))),
    );
    expect(results.filter((r) => typeof r.access_token === 'string')).toHaveLength(1);
    expect(results.filter((r) => r.error === 'invalid_dpop_proof')).toHaveLength(7);
    const rows = await deputy.store.query<{ n: number }>('SELECT count(*)::int AS n FROM token_records');
    expect(rows[0]!.n).toBe(1);
  });
});

describe('DPoP server nonces (RFC 9449 §8)', () => {
  let one: TestDeputy;
  let two: TestDeputy;
  beforeAll(async () => {
    const nonceConfig = config({ dpop: { requireNonce: true } });
    one = await startTestDeputy({ config: nonceConfig, keysDir });
    two = await startTestDeputy({ config: nonceConfig, keysDir });
  });
  afterAll(async () => {
    await one?.stop();
    await two?.stop();
  });

  it('asks for a nonce, accepts it, and accepts one instance\'s nonce at another', async () => {
    const agent = { id: 'agent-a', keys: agentKeys, dpop: await dpopKeys() };
    const params = { subject_token: await idp.oktaAccessToken(), resource: API };
    const first = await rawExchange(one.url, one.issuer, agent, params);
    expect(first.status).toBe(400);
    expect(await json(first)).toMatchObject({ error: 'use_dpop_nonce' });
    const nonce = first.headers.get('dpop-nonce');
    expect(nonce).toBeTruthy();

    const retried = await rawExchange(one.url, one.issuer, agent, params, { proofOptions: { nonce: nonce! } });
    expect((await json(retried)).token_type).toBe('DPoP');
    const elsewhere = await rawExchange(two.url, two.issuer, agent, params, { proofOptions: { nonce: nonce! } });
    expect((await json(elsewhere)).token_type).toBe('DPoP');

    const forged = await rawExchange(one.url, one.issuer, agent, params, { proofOptions: { nonce: 'not-a-real-nonce' } });
    expect(await json(forged)).toMatchObject({ error: 'use_dpop_nonce' });
  });

  it('openid-client follows the nonce challenge on its own', async () => {
    const agent = await testAgent(one.issuer, 'agent-a', agentKeys);
    const res = await exchange(agent, { subject_token: await idp.oktaAccessToken(), resource: API });
    expect(res.token_type).toBe('dpop');
  });
});

describe.skipIf(!usingPostgres)('two instances on one PostgreSQL', () => {
  const ISSUER = 'http://deputy.test';
  let database: TestDatabase;
  let one: TestDeputy;
  let two: TestDeputy;
  beforeAll(async () => {
    database = await createTestDatabase();
    const shared = config({ server: { issuer: ISSUER } });
    one = await startTestDeputy({ config: shared, keysDir, database });
    two = await startTestDeputy({ config: shared, keysDir, database });
  });
  afterAll(async () => {
    await one?.stop();
    await two?.stop();
    await database?.drop();
  });

  /** A token request as a load balancer would forward it: Host is the public name. */
  async function post(instance: TestDeputy, proof: string, subject: string) {
    const body = new URLSearchParams({
      grant_type: TOKEN_EXCHANGE,
      subject_token: subject,
      subject_token_type: ACCESS_TOKEN_TYPE,
      resource: API,
      client_id: 'agent-a',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await clientAssertion({ id: 'agent-a', keys: agentKeys }, ISSUER),
    });
    const res = await request(`${instance.url}/token`, {
      method: 'POST',
      headers: { host: 'deputy.test', 'content-type': 'application/x-www-form-urlencoded', dpop: proof },
      body: body.toString(),
    });
    return (await res.body.json()) as Record<string, unknown>;
  }

  it('refuses at instance two a DPoP proof already used at instance one', async () => {
    const dpop = await dpopKeys();
    const subject = await idp.oktaAccessToken();
    const proof = await dpopProof(dpop, `${ISSUER}/token`);
    expect(await post(one, proof, subject)).toMatchObject({ token_type: 'DPoP' });
    expect(await post(two, proof, subject)).toMatchObject({ error: 'invalid_dpop_proof', error_description: expect.stringMatching(/replay/) });
    // A fresh proof works at instance two: the refusal was the replay, nothing else.
    expect(await post(two, await dpopProof(dpop, `${ISSUER}/token`), subject)).toMatchObject({ token_type: 'DPoP' });
  });
});
