/**
 * Red team (issue 16, seventh round) of the captured upstream token's shared vault row. The
 * rows are purged past their expiry plus a grace, and only those rows; every reader of a purged
 * row behaves — the gateway's on-behalf-of exchange answers `invalid_token` (not a 500, nothing
 * sent to the IdP), and the agent's next exchange of the same IdP token, whose row this instance
 * remembers, writes the row again rather than reference it missing. A KEK rotation re-wrapping
 * the remembered row in place leaves it shared and readable; deleting an agent deletes exactly
 * its rows, not another agent's row of the same IdP token. Over HTTP, on PGlite and PostgreSQL.
 */
import { randomBytes } from 'node:crypto';
import * as client from 'openid-client';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, claimsOf, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { clientKeys } from '../support/clients.js';
import { json } from '../support/http.js';
import { usingPostgres } from '../support/database.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { startMockUpstream, type MockUpstream } from '../support/upstream.js';
import { kekSet, rotateVaultKek } from '../../src/keys/keystore.js';
import { EnvelopeVault, newHandle } from '../../src/vault/envelope.js';
import { UPSTREAM_PURGE_GRACE_SECONDS, UPSTREAM_REUSE_SECONDS, UPSTREAM_TOKEN_KIND } from '../../src/oauth/token-exchange.js';
import { CONNECTION_SECRET_KIND } from '../../src/vault/connections/index.js';

const OBO_SECRET = `obo_secret_${randomBytes(16).toString('hex')}`;

let idp: MockIdp;
let up: MockUpstream;
let deputy: TestDeputy;
let agent: TestAgent;
let other: TestAgent;
let doomed: TestAgent;
let idle: TestAgent;
let gw: string;

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMockUpstream();
  up.addClient('deputy-obo', OBO_SECRET);
  const port = await freePort();
  gw = `http://localhost:${port}/gw/obo`;
  const [keys, otherKeys, doomedKeys, idleKeys] = [await clientKeys(), await clientKeys(), await clientKeys(), await clientKeys()];
  deputy = await startTestDeputy({
    env: { OBO_SECRET },
    config: {
      server: { port },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [
        agentConfig('agent-a', keys, { scopes: ['deputy.read'], audiences: [gw] }),
        agentConfig('agent-b', otherKeys, { scopes: ['deputy.read'], audiences: [gw] }),
      ],
      connections: [{
        id: 'obo', kind: 'on_behalf_of', grant: 'token_exchange', baseUrl: `${up.base}/x`, allowInsecureHttp: true,
        tokenEndpoint: `${up.base}/oauth/token`, clientId: 'deputy-obo', secret: { env: 'OBO_SECRET' }, audience: 'https://downstream.example.com', requiredScopes: ['deputy.read'],
      }],
    },
  });
  agent = await testAgent(deputy.issuer, 'agent-a', keys);
  other = await testAgent(deputy.issuer, 'agent-b', otherKeys);
  // Registered through the API (agents of the configuration are not deleted at run time).
  await deputy.agents.create({ ...agentConfig('agent-c', doomedKeys, { scopes: ['deputy.read'], audiences: [gw] }), maxDelegationDepth: 4, status: 'active' } as Parameters<TestDeputy['agents']['create']>[0]);
  doomed = await testAgent(deputy.issuer, 'agent-c', doomedKeys);
  await deputy.agents.create({ ...agentConfig('agent-d', idleKeys, { scopes: ['deputy.read'], audiences: [gw] }), maxDelegationDepth: 4, status: 'active' } as Parameters<TestDeputy['agents']['create']>[0]);
  idle = await testAgent(deputy.issuer, 'agent-d', idleKeys);
});
afterAll(async () => {
  await deputy?.stop();
  await up?.close();
  await idp?.close();
});

const vault = () => new EnvelopeVault(deputy.keys.vaultKeks());
const exists = async (handle: string) => (await deputy.store.query('SELECT 1 FROM vault_secrets WHERE handle = $1', [handle])).length === 1;
/** Moves a row's expiry `seconds` into the past (as if its token expired that long ago). */
const expireAgo = (handle: string, seconds: number) =>
  deputy.store.query('UPDATE vault_secrets SET expires_at = now() - make_interval(secs => $2::int) WHERE handle = $1', [handle, seconds]);
const exchangeOf = async (subject: string, by = agent) => (await exchange(by, { subject_token: subject, resource: gw, scope: 'deputy.read' })).access_token;
const upstreamOf = async (token: string) => (await deputy.records.find(claimsOf(token).jti!))!.upstream!;
const call = (token: string, by = agent) => client.fetchProtectedResource(by.config, token, new URL(`${gw}/data`), 'GET', null, new Headers(), { DPoP: by.handle });

describe('the captured upstream token\'s vault row: purge, KEK rotation, agent deletion', () => {
  it('deletes upstream rows past expiry plus the grace, and nothing else', async () => {
    const stale = await upstreamOf(await exchangeOf(await idp.oktaAccessToken({ expiresIn: 3600 })));
    const recent = await upstreamOf(await exchangeOf(await idp.oktaAccessToken({ expiresIn: 3600 })));
    await expireAgo(stale, UPSTREAM_PURGE_GRACE_SECONDS + 60);
    await expireAgo(recent, UPSTREAM_PURGE_GRACE_SECONDS - 600);
    // Another kind with an expiry long past (none is written today): its owner decides, never the purge.
    const other = newHandle('test');
    await vault().put(deputy.store, { handle: other, kind: CONNECTION_SECRET_KIND, plaintext: 'kept', expiresAt: Math.floor(Date.now() / 1000) - 86_400 });
    await deputy.purgeExpired();
    expect([await exists(stale), await exists(recent), await exists(other)]).toEqual([false, true, true]);
    expect(await vault().get(deputy.store, other, CONNECTION_SECRET_KIND)).toBe('kept');
  });

  it('a token whose record points at a purged row: the on-behalf-of call is invalid_token, nothing reaches the IdP; the next exchange writes the row again', async () => {
    const subject = await idp.oktaAccessToken({ expiresIn: 3600, scp: ['deputy.read'] });
    const token = await exchangeOf(subject);
    const handle = await upstreamOf(token);
    // Clock skew beyond the grace, or a row purged by hand: the record outlives its row.
    await expireAgo(handle, UPSTREAM_PURGE_GRACE_SECONDS + 60);
    await deputy.purgeExpired();
    expect(await exists(handle)).toBe(false);
    const grants = up.grants.length;
    const res = await call(token);
    expect(res.status).toBe(401);
    expect(await json(res)).toMatchObject({ error: 'invalid_token', error_description: expect.stringMatching(/IdP token behind this chain has expired/) });
    expect(up.grants.length).toBe(grants);

    // This instance still remembers the row for the token: the issuing statement finds it gone.
    const again = await exchangeOf(subject);
    const rewritten = await upstreamOf(again);
    expect(await vault().get(deputy.store, rewritten, UPSTREAM_TOKEN_KIND)).toBe(subject);
    const ok = await call(again);
    expect(ok.status).toBe(200);
    expect(up.grants.at(-1)!.params).toMatchObject({ subject_token: subject });
  });

  it('an IdP token with a far exp: its row expires a day (plus a token lifetime) after it was written, not at exp, and is shared meanwhile', async () => {
    const subject = await idp.oktaAccessToken({ expiresIn: 400 * 86_400, scp: ['deputy.read'] });
    const before = Math.floor(Date.now() / 1000);
    const token = await exchangeOf(subject);
    const handle = await upstreamOf(token);
    const [row] = await deputy.store.query<{ expires_at: number }>('SELECT extract(epoch FROM expires_at)::bigint AS expires_at FROM vault_secrets WHERE handle = $1', [handle]);
    const ttl = deputy.config.tokens.accessTokenTTL;
    // Before: the token's exp, 400 days away — past every record's purge, so never deleted.
    expect(Number(row!.expires_at)).toBeLessThanOrEqual(Math.floor(Date.now() / 1000) + UPSTREAM_REUSE_SECONDS + ttl);
    expect(Number(row!.expires_at)).toBeGreaterThanOrEqual(before + UPSTREAM_REUSE_SECONDS + ttl);
    expect(claimsOf(token).exp).toBeLessThanOrEqual(Number(row!.expires_at));
    expect(await upstreamOf(await exchangeOf(subject))).toBe(handle);
  });

  it('a KEK rotation re-wrapping the remembered row in place: still shared, still the token, on-behalf-of still works', async () => {
    const subject = await idp.oktaAccessToken({ expiresIn: 3600, scp: ['deputy.read'] });
    const handle = await upstreamOf(await exchangeOf(subject));
    const rotation = rotateVaultKek({ dir: deputy.keysDir, write: true });
    const result = await new EnvelopeVault(kekSet(rotation.file.keys)).rewrap(deputy.store);
    expect(result.failed).toEqual([]);
    const [row] = await deputy.store.query<{ kek_id: string }>('SELECT kek_id FROM vault_secrets WHERE handle = $1', [handle]);
    expect(row!.kek_id).toBe(rotation.kid);
    const again = await exchangeOf(subject);
    expect(await upstreamOf(again)).toBe(handle);
    expect((await call(again)).status).toBe(200);
    expect(up.grants.at(-1)!.params).toMatchObject({ subject_token: subject });
  });

  it('deleting an agent deletes exactly the rows its exchanges captured, not another agent\'s row of the same IdP token', async () => {
    const subject = await idp.oktaAccessToken({ expiresIn: 3600, scp: ['deputy.read'] });
    const second = await idp.oktaAccessToken({ expiresIn: 3600, scp: ['deputy.read'] });
    const mine = [await upstreamOf(await exchangeOf(subject, doomed)), await upstreamOf(await exchangeOf(subject, doomed)), await upstreamOf(await exchangeOf(second, doomed))];
    expect(mine[1]).toBe(mine[0]);
    const kept = await exchangeOf(subject, other);
    const theirs = await upstreamOf(kept);
    await deputy.agents.delete('agent-c');
    expect([await exists(mine[0]!), await exists(mine[2]!), await exists(theirs)]).toEqual([false, false, true]);
    expect((await call(kept, other)).status).toBe(200);
    expect(up.grants.at(-1)!.params).toMatchObject({ subject_token: subject });
  });

  it('an agent idle past its token records\' purge, its row still unexpired (a far-exp IdP token): deleting the agent deletes the row', async () => {
    const subject = await idp.oktaAccessToken({ expiresIn: 400 * 86_400, scp: ['deputy.read'] });
    const token = await exchangeOf(subject, idle);
    const handle = await upstreamOf(token);
    // An hour and more after its token expired (the records' grace), the row a day from expiry.
    await deputy.store.query(`UPDATE token_records SET expires_at = now() - interval '2 hours' WHERE agent_id = 'agent-d'`);
    await deputy.purgeExpired();
    expect(await exists(handle)).toBe(true);
    // Before: the purge had deleted the records, the deletion found the row through none of them
    // and left the user's IdP token (valid for 400 days) in the vault until the row's own purge.
    await deputy.agents.delete('agent-d');
    expect(await exists(handle)).toBe(false);
  });
});

/**
 * The exchange's issuing statement against a purge on another connection (issue 16, eighth round).
 * The statement references a remembered row without writing it; before, its existence check read
 * its own snapshot only, so a purge's delete in flight (or one that waited for the statement and
 * then deleted) could leave the new token record pointing at no row — a later on-behalf-of call
 * `invalid_token`. Now the check locks the row (`FOR KEY SHARE`) and the purge skips locked rows.
 * PostgreSQL only: PGlite is one connection whose statements and transactions run one at a time
 * under the store's exclusive lock, so a purge and an issuing statement (each one statement, in
 * autocommit) cannot interleave there.
 */
describe.skipIf(!usingPostgres)('the issuing statement and a purge on another connection (PostgreSQL)', () => {
  let side: pg.Client;
  beforeAll(async () => {
    side = new pg.Client({ connectionString: deputy.database.url });
    await side.connect();
  });
  afterAll(async () => {
    await side?.end();
  });
  const sideQueryable = { query: async <R extends object>(sql: string, params?: readonly unknown[]) => (await side.query(sql, params as unknown[])).rows as R[], exec: async (sql: string) => void (await side.query(sql)) };
  /** Whether some statement of this database waits on a lock, polled until `settled()` (at most ~10 s). */
  async function lockWaitSeen(settled: () => boolean): Promise<boolean> {
    for (let i = 0; i < 400 && !settled(); i++) {
      const [row] = await deputy.store.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
      if (row!.n > 0) return true;
      await new Promise((r) => setTimeout(r, 25));
    }
    return false;
  }
  const tracked = <T>(p: Promise<T>) => {
    const t = { done: false, p: p.finally(() => { t.done = true; }) };
    return t;
  };

  it('a purge deleting the remembered row, uncommitted, when the statement runs: the statement waits, finds no row, and the record gets a row written again', async () => {
    const subject = await idp.oktaAccessToken({ expiresIn: 3600, scp: ['deputy.read'] });
    const handle = await upstreamOf(await exchangeOf(subject));
    await expireAgo(handle, UPSTREAM_PURGE_GRACE_SECONDS + 60);
    await side.query('BEGIN');
    expect(await vault().purgeExpired(sideQueryable, UPSTREAM_TOKEN_KIND, UPSTREAM_PURGE_GRACE_SECONDS)).toBeGreaterThanOrEqual(1);
    const next = tracked(exchangeOf(subject));
    const waited = await lockWaitSeen(() => next.done);
    await side.query('COMMIT');
    const token = await next.p;
    // Before: the statement saw the row in its snapshot, wrote its record, and the purge's commit
    // left that record pointing at no row.
    expect(waited).toBe(true);
    const row = await upstreamOf(token);
    expect(await vault().get(deputy.store, row, UPSTREAM_TOKEN_KIND)).toBe(subject);
    expect((await call(token)).status).toBe(200);
  });

  /**
   * A remembered row, expired past the grace, that `hold` (on the side connection, inside an open
   * transaction) holds as an exchange would; then a purge. Returns whether the purge waited on a
   * lock and whether the row is still there after the side transaction committed.
   */
  async function purgeWhileHeld(hold: (handle: string, subject: string) => Promise<void>): Promise<{ waited: boolean; kept: boolean }> {
    const subject = await idp.oktaAccessToken({ expiresIn: 3600, scp: ['deputy.read'] });
    const handle = await upstreamOf(await exchangeOf(subject));
    await expireAgo(handle, UPSTREAM_PURGE_GRACE_SECONDS + 60);
    await side.query('BEGIN');
    await hold(handle, subject);
    const purge = tracked(vault().purgeExpired(deputy.store, UPSTREAM_TOKEN_KIND, UPSTREAM_PURGE_GRACE_SECONDS));
    const waited = await lockWaitSeen(() => purge.done);
    await side.query('COMMIT');
    await purge.p;
    return { waited, kept: await exists(handle) };
  }

  it('a statement holding the remembered row when the purge runs: the purge skips it (no wait), the row stays for the record', async () => {
    // The issuing statement's own condition, held open as if its transaction had not committed yet.
    const outcome = await purgeWhileHeld(async (handle) => {
      const held = vault().exists(handle);
      expect((await side.query(`SELECT ${held.sql(1)} AS held`, held.params as unknown[])).rows[0].held).toBe(true);
    });
    // Before: the purge waited for the statement's transaction, then deleted the row under it.
    expect(outcome).toEqual({ waited: false, kept: true });
  });

  it('the locked path re-writing a row that exists holds it too: the purge skips it (no wait), the row stays for the record', async () => {
    // The locked path's vault part (written only if absent), held open as if its transaction had
    // not committed the token record yet.
    const outcome = await purgeWhileHeld(async (handle, subject) => {
      const part = await vault().putPart({ handle, kind: UPSTREAM_TOKEN_KIND, plaintext: subject, expiresAt: Math.floor(Date.now() / 1000) + 3600 }, { ifAbsent: true });
      await side.query(part.sql(1), part.params as unknown[]);
    });
    // Before (`ON CONFLICT DO NOTHING` locks nothing): the purge deleted the row under the record being written.
    expect(outcome).toEqual({ waited: false, kept: true });
  });
});
