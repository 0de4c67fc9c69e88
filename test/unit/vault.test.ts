/**
 * The vault: envelope encryption behind the key-wrapping interface, tampering, KEK rotation
 * (re-wrap without downtime, instances that still hold only the old KEK), pruning, and the
 * `vault:rotate` script end to end.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/index.js';
import { kekSet, loadKeyStore, pruneVaultKeks, rotateVaultKek, VAULT_KEK_FILE, type KekRecord } from '../../src/keys/keystore.js';
import { migrate, openStore, type Store } from '../../src/store/index.js';
import { EnvelopeVault, newHandle, VaultDecryptError } from '../../src/vault/envelope.js';
import { LocalKeyWrapper, UnknownKeyEncryptionKey, type KeyWrapper, type WrappedKey } from '../../src/vault/key-wrapper.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

/**
 * `npm run vault:rotate` (`scripts/vault-rotate.ts` = `deputy vault rotate`) in-process through the
 * CLI's entry, with `env` as its whole environment: the exit code it would exit with and its
 * output. The real process runs in test/features/data-dir-lock.test.ts (refused while Deputy
 * runs, then working), and the executable's exit codes in test/features/cli.test.ts.
 */
async function vaultRotate(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(['vault', 'rotate', ...args], { out: (t) => void (stdout += t), err: (t) => void (stderr += t), env: env as Record<string, string> });
  return { code, stdout, stderr };
}

let store: Store;
let database: TestDatabase;
let tmp: string;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'deputy-vault-'));
  database = await createTestDatabase();
  store = await openStore({ ...(database.url ? { databaseUrl: database.url } : {}), dataDir: 'memory://', poolSize: 3 });
  await migrate(store);
});
afterAll(async () => {
  await store?.close();
  await database?.drop();
  rmSync(tmp, { recursive: true, force: true });
});

const freshDir = () => mkdtempSync(join(tmp, 'keys-'));
const keyStoreIn = (dir: string, env: Record<string, string> = {}) =>
  loadKeyStore({ dir, signingAlg: 'ES256', generate: true, maxTokenLifetime: 300, env });
const readKekFile = (dir: string): { keys: KekRecord[] } => JSON.parse(readFileSync(join(dir, VAULT_KEK_FILE), 'utf8'));

interface RawRow {
  kek_id: string;
  wrapped_key: Uint8Array;
  iv: Uint8Array;
  ciphertext: Uint8Array;
  tag: Uint8Array;
}
const rowOf = async (handle: string) =>
  (await store.query<RawRow>('SELECT kek_id, wrapped_key, iv, ciphertext, tag FROM vault_secrets WHERE handle = $1', [handle]))[0]!;
const flipFirstByte = (column: keyof RawRow, handle: string) =>
  store.query(`UPDATE vault_secrets SET ${column} = set_byte(${column}, 0, get_byte(${column}, 0) # 1) WHERE handle = $1`, [handle]);

/**
 * A stand-in for an external KMS: keys never leave it, the AAD is its "encryption context",
 * and its key ids look nothing like local ones. Counts calls so tests see it was used.
 */
class FakeKms implements KeyWrapper {
  readonly #keys = new Map<string, Buffer>([['arn:kms:key/1', randomBytes(32)]]);
  calls = { wrap: 0, unwrap: 0 };
  activeKeyId(): string {
    return 'arn:kms:key/1';
  }
  async wrap(dataKey: Buffer, aad: Buffer): Promise<WrappedKey> {
    this.calls.wrap += 1;
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.#keys.get('arn:kms:key/1')!, iv).setAAD(aad);
    const body = Buffer.concat([c.update(dataKey), c.final()]);
    return { kid: 'arn:kms:key/1', wrapped: Buffer.concat([iv, c.getAuthTag(), body]) };
  }
  async unwrap({ kid, wrapped }: WrappedKey, aad: Buffer): Promise<Buffer> {
    this.calls.unwrap += 1;
    const key = this.#keys.get(kid);
    if (!key) throw new UnknownKeyEncryptionKey(kid);
    const d = createDecipheriv('aes-256-gcm', key, wrapped.subarray(0, 12)).setAAD(aad);
    d.setAuthTag(wrapped.subarray(12, 28));
    return Buffer.concat([d.update(wrapped.subarray(28)), d.final()]);
  }
}

describe('envelope encryption behind the key-wrapping interface', () => {
  it('round-trips through the local KEK and through a pluggable KMS wrapper; no plaintext stored', async () => {
    const keys = await keyStoreIn(freshDir());
    const local = new EnvelopeVault(new LocalKeyWrapper(keys.vaultKeks()));
    const kms = new FakeKms();
    const remote = new EnvelopeVault(kms);
    const [a, b] = [newHandle('t'), newHandle('t')];
    await local.put(store, { handle: a, kind: 'connection_secret', plaintext: 'sk_live_local_0123456789' });
    await remote.put(store, { handle: b, kind: 'connection_secret', plaintext: 'sk_live_remote_0123456789' });
    expect(await local.get(store, a, 'connection_secret')).toBe('sk_live_local_0123456789');
    expect(await remote.get(store, b, 'connection_secret')).toBe('sk_live_remote_0123456789');
    expect(kms.calls).toEqual({ wrap: 1, unwrap: 1 });
    expect((await rowOf(a)).kek_id).toBe(keys.vaultKeks().active.kid);
    expect((await rowOf(b)).kek_id).toBe('arn:kms:key/1');
    const dump = JSON.stringify(await store.query('SELECT * FROM vault_secrets WHERE handle = ANY($1::text[])', [[a, b]]), (_k, v) =>
      v instanceof Uint8Array || (v && v.type === 'Buffer') ? Buffer.from(v.data ?? v).toString('latin1') : v,
    );
    expect(dump).not.toContain('sk_live');
    // Each wrapper refuses the other's rows: a KMS row is not readable with the local KEK.
    await expect(local.get(store, b, 'connection_secret')).rejects.toThrow(/"arn:kms:key\/1" of this secret is not loaded/);
  });

  it('replace() puts a fresh data key under the same handle; delete() removes it', async () => {
    const vault = new EnvelopeVault(new LocalKeyWrapper((await keyStoreIn(freshDir())).vaultKeks()));
    const h = newHandle('t');
    await vault.put(store, { handle: h, kind: 'k', plaintext: 'one' });
    const before = await rowOf(h);
    await vault.replace(store, { handle: h, kind: 'k', plaintext: 'two' });
    expect(await vault.get(store, h, 'k')).toBe('two');
    expect(Buffer.from((await rowOf(h)).wrapped_key).equals(Buffer.from(before.wrapped_key))).toBe(false);
    await expect(vault.put(store, { handle: h, kind: 'k', plaintext: 'three' })).rejects.toThrow();
    expect(await vault.delete(store, h)).toBe(1);
    expect(await vault.get(store, h, 'k')).toBeUndefined();
  });

  it('refuses a row whose ciphertext, tag, IV, wrapped key, AAD (kind / handle) or key id was tampered with', async () => {
    const keys = await keyStoreIn(freshDir());
    const other = randomBytes(32);
    // Two KEKs loaded: pointing a row at the other (existing) key id must fail, not decrypt garbage.
    const set = keys.vaultKeks();
    const vault = new EnvelopeVault(new LocalKeyWrapper({ active: set.active, all: new Map([...set.all, ['kek-other', other]]) }));
    const cases: Array<[string, (h: string) => Promise<unknown>, (h: string) => Promise<unknown>]> = [
      ['ciphertext', (h) => flipFirstByte('ciphertext', h), (h) => vault.get(store, h, 'k')],
      ['tag', (h) => flipFirstByte('tag', h), (h) => vault.get(store, h, 'k')],
      ['iv', (h) => flipFirstByte('iv', h), (h) => vault.get(store, h, 'k')],
      ['wrapped key', (h) => flipFirstByte('wrapped_key', h), (h) => vault.get(store, h, 'k')],
      ['kind (AAD)', (h) => store.query("UPDATE vault_secrets SET kind = 'k2' WHERE handle = $1", [h]), (h) => vault.get(store, h, 'k2')],
      ['handle (AAD)', (h) => store.query('UPDATE vault_secrets SET handle = $2 WHERE handle = $1', [h, `${h}x`]), (h) => vault.get(store, `${h}x`, 'k')],
      ['key id → another loaded KEK', (h) => store.query("UPDATE vault_secrets SET kek_id = 'kek-other' WHERE handle = $1", [h]), (h) => vault.get(store, h, 'k')],
      ['key id → unknown', (h) => store.query("UPDATE vault_secrets SET kek_id = 'kek-nope' WHERE handle = $1", [h]), (h) => vault.get(store, h, 'k')],
    ];
    for (const [what, tamper, read] of cases) {
      const h = newHandle('t');
      await vault.put(store, { handle: h, kind: 'k', plaintext: 'tamper-me-secret' });
      await tamper(h);
      const err = await read(h).then(() => undefined, (e: unknown) => e);
      expect(err, what).toBeInstanceOf(VaultDecryptError);
      expect(String((err as Error).message), what).not.toContain('tamper-me-secret');
      expect((err as Error).message, what).toMatch(what === 'key id → unknown' ? /"kek-nope" of this secret is not loaded/ : /failed authentication/);
    }
  });
});

describe('KEK rotation', () => {
  // Each rotation test is one deployment: no other test's rows (under other KEKs) are in the
  // re-wrap pass. Emptying the vault table gives that without a new database and migrations.
  beforeEach(async () => {
    await store.query('DELETE FROM vault_secrets');
  });

  it('re-wraps every data key; every secret stays readable, also from an instance that loaded only the old KEK', async () => {
    const dir = freshDir();
    const before = await keyStoreIn(dir); // "instance B": started before the rotation, keeps running
    const oldKid = before.vaultKeks().active.kid;
    const instanceB = new EnvelopeVault(new LocalKeyWrapper(before.vaultKeks(), { reload: () => before.reloadVaultKeks() }));
    const secrets = new Map<string, string>();
    for (let i = 0; i < 7; i++) {
      const h = newHandle('rot');
      secrets.set(h, `secret-${i}-${randomBytes(8).toString('hex')}`);
      await instanceB.put(store, { handle: h, kind: 'connection_secret', plaintext: secrets.get(h)! });
    }

    const rotation = rotateVaultKek({ dir, write: true });
    expect(rotation.previous).toBe(oldKid);
    const file = readKekFile(dir);
    expect(file.keys.map((k) => [k.kid, k.status])).toEqual([[rotation.kid, 'active'], [oldKid, 'retired']]);
    expect(file.keys[1]!.retiredAt).toEqual(expect.any(Number));

    // The rotation pass (as `vault:rotate` runs it) with the new KEK set; small batches to page.
    const rotator = new EnvelopeVault(new LocalKeyWrapper(kekSet(file.keys)));
    const result = await rotator.rewrap(store, { batchSize: 3 });
    expect(result).toMatchObject({ kid: rotation.kid, raced: 0, failed: [] });
    expect(result.rewrapped).toBeGreaterThanOrEqual(secrets.size);
    for (const h of secrets.keys()) expect((await rowOf(h)).kek_id).toBe(rotation.kid);

    // Instance B meets rows under a KEK it never loaded: it re-reads the file and reads them all.
    for (const [h, plaintext] of secrets) expect(await instanceB.get(store, h, 'connection_secret')).toBe(plaintext);
    expect(before.vaultKeks().active.kid).toBe(rotation.kid);
  });

  it('rows an old instance keeps writing under the retired KEK stay readable and are picked up by --rewrap-only', async () => {
    const dir = freshDir();
    const old = await keyStoreIn(dir);
    const oldKid = old.vaultKeks().active.kid;
    // No reload: this instance keeps wrapping with the KEK it loaded (until its refresh interval).
    const stale = new EnvelopeVault(new LocalKeyWrapper(old.vaultKeks()));
    const rotation = rotateVaultKek({ dir, write: true });
    const h = newHandle('late');
    await stale.put(store, { handle: h, kind: 'k', plaintext: 'written-after-rotation' });
    expect((await rowOf(h)).kek_id).toBe(oldKid);

    const fresh = new EnvelopeVault(new LocalKeyWrapper(kekSet(readKekFile(dir).keys)));
    expect(await fresh.get(store, h, 'k')).toBe('written-after-rotation');
    await fresh.rewrap(store);
    expect((await rowOf(h)).kek_id).toBe(rotation.kid);
    expect(await fresh.get(store, h, 'k')).toBe('written-after-rotation');
  });

  it('an instance re-reads the KEK file once its refresh interval passed, then wraps with the new KEK', async () => {
    const dir = freshDir();
    const keys = await keyStoreIn(dir);
    let now = 1_000_000;
    const vault = new EnvelopeVault(new LocalKeyWrapper(keys.vaultKeks(), { reload: () => keys.reloadVaultKeks(), refreshMs: 60_000, now: () => now }));
    const rotation = rotateVaultKek({ dir, write: true });
    const [h1, h2] = [newHandle('r'), newHandle('r')];
    await vault.put(store, { handle: h1, kind: 'k', plaintext: 'a' });
    expect((await rowOf(h1)).kek_id).toBe(rotation.previous);
    now += 60_000;
    await vault.put(store, { handle: h2, kind: 'k', plaintext: 'b' });
    expect((await rowOf(h2)).kek_id).toBe(rotation.kid);
  });

  it('an instance with KEKs from the environment cannot read rows under a KEK it was not given, and says which', async () => {
    const dir = freshDir();
    const fileKeys = await keyStoreIn(dir);
    const envKeys = await keyStoreIn(freshDir(), { DEPUTY_VAULT_KEK: readFileSync(join(dir, VAULT_KEK_FILE), 'utf8') });
    rotateVaultKek({ dir, write: true });
    const h = newHandle('env');
    await new EnvelopeVault(new LocalKeyWrapper(fileKeys.reloadVaultKeks())).put(store, { handle: h, kind: 'k', plaintext: 'x' });
    const envVault = new EnvelopeVault(new LocalKeyWrapper(envKeys.vaultKeks(), { reload: () => envKeys.reloadVaultKeks() }));
    await expect(envVault.get(store, h, 'k')).rejects.toThrow(new RegExp(`"${fileKeys.vaultKeks().active.kid}" of this secret is not loaded`));
  });

  it('re-wrap leaves a row alone when it changed between read and update (no lost write)', async () => {
    const keys = await keyStoreIn(freshDir());
    const old = new EnvelopeVault(new LocalKeyWrapper(keys.vaultKeks()));
    const h = newHandle('race');
    await old.put(store, { handle: h, kind: 'k', plaintext: 'v1' });
    const next = kekSet([{ kid: 'kek-next', k: randomBytes(32).toString('base64url'), status: 'active', createdAt: 0 }]);
    const nextAll = new Map([...keys.vaultKeks().all, ...next.all]);
    const inner = new LocalKeyWrapper({ active: next.active, all: nextAll });
    // The replacement lands while the pass holds the old wrapped key: the pass must not overwrite it.
    let raced = false;
    const racing: KeyWrapper = {
      activeKeyId: () => inner.activeKeyId(),
      unwrap: (k, aad) => inner.unwrap(k, aad),
      wrap: async (dek, aad) => {
        if (!raced) {
          raced = true;
          await old.replace(store, { handle: h, kind: 'k', plaintext: 'v2' });
        }
        return inner.wrap(dek, aad);
      },
    };
    const result = await new EnvelopeVault(racing).rewrap(store);
    expect(result.raced).toBeGreaterThanOrEqual(1);
    expect(await new EnvelopeVault(inner).get(store, h, 'k')).toBe('v2');
  });

  it('prunes only retired KEKs that no row uses and that retired long enough ago', async () => {
    const dir = freshDir();
    await keyStoreIn(dir);
    const first = rotateVaultKek({ dir, write: true, now: 1000 });
    const second = rotateVaultKek({ dir, write: true, now: 2000 });
    const kids = [second.kid, first.kid, first.previous];
    expect(readKekFile(dir).keys.map((k) => k.kid)).toEqual(kids);
    // first.previous is unused and old enough; first.kid is still used by a row.
    const early = pruneVaultKeks({ dir, inUse: new Set([first.kid]), minRetiredSeconds: 600, write: true, now: 1500 });
    expect(early.dropped).toEqual([]);
    const late = pruneVaultKeks({ dir, inUse: new Set([first.kid]), minRetiredSeconds: 600, write: true, now: 5000 });
    expect(late.dropped).toEqual([first.previous]);
    expect(readKekFile(dir).keys.map((k) => k.kid)).toEqual([second.kid, first.kid]);
  });
});

// A file-backed PGlite: slow on a busy machine, so these get more time than the default (a
// harness limit, not an assertion about speed).
describe('npm run vault:rotate', { timeout: 120_000 }, () => {
  it('rotates the KEK file, re-wraps every row, prunes, and prints no secret', async () => {
    const dir = freshDir();
    const db = await createTestDatabase();
    const dataDir = join(tmp, `pglite-${randomBytes(4).toString('hex')}`);
    const storeConfig = { ...(db.url ? { databaseUrl: db.url } : {}), dataDir, poolSize: 2 };
    const plaintexts = ['script-secret-one-0123456789', 'script-secret-two-0123456789'];
    const handles: string[] = [];
    let s = await openStore(storeConfig);
    try {
      await migrate(s);
      const vault = new EnvelopeVault(new LocalKeyWrapper((await keyStoreIn(dir)).vaultKeks()));
      for (const p of plaintexts) {
        const h = newHandle('scr');
        handles.push(h);
        await vault.put(s, { handle: h, kind: 'connection_secret', plaintext: p });
      }
    } finally {
      await s.close(); // PGlite: one opener per data folder, and the command opens it itself
    }
    const oldKid = readKekFile(dir).keys[0]!.kid;
    const { DEPUTY_CONFIG: _c, DATABASE_URL: _d, DEPUTY_VAULT_KEK: _k, ...env } = process.env;
    const scriptEnv = { ...env, DEPUTY_KEYS_DIR: dir, DEPUTY_DATA_DIR: dataDir, ...(db.url ? { DATABASE_URL: db.url } : {}) };
    const { code, stdout } = await vaultRotate(['--prune=0'], scriptEnv);
    expect(code).toBe(0);
    const file = readKekFile(dir);
    expect(file.keys).toHaveLength(1); // the old KEK: retired, unused after the re-wrap, pruned
    expect(file.keys[0]!.kid).not.toBe(oldKid);
    expect(stdout).toContain(`new active KEK: ${file.keys[0]!.kid}`);
    expect(stdout).toMatch(/re-wrapped [1-9]\d* data key/);
    expect(stdout).toContain(`dropped retired KEK(s): ${oldKid}`);
    for (const p of plaintexts) expect(stdout).not.toContain(p);

    s = await openStore(storeConfig);
    try {
      const vault = new EnvelopeVault(new LocalKeyWrapper(kekSet(file.keys)));
      for (const [i, h] of handles.entries()) expect(await vault.get(s, h, 'connection_secret')).toBe(plaintexts[i]);
    } finally {
      await s.close();
      await db.drop();
    }
  });

  it('with DEPUTY_VAULT_KEK, prints the new KEK set and re-wraps nothing (two-phase rollout)', async () => {
    const dir = freshDir();
    await keyStoreIn(dir);
    const current = readFileSync(join(dir, VAULT_KEK_FILE), 'utf8');
    const { DEPUTY_CONFIG: _c, DATABASE_URL: _d, ...env } = process.env;
    const { code, stdout } = await vaultRotate([], { ...env, DEPUTY_KEYS_DIR: freshDir(), DEPUTY_VAULT_KEK: current, DEPUTY_DATA_DIR: 'memory://' });
    expect(code).toBe(0);
    const printed = JSON.parse(stdout.trim().split('\n').at(-1)!) as { keys: KekRecord[] };
    expect(printed.keys.map((k) => k.status)).toEqual(['active', 'retired']);
    expect(printed.keys[1]!.kid).toBe(JSON.parse(current).keys[0].kid);
    expect(stdout).toMatch(/then run --rewrap-only/);
    expect(readFileSync(join(dir, VAULT_KEK_FILE), 'utf8')).toBe(current);
  });

  it('refuses unknown arguments with exit code 2', async () => {
    const err = await vaultRotate(['--bogus'], { ...process.env, DEPUTY_KEYS_DIR: freshDir() });
    expect(err.code).toBe(2);
    expect(err.stderr).toMatch(/unknown option '--bogus'/);
  });
});

