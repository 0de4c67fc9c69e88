/**
 * Deputy as a policy backend of Microsoft's Agent Governance Toolkit (README "Agent library"):
 * the toolkit's local rules and Deputy's PDP over the whole delegation chain must both allow.
 *
 * Besides the example environment: `PEP_ID`, `PEP_KEY_FILE` — a client of Deputy's
 * `admin.clients` with the `authzen:evaluate` scope, and its private JWK.
 */
import { readFileSync } from 'node:fs';
import { PolicyEngine } from '@microsoft/agent-governance-sdk';
import type { JWK } from 'jose';
import { DeputyAgent } from 'deputy/agent';
import { DeputyPolicyBackend } from 'deputy/agent/governance';
import { exampleEnv, isMain, type ExampleEnv } from './env.js';

export interface GovernanceExampleEnv extends ExampleEnv {
  pepId: string;
  pepKey: JWK;
  /** A toolkit action and the resource it acts on. */
  action: string;
  resource: { type?: string; id: string; properties?: Record<string, unknown> };
}

export async function main(env: GovernanceExampleEnv): Promise<{ decision: string; deniedBy: string[]; reasons: Array<string | undefined> }> {
  const { issuer, agentId, agentKey, userToken, connection, allowInsecureRequests } = env;
  const agent = await DeputyAgent.create({ issuer, clientId: agentId, privateKey: agentKey, allowInsecureRequests });
  await agent.exchange({ subjectToken: userToken, resource: `${issuer}/gw/${connection}`, scope: 'deputy.read' });

  const engine = new PolicyEngine([{ action: 'crm.*', effect: 'allow' }]); // the toolkit's local rules
  engine.registerBackend(new DeputyPolicyBackend({ agent, pep: { clientId: env.pepId, privateKey: env.pepKey }, actions: { 'crm.lookup': 'read', 'crm.erase': 'delete' }, allowInsecureRequests }));
  const result = await engine.evaluateWithBackends(env.action, { resource: env.resource });

  await agent.dispose();
  return { decision: result.effectiveDecision, deniedBy: result.deniedBy, reasons: result.backendResults.map((r) => r.reason) };
}

if (isMain(import.meta.url)) {
  const pepKey = JSON.parse(readFileSync(process.env.PEP_KEY_FILE ?? '', 'utf8')) as JWK;
  console.log(await main({ ...exampleEnv(), pepId: process.env.PEP_ID ?? '', pepKey, action: 'crm.lookup', resource: { id: process.env.CONNECTION ?? '' } }));
}
