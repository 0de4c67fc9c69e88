/**
 * The provider key of an `llm` connection, as each wire format carries it. Only the LLM gateway
 * injects it: the HTTP gateway refuses `llm` connections ({@link NotAtHttpGateway}), so no call
 * reaches a provider without the LLM gateway's budget step.
 *
 * @module
 */
import { BadGateway, NotFound } from '../errors/index.js';
import type { Credential, CredentialSource } from '../vault/connections/credentials.js';
import type { ConnectionSettings } from '../vault/connections/config.js';
import type { Connection, ConnectionStore } from '../vault/connections/store.js';

export type LlmSettings = Extract<ConnectionSettings, { kind: 'llm' }>;

/** `openai`: `Authorization: Bearer <key>`; `anthropic`: `x-api-key: <key>`. */
export class LlmKeySource implements CredentialSource {
  constructor(readonly connections: ConnectionStore) {}

  async credential(connection: Connection): Promise<Credential> {
    const s = connection.settings as LlmSettings;
    const secret = await this.connections.secret(connection);
    if (secret === undefined) throw new BadGateway(`connection "${connection.id}" has no credential configured`);
    const headers: Array<readonly [string, string]> = s.provider === 'anthropic' ? [['x-api-key', secret]] : [['authorization', `Bearer ${secret}`]];
    return { headers, query: [], secrets: [secret], rejected: async () => {} };
  }
}

/** What the HTTP gateway's broker answers for an `llm` connection: 404, pointing at `/llm`. */
export class NotAtHttpGateway implements CredentialSource {
  async credential(connection: Connection): Promise<Credential> {
    throw new NotFound(`connection "${connection.id}" is an LLM provider: call it at /llm/${connection.id}`);
  }
}
