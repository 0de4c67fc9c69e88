/**
 * What every example needs, from the environment when an example is run on its own
 * (`node --import tsx examples/agent-openai.ts`); the tests pass the same values directly.
 *
 * - `DEPUTY_ISSUER`: Deputy's issuer, e.g. `https://deputy.example.com`
 * - `AGENT_ID`, `AGENT_KEY_FILE`: the agent's client id and its private JWK (a JSON file)
 * - `USER_TOKEN`: the user's token from the enterprise IdP (an access token)
 * - `CONNECTION`: the gateway connection to call, e.g. `crm`
 */
import { readFileSync } from 'node:fs';
import type { JWK } from 'jose';

export interface ExampleEnv {
  issuer: string;
  agentId: string;
  agentKey: JWK;
  userToken: string;
  connection: string;
  /** Only for a local Deputy on http://localhost. */
  allowInsecureRequests?: boolean;
}

export function exampleEnv(): ExampleEnv {
  const need = (name: string): string => {
    const v = process.env[name];
    if (!v) throw new Error(`set ${name}`);
    return v;
  };
  const issuer = need('DEPUTY_ISSUER');
  return {
    issuer,
    agentId: need('AGENT_ID'),
    agentKey: JSON.parse(readFileSync(need('AGENT_KEY_FILE'), 'utf8')) as JWK,
    userToken: need('USER_TOKEN'),
    connection: need('CONNECTION'),
    allowInsecureRequests: issuer.startsWith('http://'),
  };
}

/** Whether the module `url` is the program being run (not imported by a test). */
export function isMain(url: string): boolean {
  return process.argv[1] !== undefined && new URL(url).pathname === new URL(`file://${process.argv[1]}`).pathname;
}
