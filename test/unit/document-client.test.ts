/** The derived agent id of a metadata-document client, and the reserved `cimd-` namespace. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { documentAgentId, isDocumentAgentId } from '../../src/agents/document-client.js';
import { agentSchema } from '../../src/config/schema.js';

describe('documentAgentId', () => {
  it('is stable, a valid agent id in the cimd- namespace, and differs for different URLs (also by case)', () => {
    const a = documentAgentId('https://app.example.com/client.json');
    expect(a).toBe(documentAgentId('https://app.example.com/client.json'));
    expect(a).toMatch(/^cimd-[0-9a-f]{32}$/);
    expect(isDocumentAgentId(a)).toBe(true);
    expect(documentAgentId('https://app.example.com/Client.json')).not.toBe(a);
    fc.assert(fc.property(fc.webUrl(), fc.webUrl(), (u, v) => u === v || documentAgentId(u) !== documentAgentId(v)));
  });

  it('the configuration (and the admin API, same schema) refuses agent ids in the cimd- namespace', () => {
    const agent = { id: 'cimd-x', name: 'n', owner: 'o@example.com', jwks_uri: 'https://example.com/jwks' };
    const result = agentSchema.safeParse(agent);
    expect(result.success).toBe(false);
    expect(JSON.stringify(result.error?.issues)).toContain('reserved');
    expect(agentSchema.safeParse({ ...agent, id: 'cim-x' }).success).toBe(true);
  });
});
