/** The official OpenAI SDK through Deputy's gateway: `fetch: agent.fetch` is the only change. */
import OpenAI from 'openai';
import { DeputyAgent } from 'deputy/agent';
import { exampleEnv, isMain, type ExampleEnv } from './env.js';

export async function main({ issuer, agentId, agentKey, userToken, connection, allowInsecureRequests }: ExampleEnv): Promise<string | null | undefined> {
  const agent = await DeputyAgent.create({ issuer, clientId: agentId, privateKey: agentKey, allowInsecureRequests });
  await agent.exchange({ subjectToken: userToken, resource: `${issuer}/gw/${connection}`, scope: 'deputy.read' });
  // Deputy injects the provider key: the SDK's apiKey is a placeholder that never leaves Deputy's gateway.
  const openai = new OpenAI({ baseURL: `${issuer}/gw/${connection}/v1`, apiKey: 'held-by-deputy', fetch: agent.fetch });
  try {
    const completion = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }] });
    return completion.choices[0]?.message.content;
  } finally {
    await agent.dispose();
  }
}

if (isMain(import.meta.url)) console.log(await main(exampleEnv()));
