/**
 * Kept for existing invocations (`node --import tsx scripts/keys-rotate.ts …`): an alias of
 * `deputy keys rotate` (src/cli). `npm run keys:rotate` runs the CLI directly; see `deputy keys rotate --help`.
 */
import { runCli } from '../src/cli/index.js';

process.exitCode = await runCli(['keys', 'rotate', ...process.argv.slice(2)]);
