import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocalJWKSet, createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as client from 'openid-client';
import { adminSetup, clientCredentialsToken, type ClientKeys } from '../support/clients.js';
import { usingPostgres } from '../support/database.js';
import { json, type Json } from '../support/http.js';
import { startTestDeputy, type TestDeputy } from '../support/server.js';

let deputy: TestDeputy;
let admin: { clientId: string; keys: ClientKeys };
let accessToken: string;
/** Every `client_assertion` openid-client sent to the token endpoint. */
const assertions: string[] = [];

/** openid-client with private_key_jwt, recording the client assertions it sends. */
async function recordingClient(issuer: string, clientId: string, keys: ClientKeys): Promise<client.Configuration> {
  const recordingFetch = async (url: string, options: client.CustomFetchOptions) => {
    if (options.body instanceof URLSearchParams) {
      const assertion = options.body.get('client_assertion');
      if (assertion) assertions.push(assertion);
    }
    return fetch(url, options as RequestInit);
  };
  return client.discovery(new URL(issuer), clientId, {}, client.PrivateKeyJwt(keys.privateKey), {
    execute: [client.allowInsecureRequests],
    [client.customFetch]: recordingFetch,
  });
}

beforeAll(async () => {
  const setup = await adminSetup();
  admin = setup;
  deputy = await startTestDeputy({ config: { admin: { clients: [setup.config] }, server: { bodyLimitBytes: 4096 } } });
  accessToken = await clientCredentialsToken(await recordingClient(deputy.issuer, setup.clientId, setup.keys), 'deputy:admin');
});
afterAll(() => deputy?.stop());

describe('server', () => {
  it('boots on the store this run uses', () => {
    expect(deputy.store.kind).toBe(usingPostgres ? 'postgres' : 'pglite');
    expect(deputy.issuer).toMatch(/^http:\/\/localhost:\d+$/);
    expect(deputy.issuer).not.toMatch(/:0$/);
  });

  it('answers /healthz and /readyz', async () => {
    const health = await fetch(`${deputy.url}/healthz`);
    expect(health.status).toBe(200);
    expect(health.headers.get('cache-control')).toBe('no-store');
    expect(await json(health)).toEqual({ status: 'ok' });

    const ready = await fetch(`${deputy.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await json(ready)).toEqual({ status: 'ready', checks: { store: 'ok', keys: 'ok' } });
  });

  it('is not ready (503) once its store is gone, while still alive', async () => {
    const other = await startTestDeputy();
    try {
      expect((await fetch(`${other.url}/readyz`)).status).toBe(200);
      await other.store.close();
      const ready = await fetch(`${other.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await json(ready)).toEqual({ status: 'not_ready', checks: { store: 'unavailable', keys: 'ok' } });
      const health = await fetch(`${other.url}/healthz`);
      expect(health.status).toBe(200);
    } finally {
      await other.stop();
    }
  });
});

describe('X-Request-ID', () => {
  it('echoes a sane caller-supplied id', async () => {
    const id = 'trace-1234.abc:5_6-7';
    const res = await fetch(`${deputy.url}/healthz`, { headers: { 'x-request-id': id } });
    expect(res.headers.get('x-request-id')).toBe(id);
  });

  it('generates one when absent, different for each request', async () => {
    const a = (await fetch(`${deputy.url}/healthz`)).headers.get('x-request-id');
    const b = (await fetch(`${deputy.url}/healthz`)).headers.get('x-request-id');
    expect(a).toMatch(/^[0-9a-f-]{36}$/);
    expect(b).toMatch(/^[0-9a-f-]{36}$/);
    expect(a).not.toBe(b);
  });

  it('replaces a malicious or oversized id', async () => {
    for (const bad of ['a'.repeat(129), '<script>alert(1)</script>', 'id with spaces', '"quoted";x=1', '']) {
      const res = await fetch(`${deputy.url}/healthz`, { headers: { 'x-request-id': bad } });
      const got = res.headers.get('x-request-id');
      expect(got).not.toBe(bad);
      expect(got).toMatch(/^[0-9a-f-]{36}$/);
    }
  });

  it('is set on errors and on oidc-provider responses too', async () => {
    const notFound = await fetch(`${deputy.url}/nowhere`, { headers: { 'x-request-id': 'req-404' } });
    expect(notFound.headers.get('x-request-id')).toBe('req-404');
    const discovery = await fetch(`${deputy.url}/.well-known/openid-configuration`, { headers: { 'x-request-id': 'req-disc' } });
    expect(discovery.headers.get('x-request-id')).toBe('req-disc');
  });
});

describe('errors', () => {
  it('refuses a body over server.bodyLimitBytes with 413 and an OAuth-style JSON error', async () => {
    const body = new URLSearchParams({ grant_type: 'client_credentials', padding: 'x'.repeat(5000) });
    const res = await fetch(`${deputy.url}/token`, { method: 'POST', body });
    expect(res.status).toBe(413);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const err = await json(res);
    expect(err.error).toBe('payload_too_large');
    expect(err.error_description).toMatch(/4096 bytes/);
  });

  it('accepts a body just under the limit (the limit is the configured one)', async () => {
    const body = new URLSearchParams({ grant_type: 'client_credentials', padding: 'x'.repeat(3000) });
    const res = await fetch(`${deputy.url}/token`, { method: 'POST', body });
    expect(res.status).not.toBe(413);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
  });

  it('refuses a streamed (chunked) body over the limit on Deputy routes', async () => {
    const chunk = new TextEncoder().encode(`{"name":"${'x'.repeat(1000)}",`);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 8) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const res = await fetch(`${deputy.url}/admin/agents`, {
      method: 'POST',
      body: stream,
      duplex: 'half',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${accessToken}` },
    } as RequestInit);
    expect(res.status).toBe(413);
    expect((await json(res)).error).toBe('payload_too_large');
  });

  it('answers an unknown route with 404 JSON', async () => {
    for (const path of ['/no/such/route', '/admin', '/.well-known/nothing']) {
      const res = await fetch(`${deputy.url}${path}`);
      expect(res.status).toBe(404);
      expect(res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(await json(res)).toEqual({ error: 'not_found', error_description: expect.any(String) });
    }
  });

  it('answers a wrong method on a known route with 405 JSON', async () => {
    const res = await fetch(`${deputy.url}/healthz`, { method: 'POST' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toMatch(/GET/);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect((await json(res)).error).toBe('invalid_request');
  });
});

describe('discovery and keys', () => {
  let metadata: Json;

  beforeAll(async () => {
    // As a client would: at the issuer URL (oidc-provider derives endpoint URLs from the request).
    const res = await fetch(`${deputy.issuer}/.well-known/openid-configuration`);
    expect(res.status).toBe(200);
    metadata = await json(res);
  });

  it('serves OpenID and RFC 8414 discovery with the same issuer', async () => {
    const res = await fetch(`${deputy.issuer}/.well-known/oauth-authorization-server`);
    expect(res.status).toBe(200);
    const rfc8414 = await json(res);
    expect(metadata.issuer).toBe(deputy.issuer);
    expect(rfc8414.issuer).toBe(deputy.issuer);
    expect(rfc8414.token_endpoint).toBe(metadata.token_endpoint);
    expect(rfc8414.jwks_uri).toBe(metadata.jwks_uri);
  });

  it('advertises the endpoints and capabilities Deputy offers', () => {
    expect(metadata.token_endpoint).toBe(`${deputy.issuer}/token`);
    expect(metadata.jwks_uri).toBe(`${deputy.issuer}/jwks`);
    expect(metadata.introspection_endpoint).toBe(`${deputy.issuer}/introspect`);
    expect(metadata.revocation_endpoint).toBe(`${deputy.issuer}/revoke`);
    expect(metadata.dpop_signing_alg_values_supported).toEqual(expect.arrayContaining(['ES256']));
    expect(metadata.grant_types_supported).toEqual(
      expect.arrayContaining(['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange']),
    );
    expect(metadata.token_endpoint_auth_methods_supported).toEqual(['private_key_jwt']);
  });

  it('advertises the issuer\'s URLs whatever Host or X-Forwarded-* the request carried', async () => {
    const viaLoopback = await json(await fetch(`${deputy.url}/.well-known/openid-configuration`));
    expect(viaLoopback.token_endpoint).toBe(`${deputy.issuer}/token`);
    const spoofed = await json(
      await fetch(`${deputy.url}/.well-known/openid-configuration`, { headers: { 'x-forwarded-host': 'evil.example.com', 'x-forwarded-proto': 'https' } }),
    );
    expect(spoofed.token_endpoint).toBe(`${deputy.issuer}/token`);
  });

  it('neither advertises nor serves browser endpoints (authorization, PAR, logout)', async () => {
    for (const member of ['authorization_endpoint', 'pushed_authorization_request_endpoint', 'end_session_endpoint']) expect(metadata).not.toHaveProperty(member);
    for (const path of ['/auth', '/request', '/session/end']) {
      const res = await fetch(`${deputy.url}${path}`, { method: path === '/request' ? 'POST' : 'GET' });
      expect(res.status).toBe(404);
      expect((await json(res)).error).toBe('not_found');
    }
  });

  it('publishes the active signing key, public part only', async () => {
    const res = await fetch(metadata.jwks_uri as string);
    expect(res.status).toBe(200);
    const jwks = await json<{ keys: Json[] }>(res);
    const active = deputy.keys.activeSigningKey.jwk;
    const published = jwks.keys.find((k) => k.kid === active.kid);
    expect(published).toMatchObject({ kty: active.kty, crv: active.crv, x: active.x, y: active.y, alg: 'ES256', use: 'sig' });
    for (const key of jwks.keys) {
      for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth']) expect(key).not.toHaveProperty(member);
    }
  });

  it('issues client_credentials tokens that verify against the served JWKS as at+jwt', async () => {
    const jwks = createRemoteJWKSet(new URL(metadata.jwks_uri as string));
    const { payload, protectedHeader } = await jwtVerify(accessToken, jwks, {
      issuer: deputy.issuer,
      audience: `${deputy.issuer}/admin`,
      typ: 'at+jwt',
    });
    expect(protectedHeader.kid).toBe(deputy.keys.activeSigningKey.jwk.kid);
    expect(protectedHeader.alg).toBe('ES256');
    expect(payload).toMatchObject({ client_id: admin.clientId, scope: 'deputy:admin' });
    expect(typeof payload.exp).toBe('number');
  });

  it('tokens do not verify against keys other than the served ones', async () => {
    const { publicJwk } = admin.keys;
    const foreign = createLocalJWKSet({ keys: [{ ...publicJwk, kid: decodeProtectedHeader(accessToken).kid! }] });
    await expect(jwtVerify(accessToken, foreign)).rejects.toThrow();
  });
});

describe('logs', () => {
  it('are written, and never contain the issued access token or the client assertion', () => {
    expect(assertions.length).toBeGreaterThan(0);
    const all = deputy.logs.join('\n');
    expect(all).toContain('"msg":"request"');
    expect(all).toContain('"path":"/token"');
    for (const secret of [accessToken, ...assertions]) {
      expect(all).not.toContain(secret);
      expect(all).not.toContain(secret.split('.')[1]);
      expect(all).not.toContain(secret.split('.')[2]);
    }
  });
});
