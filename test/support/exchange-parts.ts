/**
 * What the tests of the exchange's chain statements (src/audit/chain.ts) share: one store of the
 * two-instance set-up for the file, a vault with a made-up key, an agent row, a token record with
 * plain defaults and the exchange's once-keys.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { beforeAll } from 'vitest';
import type { OnceKey } from '../../src/oauth/adapter.js';
import type { NewTokenRecord } from '../../src/oauth/token-records.js';
import type { Queryable, Store } from '../../src/store/index.js';
import { EnvelopeVault } from '../../src/vault/envelope.js';
import { useTwoInstanceStores } from './two-instances.js';

/** The vault kind of an upstream IdP token (what the exchange stores). */
export const UPSTREAM_KIND = 'upstream_subject_token';

/** Now, in whole seconds. */
export const now = (): number => Math.floor(Date.now() / 1000);

/** Six random bytes as hex: a suffix that keeps names apart between tests and runs. */
export const hex = (): string => randomBytes(6).toString('hex');

/**
 * Opens a test database and the first store of `twoInstanceStores` on it before the file's tests,
 * hands it to `use`, and closes every distinct store and drops the database after them.
 */
export function useTestStore(use: (store: Store) => void): void {
  const opened = useTwoInstanceStores();
  beforeAll(() => use(opened()[0]));
}

/** A vault whose one key (kid `k1`) is random. */
export function testVault(): EnvelopeVault {
  const key = randomBytes(32);
  return new EnvelopeVault({ active: { kid: 'k1', key }, all: new Map([['k1', key]]) });
}

/** Adds an active agent `id` (no keys) as the admin API would. */
export async function insertAgent(db: Queryable, id: string): Promise<void> {
  await db.query("INSERT INTO agents (id, name, owner, source, jwks) VALUES ($1, $1, 'test', 'api', '{\"keys\":[]}'::jsonb)", [id]);
}

/**
 * A root token record of `agent` for alice at api.example.com, valid five minutes, with no
 * attributes, binding, actor or upstream token — each overridden by `extra`.
 */
export function tokenRecord(agent: string, extra: Partial<NewTokenRecord> = {}): NewTokenRecord {
  const jti = `jti-${hex()}`;
  return {
    jti, parentJti: undefined, rootJti: jti, agentId: agent, userId: 'alice', userAttrs: { groups: [], roles: [] }, issuerId: 'okta',
    audience: 'https://api.example.com', scope: 'read', chain: [agent], cnfJkt: undefined, mayAct: undefined, upstream: undefined, issuedAt: now(), expiresAt: now() + 300, ...extra,
  };
}

/** The first `n` (1 to 3) once-keys of one exchange: DPoP proof, client assertion, actor token. */
export function onceKeys(n: number): OnceKey[] {
  return ['DPoPProof', 'ClientAssertion', 'ActorToken'].slice(0, n).map((namespace) => ({ namespace, key: randomUUID(), ttlSeconds: 300 }));
}
