/**
 * The MCP gateway on two Deputy instances sharing one PostgreSQL (PostgreSQL only: PGlite serves
 * one process): a `tools/call` proof replayed on instance two while its original is in flight on
 * instance one. Neither instance's memory of recent proofs knows the other's, and the original is
 * not committed yet, so only the shared store's insert-or-fail in the decision receipt's statement
 * can tell (src/mcp/recent-proofs.ts): exactly one call is forwarded and receipted, the other is
 * refused — HTTP 401, or in-band JSON-RPC -32003 when its refusal comes from that statement.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentConfig, dpopProof, exchange, testAgent, type TestAgent } from '../support/agents.js';
import { clientKeys } from '../support/clients.js';
import { createTestDatabase, usingPostgres, type TestDatabase } from '../support/database.js';
import { mcpAgent, startMcpUpstream, toolCallOutcome, type McpUpstream } from '../support/mcp.js';
import { startMockIdp, type MockIdp } from '../support/mock-idp.js';
import { freePort } from '../support/net.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const SCOPE = 'mcp:tools';
const rpcHeaders = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

describe.skipIf(!usingPostgres)('MCP gateway: two instances on one PostgreSQL', () => {
  let idp: MockIdp;
  let up: McpUpstream;
  let database: TestDatabase;
  let keysDir: string;
  let one: TestDeputy;
  let two: TestDeputy;
  let issuer: string;
  let agent: TestAgent;

  beforeAll(async () => {
    idp = await startMockIdp();
    up = await startMcpUpstream();
    database = await createTestDatabase();
    keysDir = mkdtempSync(join(tmpdir(), 'deputy-mcp-instances-keys-'));
    const port = await freePort();
    issuer = `http://localhost:${port}`; // instance one's address, the issuer of both
    const keys = await clientKeys();
    const MCP_KEY = `mcp_key_${randomBytes(16).toString('hex')}`;
    const config = {
      server: { issuer },
      pdp: { policies: `${REPO}test/fixtures/policies/mcp`, watch: false },
      trustedIssuers: [idp.issuerConfig('okta')],
      agents: [agentConfig('agent-a', keys, { scopes: [SCOPE], audiences: [`${issuer}/mcp/open`] })],
      connections: [{ id: 'mcpkey', kind: 'api_key' as const, baseUrl: up.url, allowInsecureHttp: true, header: 'Authorization', scheme: 'Bearer', secret: { env: 'MCP_KEY' } }],
      mcpServers: [{ id: 'open', url: up.url, allowInsecureHttp: true, connection: 'mcpkey', requiredScopes: [SCOPE], pinning: 'off' as const }],
    };
    one = await startTestDeputy({ env: { MCP_KEY }, config: { ...config, server: { ...config.server, port } }, keysDir, database });
    two = await startTestDeputy({ env: { MCP_KEY }, config, keysDir, database });
    agent = await testAgent(issuer, 'agent-a', keys);
  });
  afterAll(async () => {
    await one?.stop();
    await two?.stop();
    await database?.drop();
    await up?.close();
    await idp?.close();
    if (keysDir) rmSync(keysDir, { recursive: true, force: true });
  });

  /** Decision receipts of tools/call, read from the shared store (outcome receipts have another action). */
  async function decisions(): Promise<number> {
    await one.receipts.flush();
    await two.receipts.flush();
    const rows = await one.store.query<{ jws: string }>(`SELECT jws FROM receipts WHERE agent_id = 'agent-a'`);
    return rows.filter((r) => JSON.parse(Buffer.from(r.jws.split('.')[1]!, 'base64url').toString()).action === 'tools/call').length;
  }

  it('a tools/call proof replayed on the other instance while its original is in flight: exactly one forwarded and receipted, the other refused', async () => {
    const subject = await idp.oktaAccessToken({ scp: [SCOPE] });
    const url = `${issuer}/mcp/open`;
    const { access_token: token } = await exchange(agent, { subject_token: subject, resource: url, scope: SCOPE });
    // A session on each instance (MCP sessions are the instance's own), same token.
    const sessions = await Promise.all([one, two].map((d) => mcpAgent(url, agent, token, {}, d.url)));
    const call = (d: TestDeputy, session: string, id: number, proof: string) => fetch(`${d.url}/mcp/open`, {
      method: 'POST',
      headers: { ...rpcHeaders, 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18', authorization: `DPoP ${token}`, dpop: proof },
      body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'echo', arguments: { text: `two instances ${id}` } } }),
    });
    try {
      for (let round = 0; round < 3; round += 1) {
        const echoed = up.hits.get('echo') ?? 0;
        const decided = await decisions();
        const proof = await dpopProof(agent.dpop, url, { accessToken: token });
        const results = await Promise.all([
          call(one, sessions[0]!.transport.sessionId!, 10 + 2 * round, proof),
          call(two, sessions[1]!.transport.sessionId!, 11 + 2 * round, proof),
        ].map(async (r) => toolCallOutcome(await r)));
        expect(results.sort()).toEqual(['forwarded', 'refused']);
        expect(up.hits.get('echo')).toBe(echoed + 1);
        expect(await decisions()).toBe(decided + 1);
      }
    } finally {
      for (const s of sessions) await s.client.close();
    }
  });
});
