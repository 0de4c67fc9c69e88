/**
 * `npm run receipts:verify -- FILE [--jwks FILE_OR_URL] [--partial] [--agent ID] [--json]`
 *
 * Verifies an export of receipts (JSON Lines, `-` for stdin) offline: every signature against
 * the receipt JWKS, every chain's sequence and `prev` links. Prints what is wrong by line.
 *
 * `--jwks` is a JWK Set file (as served at `/receipts/jwks`), a URL to fetch it from, or
 * Deputy's own `receipt-keys.json` (public parts are used). Without it, `receipt-keys.json` in
 * `DEPUTY_KEYS_DIR` (default `./keys`) is used when present.
 *
 * Exit codes: 0 every chain verifies, 1 problems found, 2 usage or unreadable input.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { JSONWebKeySet, JWK } from 'jose';
import { verifyReceipts, type VerificationReport } from '../src/audit/verify.js';
import { RECEIPT_KEYS_FILE, toPublicJwk } from '../src/keys/keystore.js';

const USAGE = 'usage: npm run receipts:verify -- FILE [--jwks FILE_OR_URL] [--partial] [--agent ID] [--json]';

class UsageError extends Error {}

interface Args {
  file: string;
  jwks: string | undefined;
  partial: boolean;
  agent: string | undefined;
  json: boolean;
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { file: '', jwks: undefined, partial: false, agent: undefined, json: false };
  const rest = [...argv];
  const value = (flag: string) => {
    const v = rest.shift();
    if (v === undefined || v.startsWith('--')) throw new UsageError(`${flag} needs a value`);
    return v;
  };
  while (rest.length > 0) {
    const a = rest.shift()!;
    if (a === '--jwks') args.jwks = value(a);
    else if (a.startsWith('--jwks=')) args.jwks = a.slice(7);
    else if (a === '--agent') args.agent = value(a);
    else if (a === '--partial') args.partial = true;
    else if (a === '--json') args.json = true;
    else if (a.startsWith('--') || args.file) throw new UsageError(`unexpected argument "${a}"`);
    else args.file = a;
  }
  if (!args.file) throw new UsageError('FILE is required');
  return args;
}

async function readJwks(source: string | undefined): Promise<{ jwks: JSONWebKeySet; from: string }> {
  let from = source;
  if (from === undefined) {
    const local = join(process.env.DEPUTY_KEYS_DIR || 'keys', RECEIPT_KEYS_FILE);
    if (!existsSync(local)) throw new UsageError(`--jwks is required (no ${local} here)`);
    from = local;
  }
  let text: string;
  if (/^https?:\/\//.test(from)) {
    const res = await fetch(from, { signal: AbortSignal.timeout(10_000), headers: { accept: 'application/jwk-set+json, application/json' } });
    if (!res.ok) throw new UsageError(`${from}: HTTP ${res.status}`);
    text = await res.text();
  } else {
    text = readFileSync(from, 'utf8');
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new UsageError(`${from}: not valid JSON`);
  }
  const keys = (doc as { keys?: unknown }).keys;
  if (!Array.isArray(keys)) throw new UsageError(`${from}: not a JWK Set (no "keys" array)`);
  // Deputy's receipt-keys.json holds { jwk, status } records: publish-side view, public parts only.
  const jwks = keys.map((k: unknown) => toPublicJwk(((k as { jwk?: JWK }).jwk ?? k) as JWK));
  return { jwks: { keys: jwks as JSONWebKeySet['keys'] }, from };
}

function print(report: VerificationReport, file: string, jwksFrom: string): void {
  const out: string[] = [`${file}: ${report.records} receipt${report.records === 1 ? '' : 's'}, keys from ${jwksFrom}`];
  for (const c of report.chains) {
    const start = c.fromGenesis ? 'from genesis' : `from seq ${c.first} (earlier receipts not covered)`;
    out.push(`  chain ${c.agent}: seq ${c.first}..${c.last} (${c.count} receipts, ${start}), head ${c.head}`);
  }
  for (const p of report.problems) {
    out.push(`  line ${p.position}: ${p.code}: ${p.message}${p.agent !== undefined ? ` [agent ${p.agent}${p.seq !== undefined ? `, seq ${p.seq}` : ''}]` : ''}`);
  }
  out.push(report.ok ? 'OK: every signature, sequence and link verifies' : `FAILED: ${report.problems.length} problem${report.problems.length === 1 ? '' : 's'}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

async function main(): Promise<number> {
  let args: Args;
  let input: string;
  let keys: Awaited<ReturnType<typeof readJwks>>;
  try {
    args = parseArgs(process.argv.slice(2));
    input = args.file === '-' ? readFileSync(0, 'utf8') : readFileSync(args.file, 'utf8');
    keys = await readJwks(args.jwks);
  } catch (err) {
    const message = err instanceof UsageError ? err.message : err instanceof Error ? err.message : String(err);
    process.stderr.write(`receipts:verify: ${message}\n${USAGE}\n`);
    return 2;
  }
  const report = await verifyReceipts(input, keys.jwks, { partial: args.partial, ...(args.agent ? { agent: args.agent } : {}) });
  if (args.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else print(report, args.file, keys.from);
  return report.ok ? 0 : 1;
}

process.exitCode = await main();
