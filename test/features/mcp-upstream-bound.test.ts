/**
 * The bound of one upstream MCP message is per server (`limits.maxUpstreamMessageBytes`, issue
 * 16 eleventh round; it was one 16 MiB bound for the whole gateway): two servers in front of the
 * same upstream, one bounded at 4 KiB, the other at the default. An answer larger than the
 * server's bound fails that call — a JSON-RPC error to the agent, the upstream's text nowhere in
 * it — while the same answer through the other server arrives whole; the session stays usable.
 * The setting is validated, and a mistake names the field.
 */
import { randomBytes } from 'node:crypto';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import { DEFAULT_UPSTREAM_MESSAGE_BYTES, mcpServerSchema } from '../../src/mcp/config.js';
import { connectMcp, mcpServer, startMcpDeputy, type McpDeputy } from '../support/mcp-deputy.js';

const SMALL = 4096;

let mcp: McpDeputy;

beforeAll(async () => {
  mcp = await startMcpDeputy((up) => [
    // The oversize answer's SSE stream errors; the SDK's request then waits for the upstream timeout (left as it is: 5 s here).
    mcpServer(up, 'small', { limits: { maxUpstreamMessageBytes: SMALL, upstreamTimeoutSeconds: 5 } }),
    mcpServer(up, 'roomy', { limits: {} }),
  ]);
}, 120_000);
afterAll(async () => {
  await mcp?.stop();
});

const connect = (server: string) => connectMcp(mcp, server);

describe('limits.maxUpstreamMessageBytes', { timeout: 120_000 }, () => {
  it('bounds each server\'s upstream answers by its own setting: over it the call fails, under it (and on the other server) it arrives whole', async () => {
    const marker = `MARK${randomBytes(4).toString('hex')}`;
    const large = `${marker}${'x'.repeat(SMALL)}`;
    const small = await connect('small');
    const roomy = await connect('roomy');

    const err = await small.client.callTool({ name: 'echo', arguments: { text: large } }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(McpError);
    expect(String((err as McpError).message)).not.toContain(marker);
    // The same session still answers what fits.
    expect((await small.client.callTool({ name: 'echo', arguments: { text: 'fits' } })).content).toEqual([{ type: 'text', text: 'echo: {"text":"fits"}' }]);
    // The other server, same upstream, same answer: the default bound (16 MiB).
    expect((await roomy.client.callTool({ name: 'echo', arguments: { text: large } })).content).toEqual([{ type: 'text', text: `echo: ${JSON.stringify({ text: large })}` }]);
    await small.client.close();
    await roomy.client.close();
  });

  it('defaults to 16 MiB, and a mistake names the field', () => {
    expect(mcpServerSchema.parse({ id: 'a', url: 'https://mcp.example.com/mcp' }).limits.maxUpstreamMessageBytes).toBe(DEFAULT_UPSTREAM_MESSAGE_BYTES);
    expect(DEFAULT_UPSTREAM_MESSAGE_BYTES).toBe(16 * 1024 * 1024);
    for (const wrong of [512, 4096.5, '1048576', 2 ** 40]) {
      expect(() => validateConfig({ mcpServers: [{ id: 'a', url: 'https://mcp.example.com/mcp', limits: { maxUpstreamMessageBytes: wrong as number } }] }, 'test')).toThrow(
        /mcpServers\.0\.limits\.maxUpstreamMessageBytes: /,
      );
    }
  });
});
