/**
 * Operator commands that work on the keys folder and the store directly, reading the same
 * configuration as the server (`DEPUTY_CONFIG`, environment overrides): `keys rotate` and
 * `vault rotate`. They need no running server (README "Keys", "Vault and key rotation").
 *
 * The configuration loader (zod, yaml), the keystore (jose) and, for `vault rotate` only, the
 * store drivers (pg, PGlite) are imported when a command runs, not when the CLI starts.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import type { DeputyConfig } from '../../config/schema.js';
import type { KekRecord, ReceiptAlg, SigningAlg } from '../../keys/keystore.js';
import type { Store } from '../../store/index.js';
import { CliError, EXIT, UsageError } from '../errors.js';
import type { Io } from '../shared.js';

/** The server's configuration; an invalid one is a usage error (exit 2), as at `npm start`. */
export async function serverConfig(io: Io): Promise<DeputyConfig> {
  const { ConfigError, loadConfig } = await import('../../config/load.js');
  try {
    return loadConfig({ env: io.env });
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
}

async function rotateKeys(io: Io, o: { receipts?: boolean; alg?: string }): Promise<number> {
  const config = await serverConfig(io);
  const { KeyError, RECEIPT_ALGS, SIGNING_ALGS, rotateReceiptKeys, rotateSigningKeys, ROLLOUT_GRACE_SECONDS } = await import('../../keys/keystore.js');
  try {
    if (o.receipts) {
      const alg = (o.alg ?? 'ES256') as ReceiptAlg;
      if (!(RECEIPT_ALGS as readonly string[]).includes(alg)) throw new UsageError(`--alg must be ${RECEIPT_ALGS.join(' or ')} for receipt keys`);
      const kid = await rotateReceiptKeys(config.keys.dir, alg);
      io.out(`new active receipt key: ${kid} (${alg}) in ${config.keys.dir}\nRestart the Deputy instances so they sign receipts with it; every earlier receipt key stays published at /receipts/jwks.\n`);
      return EXIT.ok;
    }
    const alg = (o.alg ?? config.keys.signingAlg) as SigningAlg;
    if (!(SIGNING_ALGS as readonly string[]).includes(alg)) throw new UsageError(`--alg must be ${SIGNING_ALGS.join(', ')}`);
    const kid = await rotateSigningKeys(config.keys.dir, alg, config.tokens.accessTokenTTL);
    io.out(`new active signing key: ${kid} (${alg}) in ${config.keys.dir}\nRestart every Deputy instance within ${ROLLOUT_GRACE_SECONDS / 3600} hours so they sign with it; the previous key stays published until its tokens expire.\n`);
    return EXIT.ok;
  } catch (err) {
    if (err instanceof KeyError) throw new CliError(err.message);
    throw err;
  }
}

/** `keys rotate`. */
export function keysCommand(io: Io, done: (code: number) => void): Command {
  const cmd = new Command('keys').description('token-signing and receipt-signing keys (README "Keys")');
  cmd
    .command('rotate')
    .description(
      'retire the active signing key and add a new active one (retired keys whose tokens expired are dropped); ' +
        'with --receipts, the receipt-signing key (retired receipt keys stay published for good)',
    )
    .option('--receipts', 'rotate the receipt-signing key instead')
    .option('--alg <alg>', 'algorithm of the new key: ES256, RS256, EdDSA (receipts: ES256, EdDSA)')
    .action(async (o: { receipts?: boolean; alg?: string }) => done(await rotateKeys(io, o)));
  return cmd;
}

interface VaultOptions {
  rewrapOnly?: boolean;
  prune?: true | number;
}

/**
 * Opens the store before anything changes: on embedded PGlite this takes the data folder's lock,
 * so while the server runs the command stops here with the KEK file untouched (its writes to a
 * second copy of the database would be lost, and a pruned KEK with them).
 */
async function openStoreOrFail(config: DeputyConfig): Promise<Store> {
  const { DataDirLocked, openStore } = await import('../../store/index.js');
  try {
    return await openStore(config.store);
  } catch (err) {
    if (err instanceof DataDirLocked) {
      throw new CliError(`${err.message}\nOn embedded PGlite, run vault rotate while Deputy is stopped (stop it, rotate, start it again); with PostgreSQL (DATABASE_URL) it runs beside live instances.`);
    }
    throw err;
  }
}

/**
 * `--prune`: drops retired KEKs that no stored row references — asked of the store at prune time
 * — then asks again for the ones dropped: a row an instance wrapped meanwhile with a KEK it still
 * held puts that KEK back in the file, so no stored secret ever loses its KEK.
 */
async function prune(io: Io, store: Store, dir: string, fromEnv: string | undefined, minRetiredSeconds: number): Promise<void> {
  const [{ pruneVaultKeks, restoreVaultKeks, VAULT_KEK_FILE }, { kekIdsInUse }] = await Promise.all([import('../../keys/keystore.js'), import('../../vault/envelope.js')]);
  const before: readonly KekRecord[] = fromEnv ? [] : (JSON.parse(readFileSync(join(dir, VAULT_KEK_FILE), 'utf8')) as { keys: KekRecord[] }).keys;
  const inUse = await kekIdsInUse(store);
  const pruned = pruneVaultKeks({ dir, ...(fromEnv ? { json: fromEnv } : {}), inUse, minRetiredSeconds, write: !fromEnv });
  if (!fromEnv && pruned.dropped.length) {
    const late = await kekIdsInUse(store, pruned.dropped);
    if (late.size) {
      const restored = restoreVaultKeks({ dir, records: before.filter((k) => late.has(k.kid)) });
      io.out(`kept retired KEK(s) still referenced by stored rows: ${restored.join(', ')}\n`);
      pruned.dropped = pruned.dropped.filter((kid) => !late.has(kid));
    }
  }
  io.out(pruned.dropped.length ? `dropped retired KEK(s): ${pruned.dropped.join(', ')}\n` : 'no retired KEK can be dropped yet\n');
  if (fromEnv && pruned.dropped.length) io.out(`${JSON.stringify(pruned.file)}\n`);
}

async function rotateVault(io: Io, o: VaultOptions): Promise<number> {
  const config = await serverConfig(io);
  const [{ kekSet, KeyError, rotateVaultKek, VAULT_KEK_FILE }, { EnvelopeVault }] = await Promise.all([import('../../keys/keystore.js'), import('../../vault/envelope.js')]);
  const dir = config.keys.dir;
  const fromEnv = io.env.DEPUTY_VAULT_KEK || undefined;
  const pruneAfter = o.prune === undefined ? undefined : o.prune === true ? 600 : o.prune;
  try {
    const store = fromEnv && !o.rewrapOnly ? undefined : await openStoreOrFail(config);
    try {
      let records: readonly KekRecord[];
      if (o.rewrapOnly) {
        records = (JSON.parse(fromEnv ?? readFileSync(join(dir, VAULT_KEK_FILE), 'utf8')) as { keys: KekRecord[] }).keys;
        kekSet(records); // validates: exactly one active
      } else {
        const rotation = rotateVaultKek({ dir, ...(fromEnv ? { json: fromEnv } : {}), write: !fromEnv });
        io.out(`new active KEK: ${rotation.kid} (previous ${rotation.previous} is retired and still unwraps)\n`);
        if (fromEnv) {
          io.out('KEKs come from DEPUTY_VAULT_KEK: set it to the JSON below on every instance, roll them out, then run --rewrap-only.\n');
          io.out(`${JSON.stringify(rotation.file)}\n`);
          return EXIT.ok;
        }
        io.out(`wrote ${join(dir, VAULT_KEK_FILE)}\n`);
        records = rotation.file.keys;
      }
      const vault = new EnvelopeVault(kekSet(records));
      const result = await vault.rewrap(store!);
      io.out(`re-wrapped ${result.rewrapped} data key(s) under ${result.kid}${result.raced ? ` (${result.raced} changed meanwhile, left as written)` : ''}\n`);
      for (const f of result.failed) io.out(`  could not re-wrap ${f.handle} (KEK ${f.kid}): ${f.reason}\n`);
      if (pruneAfter !== undefined) await prune(io, store!, dir, fromEnv, pruneAfter);
      return result.failed.length ? EXIT.refused : EXIT.ok;
    } finally {
      await store?.close();
    }
  } catch (err) {
    if (err instanceof CliError) throw err;
    if (err instanceof KeyError || err instanceof SyntaxError) throw new CliError(err.message);
    throw new CliError(`store: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** `vault rotate`. */
export function vaultCommand(io: Io, done: (code: number) => void): Command {
  const cmd = new Command('vault').description('the vault key-encryption key (README "Vault and key rotation")');
  cmd
    .command('rotate')
    .description(
      'new active KEK in vault-kek.json, then re-wrap every data key under it, while Deputy keeps serving ' +
        '(on embedded PGlite: only while Deputy is stopped). Exit 3 when some rows could not be re-wrapped.',
    )
    .option('--rewrap-only', 're-wrap rows still under a retired KEK; no new KEK')
    .addOption(
      new Option('--prune [seconds]', 'also drop retired KEKs no row uses, retired at least this long ago (default 600)').argParser((v: string) => {
        if (!/^\d{1,9}$/.test(v)) throw new UsageError('--prune takes a number of seconds');
        return Number(v);
      }),
    )
    .action(async (o: VaultOptions) => done(await rotateVault(io, o)));
  return cmd;
}
