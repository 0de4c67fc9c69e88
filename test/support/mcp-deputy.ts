/**
 * A Deputy in front of one MCP upstream, for the MCP gateway's feature tests: the mock IdP, the
 * upstream (its API key held as the connection `mcpkey`), the MCP policies, an admin client and
 * one agent `agent-a` allowed `mcp:tools` at every server's `/mcp/<id>`.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { McpServerInput } from '../../src/mcp/config.js';
import { agentConfig, exchange, testAgent, type TestAgent } from './agents.js';
import { adminSetup, clientKeys } from './clients.js';
import { mcpAgent, startMcpUpstream, type McpUpstream } from './mcp.js';
import { startMockIdp, type MockIdp } from './mock-idp.js';
import { freePort } from './net.js';
import { startTestDeputy, type TestDeputy } from './server.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

/** The scope every server requires and the agent holds. */
export const MCP_SCOPE = 'mcp:tools';

/** What `startMcpDeputy` started; `stop` ends all of it. */
export interface McpDeputy {
  idp: MockIdp;
  up: McpUpstream;
  deputy: TestDeputy;
  /** Deputy's issuer, `http://localhost:<port>`: the servers are at `${issuer}/mcp/<id>`. */
  issuer: string;
  agent: TestAgent;
  /** The admin client (its id and keys), configured with `deputy:admin`. */
  admin: Awaited<ReturnType<typeof adminSetup>>;
  stop(): Promise<void>;
}

/** Server `id` in front of `up` through the connection `mcpkey`, requiring `mcp:tools`, unpinned; `extra` on top. */
export function mcpServer(up: McpUpstream, id: string, extra: Partial<McpServerInput> = {}): McpServerInput {
  return { id, url: up.url, allowInsecureHttp: true, connection: 'mcpkey', requiredScopes: [MCP_SCOPE], pinning: 'off', ...extra };
}

/** Starts the IdP, the upstream and Deputy with `servers` (by default one, `open`); stops what started if a step fails. */
export async function startMcpDeputy(servers: (up: McpUpstream) => McpServerInput[] = (up) => [mcpServer(up, 'open')]): Promise<McpDeputy> {
  const idp = await startMockIdp();
  let up: McpUpstream | undefined;
  try {
    up = await startMcpUpstream();
    const port = await freePort();
    const issuer = `http://localhost:${port}`;
    const admin = await adminSetup();
    const keys = await clientKeys();
    const mcpServers = servers(up);
    const deputy = await startTestDeputy({
      env: { MCP_KEY: `mcp_key_${randomBytes(16).toString('hex')}` },
      config: {
        server: { port },
        admin: { clients: [admin.config] },
        pdp: { policies: `${REPO}test/fixtures/policies/mcp`, watch: false },
        trustedIssuers: [idp.issuerConfig('okta')],
        agents: [agentConfig('agent-a', keys, { scopes: [MCP_SCOPE], audiences: mcpServers.map((s) => `${issuer}/mcp/${s.id}`) })],
        connections: [{ id: 'mcpkey', kind: 'api_key', baseUrl: up.url, allowInsecureHttp: true, header: 'Authorization', scheme: 'Bearer', secret: { env: 'MCP_KEY' } }],
        mcpServers,
      },
    });
    const upstream = up;
    try {
      const agent = await testAgent(deputy.issuer, 'agent-a', keys);
      const stop = async (): Promise<void> => {
        await deputy.stop();
        await upstream.close();
        await idp.close();
      };
      return { idp, up: upstream, deputy, issuer, agent, admin, stop };
    } catch (e) {
      await deputy.stop();
      throw e;
    }
  } catch (e) {
    await up?.close();
    await idp.close();
    throw e;
  }
}

/** The agent's MCP client at server `server`, on a token exchanged for an Okta token with `mcp:tools`. */
export async function connectMcp(m: McpDeputy, server: string): ReturnType<typeof mcpAgent> {
  const subject = await m.idp.oktaAccessToken({ scp: [MCP_SCOPE] });
  const token = (await exchange(m.agent, { subject_token: subject, resource: `${m.issuer}/mcp/${server}`, scope: MCP_SCOPE })).access_token;
  return mcpAgent(`${m.issuer}/mcp/${server}`, m.agent, token);
}
