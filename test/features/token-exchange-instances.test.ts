/**
 * Token exchange across instances and under concurrency: DPoP replay refused exactly once-only
 * (insert-or-fail in the shared store), server nonces valid on every instance, and revocation
 * racing exchanges (no descendant of a revoked token survives; store-level race: test/store/contract.ts).
 */
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, claimsOf, clientAssertion, dpopProof, dpopKeys, exchange, rawExchange, testAgent, TOKEN_EXCHANGE, ACCESS_TOKEN_TYPE } from '../support/agents.js';
import { adminSetup, clientKeys, type ClientKeys } from '../support/clients.js';
import { createTestDatabase, usingPostgres, type TestDatabase } from '../support/database.js';
import { json } from '../support/http.js';
import { API, replayedAssertion, replayedProof, replayExchanges } from '../support/exchange-replay.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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

/**
 * One instance on its own database, shared by the two single-instance groups below: each test
 * writes under fresh subject tokens, proofs and assertions and counts rows by difference, so
 * neither depends on an empty database (one database opened fewer: BENCHMARKS.md, issue 16
 * sixth round, second pass).
 */
let single: Promise<TestDeputy> | undefined;
const singleInstance = (): Promise<TestDeputy> => (single ??= startTestDeputy({ config: config() }));
afterAll(async () => {
  await (await single)?.stop();
});

describe('concurrency on one instance', () => {
  let deputy: TestDeputy;
  beforeAll(async () => {
    deputy = await singleInstance();
  });

  it('accepts one DPoP proof exactly once when the same proof races', async () => {
    const agent = { id: 'agent-a', keys: agentKeys, dpop: await dpopKeys() };
    const subject = await idp.oktaAccessToken();
    const proof = await dpopProof(agent.dpop, `${deputy.issuer}/token`);
    const count = async () => (await deputy.store.query<{ n: number }>('SELECT count(*)::int AS n FROM token_records'))[0]!.n;
    const before = await count();
    const results = await Promise.all(
      Array.from({ length: 8 }, () => rawExchange(deputy.url, deputy.issuer, agent, { subject_token: subject, resource: API }, { proof }).then((r) => json(r))),
    );
    expect(results.filter((r) => typeof r.access_token === 'string')).toHaveLength(1);
    expect(results.filter((r) => r.error === 'invalid_dpop_proof')).toHaveLength(7);
    expect((await count()) - before).toBe(1);
  });
});

describe('single-use values spent with the token (issue 16: one commit per exchange)', () => {
  let deputy: TestDeputy;
  const agent = () => ({ id: 'agent-a', keys: agentKeys });
  beforeAll(async () => {
    deputy = await singleInstance();
  });

  const { send, fresh, written } = replayExchanges(() => deputy, () => idp, agent);

  it('identical requests racing: exactly one token, one vault row, one receipt', async () => {
    const { assertion, proof } = await fresh();
    const before = await written();
    const results = await Promise.all(Array.from({ length: 6 }, () => send(assertion, proof)));
    expect(results.filter((r) => typeof r.body.access_token === 'string')).toHaveLength(1);
    for (const r of results.filter((x) => x.status !== 200)) expect(r).toMatchObject(replayedProof);
    const after = await written();
    expect({ t: after.t - before.t, v: after.v - before.v, r: after.r - before.r }).toEqual({ t: 1, v: 1, r: 1 });
  });

  it('a replayed client assertion with a fresh proof: invalid_client, nothing written, the proof spent', async () => {
    const first = await fresh();
    expect((await send(first.assertion, first.proof)).status).toBe(200);
    const before = await written();
    const second = await fresh();
    expect(await send(first.assertion, second.proof)).toMatchObject(replayedAssertion);
    expect(await written()).toEqual(before);
    expect(await send(await clientAssertion(agent(), deputy.issuer), second.proof)).toMatchObject(replayedProof);
  });

  it('a replayed proof with a fresh assertion: invalid_dpop_proof, nothing written, the assertion spent', async () => {
    const first = await fresh();
    expect((await send(first.assertion, first.proof)).status).toBe(200);
    const before = await written();
    const second = await fresh();
    expect(await send(second.assertion, first.proof)).toMatchObject(replayedProof);
    expect(await written()).toEqual(before);
    expect(await send(second.assertion, (await fresh()).proof)).toMatchObject(replayedAssertion);
  });

  it('refused by policy after the look-up: a deny receipt only, and both values spent', async () => {
    const { assertion, proof } = await fresh();
    const before = await written();
    // The subject token grants deputy.write; agent-a may not hold it: the delegate decision denies.
    const denied = await send(assertion, proof, { scope: 'deputy.write' });
    expect(denied.body.error, JSON.stringify(denied.body)).toBe('invalid_scope');
    const after = await written();
    expect({ t: after.t - before.t, v: after.v - before.v, r: after.r - before.r }).toEqual({ t: 0, v: 0, r: 1 });
    expect(await send(await clientAssertion(agent(), deputy.issuer), proof)).toMatchObject(replayedProof);
    expect(await send(assertion, (await fresh()).proof)).toMatchObject(replayedAssertion);
    expect(await written()).toEqual(after);
  });

  // The values are not looked up before the exchange runs (issue 16, fifth round): a replay the
  // policy would refuse must still be refused as a replay, with no `deny` receipt.
  it('a replayed proof or assertion that policy would refuse: the replay error, no deny receipt', async () => {
    const first = await fresh();
    expect((await send(first.assertion, first.proof)).status).toBe(200);
    const before = await written();
    expect(await send((await fresh()).assertion, first.proof, { scope: 'deputy.write' })).toMatchObject(replayedProof);
    expect(await send(first.assertion, (await fresh()).proof, { scope: 'deputy.write' })).toMatchObject(replayedAssertion);
    expect(await written()).toEqual(before);
  });

  it('a replayed proof or assertion with a refused subject token: the replay error, nothing written', async () => {
    const first = await fresh();
    expect((await send(first.assertion, first.proof)).status).toBe(200);
    const before = await written();
    const badSubject = { subject_token: 'not-a-jwt' };
    expect(await send((await fresh()).assertion, first.proof, badSubject)).toMatchObject(replayedProof);
    expect(await send(first.assertion, (await fresh()).proof, badSubject)).toMatchObject(replayedAssertion);
    expect(await written()).toEqual(before);
  });

  it('replays racing fresh exchanges of the same agent (one group statement): each replay refused alone, the others issued', async () => {
    const used = await fresh();
    expect((await send(used.assertion, used.proof)).status).toBe(200);
    const before = await written();
    const requests = await Promise.all(Array.from({ length: 6 }, () => fresh()));
    const results = await Promise.all([
      ...requests.map((r) => send(r.assertion, r.proof)),
      send((await fresh()).assertion, used.proof),
      send(used.assertion, (await fresh()).proof),
    ]);
    expect(results.slice(0, 6).map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(results[6]).toMatchObject(replayedProof);
    expect(results[7]).toMatchObject(replayedAssertion);
    const after = await written();
    expect({ t: after.t - before.t, v: after.v - before.v, r: after.r - before.r }).toEqual({ t: 6, v: 6, r: 6 });
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

describe.skipIf(!usingPostgres)('revocation racing exchanges, two instances on one PostgreSQL', { timeout: 240_000 }, () => {
  const ISSUER = 'http://deputy.test';
  const TRIES = 16;
  const handoff = (id: string) => `urn:deputy:agent:${id}`;
  let database: TestDatabase;
  let one: TestDeputy;
  let two: TestDeputy;
  let admin: { id: string; keys: ClientKeys };
  const keys: Record<string, ClientKeys> = {};

  beforeAll(async () => {
    database = await createTestDatabase();
    const a = await adminSetup();
    admin = { id: a.clientId, keys: a.keys };
    for (const id of ['agent-a', 'agent-b', 'agent-c', 'agent-d', 'agent-e']) keys[id] = await clientKeys();
    const link = (id: string, audiences: string[]) => agentConfig(id, keys[id]!, { scopes: ['deputy.read'], audiences, maxDelegationDepth: 5 });
    const shared: ConfigInput = {
      server: { issuer: ISSUER },
      admin: { clients: [a.config] },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [
        link('agent-a', [handoff('agent-b')]),
        link('agent-b', [handoff('agent-c')]),
        link('agent-c', [handoff('agent-d')]),
        link('agent-d', [handoff('agent-e')]),
        link('agent-e', [API]),
      ],
    };
    one = await startTestDeputy({ config: shared, keysDir, database });
    two = await startTestDeputy({ config: shared, keysDir, database });
  });
  afterAll(async () => {
    await one?.stop();
    await two?.stop();
    await database?.drop();
  });

  /** A form POST as a load balancer would forward it (Host is the public name), authenticated with private_key_jwt. */
  async function post(instance: TestDeputy, path: string, caller: { id: string; keys: ClientKeys }, fields: Record<string, string>, dpop?: string) {
    const body = new URLSearchParams({
      ...fields,
      client_id: caller.id,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: await clientAssertion(caller, ISSUER),
    });
    const res = await request(`${instance.url}${path}`, {
      method: 'POST',
      headers: { host: 'deputy.test', 'content-type': 'application/x-www-form-urlencoded', ...(dpop ? { dpop } : {}) },
      body: body.toString(),
    });
    const text = await res.body.text();
    return { status: res.statusCode, body: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
  }

  const dpopOf: Record<string, Awaited<ReturnType<typeof dpopKeys>>> = {};
  async function exchangeAt(instance: TestDeputy, agentId: string, subject: string, target: Record<string, string>) {
    dpopOf[agentId] ??= await dpopKeys();
    const fields = { grant_type: TOKEN_EXCHANGE, subject_token: subject, subject_token_type: ACCESS_TOKEN_TYPE, ...target };
    return post(instance, '/token', { id: agentId, keys: keys[agentId]! }, fields, await dpopProof(dpopOf[agentId]!, `${ISSUER}/token`));
  }
  async function issued(instance: TestDeputy, agentId: string, subject: string, next: string): Promise<string> {
    const res = await exchangeAt(instance, agentId, subject, { audience: handoff(next) });
    expect(res.body).toMatchObject({ token_type: 'DPoP' });
    return res.body.access_token as string;
  }

  it(`no token exchanged from a revoked root or middle link stays active or exchangeable (${TRIES} tries)`, async () => {
    let survivors = 0;
    for (let i = 0; i < TRIES; i++) {
      const [near, far] = i % 2 === 0 ? [one, two] : [two, one];
      const toB = await issued(near, 'agent-a', await idp.oktaAccessToken(), 'agent-b');
      const toC = await issued(far, 'agent-b', toB, 'agent-c');
      const toD = await issued(near, 'agent-c', toC, 'agent-d');
      // Four exchanges of C's token by D, on both instances, while an admin revokes the root or the middle link.
      const exchanges = Array.from({ length: 4 }, (_, n) => exchangeAt(n % 2 === 0 ? one : two, 'agent-d', toD, { audience: handoff('agent-e') }));
      // Started a little later each try, so it lands at different points of the exchanges' work.
      const revocation = new Promise((resolve) => setTimeout(resolve, (i * 25) % 200)).then(() => post(far, '/revoke', admin, { token: i % 4 < 2 ? toB : toC }));
      const results = await Promise.all(exchanges);
      expect((await revocation).status).toBe(200);
      const children = results.filter((r) => typeof r.body.access_token === 'string').map((r) => r.body.access_token as string);
      // Each exchange either won the race (and its token died with the revocation) or was refused.
      for (const r of results) if (!r.body.access_token) expect(r.body).toMatchObject({ error: 'invalid_grant', error_description: expect.stringMatching(/revoked/) });
      for (const token of [toC, toD, ...children]) {
        for (const instance of [one, two]) {
          const introspection = await post(instance, '/introspect', admin, { token });
          if (introspection.body.active !== false) survivors++;
        }
      }
      // The revocation cache the PDP and gateway read: on the revoking instance, at once.
      for (const token of [toC, toD, ...children]) if (!(await far.revocations.isRevoked(claimsOf(token).jti!))) survivors++;
      for (const token of children) {
        const again = await exchangeAt(i % 2 === 0 ? two : one, 'agent-e', token, { resource: API });
        if (again.body.error !== 'invalid_grant') survivors++;
      }
    }
    expect(survivors).toBe(0);
  });
});
