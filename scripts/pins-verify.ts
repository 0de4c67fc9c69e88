/**
 * Kept for `node --import tsx scripts/pins-verify.ts …`: an alias of `deputy mcp verify`
 * (src/cli/commands/mcp.ts). `npm run pins:verify` runs the CLI directly.
 */
import { runCli } from '../src/cli/index.js';

process.exitCode = await runCli(['mcp', 'verify', ...process.argv.slice(2)]);
