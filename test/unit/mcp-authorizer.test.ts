/**
 * The MCP gateway's questions to the PDP (src/mcp/authorizer.ts): the AuthZEN evaluation each
 * MCP message becomes, required scopes checked first, oversized arguments refused.
 */
import { describe, expect, it } from 'vitest';
import { PdpMcpAuthorizer, type McpCaller } from '../../src/mcp/authorizer.js';
import { mcpServerSchema } from '../../src/mcp/config.js';
import type { EvaluationInput } from '../../src/pdp/authzen.js';

const server = mcpServerSchema.parse({ id: 'github', url: 'https://mcp.example.com/mcp', requiredScopes: ['mcp:github'] });
const caller: McpCaller = { token: 'tok', jti: 'j1', userId: 'okta:alice', agentId: 'agent-a', chain: ['agent-a'], scopes: new Set(['mcp:github']), upstreamHandle: undefined, requestId: 'r1' };

function authorizer(decide: (e: EvaluationInput) => boolean) {
  const seen: EvaluationInput[] = [];
  const pdp = {
    evaluateAll: async (items: ReadonlyArray<{ ok: true; evaluation: EvaluationInput }>) =>
      items.map((i) => {
        seen.push(i.evaluation);
        return decide(i.evaluation)
          ? { decision: true as const, policies: ['p'] }
          : { decision: false as const, denial: { kind: 'forbidden' as const, admin: 'admin reason', user: 'user reason', policies: ['f'] } };
      }),
  };
  return { a: new PdpMcpAuthorizer(pdp, { issuer: 'https://deputy.example', adminReasons: false }), seen };
}

describe('PdpMcpAuthorizer', () => {
  it('asks about the tool, with its arguments as RFC 8785 text in context.mcp, for the whole chain', async () => {
    const { a, seen } = authorizer(() => true);
    const [d] = await a.decide(caller, server, [{ method: 'tools/call', action: 'invoke', tool: 'create_issue', arguments: { title: 't', repo: 'acme/x' } }]);
    expect(d).toEqual({ allowed: true, policies: ['p'] });
    expect(seen[0]).toEqual({
      subject: { type: 'Agent', id: 'agent-a', properties: { token: 'tok' } },
      action: { name: 'invoke', properties: {} },
      resource: { type: 'Resource', id: 'github/tools/create_issue', properties: { audience: 'https://deputy.example/mcp/github', owner: 'okta:alice', scope: 'mcp:github' } },
      context: { mcp: { server: 'github', method: 'tools/call', tool: 'create_issue', arguments: '{"repo":"acme/x","title":"t"}' } },
    });
  });

  it('decides a list as one batch and gives the user-facing reason when admin reasons are off', async () => {
    const { a, seen } = authorizer((e) => e.resource.id !== 'github/tools/drop');
    const out = await a.decide(caller, server, ['read', 'drop'].map((tool) => ({ method: 'tools/list', action: 'invoke' as const, tool })));
    expect(out.map((d) => d.allowed)).toEqual([true, false]);
    expect(out[1]).toMatchObject({ reason: 'user reason', policies: ['f'] });
    expect(seen).toHaveLength(2);
  });

  it('refuses without asking when a required scope is missing, and refuses oversized arguments', async () => {
    const { a, seen } = authorizer(() => true);
    const [d] = await a.decide({ ...caller, scopes: new Set() }, server, [{ method: 'tools/call', action: 'invoke', tool: 'x' }]);
    expect(d).toMatchObject({ allowed: false, reason: expect.stringContaining('mcp:github') });
    expect(seen).toHaveLength(0);
    const [big] = await a.decide(caller, server, [{ method: 'tools/call', action: 'invoke', tool: 'x', arguments: { blob: 'x'.repeat(70 * 1024) } }]);
    expect(big).toMatchObject({ allowed: false, reason: expect.stringContaining('arguments exceed') });
    expect(seen).toHaveLength(0);
  });
});
