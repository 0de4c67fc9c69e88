/**
 * The yardstick's yardstick: a bare oidc-provider in its own process, in its default
 * configuration except for what the same grant needs — client_credentials, one static client
 * authenticating with private_key_jwt, DPoP-bound tokens, and JWT access tokens signed with
 * ES256 (as Deputy issues them: RFC 9068 through resource indicators). Storage is the same kind
 * of store as Deputy's (`BENCH_STORE`: `{ databaseUrl }` or `{ dataDir }`) through the same
 * JSONB adapter (src/oauth/oidc-provider/adapter.ts), so the difference measured is Deputy's
 * configuration: its client adapter, replay checks, DPoP middleware and hooks.
 *
 * Reads the client's public JWKS from `BENCH_CLIENT` (`{ client_id, jwks }`); prints
 * `READY <url> <issuer> <counters url>`.
 */
import Provider from 'oidc-provider';
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:http';
import { exportJWK, generateKeyPair } from 'jose';
import { migrate, openStore } from '../../src/store/index.js';
import { StoreAdapter } from '../../src/oauth/oidc-provider/adapter.js';
import { installCounters, serveCounters } from './counters.js';

installCounters();

const client = JSON.parse(process.env.BENCH_CLIENT ?? '{}') as { client_id: string; jwks: { keys: object[] } };
const storeConfig = JSON.parse(process.env.BENCH_STORE ?? '{"dataDir":"memory://"}') as { databaseUrl?: string; dataDir?: string };
const store = await openStore({ ...storeConfig, poolSize: 10 } as Parameters<typeof openStore>[0]);
await migrate(store);
const { privateKey } = await generateKeyPair('ES256', { extractable: true });
const signing = { ...(await exportJWK(privateKey)), alg: 'ES256', use: 'sig', kid: 'bare' };

const server = createServer();
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const adapters = new Map<string, StoreAdapter>();
const provider = new Provider(issuer, {
  adapter: (name: string) => adapters.get(name) ?? (adapters.set(name, new StoreAdapter(name, store)), adapters.get(name)!),
  clients: [{
    client_id: client.client_id, token_endpoint_auth_method: 'private_key_jwt', grant_types: ['client_credentials'],
    response_types: [], redirect_uris: [], scope: 'authzen:evaluate', jwks: client.jwks as never, id_token_signed_response_alg: 'ES256',
  }],
  jwks: { keys: [signing as never] },
  scopes: ['authzen:evaluate'],
  features: {
    clientCredentials: { enabled: true },
    dPoP: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => `${issuer}/access`,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({ scope: 'authzen:evaluate', audience: `${issuer}/access`, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } }),
    },
  },
});
server.on('request', provider.callback());
process.stdout.write(`READY ${issuer} ${issuer} ${await serveCounters()}\n`);
process.on('SIGTERM', () => {
  server.close();
  void store.close().finally(() => process.exit(0));
});
