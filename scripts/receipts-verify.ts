/**
 * Kept for existing invocations (`node --import tsx scripts/receipts-verify.ts …`): an alias of
 * `deputy receipts verify` (src/cli). `npm run receipts:verify` runs the CLI directly; see `deputy receipts verify --help`.
 */
import { runCli } from '../src/cli/index.js';

process.exitCode = await runCli(['receipts', 'verify', ...process.argv.slice(2)]);
