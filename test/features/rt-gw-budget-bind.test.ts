/**
 * Red team of the tenth round's synchronous "no budget applies" (src/budgets/ledger.ts
 * `unbudgeted`, the budget step without a promise): on the HTTP gateway, a budget created after
 * a call was remembered as unbudgeted binds the very next calls through the same instance, under
 * concurrency (both stores), and through another instance on one PostgreSQL once the README's
 * 2 s bound has passed — never more calls over the budget than its limit.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NO_BUDGET_TTL_MS } from '../../src/budgets/index.js';
import { agentConfig, dpopKeys, rawExchange, type DpopKeys } from '../support/agents.js';
import { clientKeys, type ClientKeys } from '../support/clients.js';
import { createTestDatabase, usingPostgres, type TestDatabase } from '../support/database.js';
import { dpopFetch } from '../support/dpop-fetch.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';

const ISSUER = 'http://deputy.test';
const CONNECTIONS = ['here', 'there'];

describe('a budget created after "no budget applies" was remembered, at the HTTP gateway', { timeout: 120_000 }, () => {
  let idp: MockIdp;
  let up: MockUpstream;
  let database: TestDatabase;
  let keysDir: string;
  let one: TestDeputy;
  let two: TestDeputy | undefined;
  let agent: { id: string; keys: ClientKeys; dpop: DpopKeys };

  beforeAll(async () => {
    idp = await startMockIdp();
    up = await startMockUpstream();
    database = await createTestDatabase();
    keysDir = mkdtempSync(join(tmpdir(), 'deputy-rt-gw-'));
    agent = { id: 'agent-a', keys: await clientKeys(), dpop: await dpopKeys() };
    const config = {
      server: { issuer: ISSUER },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [agentConfig('agent-a', agent.keys, { scopes: ['deputy.read'], audiences: CONNECTIONS.map((c) => `${ISSUER}/gw/${c}`) })],
      connections: CONNECTIONS.map((id) => ({ id, kind: 'api_key' as const, baseUrl: `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] })),
    };
    one = await startTestDeputy({ config, keysDir, database, env: { ECHO_KEY: 'k' } });
    if (usingPostgres) two = await startTestDeputy({ config, keysDir, database, env: { ECHO_KEY: 'k' } });
  });
  afterAll(async () => {
    await one?.stop();
    await two?.stop();
    await database?.drop();
    rmSync(keysDir, { recursive: true, force: true });
    await up?.close();
    await idp?.close();
  });

  /** `n` concurrent calls through `deputy` to `connection`: their statuses. */
  async function calls(deputy: TestDeputy, connection: string, n: number): Promise<number[]> {
    const res = await rawExchange(one.url, ISSUER, agent, { subject_token: await idp.oktaAccessToken({ scp: ['deputy.read'] }), resource: `${ISSUER}/gw/${connection}`, scope: 'deputy.read' });
    expect(res.status).toBe(200);
    const token = ((await res.json()) as { access_token: string }).access_token;
    const call = dpopFetch(agent.dpop, () => token, ISSUER);
    return Promise.all(Array.from({ length: n }, async () => {
      const r = await call(`${deputy.url}/gw/${connection}/x`);
      await r.arrayBuffer();
      return r.status;
    }));
  }

  it('through this instance: the next 12 concurrent calls admit exactly the limit (3), the rest 402', async () => {
    expect(await calls(one, 'here', 2)).toEqual([200, 200]); // remembered: no budget applies
    await one.budgets.definitions.create({ id: 'rt-here', connection: 'here', unit: 'requests', window: 'total', limit: 3 });
    const before = up.requests.length;
    const statuses = await calls(one, 'here', 12);
    expect(statuses.filter((s) => s === 200)).toHaveLength(3);
    expect(statuses.filter((s) => s !== 200).every((s) => s === 402)).toBe(true);
    expect(up.requests.length - before).toBe(3);
  });

  it.skipIf(!usingPostgres)('through another instance: past the 2 s bound, at most the limit is admitted', async () => {
    expect(await calls(one, 'there', 2)).toEqual([200, 200]);
    await two!.budgets.definitions.create({ id: 'rt-there', connection: 'there', unit: 'requests', window: 'total', limit: 3 });
    await new Promise((resolve) => setTimeout(resolve, NO_BUDGET_TTL_MS + 100));
    const before = up.requests.length;
    const statuses = await calls(one, 'there', 12);
    expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(3);
    expect(statuses.filter((s) => s !== 200).every((s) => s === 402)).toBe(true);
    expect(up.requests.length - before).toBeLessThanOrEqual(3);
  });
});
