import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { routedTo } from '../../src/oauth/oidc-provider/routing.js';

describe('routedTo: the paths oidc-provider routes to a static route', () => {
  it('matches case-insensitively and with one trailing slash, nothing else', () => {
    for (const path of ['/token', '/TOKEN', '/ToKeN', '/token/', '/TOKEN/']) expect(routedTo(path, '/token'), path).toBe(true);
    for (const path of ['/token//', '/tokens', '/t%6Fken', '/token/x', '/', '', '/tok']) expect(routedTo(path, '/token'), path).toBe(false);
  });
  it('with `under`, also every path below the route', () => {
    expect(routedTo('/SESSION/END/confirm', '/session/end', { under: true })).toBe(true);
    expect(routedTo('/session/end/confirm', '/session/end')).toBe(false);
    expect(routedTo('/session/endx', '/session/end', { under: true })).toBe(false);
  });
  it('property: any ASCII re-casing of a route, with or without one trailing slash, is routed to it', () => {
    fc.assert(fc.property(fc.array(fc.boolean(), { minLength: 6, maxLength: 6 }), fc.boolean(), (upper, slash) => {
      const path = [...'/token'].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join('') + (slash ? '/' : '');
      return routedTo(path, '/token');
    }));
  });
});
