/**
 * The one source of "is this one of Deputy's own scopes / resources" (src/oauth/deputy-own.ts):
 * namespaces, issuers with and without a path, URL spelling variants, and the agent-facing
 * exceptions (gateway connections, handoff audiences).
 */
import { describe, expect, it } from 'vitest';
import { deputyOwnGrantIssues, isDeputyResource, isDeputyScope } from '../../src/oauth/deputy-own.js';

describe('isDeputyScope', () => {
  it("covers Deputy's namespaces, whatever the case, and nothing else", () => {
    for (const s of ['deputy:admin', 'authzen:evaluate', 'deputy:', 'deputy:x', 'authzen:search', 'DEPUTY:ADMIN', 'AuthZEN:evaluate']) expect(isDeputyScope(s), s).toBe(true);
    for (const s of ['deputy.read', 'Deputy.Read', 'deputyadmin', 'admin', 'x:deputy:admin', 'authzen', 'calendar.read']) expect(isDeputyScope(s), s).toBe(false);
  });
});

describe('isDeputyResource', () => {
  const cases: Array<[issuer: string, own: string[], notOwn: string[]]> = [
    [
      'https://deputy.example.com',
      [
        'https://deputy.example.com', 'https://deputy.example.com/', 'https://deputy.example.com/admin', 'https://deputy.example.com/access',
        'https://deputy.example.com/receipts/jwks', 'https://deputy.example.com/token', 'https://DEPUTY.example.com:443/admin',
        'https://deputy.example.com/a/../admin', 'https://deputy.example.com/gw/echo/x', 'https://deputy.example.com/gw/echo?x',
        'https://deputy.example.com/gw/Echo', 'https://deputy.example.com/gw/', 'https://deputy.example.com/gw', 'https://u:p@deputy.example.com/gw/echo',
      ],
      [
        'https://deputy.example.com/gw/echo', 'https://deputy.example.com/gw/a_b-1', 'urn:deputy:agent:x', 'urn:deputy:agent:*',
        'http://deputy.example.com/admin', 'https://deputy.example.com:8443/admin', 'https://api.example.com/admin', 'api://default', 'not a url',
      ],
    ],
    [
      'https://example.com/deputy/',
      ['https://example.com/deputy', 'https://example.com/deputy/admin', 'https://example.com/deputy/gw/echo/deeper'],
      ['https://example.com/deputy/gw/echo', 'https://example.com/deputyx/admin', 'https://example.com/other/admin', 'https://example.com/'],
    ],
  ];
  it.each(cases)('under %s', (issuer, own, notOwn) => {
    for (const t of own) expect(isDeputyResource(t, issuer), t).toBe(true);
    for (const t of notOwn) expect(isDeputyResource(t, issuer), t).toBe(false);
  });
});

describe('deputyOwnGrantIssues', () => {
  it('names each offending field; without an issuer only scopes are checked', () => {
    const agent = { scopes: ['a', 'deputy:admin'], audiences: ['https://x.example', 'https://d.example/admin'] };
    expect(deputyOwnGrantIssues(agent, 'https://d.example')).toEqual([
      expect.stringMatching(/^scopes\.1: /),
      expect.stringMatching(/^audiences\.1: /),
    ]);
    expect(deputyOwnGrantIssues(agent, undefined)).toEqual([expect.stringMatching(/^scopes\.1: /)]);
    expect(deputyOwnGrantIssues({ scopes: ['a'], audiences: ['https://d.example/gw/c'] }, 'https://d.example')).toEqual([]);
  });
});
