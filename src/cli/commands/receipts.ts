/**
 * `deputy receipts export | get | verify`: an agent's receipts from the admin API, and the
 * offline verification of an export (every signature against the receipt JWKS, every chain's
 * sequence and `prev` links; README "Receipts").
 *
 * What a subcommand needs beyond the command line (jose through the verifier and the keystore,
 * openid-client through the admin client) is imported when it runs, not when the CLI starts.
 *
 * @module
 */
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Command, Option } from 'commander';
import type { JSONWebKeySet, JWK } from 'jose';
import type { VerificationReport } from '../../audit/verify.js';
import { withAdmin } from '../admin-resource.js';
import { globals, printJson, type Io } from '../shared.js';
import { CliError, EXIT, UsageError } from '../errors.js';

/**
 * The receipt JWK Set from a file (a JWK Set as served at `/receipts/jwks`, or Deputy's own
 * `receipt-keys.json`, whose public parts are used), a URL, or by default `receipt-keys.json`
 * in `DEPUTY_KEYS_DIR`.
 * @throws UsageError (exit 2) when it cannot be read or is not a JWK Set.
 */
export async function readReceiptJwks(source: string | undefined, env: Io['env']): Promise<{ jwks: JSONWebKeySet; from: string }> {
  const { RECEIPT_KEYS_FILE, toPublicJwk } = await import('../../keys/keystore.js');
  let from = source;
  if (from === undefined) {
    const local = join(env.DEPUTY_KEYS_DIR || 'keys', RECEIPT_KEYS_FILE);
    if (!existsSync(local)) throw new UsageError(`--jwks is required (no ${local} here)`);
    from = local;
  }
  let text: string;
  if (/^https?:\/\//.test(from)) {
    const res = await fetch(from, { signal: AbortSignal.timeout(10_000), headers: { accept: 'application/jwk-set+json, application/json' } }).catch((err: unknown) => {
      throw new UsageError(`${from}: ${err instanceof Error ? err.message : String(err)}`);
    });
    if (!res.ok) throw new UsageError(`${from}: HTTP ${res.status}`);
    text = await res.text();
  } else {
    text = readInput(from);
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

function readInput(file: string): string {
  try {
    return file === '-' ? readFileSync(0, 'utf8') : readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
}

function report(io: Io, r: VerificationReport, file: string, jwksFrom: string): void {
  const out: string[] = [`${file}: ${r.records} receipt${r.records === 1 ? '' : 's'}, keys from ${jwksFrom}`];
  for (const c of r.chains) {
    const start = c.fromGenesis ? 'from genesis' : `from seq ${c.first} (earlier receipts not covered)`;
    out.push(`  chain ${c.agent}: seq ${c.first}..${c.last} (${c.count} receipts, ${start}), head ${c.head}`);
  }
  for (const p of r.problems) {
    out.push(`  line ${p.position}: ${p.code}: ${p.message}${p.agent !== undefined ? ` [agent ${p.agent}${p.seq !== undefined ? `, seq ${p.seq}` : ''}]` : ''}`);
  }
  out.push(r.ok ? 'OK: every signature, sequence and link verifies' : `FAILED: ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}`);
  io.out(`${out.join('\n')}\n`);
}

interface VerifyOptions {
  jwks?: string;
  partial?: boolean;
  agent?: string;
  json?: boolean;
}

/**
 * `receipts verify FILE`: exit 0 when every chain verifies, 1 when problems are found or the
 * input holds no receipt, 2 for usage.
 */
export async function verifyCommand(io: Io, file: string, options: VerifyOptions, json: boolean): Promise<number> {
  const input = readInput(file);
  const keys = await readReceiptJwks(options.jwks, io.env);
  const { verifyReceipts } = await import('../../audit/verify.js');
  const r = await verifyReceipts(input, keys.jwks, { partial: options.partial === true, ...(options.agent ? { agent: options.agent } : {}) });
  // Nothing verified is no evidence: in `deputy receipts export A | deputy receipts verify -` an
  // export that failed (wrong credentials, unknown agent) leaves an empty input, and an "OK"
  // then would hide it. Fail closed.
  const empty = r.records === 0;
  if (json || options.json) printJson(io, empty ? { ...r, ok: false } : r);
  else if (empty) io.out(`${file}: no receipts, nothing verified (an empty export, or the export failed)\nFAILED: no receipts\n`);
  else report(io, r, file, keys.from);
  return r.ok && !empty ? EXIT.ok : EXIT.failure;
}

function positiveInt(name: string) {
  return (value: string): number => {
    if (!/^\d{1,15}$/.test(value) || Number(value) < 1) throw new UsageError(`${name} must be a positive integer`);
    return Number(value);
  };
}

/** The `receipts` command and its subcommands. */
export function receiptsCommand(io: Io, done: (code: number) => void): Command {
  const cmd = new Command('receipts').description('export, read and verify signed receipts (README "Receipts")');
  cmd
    .command('export')
    .description("an agent's receipts as JSON Lines, in chain order (stdout, or --output FILE)")
    .argument('<agent>', 'agent id')
    .addOption(new Option('--from <seq>', 'first sequence number').argParser(positiveInt('--from')))
    .addOption(new Option('--to <seq>', 'last sequence number (default: the head when the export starts)').argParser(positiveInt('--to')))
    .option('-o, --output <file>', 'write to FILE instead of stdout')
    .action((agent: string, o: { from?: number; to?: number; output?: string }, c: Command) =>
      withAdmin(io, done, c, async (admin) => {
        const q = new URLSearchParams();
        if (o.from) q.set('from', String(o.from));
        if (o.to) q.set('to', String(o.to));
        const res = await admin.stream(`/admin/agents/${encodeURIComponent(agent)}/receipts/export${q.size ? `?${q}` : ''}`);
        if (!res.body) throw new CliError('empty export');
        const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
        if (o.output) await pipeline(body, createWriteStream(o.output));
        // Decoded as a stream: a character split across two chunks stays whole.
        else for await (const chunk of body.setEncoding('utf8')) io.out(chunk as string);
      }),
    );
  cmd
    .command('get')
    .description('one receipt by id (its JWS and decoded claims)')
    .argument('<id>', 'receipt id')
    .action((id: string, _o: unknown, c: Command) =>
      withAdmin(io, done, c, async (admin) => printJson(io, await admin.request('GET', `/admin/receipts/${encodeURIComponent(id)}`))),
    );
  cmd
    .command('verify')
    .description('verify an export offline: signatures, sequences, links (exit 0 verified, 1 problems, 2 usage)')
    .argument('<file>', 'a JSON Lines export, - for stdin')
    .option('--jwks <file-or-url>', 'receipt JWK Set (file or URL); default receipt-keys.json in DEPUTY_KEYS_DIR')
    .option('--partial', 'an export of a range: its first prev is taken on trust')
    .option('--agent <id>', "only this agent's chain; other agents' receipts count as inserted")
    .action(async (file: string, o: VerifyOptions, c: Command) => {
      done(await verifyCommand(io, file, o, globals(c, io).json));
    });
  return cmd;
}
