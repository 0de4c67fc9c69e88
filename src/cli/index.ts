/**
 * The `deputy` command line (commander): one program, one module per command group.
 *
 * - `--help` on any command prints help and does nothing else (exit 0).
 * - An unknown command or option, a missing or invalid argument: a message and exit 2.
 * - `--json` switches results to JSON on stdout; diagnostics always go to stderr.
 * - Exit codes: 0 ok, 1 failure, 2 usage, 3 the server refused (see ./errors.ts).
 *
 * `runCli(argv)` returns the exit code instead of exiting, so tests and the npm script aliases
 * (`keys:rotate`, `receipts:verify`, `vault:rotate`) share it; `bin/deputy.mjs` is the executable.
 *
 * @module
 */
import { createRequire } from 'node:module';
import { Command, CommanderError } from 'commander';
import { agentsCommand, connectionsCommand, policiesCommand } from './commands/admin.js';
import { budgetsCommand } from './commands/budgets.js';
import { devCommand } from './commands/dev.js';
import { initCommand } from './commands/init.js';
import { mcpCommand } from './commands/mcp.js';
import { keysCommand, vaultCommand } from './commands/operator.js';
import { receiptsCommand } from './commands/receipts.js';
import { callCommand, clientAssertionCommand, dpopProofCommand, exchangeCommand, tokenCommand } from './commands/tokens.js';
import { CliError, EXIT } from './errors.js';
import type { Io } from './shared.js';

/** The package version: package.json is two folders up from both src/cli/ and dist/cli/. */
const VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

const EXIT_CODES_HELP = `
Exit codes: 0 ok, 1 failure (unreachable server, unreadable file, key or store problem,
problems found), 2 usage (unknown command or option, bad argument, invalid configuration),
3 the server refused (its OAuth / admin API error is printed).

Environment: DEPUTY_URL (--url), DEPUTY_CREDENTIALS (--credentials), DEPUTY_KEYS_DIR,
DEPUTY_CONFIG and the server's other variables (keys, vault, dev).`;

/** Builds the program; `done` receives the exit code of the command that ran. */
export function createProgram(io: Io, done: (code: number) => void): Command {
  const program = new Command('deputy')
    .description('Deputy: token exchange, DPoP-bound agent tokens, AuthZEN PDP, credential vault')
    .option('--url <url>', "Deputy's base URL (env DEPUTY_URL; default the credentials' issuer, else http://localhost:3000)")
    .option('--credentials <file>', 'client credentials file (env DEPUTY_CREDENTIALS; default keys/admin-client.json)')
    .option('--json', 'print results as JSON')
    .version(VERSION, '-V, --version', 'print the version')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s), outputError: (s, write) => write(s) })
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', EXIT_CODES_HELP);
  const commands = [
    initCommand(io, done),
    tokenCommand(io, done),
    exchangeCommand(io, done),
    dpopProofCommand(io, done),
    clientAssertionCommand(io, done),
    callCommand(io, done),
    agentsCommand(io, done),
    connectionsCommand(io, done),
    policiesCommand(io, done),
    budgetsCommand(io, done),
    receiptsCommand(io, done),
    mcpCommand(io, done),
    keysCommand(io, done),
    vaultCommand(io, done),
    devCommand(io, done),
  ];
  for (const c of commands) program.addCommand(c);
  inherit(program);
  return program;
}

/** Subcommands built apart get the program's exit and output behaviour (commander copies it only for `.command()`). */
function inherit(parent: Command): void {
  for (const c of parent.commands) {
    c.copyInheritedSettings(parent);
    inherit(c);
  }
}

/**
 * Runs the CLI on `argv` (the arguments after the executable and script) and resolves with the
 * exit code. Never throws: every failure is printed on stderr as `deputy: message`.
 */
export async function runCli(argv: readonly string[], io: Io = processIo()): Promise<number> {
  let code: number = EXIT.ok;
  const program = createProgram(io, (c) => {
    code = c;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are not errors; everything commander refuses is a usage error.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (err instanceof CliError) {
      io.err(`deputy: ${err.message}\n`);
      return err.exitCode;
    }
    io.err(`deputy: unexpected failure: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.failure;
  }
}

/** The process's own stdout, stderr and environment. */
export function processIo(): Io {
  return {
    out: (s) => void process.stdout.write(s),
    err: (s) => void process.stderr.write(s),
    env: process.env,
  };
}
