/**
 * `npm run vault:rotate`: rotate the vault key-encryption key (KEK) and re-wrap every data key
 * under the new one, while Deputy keeps serving. Reads the same configuration as the server.
 *
 *   npm run vault:rotate                      new KEK in keys/vault-kek.json, then re-wrap
 *   npm run vault:rotate -- --rewrap-only     re-wrap rows still under a retired KEK
 *   npm run vault:rotate -- --prune[=600]     also drop retired KEKs no row uses, retired ≥ 600 s ago
 *
 * Why there is no downtime with the file: the old KEK stays in the file (`retired`), so every
 * row stays readable everywhere; an instance that meets a row under the new KEK re-reads the
 * file (and starts wrapping with the new KEK within the vault's refresh interval, 60 s).
 *
 * With `DEPUTY_VAULT_KEK` (KEKs from the environment) a running process cannot pick up a new
 * key, so rotation has two phases: this script prints the new KEK set and re-wraps nothing;
 * roll the instances out with it, then run `--rewrap-only`.
 *
 * On embedded PGlite the script needs the data folder to itself: while Deputy runs it refuses
 * (exit 1, naming the process that holds the folder) and changes nothing. With PostgreSQL it
 * runs beside live instances.
 *
 * Output names KEK ids and counts only. Exit codes: 0 done, 2 invalid configuration or
 * arguments, 1 key material or store problem, 3 some rows could not be re-wrapped.
 */
import { cliFail, loadConfigOrExit } from './cli.js';
import { kekSet, KeyError, pruneVaultKeks, restoreVaultKeks, rotateVaultKek, VAULT_KEK_FILE, type KekRecord } from '../src/keys/keystore.js';
import { DataDirLocked, openStore, type Store } from '../src/store/index.js';
import { EnvelopeVault, kekIdsInUse } from '../src/vault/envelope.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const out = (line: string) => process.stdout.write(`${line}\n`);
const fail = (code: number, message: string): never => cliFail('vault:rotate', code, message);

const args = process.argv.slice(2);
const known = /^--(rewrap-only|prune(=\d+)?)$/;
const unknown = args.filter((a) => !known.test(a));
if (unknown.length) fail(2, `unknown argument ${unknown[0]} (use --rewrap-only, --prune[=seconds])`);
const rewrapOnly = args.includes('--rewrap-only');
const pruneArg = args.find((a) => a.startsWith('--prune'));
const pruneAfter = pruneArg === undefined ? undefined : pruneArg.includes('=') ? Number(pruneArg.split('=')[1]) : 600;

const config = loadConfigOrExit('vault:rotate');
const dir = config.keys.dir;
const fromEnv = process.env.DEPUTY_VAULT_KEK || undefined;

/**
 * Opens the store before anything changes: on embedded PGlite this takes the data folder's lock,
 * so while the server runs the script stops here with the KEK file untouched (its writes to a
 * second copy of the database would be lost, and a pruned KEK with them).
 */
async function openStoreOrExit(): Promise<Store> {
  try {
    return await openStore(config.store);
  } catch (err) {
    if (err instanceof DataDirLocked) {
      fail(1, `${err.message}\nOn embedded PGlite, run vault:rotate while Deputy is stopped (stop it, rotate, start it again); with PostgreSQL (DATABASE_URL) it runs beside live instances.`);
    }
    throw err;
  }
}

/**
 * `--prune`: drops retired KEKs that no stored row references — asked of the store at prune time
 * — then asks again for the ones dropped: a row an instance wrapped meanwhile with a KEK it still
 * held puts that KEK back in the file, so no stored secret ever loses its KEK.
 */
async function prune(store: Store, minRetiredSeconds: number): Promise<void> {
  const before: readonly KekRecord[] = fromEnv ? [] : JSON.parse(readFileSync(join(dir, VAULT_KEK_FILE), 'utf8')).keys;
  const inUse = await kekIdsInUse(store);
  const pruned = pruneVaultKeks({ dir, ...(fromEnv ? { json: fromEnv } : {}), inUse, minRetiredSeconds, write: !fromEnv });
  if (!fromEnv && pruned.dropped.length) {
    const late = await kekIdsInUse(store, pruned.dropped);
    if (late.size) {
      const restored = restoreVaultKeks({ dir, records: before.filter((k) => late.has(k.kid)) });
      out(`kept retired KEK(s) still referenced by stored rows: ${restored.join(', ')}`);
      pruned.dropped = pruned.dropped.filter((kid) => !late.has(kid));
    }
  }
  out(pruned.dropped.length ? `dropped retired KEK(s): ${pruned.dropped.join(', ')}` : 'no retired KEK can be dropped yet');
  if (fromEnv && pruned.dropped.length) out(JSON.stringify(pruned.file));
}

try {
  const store = fromEnv && !rewrapOnly ? undefined : await openStoreOrExit();
  try {
    let records: readonly KekRecord[];
    if (rewrapOnly) {
      records = JSON.parse(fromEnv ?? readFileSync(join(dir, VAULT_KEK_FILE), 'utf8')).keys as KekRecord[];
      kekSet(records); // validates: exactly one active
    } else {
      const rotation = rotateVaultKek({ dir, ...(fromEnv ? { json: fromEnv } : {}), write: !fromEnv });
      out(`new active KEK: ${rotation.kid} (previous ${rotation.previous} is retired and still unwraps)`);
      if (fromEnv) {
        out('KEKs come from DEPUTY_VAULT_KEK: set it to the JSON below on every instance, roll them out, then run --rewrap-only.');
        out(JSON.stringify(rotation.file));
        process.exit(0);
      }
      out(`wrote ${join(dir, VAULT_KEK_FILE)}`);
      records = rotation.file.keys;
    }
    const vault = new EnvelopeVault(kekSet(records));
    const result = await vault.rewrap(store!);
    out(`re-wrapped ${result.rewrapped} data key(s) under ${result.kid}${result.raced ? ` (${result.raced} changed meanwhile, left as written)` : ''}`);
    for (const f of result.failed) out(`  could not re-wrap ${f.handle} (KEK ${f.kid}): ${f.reason}`);
    if (pruneAfter !== undefined) await prune(store!, pruneAfter);
    if (result.failed.length) process.exitCode = 3;
  } finally {
    await store?.close();
  }
} catch (err) {
  if (err instanceof KeyError || err instanceof SyntaxError) fail(1, err.message);
  fail(1, `store: ${err instanceof Error ? err.message : String(err)}`);
}
