/** The official Anthropic SDK through Deputy's gateway: `fetch: agent.fetch` is the only change. */
import Anthropic from '@anthropic-ai/sdk';
import { DeputyAgent } from 'deputy/agent';
import { exampleEnv, isMain, type ExampleEnv } from './env.js';

export async function main({ issuer, agentId, agentKey, userToken, connection, allowInsecureRequests }: ExampleEnv): Promise<string | undefined> {
  const agent = await DeputyAgent.create({ issuer, clientId: agentId, privateKey: agentKey, allowInsecureRequests });
  await agent.exchange({ subjectToken: userToken, resource: `${issuer}/gw/${connection}`, scope: 'deputy.read' });
  const anthropic = new Anthropic({ baseURL: `${issuer}/gw/${connection}`, apiKey: 'held-by-deputy', fetch: agent.fetch });
  try {
    const message = await anthropic.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 64, messages: [{ role: 'user', content: 'Say hello' }] });
    const first = message.content[0];
    return first?.type === 'text' ? first.text : undefined;
  } finally {
    await agent.dispose();
  }
}

if (isMain(import.meta.url)) console.log(await main(exampleEnv()));
