/**
 * The upstream subject token an exchange captures (issue 16, seventh round): one agent's repeated
 * exchanges of one IdP token share its vault row; another agent, or another token, gets a row of
 * its own; a row removed behind this instance's memory (another instance's deletion, a purge) is
 * written again, never referenced while missing — alone, and in a group of concurrent exchanges.
 * Over HTTP, on PGlite and PostgreSQL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, claimsOf, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { clientKeys } from '../support/clients.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { EnvelopeVault } from '../../src/vault/envelope.js';
import { UPSTREAM_TOKEN_KIND } from '../../src/oauth/token-exchange.js';

const API = 'https://api.example.com';
const MAIL = 'https://mail.example.com';

let idp: MockIdp;
let deputy: TestDeputy;
const agents: Record<string, TestAgent> = {};

beforeAll(async () => {
  idp = await startMockIdp();
  const keys = { 'agent-a': await clientKeys(), 'agent-b': await clientKeys() };
  deputy = await startTestDeputy({
    config: {
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: Object.entries(keys).map(([id, k]) => agentConfig(id, k, { scopes: ['deputy.read'], audiences: [API, MAIL] })),
    },
  });
  for (const [id, k] of Object.entries(keys)) agents[id] = await testAgent(deputy.issuer, id, k);
});
afterAll(async () => {
  await deputy?.stop();
  await idp?.close();
});

/** The vault handle the token's record references. */
async function upstreamOf(accessToken: string): Promise<string> {
  const record = await deputy.records.find(claimsOf(accessToken).jti!);
  expect(record?.upstream).toMatch(/^upt_/);
  return record!.upstream!;
}

const vaultRows = async () => (await deputy.store.query<{ n: number }>(`SELECT count(*)::int AS n FROM vault_secrets WHERE kind = $1`, [UPSTREAM_TOKEN_KIND]))[0]!.n;
const opened = (handle: string) => new EnvelopeVault(deputy.keys.vaultKeks()).get(deputy.store, handle, UPSTREAM_TOKEN_KIND);
const exchangeFor = (agent: string, subject: string, resource = API) => exchange(agents[agent]!, { subject_token: subject, resource, scope: 'deputy.read' });

describe('token exchange: the captured upstream token', () => {
  it('one agent exchanging one IdP token again references the row it wrote, and writes none', async () => {
    const subject = await idp.oktaAccessToken({ expiresIn: 3600 });
    const first = await upstreamOf((await exchangeFor('agent-a', subject)).access_token);
    const rows = await vaultRows();
    const again = await upstreamOf((await exchangeFor('agent-a', subject, MAIL)).access_token);
    const third = await upstreamOf((await exchangeFor('agent-a', subject)).access_token);
    expect([again, third]).toEqual([first, first]);
    expect(await vaultRows()).toBe(rows);
    expect(await opened(first)).toBe(subject);
  });

  it('another agent, or another IdP token, gets a row of its own', async () => {
    const subject = await idp.oktaAccessToken({ expiresIn: 3600 });
    const a = await upstreamOf((await exchangeFor('agent-a', subject)).access_token);
    const b = await upstreamOf((await exchangeFor('agent-b', subject)).access_token);
    const other = await idp.oktaAccessToken({ expiresIn: 3600 });
    const c = await upstreamOf((await exchangeFor('agent-a', other)).access_token);
    expect(new Set([a, b, c]).size).toBe(3);
    expect(await opened(b)).toBe(subject);
    expect(await opened(c)).toBe(other);
  });

  it('a remembered row deleted behind this instance is written again, never referenced while missing', async () => {
    const subject = await idp.oktaAccessToken({ expiresIn: 3600 });
    const handle = await upstreamOf((await exchangeFor('agent-a', subject)).access_token);
    await deputy.store.query('DELETE FROM vault_secrets WHERE handle = $1', [handle]);
    const next = await upstreamOf((await exchangeFor('agent-a', subject)).access_token);
    expect(await opened(next)).toBe(subject);
    // Remembered again: the next exchange writes nothing.
    const rows = await vaultRows();
    expect(await upstreamOf((await exchangeFor('agent-a', subject)).access_token)).toBe(next);
    expect(await vaultRows()).toBe(rows);
  });

  it('concurrent exchanges of a remembered token whose row vanished all succeed, each record backed by a row', async () => {
    const subject = await idp.oktaAccessToken({ expiresIn: 3600 });
    const handle = await upstreamOf((await exchangeFor('agent-a', subject)).access_token);
    await deputy.store.query('DELETE FROM vault_secrets WHERE handle = $1', [handle]);
    const issued = await Promise.all(Array.from({ length: 6 }, () => exchangeFor('agent-a', subject)));
    const handles = await Promise.all(issued.map((r) => upstreamOf(r.access_token)));
    for (const h of new Set(handles)) expect(await opened(h)).toBe(subject);
  });
});
