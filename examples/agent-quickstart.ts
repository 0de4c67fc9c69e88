/** Exchange + gateway call in three lines (README "Agent library"). */
import { DeputyAgent } from 'deputy/agent';
import { exampleEnv, isMain, type ExampleEnv } from './env.js';

export async function main({ issuer, agentId, agentKey, userToken, connection, allowInsecureRequests }: ExampleEnv): Promise<unknown> {
  const agent = await DeputyAgent.create({ issuer, clientId: agentId, privateKey: agentKey, allowInsecureRequests });
  await agent.exchange({ subjectToken: userToken, resource: `${issuer}/gw/${connection}`, scope: 'deputy.read' });
  const res = await agent.request(`${issuer}/gw/${connection}/customers/42`);
  try {
    return await res.json();
  } finally {
    await agent.dispose(); // revokes the agent's tokens
  }
}

if (isMain(import.meta.url)) console.log(await main(exampleEnv()));
