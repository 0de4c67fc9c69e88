/**
 * The exchange's token signature and its receipt's, side by side (issue 16, sixth round), on a
 * real store, a real receipt group writer and real token records (the IdP verifier and the
 * token signer are stand-ins, so a signature can be made to fail or to be slow): a token that
 * fails to sign writes nothing of its own and its group's other exchanges are issued on one
 * consecutive chain; every receipt names a token that was recorded and returned.
 */
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent, AgentRegistry } from '../../src/agents/registry.js';
import { ReceiptService } from '../../src/audit/receipts.js';
import { verifyReceipts } from '../../src/audit/verify.js';
import { formatLine } from '../../src/audit/jsonl.js';
import { RegistryAuthorizer } from '../../src/delegation/index.js';
import type { FederatedIdentity } from '../../src/federation/identity.js';
import type { FederationVerifier } from '../../src/federation/verify.js';
import { generateSigningKey, toPublicJwk } from '../../src/keys/keystore.js';
import type { Logger } from '../../src/log.js';
import type { AccessTokenVerifier } from '../../src/oauth/access-token.js';
import { exchange, type AccessTokenMinter, type ExchangeDeps, type ExchangeInput } from '../../src/oauth/token-exchange.js';
import { TokenRecords } from '../../src/oauth/token-records.js';
import { migrate, openStore, type Store } from '../../src/store/index.js';
import { EnvelopeVault } from '../../src/vault/envelope.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

const ISSUER = 'https://deputy.example';
const IDP = 'https://idp.example';
const AUDIENCE = 'https://api.example';
const AGENT = 'agent-signing';
const NOW = Math.floor(Date.now() / 1000);

const agent: Agent = {
  id: AGENT, name: 'Agent', owner: 'ops', scopes: ['read'], audiences: [AUDIENCE], maxDelegationDepth: 3,
  status: 'active', jwks: { keys: [] }, source: 'config', createdAt: '', updatedAt: '',
};
const identity = {
  userId: 'idp#alice', issuer: IDP, issuerId: 'idp', preset: 'oidc', tokenKind: 'access_token', subject: 'alice',
  groups: [], roles: [], scopes: ['read'], expiresAt: NOW + 3600, claims: {},
} as unknown as FederatedIdentity;
const silent = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {}, child: () => silent } as unknown as Logger;

/** An unsigned IdP-looking JWT (the stand-in verifier accepts it; `resolveSubject` peeks at `iss`). */
function idpToken(n: number): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'RS256', typ: 'JWT' })}.${part({ iss: IDP, sub: 'alice', n })}.sig`;
}

let db: TestDatabase;
let store: Store;
let receipts: ReceiptService;
let jwks: { keys: ReturnType<typeof toPublicJwk>[] };
/** How the stand-in signer answers the next mints, by the request's `n` (its DPoP proof jti). */
const signing = new Map<string, () => Promise<string>>();
let minted = 0;
/** The stand-in verifier's Deputy tokens: compact value → its claims. */
const deputyClaims = new Map<string, Record<string, unknown>>();

function deps(): ExchangeDeps {
  const minter: AccessTokenMinter = {
    mint(request) {
      const jti = `jti-${request.jkt}-${++minted}`;
      const sign = signing.get(request.jkt) ?? (async () => `signed.${jti}`);
      return { jti, value: sign() };
    },
  };
  return {
    issuer: ISSUER,
    store,
    agents: { get: async (id: string) => (id === AGENT ? agent : undefined) } as unknown as AgentRegistry,
    federation: { verify: async () => identity } as unknown as FederationVerifier,
    verifier: { verify: async (token: string) => deputyClaims.get(token) ?? Promise.reject(new Error('not a token of this test')) } as unknown as AccessTokenVerifier,
    records: new TokenRecords(store),
    authorizer: new RegistryAuthorizer(5),
    receipts,
    vault: new EnvelopeVault({ active: { kid: 'k1', key: Buffer.alloc(32, 7) }, all: new Map([['k1', Buffer.alloc(32, 7)]]) }),
    accessTokenTTL: 300,
    logger: silent,
    minter,
  };
}

function request(n: number, key: string): ExchangeInput {
  return {
    params: { subject_token: idpToken(n), subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', resource: AUDIENCE },
    clientId: AGENT,
    dpop: { jkt: key, jti: `proof-${key}-${n}` },
    spends: [{ once: { namespace: 'DPoPProof', key: `proof-${key}-${n}`, ttlSeconds: 300 }, replayed: () => new Error(`proof-${key}-${n} replayed`) }],
  } as ExchangeInput;
}

async function rows(): Promise<{ records: string[]; receipts: Array<{ seq: number; token: string }> }> {
  const records = (await store.query<{ jti: string }>('SELECT jti FROM token_records WHERE agent_id = $1 ORDER BY jti', [AGENT])).map((r) => r.jti);
  const list = await receipts.list(AGENT, { limit: 1000 });
  return { records, receipts: list.receipts.map((r) => ({ seq: r.seq, token: decodeJwt(r.jws).token_id as string })) };
}

beforeAll(async () => {
  db = await createTestDatabase();
  store = await openStore({ databaseUrl: db.url, dataDir: 'memory://', poolSize: 4 });
  await migrate(store);
  await store.query(`INSERT INTO agents (id, name, owner, scopes, audiences, jwks, source) VALUES ($1, 'Agent', 'ops', '["read"]', $2, '{"keys":[]}', 'config')`, [AGENT, JSON.stringify([AUDIENCE])]);
  const key = await generateSigningKey('ES256');
  jwks = { keys: [toPublicJwk(key.jwk)] };
  receipts = new ReceiptService({ store, issuer: ISSUER, key, maxBatch: 8 });
});
afterAll(async () => {
  await store?.close();
  await db?.drop();
});

describe('the token signed while its receipt is: a failing or slow signature in a group', () => {
  it('one of five concurrent exchanges fails to sign: it gets the signer\'s error and writes nothing; the four others are issued on consecutive seqs', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => void unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    try {
      const failure = new Error('the signer failed');
      signing.set('k-fail', () => new Promise((_, reject) => setTimeout(() => reject(failure), 30)));
      signing.set('k-slow', () => new Promise((resolve) => setTimeout(() => resolve('signed.slow'), 60)));
      const keys = ['k-a', 'k-fail', 'k-b', 'k-slow', 'k-c'];
      const settled = await Promise.allSettled(keys.map((k, i) => exchange(request(i, k), deps())));
      expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
      expect((settled[1] as PromiseRejectedResult).reason).toBe(failure);
      const issued = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value.access_token] : []));
      const now = await rows();
      // Every receipt names a recorded token that was returned; none names the failed one.
      expect(now.receipts.map((r) => r.seq)).toEqual([1, 2, 3, 4]);
      expect(now.records).toHaveLength(4);
      expect(now.records.some((j) => j.includes('k-fail'))).toBe(false);
      expect(new Set(now.receipts.map((r) => r.token))).toEqual(new Set(now.records));
      expect(issued.filter((v) => v.startsWith('signed.jti-')).map((v) => v.slice('signed.'.length)).every((j) => now.records.includes(j))).toBe(true);
      // The failed exchange's proof was not spent by the issuing statement (its caller spends it).
      const spent = await store.query<{ id: string }>(`SELECT id FROM oidc_models WHERE model = 'DPoPProof' AND id LIKE '%proof-k-%'`);
      expect(spent.some((r) => r.id.includes('proof-k-fail'))).toBe(false);
      let text = '';
      for await (const r of receipts.range(AGENT, 1, Number.MAX_SAFE_INTEGER)) text += formatLine(r);
      expect(await verifyReceipts(text, jwks)).toMatchObject({ ok: true, chains: [{ agent: AGENT, first: 1, last: 4 }] });
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      signing.clear();
    }
  });

  it('a signer that throws at once (before any promise): the signer\'s error, nothing written, no unhandled rejection', async () => {
    const before = await rows();
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => void unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    try {
      const failure = new Error('no signing key');
      signing.set('k-throws', () => Promise.reject(failure));
      await expect(exchange(request(10, 'k-throws'), deps())).rejects.toBe(failure);
      expect(await rows()).toEqual(before);
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      signing.clear();
    }
  });
});

/** A Deputy-issued-looking token for `jti` (the stand-in verifier answers its claims as recorded). */
function deputyToken(jti: string, key: string): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const token = `${part({ alg: 'ES256', typ: 'at+jwt' })}.${part({ iss: ISSUER, jti })}.sig`;
  deputyClaims.set(token, { iss: ISSUER, jti, act: { sub: AGENT }, cnf: { jkt: key }, scope: 'read', aud: AUDIENCE, client_id: AGENT, sub: 'idp#alice' });
  return token;
}

function delegated(n: number, subjectToken: string, key: string): ExchangeInput {
  const r = request(n, key);
  return { ...r, params: { ...r.params, subject_token: subjectToken } };
}

describe('a delegated exchange (subject: a Deputy token) keeps the lineage check in its statement', () => {
  it('the parent revoked while the new token is being signed: invalid_grant, nothing written', async () => {
    await exchange(request(20, 'k-root'), deps());
    const parent = (await rows()).records.find((j) => j.startsWith('jti-k-root-'))!;
    const subject = deputyToken(parent, 'k-root');
    // The statement waits for the signature: revoke the parent meanwhile (another instance, say).
    let revoked!: Promise<unknown>;
    signing.set('k-root', () => {
      revoked = new TokenRecords(store).revokeCascade(parent, 'test');
      return revoked.then(() => 'signed.child');
    });
    const before = await rows();
    const err = await exchange(delegated(21, subject, 'k-root'), deps()).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'invalid_grant' });
    expect(await rows()).toEqual(before);
    signing.clear();
  });

  it('a live parent: the child recorded under it (parent and root set)', async () => {
    await exchange(request(30, 'k-root2'), deps());
    const parent = (await rows()).records.find((j) => j.startsWith('jti-k-root2-'))!;
    const res = await exchange(delegated(31, deputyToken(parent, 'k-root2'), 'k-root2'), deps());
    const child = res.access_token.slice('signed.'.length);
    const rec = await new TokenRecords(store).find(child);
    expect(rec).toMatchObject({ parentJti: parent, rootJti: parent });
  });
});

describe('a jti collision (the minter chose a jti already recorded)', () => {
  it('the second exchange is refused, writes no receipt, and leaves the first record as it was', async () => {
    const fixed = (d: ExchangeDeps): ExchangeDeps => ({ ...d, minter: { mint: () => ({ jti: 'jti-collides', value: Promise.resolve('signed.jti-collides') }) } });
    await exchange(request(40, 'k-collide'), fixed(deps()));
    const before = await rows();
    const first = await new TokenRecords(store).find('jti-collides');
    const err = await exchange(request(41, 'k-collide2'), fixed(deps())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(await rows()).toEqual(before);
    expect(await new TokenRecords(store).find('jti-collides')).toEqual(first);
  });
});
