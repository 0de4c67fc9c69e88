/**
 * Kept for existing invocations (`node --import tsx scripts/vault-rotate.ts …`): an alias of
 * `deputy vault rotate` (src/cli). `npm run vault:rotate` runs the CLI directly; see `deputy vault rotate --help`.
 */
import { runCli } from '../src/cli/index.js';

process.exitCode = await runCli(['vault', 'rotate', ...process.argv.slice(2)]);
