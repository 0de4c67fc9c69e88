/**
 * Red team of the gateway's deferred DPoP proof signature (issue 16, seventh round): with
 * receipts on, `/gw` verifies the proof's signature while the call is decided and its receipt
 * signed. Attacked over real HTTP as an agent with a leaked token but not its key would: forged
 * proofs of every kind with every other check valid, forged proofs carrying a live proof's
 * `jti` alongside it, concurrent replays, budgets, a token that is not live, and what the
 * operator sees (metrics, logs, the receipt chain).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { SignJWT, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyReceipts } from '../../src/audit/verify.js';
import { agentConfig, dpopKeys, dpopProof, exchange, testAgent, type DpopKeys, type TestAgent } from '../support/agents.js';
import { adminSetup, clientCredentialsToken, clientKeys, oauthClient } from '../support/clients.js';
import { json } from '../support/http.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';
import { freePort } from '../support/net.js';

const API_KEY = `sk_live_${randomBytes(16).toString('hex')}`;

let idp: MockIdp;
let up: MockUpstream;
let deputy: TestDeputy;
let issuer: string;
let adminToken: string;
let agent: TestAgent;
let stranger: DpopKeys;
const gw = (connection: string) => `${issuer}/gw/${connection}`;

let metered: TestDeputy;
let meteredAgent: TestAgent;

/** A Deputy on its own port; `budgets`: two requests a day on connection `metered`. */
async function start(budgets: boolean): Promise<{ deputy: TestDeputy; agent: TestAgent; admin: string }> {
  const port = await freePort();
  const base = `http://localhost:${port}`;
  const a = await adminSetup();
  const keys = await clientKeys();
  const closed = `http://127.0.0.1:${await freePort()}`; // nothing listens: the upstream is down
  const connection = (id: string) => ({ id, kind: 'api_key' as const, baseUrl: id === 'down' ? closed : `${up.base}/api`, allowInsecureHttp: true, header: 'X-Api-Key', secret: { env: 'ECHO_KEY' }, requiredScopes: ['deputy.read'] });
  const started = await startTestDeputy({
    env: { ECHO_KEY: API_KEY },
    config: {
      server: { port },
      admin: { clients: [a.config] },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [agentConfig('agent-a', keys, { scopes: ['deputy.read'], audiences: ['echo', 'metered', 'down'].map((c) => `${base}/gw/${c}`) })],
      connections: [connection('echo'), connection('metered'), connection('down')],
      ...(budgets ? { budgets: { limits: [{ id: 'two-calls', connection: 'metered', unit: 'requests' as const, window: 'day' as const, limit: 2 }] } } : {}),
    },
  });
  const admin = await clientCredentialsToken(await oauthClient(started.issuer, a.clientId, a.keys), 'deputy:admin');
  return { deputy: started, agent: await testAgent(started.issuer, 'agent-a', keys), admin };
}

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMockUpstream();
  // No budget limits (the ledger is there, as in every deployment: nothing applies to a call).
  ({ deputy, agent, admin: adminToken } = await start(false));
  issuer = deputy.issuer;
  ({ deputy: metered, agent: meteredAgent } = await start(true));
  stranger = await dpopKeys();
}, 90_000);
afterAll(async () => {
  await deputy?.stop();
  await metered?.stop();
  await up?.close();
  await idp?.close();
});

async function tokenFor(connection: string, who: { agent: TestAgent; issuer: string } = { agent, issuer }): Promise<string> {
  const subject = await idp.oktaAccessToken({ scp: ['deputy.read'] });
  return (await exchange(who.agent, { subject_token: subject, resource: `${who.issuer}/gw/${connection}`, scope: 'deputy.read' })).access_token;
}

function rawCall(url: string, token: string, proof: string): Promise<Response> {
  return fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: proof } });
}

/** A metric's value summed over its series, from `/metrics`. */
async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${deputy.url}/metrics`, { headers: { authorization: `Bearer ${adminToken}` } })).text();
  return text.split('\n').filter((l) => l.startsWith(`${name} `) || l.startsWith(name.includes('{') ? name : `${name}{`)).reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

async function receiptCount(): Promise<number> {
  await deputy.receipts.flush();
  return (await deputy.receipts.list('agent-a', { limit: 100_000 })).receipts.length;
}

async function expect401(res: Response, description: RegExp): Promise<void> {
  expect(res.status).toBe(401);
  const body = await json(res);
  expect([body.error, body.error_description]).toEqual(['invalid_dpop_proof', expect.stringMatching(description)]);
  expect(res.headers.get('www-authenticate')).toMatch(/^DPoP .*error="invalid_dpop_proof"/);
}

/** Proofs an attacker holding the token (not its key) can make for `url`, each with `jti`. */
async function forgeries(token: string, url: string, jti: string, victim: DpopKeys = agent.dpop): Promise<Array<[string, string, RegExp]>> {
  const claims = async () => {
    const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(token));
    return { htm: 'GET', htu: url, jti, ath: Buffer.from(digest).toString('base64url'), iat: Math.floor(Date.now() / 1000) };
  };
  const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'dpop+jwt', jwk: victim.publicJwk })).toString('base64url')}.${Buffer.from(JSON.stringify(await claims())).toString('base64url')}.`;
  const hs256 = await new SignJWT(await claims()).setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: victim.publicJwk }).sign(randomBytes(32));
  const wrongKey = await dpopProof({ ...stranger, publicJwk: victim.publicJwk }, url, { htm: 'GET', accessToken: token, jti });
  // A real proof of the agent's with one claim changed (a captured proof re-aimed): its signature breaks.
  const real = await dpopProof(victim, `${url}-elsewhere`, { htm: 'GET', accessToken: token, jti });
  const [h, , s] = real.split('.');
  const tampered = `${h}.${Buffer.from(JSON.stringify(await claims())).toString('base64url')}.${s}`;
  const swapped = await dpopProof(stranger, url, { htm: 'GET', accessToken: token, jti });
  return [
    ['alg none', none, /alg must be one of/],
    ['HS256 with the bound public key', hs256, /alg must be one of/],
    ['signed by another key, naming the bound key', wrongKey, /signature is invalid/],
    ['a real proof with its claims edited', tampered, /signature is invalid/],
    ['signed by another key, naming it (key swap)', swapped, /cnf\.jkt/],
  ];
}

describe('the gateway\'s deferred proof signature, attacked', () => {
  it('forged proofs with every other check valid: the 401 of before, no receipt, no spent jti, nothing forwarded, no receipt-failure alarm, nothing in the logs', async () => {
    const token = await tokenFor('echo');
    const url = `${gw('echo')}/forged`;
    const jti = `forged-${randomUUID()}`;
    const refusedAppends = 'deputy_receipt_append_duration_seconds_count{outcome="refused"}';
    const [forwarded, receipts, failures, replays, refused] = [up.requests.length, await receiptCount(), await metric('deputy_receipt_append_failures_total'), await metric('deputy_dpop_replays_total'), await metric(refusedAppends)];
    const proofs = await forgeries(token, url, jti);
    for (const [, proof, description] of proofs) await expect401(await rawCall(url, token, proof), description);
    expect(up.requests.length).toBe(forwarded);
    expect(await receiptCount()).toBe(receipts);
    // Refusing a forged proof is not a receipt that could not be written (the operator's
    // `deputy_receipt_append_failures_total > 0` alert: docs/production.md), nor a replay.
    expect(await metric('deputy_receipt_append_failures_total')).toBe(failures);
    expect(await metric('deputy_dpop_replays_total')).toBe(replays);
    // No budget applies to `echo`: the two proofs whose signature fails (the others are refused
    // before) reached the receipt step, whose signing overlapped their verification, and were
    // held back there (appends refused, not failed). Before: a wait in front of the budget step
    // held every call whenever a budget ledger existed, i.e. always.
    expect(await metric(refusedAppends)).toBe(refused + 2);
    const logged = deputy.logs.join('\n');
    for (const [, proof] of proofs) expect(logged).not.toContain(proof.split('.')[2] || proof.split('.')[1]);
    expect(logged).not.toContain(token.split('.')[2]);
    // Nothing was spent: the agent's own proof with that jti goes through, once.
    const own = await dpopProof(agent.dpop, url, { htm: 'GET', accessToken: token, jti });
    expect((await rawCall(url, token, own)).status).toBe(200);
    await expect401(await rawCall(url, token, own), /jti replay/);
    expect(await receiptCount()).toBe(receipts + 1);
    expect(await metric('deputy_receipt_append_failures_total')).toBe(failures); // a replay is no failure either
    expect(await metric('deputy_dpop_replays_total')).toBe(replays + 1); // the replay itself, as the alert reads it
  });

  it('forged proofs carrying a live proof\'s jti, sent alongside it: the live one is forwarded exactly once', async () => {
    const token = await tokenFor('echo');
    const url = `${gw('echo')}/race`;
    for (let round = 0; round < 3; round++) {
      const jti = `race-${randomUUID()}`;
      const forged = (await forgeries(token, url, jti)).map(([, p]) => p);
      const own = await dpopProof(agent.dpop, url, { htm: 'GET', accessToken: token, jti });
      const before = up.requests.length;
      // Forged first, then the real one, all in flight at once (one receipt group, most likely).
      const statuses = await Promise.all([...forged, own, ...forged].map(async (p) => (await rawCall(url, token, p)).status));
      expect(statuses.filter((s) => s === 200)).toHaveLength(1);
      expect(statuses[forged.length]).toBe(200);
      expect(up.requests.length).toBe(before + 1);
    }
  });

  it('a valid proof replayed concurrently with its original: exactly one forwarded, the others 401 replay', async () => {
    const token = await tokenFor('echo');
    const url = `${gw('echo')}/replayed`;
    const own = await dpopProof(agent.dpop, url, { htm: 'GET', accessToken: token });
    const before = up.requests.length;
    const responses = await Promise.all(Array.from({ length: 8 }, () => rawCall(url, token, own)));
    expect(responses.filter((r) => r.status === 200)).toHaveLength(1);
    for (const r of responses.filter((x) => x.status !== 200)) await expect401(r, /jti replay/);
    expect(up.requests.length).toBe(before + 1);
  });

  it('budgets configured: a forged proof reserves and charges nothing, and gets its 401 (not 402) once the budget is spent', async () => {
    const who = { agent: meteredAgent, issuer: metered.issuer };
    const token = await tokenFor('metered', who);
    const url = `${metered.issuer}/gw/metered/x`;
    const forge = async () => (await forgeries(token, url, `m-${randomUUID()}`, meteredAgent.dpop)).map(([, p]) => p);
    const own = async () => rawCall(url, token, await dpopProof(meteredAgent.dpop, url, { htm: 'GET', accessToken: token }));
    for (const r of await Promise.all((await forge()).map((p) => rawCall(url, token, p)))) expect(r.status).toBe(401);
    for (let i = 0; i < 2; i++) expect((await own()).status).toBe(200);
    // The budget is spent: a forged proof is still refused as forged (nothing about the budget leaks).
    await expect401(await rawCall(url, token, (await forge())[2]!), /signature is invalid/);
    expect((await own()).status).toBe(402);
  });

  it('an upstream that is down: a forged proof is refused before it is tried (401, not 502), the agent\'s own call gets the 502', async () => {
    const token = await tokenFor('down');
    const url = `${gw('down')}/x`;
    for (const [, proof, description] of await forgeries(token, url, `down-${randomUUID()}`)) await expect401(await rawCall(url, token, proof), description);
    const own = await rawCall(url, token, await dpopProof(agent.dpop, url, { htm: 'GET', accessToken: token }));
    expect(own.status).toBe(502);
  });

  it('no live token, no PDP decision: a forged proof with a forged, foreign or absent token is refused before the call is decided', async () => {
    const token = await tokenFor('echo');
    const url = `${gw('echo')}/no-token`;
    const [h, p] = token.split('.');
    const forgedToken = `${h}.${p}.${Buffer.from(randomBytes(64)).toString('base64url')}`;
    const foreign = await tokenFor('metered'); // live, but for another connection
    // The gateway's decisions (the exchange's `delegate` decisions are source="delegation").
    const decisions = await metric('deputy_pdp_decisions_total{decision="permit",source="evaluation"}');
    for (const t of [forgedToken, foreign]) {
      const proof = await dpopProof({ ...stranger, publicJwk: agent.dpop.publicJwk }, url, { htm: 'GET', accessToken: t });
      const res = await rawCall(url, t, proof);
      expect(res.status).toBe(401);
      expect((await json(res)).error).toBe('invalid_token');
    }
    expect(await metric('deputy_pdp_decisions_total{decision="permit",source="evaluation"}')).toBe(decisions);
    expect(decisions).toBeGreaterThan(0); // the metric is the one the gateway's calls move
  });

  it('after all of it, the agent\'s receipts verify offline as one unbroken chain', async () => {
    await deputy.receipts.flush();
    const admin = { headers: { authorization: `Bearer ${adminToken}` } };
    const exported = await (await fetch(`${deputy.url}/admin/agents/agent-a/receipts/export`, admin)).text();
    const jwks = (await (await fetch(`${deputy.url}/receipts/jwks`)).json()) as JSONWebKeySet;
    const report = await verifyReceipts(exported, jwks);
    expect(report).toMatchObject({ ok: true, chains: [{ agent: 'agent-a', first: 1 }] });
    expect(exported.trim().split('\n').length).toBe(await receiptCount());
  });
});
