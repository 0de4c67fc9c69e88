import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { migrate, openStore, type Store } from '../../src/store/index.js';
import { EnvelopeVault, newHandle, VaultDecryptError, type KeyEncryptionKeys } from '../../src/vault/envelope.js';

const kek = (kid: string): KeyEncryptionKeys => {
  const key = randomBytes(32);
  return { active: { kid, key }, all: new Map([[kid, key]]) };
};

let store: Store;
let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
  store = await openStore({ ...(database.url ? { databaseUrl: database.url } : {}), dataDir: 'memory://', poolSize: 2 });
  await migrate(store);
});
afterAll(async () => {
  await store?.close();
  await database?.drop();
});

describe('envelope encryption (AES-256-GCM data keys wrapped by a KEK)', () => {
  it('round-trips, stores no plaintext, records the KEK id', async () => {
    const vault = new EnvelopeVault(kek('k1'));
    const handle = newHandle('t');
    await vault.put(store, { handle, kind: 'upstream_subject_token', plaintext: 'secret-token-value' });
    expect(await vault.get(store, handle, 'upstream_subject_token')).toBe('secret-token-value');
    const [row] = await store.query<{ ciphertext: Uint8Array; kek_id: string; wrapped_key: Uint8Array }>('SELECT ciphertext, kek_id, wrapped_key FROM vault_secrets WHERE handle = $1', [handle]);
    expect(row!.kek_id).toBe('k1');
    expect(Buffer.from(row!.ciphertext).toString()).not.toContain('secret');
    expect(row!.wrapped_key.length).toBe(12 + 16 + 32);
  });

  it('purgeExpired: only the kind asked, only past expiry plus the grace, in batches until none is left', async () => {
    const vault = new EnvelopeVault(kek('k1'));
    const now = Math.floor(Date.now() / 1000);
    const kind = `purged_${randomBytes(4).toString('hex')}`;
    const put = async (k: string, expiresAt?: number) => {
      const handle = newHandle('p');
      await vault.put(store, { handle, kind: k, plaintext: 'v', ...(expiresAt === undefined ? {} : { expiresAt }) });
      return handle;
    };
    for (let i = 0; i < 5; i++) await put(kind, now - 7200);
    const kept = [await put(kind, now - 1800), await put(kind), await put(kind, now + 3600), await put(`${kind}_other`, now - 7200)];
    expect(await vault.purgeExpired(store, kind, 3600, 2)).toBe(5);
    const left = await store.query<{ handle: string }>('SELECT handle FROM vault_secrets WHERE kind LIKE $1', [`${kind}%`]);
    expect(left.map((r) => r.handle).sort()).toEqual([...kept].sort());
  });

  it('fails to decrypt a ciphertext moved to another row, relabelled, or tampered', async () => {
    const vault = new EnvelopeVault(kek('k1'));
    const [a, b] = [newHandle('t'), newHandle('t')];
    await vault.put(store, { handle: a, kind: 'x', plaintext: 'alpha' });
    await vault.put(store, { handle: b, kind: 'x', plaintext: 'beta' });
    await store.query('UPDATE vault_secrets SET (wrapped_key, iv, ciphertext, tag) = (SELECT wrapped_key, iv, ciphertext, tag FROM vault_secrets WHERE handle = $1) WHERE handle = $2', [a, b]);
    await expect(vault.get(store, b, 'x')).rejects.toThrow(VaultDecryptError);
    expect(await vault.get(store, a, 'y')).toBeUndefined();
    await store.query("UPDATE vault_secrets SET ciphertext = decode('00', 'hex') || ciphertext WHERE handle = $1", [a]);
    await expect(vault.get(store, a, 'x')).rejects.toThrow(/failed authentication/);
  });

  it('needs the KEK that wrapped the data key, and keeps old rows readable after a KEK change', async () => {
    const first = kek('k1');
    const handle = newHandle('t');
    await new EnvelopeVault(first).put(store, { handle, kind: 'x', plaintext: 'v' });
    await expect(new EnvelopeVault(kek('k2')).get(store, handle, 'x')).rejects.toThrow(/"k1"/);
    const second = randomBytes(32);
    const rotated: KeyEncryptionKeys = { active: { kid: 'k2', key: second }, all: new Map([...first.all, ['k2', second]]) };
    expect(await new EnvelopeVault(rotated).get(store, handle, 'x')).toBe('v');
  });
});
