/**
 * One process owns the embedded database folder (issue 11 part 6, DESIGN invariant): a second
 * server or an operator script on the same folder stops at once naming the holder; a stale lock
 * (holder dead, pid recycled, damaged file) is taken over; `vault:rotate` refuses while the server
 * runs (changing nothing) and works once it is stopped, and `--prune` never drops a KEK a stored
 * row references (PGlite and PostgreSQL).
 *
 * The processes here always use embedded PGlite (the folder is the subject), except the prune
 * test, which runs on the suite's store. `deputy dev` locks its folder the same way: a second one
 * on it stops before writing anything (test/features/cli.test.ts, with the one `deputy dev` it starts).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/index.js';
import { kekSet, loadKeyStore, VAULT_KEK_FILE, type KekRecord } from '../../src/keys/keystore.js';
import { DataDirLocked, lockDataDir, migrate, openStore } from '../../src/store/index.js';
import { LOCK_FILE } from '../../src/store/lock.js';
import { EnvelopeVault, newHandle } from '../../src/vault/envelope.js';
import { createTestDatabase, initialisedDataDir } from '../support/database.js';
import { isListening, killAll, LISTENING, runScript, startDeputyProcess } from '../support/process.js';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'deputy-lock-'));
});
afterEach(() => killAll());
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const fresh = (name: string) => mkdtempSync(join(tmp, `${name}-`));
const readKeks = (dir: string): KekRecord[] => (JSON.parse(readFileSync(join(dir, VAULT_KEK_FILE), 'utf8')) as { keys: KekRecord[] }).keys;
const lockContent = (dir: string) => JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')) as { pid: number; token: string };

/** A pid that is certainly not running: a process that has exited (a shell: no node start). */
function deadPid(): number {
  const r = spawnSync('/bin/sh', ['-c', 'echo $$'], { encoding: 'utf8' });
  return Number(r.stdout);
}

/**
 * `deputy vault rotate` in-process (the CLI's own entry, as the executable runs it), with `env`
 * as its whole environment. The real process is run by the `npm start` test above.
 */
async function vaultRotate(args: string[], env: Record<string, string>): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(['vault', 'rotate', ...args], { out: (s) => void (out += s), err: (s) => void (err += s), env });
  return { code, out, err };
}

describe('the data folder lock', () => {
  it('a second opener in any process is refused with the holder named; release frees it', () => {
    const dir = fresh('unit');
    const lock = lockDataDir(dir);
    let refused: unknown;
    try {
      lockDataDir(dir);
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(DataDirLocked);
    expect((refused as DataDirLocked).holder.pid).toBe(process.pid);
    expect((refused as Error).message).toMatch(new RegExp(`is in use by another Deputy process \\(pid ${process.pid}, started \\d{4}-\\d\\d-\\d\\dT[^,]+, command "[^"]+"\\)`));
    expect((refused as Error).message).toMatch(/stop that process first, or use PostgreSQL \(DATABASE_URL\)/);
    lock.release();
    lock.release(); // idempotent
    lockDataDir(dir).release();
  });

  it.each([
    ['its holder has exited', () => ({ pid: deadPid(), startedAt: 'x', command: 'node', host: hostname(), token: 'old' })],
    ['its pid now belongs to another process (recycled)', () => ({ pid: process.pid, startedAt: 'x', command: 'node', host: hostname(), procStart: '1', token: 'old' })],
  ])('a stale lock is taken over when %s', (_what, holder) => {
    const dir = fresh('stale');
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify(holder()));
    const lock = lockDataDir(dir);
    expect(lockContent(dir).pid).toBe(process.pid);
    expect(lockContent(dir).token).not.toBe('old');
    lock.release();
  });

  it('a damaged lock file is taken over; a lock held on another host never is', () => {
    const dir = fresh('odd');
    writeFileSync(join(dir, LOCK_FILE), '{"pid": 12');
    lockDataDir(dir).release();
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: deadPid(), startedAt: 'x', command: 'node', host: 'elsewhere.example', token: 't' }));
    expect(() => lockDataDir(dir)).toThrow(/on host elsewhere\.example/);
  });
});

describe('npm start and vault:rotate on one data folder', { timeout: 300_000 }, () => {
  it('a second server exits naming the first, which keeps serving; vault:rotate refuses while it runs; a killed server’s lock is taken over; vault:rotate works once Deputy is stopped', async () => {
    // An initialised, empty cluster (the lock is the subject here, not the folder's creation:
    // that is test/features/start.test.ts), so the first server skips initdb.
    const dataDir = initialisedDataDir(join(tmp, 'shared-data'));
    const keysDir = join(tmp, 'shared-keys');
    const configFile = join(tmp, 'deputy.yaml');
    writeFileSync(
      configFile,
      [
        'connections:',
        '  - { id: crm, kind: api_key, baseUrl: "http://127.0.0.1:9/v1", allowInsecureHttp: true, header: X-Api-Key, secret: { env: CRM_KEY } }',
        '  - { id: erp, kind: api_key, baseUrl: "http://127.0.0.1:9/v2", allowInsecureHttp: true, header: X-Api-Key, secret: { env: ERP_KEY } }',
        '',
      ].join('\n'),
    );
    const secrets = { CRM_KEY: 'sk_crm_lock_test_0123456789', ERP_KEY: 'sk_erp_lock_test_0123456789' };
    const env = { PORT: '0', HOST: '127.0.0.1', DEPUTY_DATA_DIR: dataDir, DEPUTY_KEYS_DIR: keysDir, DEPUTY_CONFIG: configFile, LOG_LEVEL: 'warn', ...secrets };

    const first = startDeputyProcess(env);
    const [, port] = await first.waitFor(LISTENING);
    const holderPid = first.child.pid!;

    // While the first runs, a second server and vault:rotate (both real processes, started together).
    const kekBefore = readFileSync(join(keysDir, VAULT_KEK_FILE), 'utf8');
    const second = startDeputyProcess(env);
    const refused = runScript('vault-rotate', ['--prune=0'], env);
    const [{ code }, refusedExit] = await Promise.all([second.exited, refused.exited]);
    expect(code).not.toBe(0);
    expect(second.stderr()).toMatch(new RegExp(`deputy: the data folder ${dataDir} is in use by another Deputy process \\(pid ${holderPid}, started [^,]+, command "[^"]*src/main\\.ts"\\)`));
    expect(second.stdout()).not.toMatch(LISTENING);
    expect(refusedExit.code).toBe(1);
    expect(refused.stderr()).toMatch(new RegExp(`deputy: the data folder ${dataDir} is in use by another Deputy process \\(pid ${holderPid}`));
    expect(refused.stderr()).toMatch(/run vault rotate while Deputy is stopped/);
    expect(refused.stdout()).not.toMatch(/re-wrapped|new active KEK/);
    expect(readFileSync(join(keysDir, VAULT_KEK_FILE), 'utf8')).toBe(kekBefore); // nothing changed
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);

    // kill -9 leaves the lock behind; the next start takes it over (and stops cleanly on SIGTERM).
    first.child.kill('SIGKILL');
    await first.exited;
    expect(lockContent(dataDir).pid).toBe(holderPid);
    const next = startDeputyProcess(env);
    const [, nextPort] = await next.waitFor(LISTENING);
    expect(lockContent(dataDir).pid).toBe(next.child.pid);
    expect((await fetch(`http://127.0.0.1:${nextPort}/readyz`)).status).toBe(200);
    next.child.kill('SIGTERM');
    expect((await next.exited).code).toBe(0);
    expect(await isListening(Number(nextPort))).toBe(false);

    // Deputy stopped: vault:rotate works.
    const rotate = runScript('vault-rotate', ['--prune=0'], env);
    expect((await rotate.exited).code).toBe(0);
    expect(rotate.stdout()).toMatch(/re-wrapped 2 data key\(s\)/);
    const keks = readKeks(keysDir);
    expect(keks.map((k) => k.status)).toEqual(['active']); // the old KEK: unused after the re-wrap, pruned
    for (const s of Object.values(secrets)) expect(rotate.stdout() + rotate.stderr()).not.toContain(s);

    // The re-wrap persisted: every stored secret opens with the KEK file as it is now.
    const store = await openStore({ dataDir, poolSize: 1 });
    try {
      const rows = await store.query<{ handle: string; kind: string; kek_id: string }>('SELECT handle, kind, kek_id FROM vault_secrets');
      expect(rows).toHaveLength(2);
      const vault = new EnvelopeVault(kekSet(keks));
      const opened = await Promise.all(rows.map((r) => vault.get(store, r.handle, r.kind)));
      expect(opened.sort()).toEqual(Object.values(secrets).sort());
      expect(new Set(rows.map((r) => r.kek_id))).toEqual(new Set([keks[0]!.kid]));
    } finally {
      await store.close();
    }
  });
});

describe('vault:rotate --prune', { timeout: 300_000 }, () => {
  it('never drops a retired KEK that a stored row still references (checked in the store at prune time)', async () => {
    const keysDir = fresh('prune-keys');
    const db = await createTestDatabase();
    const dataDir = join(tmp, 'prune-data');
    const storeConfig = { ...(db.url ? { databaseUrl: db.url } : {}), dataDir, poolSize: 2 };
    await loadKeyStore({ dir: keysDir, signingAlg: 'ES256', generate: true, maxTokenLifetime: 300, env: {} });
    const oldKid = readKeks(keysDir)[0]!.kid;
    const store = await openStore(storeConfig);
    const damaged = newHandle('dmg');
    try {
      await migrate(store);
      const vault = new EnvelopeVault(kekSet(readKeks(keysDir)));
      await vault.put(store, { handle: newHandle('ok'), kind: 'connection_secret', plaintext: 'prune-test-secret-one' });
      await vault.put(store, { handle: damaged, kind: 'connection_secret', plaintext: 'prune-test-secret-two' });
      // A row the re-wrap cannot move (its wrapped key is damaged): it stays under the old KEK.
      await store.query(`UPDATE vault_secrets SET wrapped_key = decode(repeat('00', 40), 'hex') WHERE handle = $1`, [damaged]);
    } finally {
      await store.close(); // PGlite: the command opens the folder itself
    }
    const { DEPUTY_CONFIG: _c, DATABASE_URL: _d, DEPUTY_VAULT_KEK: _k, ...inherited } = process.env;
    const env = { ...(inherited as Record<string, string>), DEPUTY_KEYS_DIR: keysDir, DEPUTY_DATA_DIR: dataDir, ...(db.url ? { DATABASE_URL: db.url } : {}) };
    try {
      const run = await vaultRotate(['--prune=0'], env);
      expect(run.code).toBe(3); // one row could not be re-wrapped
      expect(run.out).toMatch(/re-wrapped 1 data key\(s\)/);
      expect(run.out).toContain(`could not re-wrap ${damaged} (KEK ${oldKid})`);
      expect(run.out).toMatch(/no retired KEK can be dropped yet/);
      const keks = readKeks(keysDir);
      expect(keks.map((k) => [k.kid === oldKid, k.status])).toEqual([[false, 'active'], [true, 'retired']]);

      // Once no row references it any more, the next prune drops it.
      const s = await openStore(storeConfig);
      try {
        await s.query('DELETE FROM vault_secrets WHERE handle = $1', [damaged]);
      } finally {
        await s.close();
      }
      const again = await vaultRotate(['--rewrap-only', '--prune=0'], env);
      expect(again.code).toBe(0);
      expect(again.out).toContain(`dropped retired KEK(s): ${oldKid}`);
      expect(readKeks(keysDir).map((k) => k.kid)).not.toContain(oldKid);
    } finally {
      await db.drop();
    }
  });
});
