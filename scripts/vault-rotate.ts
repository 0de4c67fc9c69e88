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
 * Output names KEK ids and counts only. Exit codes: 0 done, 2 invalid configuration or
 * arguments, 1 key material or store problem, 3 some rows could not be re-wrapped.
 */
import { cliFail, loadConfigOrExit } from './cli.js';
import { kekSet, KeyError, pruneVaultKeks, rotateVaultKek, VAULT_KEK_FILE, type KekRecord } from '../src/keys/keystore.js';
import { openStore } from '../src/store/index.js';
import { EnvelopeVault } from '../src/vault/envelope.js';
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

  const store = await openStore(config.store);
  try {
    const vault = new EnvelopeVault(kekSet(records));
    const result = await vault.rewrap(store);
    out(`re-wrapped ${result.rewrapped} data key(s) under ${result.kid}${result.raced ? ` (${result.raced} changed meanwhile, left as written)` : ''}`);
    for (const f of result.failed) out(`  could not re-wrap ${f.handle} (KEK ${f.kid}): ${f.reason}`);
    if (pruneAfter !== undefined) {
      const inUse = new Set((await store.query<{ kek_id: string }>('SELECT DISTINCT kek_id FROM vault_secrets')).map((r) => r.kek_id));
      const pruned = pruneVaultKeks({ dir, ...(fromEnv ? { json: fromEnv } : {}), inUse, minRetiredSeconds: pruneAfter, write: !fromEnv });
      out(pruned.dropped.length ? `dropped retired KEK(s): ${pruned.dropped.join(', ')}` : 'no retired KEK can be dropped yet');
      if (fromEnv && pruned.dropped.length) out(JSON.stringify(pruned.file));
    }
    if (result.failed.length) process.exitCode = 3;
  } finally {
    await store.close();
  }
} catch (err) {
  if (err instanceof KeyError || err instanceof SyntaxError) fail(1, err.message);
  fail(1, `store: ${err instanceof Error ? err.message : String(err)}`);
}
