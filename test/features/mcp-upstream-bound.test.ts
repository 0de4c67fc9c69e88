/**
 * The bound of one upstream MCP message is per server (`limits.maxUpstreamMessageBytes`, issue
 * 16 eleventh round; it was one 16 MiB bound for the whole gateway): two servers in front of the
 * same upstream, one bounded at 4 KiB, the other at the default. An answer larger than the
 * server's bound fails that call — a JSON-RPC error to the agent, the upstream's text nowhere in
 * it — while the same answer through the other server arrives whole; the session stays usable.
 * The setting is validated, and a mistake names the field.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import { DEFAULT_UPSTREAM_MESSAGE_BYTES, mcpServerSchema } from '../../src/mcp/config.js';
import { agentConfig, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { adminSetup, clientKeys } from '../support/clients.js';
import { mcpAgent, startMcpUpstream, type McpUpstream } from '../support/mcp.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const MCP_KEY = `mcp_key_${randomBytes(16).toString('hex')}`;
const SCOPE = 'mcp:tools';
const SMALL = 4096;

let idp: MockIdp;
let up: McpUpstream;
let deputy: TestDeputy;
let issuer: string;
let agent: TestAgent;

beforeAll(async () => {
  idp = await startMockIdp();
  up = await startMcpUpstream();
  const port = await freePort();
  issuer = `http://localhost:${port}`;
  const a = await adminSetup();
  const keys = await clientKeys();
  const server = (id: string, limits: Record<string, number>) => ({ id, url: up.url, allowInsecureHttp: true, connection: 'mcpkey', requiredScopes: [SCOPE], pinning: 'off' as const, limits });
  deputy = await startTestDeputy({
    env: { MCP_KEY },
    config: {
      server: { port },
      admin: { clients: [a.config] },
      pdp: { policies: `${REPO}test/fixtures/policies/mcp`, watch: false },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [agentConfig('agent-a', keys, { scopes: [SCOPE], audiences: [`${issuer}/mcp/small`, `${issuer}/mcp/roomy`] })],
      connections: [{ id: 'mcpkey', kind: 'api_key', baseUrl: up.url, allowInsecureHttp: true, header: 'Authorization', scheme: 'Bearer', secret: { env: 'MCP_KEY' } }],
      // The oversize answer's SSE stream errors; the SDK's request then waits for the upstream timeout (left as it is: 5 s here).
      mcpServers: [server('small', { maxUpstreamMessageBytes: SMALL, upstreamTimeoutSeconds: 5 }), server('roomy', {})],
    },
  });
  agent = await testAgent(deputy.issuer, 'agent-a', keys);
}, 120_000);
afterAll(async () => {
  await deputy?.stop();
  await up?.close();
  await idp?.close();
});

async function connect(server: string) {
  const subject = await idp.oktaAccessToken({ scp: [SCOPE] });
  const token = (await exchange(agent, { subject_token: subject, resource: `${issuer}/mcp/${server}`, scope: SCOPE })).access_token;
  return mcpAgent(`${issuer}/mcp/${server}`, agent, token);
}

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
