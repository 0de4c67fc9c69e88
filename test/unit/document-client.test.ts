/** The derived agent id of a metadata-document client, and the reserved `cimd-` namespace. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { documentAgentId, isDocumentAgentId } from '../../src/agents/document-client.js';
import { agentSchema } from '../../src/config/schema.js';
import { authorizationCodeSchema, documentClientLimits } from '../../src/oauth/authorization-code/config.js';

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

describe('documentClientLimits', () => {
  const documents = (hosts: unknown[] = []) =>
    authorizationCodeSchema.parse({
      enabled: true,
      clientIdMetadataDocuments: { enabled: true, allowedHosts: ['app.example.com', 'ide.example.com:8443'], scopes: ['a'], audiences: ['https://rs/'], hosts },
    }).clientIdMetadataDocuments;

  it('gives a host its own limits, others the defaults; never anything from the document', () => {
    const d = documents([{ host: 'IDE.example.com:8443', scopes: ['b', 'c'], audiences: ['https://rs2/'], maxDelegationDepth: 2 }]);
    expect(documentClientLimits(d, 'https://app.example.com/c.json')).toEqual({ scopes: ['a'], audiences: ['https://rs/'], maxDelegationDepth: 1 });
    expect(documentClientLimits(d, 'https://ide.example.com:8443/c.json')).toEqual({ scopes: ['b', 'c'], audiences: ['https://rs2/'], maxDelegationDepth: 2 });
    expect(documentClientLimits(d, 'https://ide.example.com/c.json')).toEqual({ scopes: ['a'], audiences: ['https://rs/'], maxDelegationDepth: 1 });
  });

  it('refuses limits for a host that is not allow-listed', () => {
    expect(() => documents([{ host: 'evil.example', scopes: ['a'] }])).toThrow(/allowedHosts/);
  });
});
