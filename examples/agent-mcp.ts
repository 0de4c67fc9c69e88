/** The MCP SDK's Streamable HTTP client through Deputy's gateway: `fetch: agent.fetch` is the only change. */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { DeputyAgent } from 'deputy/agent';
import { exampleEnv, isMain, type ExampleEnv } from './env.js';

export async function main({ issuer, agentId, agentKey, userToken, connection, allowInsecureRequests }: ExampleEnv): Promise<unknown> {
  const agent = await DeputyAgent.create({ issuer, clientId: agentId, privateKey: agentKey, allowInsecureRequests });
  await agent.exchange({ subjectToken: userToken, resource: `${issuer}/gw/${connection}`, scope: 'deputy.read' });
  const transport = new StreamableHTTPClientTransport(new URL(`${issuer}/gw/${connection}/mcp`), { fetch: agent.fetch });
  const mcp = new Client({ name: agentId, version: '1.0.0' });
  await mcp.connect(transport);
  try {
    const tools = await mcp.listTools();
    const result = await mcp.callTool({ name: 'lookup', arguments: { customer: '42' } });
    return { tools: tools.tools.map((t) => t.name), result };
  } finally {
    await mcp.close();
    await agent.dispose();
  }
}

if (isMain(import.meta.url)) console.log(JSON.stringify(await main(exampleEnv()), null, 2));
