/**
 * Issue 16, ninth round, leftover checked: "an agent deleted mid-exchange can still get a
 * receipt". An exchange decided after the agent's deletion committed (its group statement's
 * token record part finds no active agent row, so the statement undoes itself, and the locked
 * path decides: `TokenRecords.insert` share-locks the row and finds it gone) is refused with
 * `AgentNotActive`: no `permit` receipt follows the chain's `agent_deleted`, no token record is
 * written, and the upstream token's vault row is not written again (the locked path's write of
 * it is rolled back with the refusal). Both stores. The concurrent case on PostgreSQL (the
 * deletion holding the row while the statement runs) is test/unit/upstream-lock-order.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReceiptInput } from '../../src/audit/receipt.js';
import { ReceiptService } from '../../src/audit/receipts.js';
import { generateSigningKey } from '../../src/keys/keystore.js';
import { AgentNotActive, TokenRecords, type NewTokenRecord } from '../../src/oauth/token-records.js';
import { migrate, openStore, type Queryable, type Store } from '../../src/store/index.js';
import { EnvelopeVault } from '../../src/vault/envelope.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let db: TestDatabase;
let store: Store;

beforeAll(async () => {
  db = await createTestDatabase();
  store = await openStore({ ...(db.url ? { databaseUrl: db.url } : {}), dataDir: 'memory://', poolSize: 2 });
  await migrate(store);
}, 60_000);
afterAll(async () => {
  await store?.close();
  await db?.drop();
});

const input = (agent: string, event: ReceiptInput['event']): ReceiptInput => ({ agent, chain: [agent], event, action: 'delegate', resource: 'https://api.example.com/', decision: 'permit' });

describe('an exchange decided after its agent\'s deletion committed', () => {
  it('is refused (AgentNotActive): no receipt after agent_deleted, no token record, no vault row written again', async () => {
    const key = randomBytes(32);
    const vault = new EnvelopeVault({ active: { kid: 'k1', key }, all: new Map([['k1', key]]) });
    const receipts = new ReceiptService({ store, issuer: 'https://deputy.example.com', key: await generateSigningKey('EdDSA') });
    const records = new TokenRecords(store);
    const agent = `deleted-${randomBytes(4).toString('hex')}`;
    await store.query("INSERT INTO agents (id, name, owner, source, jwks) VALUES ($1, $1, 'test', 'api', '{\"keys\":[]}'::jsonb)", [agent]);
    await receipts.append(input(agent, 'token_exchange'));
    // The deletion (src/agents/registry.ts, src/services.ts onDelete): the row, then the closing receipt.
    await store.transaction(async (tx) => {
      await tx.query('DELETE FROM agents WHERE id = $1', [agent]);
      await receipts.append({ ...input(agent, 'agent_deleted'), action: 'delete' }, tx);
    });
    const now = Math.floor(Date.now() / 1000);
    const handle = `upt-${randomBytes(6).toString('hex')}`;
    const row = await vault.putPart({ handle, kind: 'upstream_subject_token', plaintext: 'the-users-idp-token', expiresAt: now + 3600 });
    const jti = `jti-${randomBytes(6).toString('hex')}`;
    const record: NewTokenRecord = {
      jti, parentJti: undefined, rootJti: jti, agentId: agent, userId: 'alice', userAttrs: {} as NewTokenRecord['userAttrs'], issuerId: 'okta',
      audience: 'https://api.example.com', scope: 'read', chain: [agent], cnfJkt: undefined, mayAct: undefined, upstream: handle, issuedAt: now, expiresAt: now + 300,
    };
    // As src/oauth/token-exchange.ts recordIssued writes a first link: the vault row and the record in the group statement, the same on the locked path.
    const exchange = receipts.appendWith({ ...input(agent, 'token_exchange'), tokenId: jti }, {
      once: [],
      parts: [row, records.insertPart(record)],
      inTransaction: (tx: Queryable) => records.insert(tx, record, row),
    });
    await expect(exchange).rejects.toBeInstanceOf(AgentNotActive);
    const chain = await store.query<{ seq: string }>('SELECT seq FROM receipt_chains WHERE agent_id = $1', [agent]);
    expect(Number(chain[0]!.seq)).toBe(2);
    expect(await store.query('SELECT 1 FROM token_records WHERE jti = $1', [jti])).toHaveLength(0);
    expect(await store.query('SELECT 1 FROM vault_secrets WHERE handle = $1', [handle])).toHaveLength(0);
  }, 30_000);
});
