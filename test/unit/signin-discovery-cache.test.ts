/**
 * The sign-in's discovery of an IdP (src/signin/relying-party.ts), now on the one single-flight
 * cache (issue 16, ninth round): concurrent sign-ins share one discovery, a failed one is not
 * kept, and one stalled past the discovery timeout is not joined — the next sign-in discovers on
 * its own instead of failing with it. The IdP is a local HTTP server that answers the discovery
 * requests as the test says; the wall clock is `Date.now`, stepped by hand. No timing.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SignIn, type SignInDeps } from '../../src/signin/relying-party.js';
import type { TrustedIssuerConfig } from '../../src/federation/config.js';
import { TemporarilyUnavailable } from '../../src/errors/index.js';

/** An IdP whose n-th discovery request (1-based) is answered by `answer(n, res)`: metadata, an error, or nothing. */
async function idp(answer: (n: number, res: ServerResponse, metadata: () => void) => void): Promise<{ server: Server; issuer: string; requests: () => number }> {
  let n = 0;
  const server = createServer((_req, res) => {
    answer(++n, res, () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ issuer, authorization_endpoint: `${issuer}/authorize`, token_endpoint: `${issuer}/token`, jwks_uri: `${issuer}/jwks` }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { server, issuer, requests: () => n };
}

function signIn(issuer: string): SignIn {
  const trusted = { id: 'okta', issuer, allowInsecureHttp: true, algorithms: ['RS256'], signIn: { clientId: 'deputy', clientAuth: 'private_key_jwt', scopes: [] } };
  return new SignIn({ issuer: 'https://deputy.example.com', trustedIssuers: [trusted as unknown as TrustedIssuerConfig] } as unknown as SignInDeps);
}

const servers: Server[] = [];
afterEach(() => {
  vi.restoreAllMocks();
  for (const s of servers.splice(0)) s.closeAllConnections(), s.close();
});

describe('SignIn discovery', () => {
  it('a failed discovery is not kept; concurrent sign-ins share one; the answer is reused', async () => {
    const stand = await idp((n, res, metadata) => (n === 1 ? res.writeHead(500).end() : metadata()));
    servers.push(stand.server);
    const rp = signIn(stand.issuer);
    await expect(rp.start('okta', '/')).rejects.toBeInstanceOf(TemporarilyUnavailable);
    const started = await Promise.all([rp.start('okta', '/'), rp.start('okta', '/'), rp.start('okta', '/')]);
    expect(started.every((s) => s.redirectTo.startsWith(`${stand.issuer}/authorize?`))).toBe(true);
    expect(stand.requests()).toBe(2);
  });

  it('a discovery stalled past its timeout is not joined: the next sign-in discovers on its own (before: it failed with the stalled one)', async () => {
    let clock = Date.now();
    vi.spyOn(Date, 'now').mockImplementation(() => clock);
    // The first discovery request is never answered.
    const stand = await idp((n, _res, metadata) => (n === 1 ? undefined : metadata()));
    servers.push(stand.server);
    const rp = signIn(stand.issuer);
    const stalled = rp.start('okta', '/').catch(() => 'failed');
    await vi.waitFor(() => expect(stand.requests()).toBe(1));
    clock += 10_001;
    const started = await rp.start('okta', '/');
    expect(started.redirectTo.startsWith(`${stand.issuer}/authorize?`)).toBe(true);
    expect(stand.requests()).toBe(2);
    void stalled;
  });
});
