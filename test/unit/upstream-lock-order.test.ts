/**
 * Red team (issue 16, eighth round): the token exchange's check that the upstream row it
 * references still exists (src/vault/envelope.ts `exists`) now locks that row. The exchange's
 * group statement moves the agent's chain head first and then checks the row; an agent's
 * deletion deletes the row first (`detachUpstream` → `vault.delete`) and then appends its
 * `agent_deleted` receipt (the head): the opposite order. On PostgreSQL with the check waiting for
 * the row, the two deadlocked (one aborted after `deadlock_timeout`, a second of the whole chain
 * stalled; the deletion itself could be the one refused). The check no longer waits: a row being
 * deleted fails it, and the exchange is decided on the locked path, which takes the row before
 * the head (the deletion's order). The same holds for the agent's row, which the deletion locks
 * first and the exchange's token record share-locks after the head (the same class of deadlock,
 * older than this round).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ReceiptInput } from '../../src/audit/receipt.js';
import { ReceiptService } from '../../src/audit/receipts.js';
import { generateSigningKey } from '../../src/keys/keystore.js';
import type { Queryable } from '../../src/store/index.js';
import { AgentNotActive, TokenRecords, type NewTokenRecord } from '../../src/oauth/token-records.js';
import { EnvelopeVault } from '../../src/vault/envelope.js';
import { usingPostgres } from '../support/database.js';
import { deadlocks, lockWaits, postgresStoreForFile } from '../support/pg-locks.js';

const pg = postgresStoreForFile();

const input = (agent: string, n: number): ReceiptInput => ({ agent, chain: [agent], event: 'token_exchange', action: 'delegate', resource: `https://api.example.com/${n}`, decision: 'permit' });
const KIND = 'upstream_subject_token';

describe.skipIf(!usingPostgres)('the exchange\'s upstream row check against an agent\'s deletion (PostgreSQL, two connections)', () => {
  it('an exchange referencing the row while the deletion removes it and closes the chain: no deadlock; both finish', async () => {
    const key = randomBytes(32);
    const vault = new EnvelopeVault({ active: { kid: 'k1', key }, all: new Map([['k1', key]]) });
    const receipts = new ReceiptService({ store: pg.store, issuer: 'https://deputy.example.com', key: await generateSigningKey('EdDSA') });
    const agent = 'deleted-while-exchanging';
    const handle = `upstream-${randomBytes(6).toString('hex')}`;
    const secret = { handle, kind: KIND, plaintext: 'the-users-idp-token', expiresAt: Math.floor(Date.now() / 1000) + 3600 };
    await vault.put(pg.store, secret);
    // An earlier exchange: the writer knows the head (the next one is optimistic, one statement).
    await receipts.append(input(agent, 0));
    const before = await deadlocks(pg.store);
    // The token record the exchange writes, on the condition that the row it references exists.
    const cond = vault.exists(handle);
    const record = (first: number) => `INSERT INTO oidc_models (model, id, payload, expires_at) SELECT 'LockOrderRecord', $${first}::text, '{}'::jsonb, now() + interval '5 minutes' WHERE ${cond.sql(first + 1)}`;
    const rowAgain = await vault.putPart(secret, { ifAbsent: true });
    let exchange!: Promise<unknown>;
    const deletion = pg.store.transaction(async (tx) => {
      // The deletion's order (src/services.ts onDelete): the upstream row, then the closing receipt.
      await vault.delete(tx, handle);
      exchange = receipts.appendWith(input(agent, 1), {
        once: [],
        parts: [{ sql: record, params: ['rec-1', ...cond.params] }],
        async inTransaction(t: Queryable) {
          // The locked path: the row written again if absent, then the record.
          await t.query(rowAgain.sql(1), rowAgain.params);
          await t.query(record(1), ['rec-1', ...cond.params]);
        },
      });
      exchange.catch(() => {});
      await lockWaits(pg.store);
      await receipts.append(input(agent, 2), tx);
    });
    await expect(deletion).resolves.toBeUndefined();
    // Decided on the locked path once the deletion committed (what a deleted agent's late exchange gets is not this test's subject).
    await expect(exchange).resolves.toBeDefined();
    // Before: PostgreSQL found a deadlock (the exchange's statement held the head and waited for the row).
    expect(await deadlocks(pg.store)).toBe(before);
  }, 30_000);

  it('an exchange whose token record share-locks the agent row the deletion holds: no deadlock; the exchange is refused as the agent is gone', async () => {
    const receipts = new ReceiptService({ store: pg.store, issuer: 'https://deputy.example.com', key: await generateSigningKey('EdDSA') });
    const records = new TokenRecords(pg.store);
    const agent = 'agent-row-while-exchanging';
    await pg.store.query("INSERT INTO agents (id, name, owner, source, jwks) VALUES ($1, $1, 'test', 'api', '{\"keys\":[]}'::jsonb)", [agent]);
    const now = Math.floor(Date.now() / 1000);
    const record: NewTokenRecord = {
      jti: `jti-${randomBytes(6).toString('hex')}`, parentJti: undefined, rootJti: '', agentId: agent, userId: 'alice', userAttrs: {} as NewTokenRecord['userAttrs'],
      issuerId: 'okta', audience: 'https://api.example.com', scope: 'read', chain: [agent], cnfJkt: undefined, mayAct: undefined, upstream: undefined, issuedAt: now, expiresAt: now + 300,
    };
    record.rootJti = record.jti;
    await receipts.append(input(agent, 0));
    const before = await deadlocks(pg.store);
    let exchange!: Promise<unknown>;
    const deletion = pg.store.transaction(async (tx) => {
      // The registry's order (src/agents/registry.ts delete): the agent's row, then the handlers, the closing receipt last.
      await tx.query('SELECT id FROM agents WHERE id = $1 FOR UPDATE', [agent]);
      exchange = receipts.appendWith(input(agent, 1), { once: [], parts: [records.insertPart(record)], inTransaction: (t: Queryable) => records.insert(t, record) });
      exchange.catch(() => {});
      await lockWaits(pg.store);
      await tx.query('DELETE FROM agents WHERE id = $1', [agent]);
      await receipts.append(input(agent, 2), tx);
    });
    await expect(deletion).resolves.toBeUndefined();
    await expect(exchange).rejects.toBeInstanceOf(AgentNotActive);
    // Before: PostgreSQL found a deadlock (the exchange's statement held the head and waited for the agent's row).
    expect(await deadlocks(pg.store)).toBe(before);
  }, 30_000);
});
