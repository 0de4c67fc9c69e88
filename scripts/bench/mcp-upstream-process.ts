/**
 * The MCP yardstick upstream: the official SDK server over Streamable HTTP (test/support/mcp.ts),
 * in its own process. `tools/call` through Deputy is compared with calling it directly.
 */
import { startMcpUpstream } from '../../test/support/mcp.js';

const upstream = await startMcpUpstream();
process.stdout.write(`READY ${upstream.url}\n`);
process.on('SIGTERM', () => void upstream.close().then(() => process.exit(0)));
