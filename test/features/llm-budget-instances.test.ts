/**
 * DESIGN invariant "no budget is ever exceeded, under any concurrency, on any store", across
 * instances: two Deputy processes' worth of servers on one PostgreSQL database (PGlite is one
 * process's database, so this runs with DATABASE_URL only; one instance's concurrency runs on
 * both stores in ./llm-gateway.test.ts and test/store/budget-contract.ts). 50 concurrent model
 * calls, spread over both instances, against a budget that admits 10.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, dpopKeys, rawExchange, type DpopKeys } from '../support/agents.js';
import { clientKeys, type ClientKeys } from '../support/clients.js';
import { createTestDatabase, usingPostgres, type TestDatabase } from '../support/database.js';
import { dpopFetch } from '../support/dpop-fetch.js';
import { startMockLlm, type MockLlm } from '../support/llm-upstream.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';

const ISSUER = 'http://deputy.test';

describe.skipIf(!usingPostgres)('budgets across two instances on one PostgreSQL', { timeout: 120_000 }, () => {
  let idp: MockIdp;
  let llm: MockLlm;
  let database: TestDatabase;
  let keysDir: string;
  let one: TestDeputy;
  let two: TestDeputy;
  let agent: { id: string; keys: ClientKeys; dpop: DpopKeys };

  beforeAll(async () => {
    idp = await startMockIdp();
    llm = await startMockLlm();
    database = await createTestDatabase();
    keysDir = mkdtempSync(join(tmpdir(), 'deputy-llm-keys-'));
    agent = { id: 'agent-a', keys: await clientKeys(), dpop: await dpopKeys() };
    const config = {
      server: { issuer: ISSUER },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [agentConfig('agent-a', agent.keys, { scopes: ['llm'], audiences: [`${ISSUER}/llm/openai`] })],
      connections: [{ id: 'openai', kind: 'llm' as const, provider: 'openai' as const, baseUrl: llm.base, allowInsecureHttp: true, secret: { env: 'OPENAI_KEY' }, requiredScopes: ['llm'] }],
      budgets: { limits: [{ id: 'ten-calls', connection: 'openai', unit: 'requests' as const, window: 'day' as const, limit: 10 }, { id: 'tokens', connection: 'openai', unit: 'output_tokens' as const, window: 'day' as const, limit: 45 }] },
    };
    one = await startTestDeputy({ config, keysDir, database, env: { OPENAI_KEY: 'sk-test' } });
    two = await startTestDeputy({ config, keysDir, database, env: { OPENAI_KEY: 'sk-test' } });
  });
  afterAll(async () => {
    await one?.stop();
    await two?.stop();
    await database?.drop();
    rmSync(keysDir, { recursive: true, force: true });
    await llm?.close();
    await idp?.close();
  });

  async function token(): Promise<string> {
    const res = await rawExchange(one.url, ISSUER, agent, { subject_token: await idp.oktaAccessToken({ scp: ['llm'] }), resource: `${ISSUER}/llm/openai`, scope: 'llm' });
    expect(res.status).toBe(200);
    return ((await res.json()) as { access_token: string }).access_token;
  }

  const usage = async (id: string) => {
    const b = (await one.budgets.definitions.get(id))!;
    return one.budgets.ledger.usage(b);
  };

  it('admits at most 10 of 50 concurrent calls (half streamed), and output tokens never exceed their budget', async () => {
    const t = await token();
    const clients = [one, two].map((d) => new OpenAI({ apiKey: 'unused', baseURL: `${d.url}/llm/openai/v1`, fetch: dpopFetch(agent.dpop, () => t, ISSUER), maxRetries: 0 }));
    const before = llm.requests.length;
    const outcomes = await Promise.all(
      Array.from({ length: 50 }, async (_, n) => {
        const client = clients[n % 2]!;
        try {
          if (n % 4 < 2) {
            const s = await client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8, stream: true });
            for await (const _chunk of s) void _chunk;
          } else await client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 });
          return 'ok';
        } catch (err) {
          return (err as { status?: number }).status;
        }
      }),
    );
    const admitted = outcomes.filter((o) => o === 'ok').length;
    expect(admitted).toBeGreaterThan(0);
    expect(admitted).toBeLessThanOrEqual(10);
    expect(outcomes.filter((o) => o !== 'ok').every((o) => o === 402)).toBe(true);
    expect(llm.requests.length - before).toBeLessThanOrEqual(10);
    for (let i = 0; i < 200 && ((await usage('ten-calls')).reserved > 0 || (await usage('tokens')).reserved > 0); i++) await new Promise((r) => setTimeout(r, 10));
    const calls = await usage('ten-calls');
    const tokens = await usage('tokens');
    expect(calls).toMatchObject({ spent: admitted, reserved: 0 });
    expect(tokens.reserved).toBe(0);
    expect(tokens.spent).toBeLessThanOrEqual(45);
  });
});
