/**
 * `DownstreamClients.config` (src/vault/connections/oauth-client.ts): one openid-client
 * configuration per connection version, now on the one single-flight cache (issue 16, ninth
 * round). A build that fails after its connection changed must not throw away the build begun
 * since; a build stalled past the discovery timeout is not joined; a failed build is not kept; a
 * build under way when its connection changes is not joined after the change. The store is a
 * stand-in whose secret reads are held by hand; the connection has an explicit token endpoint, so
 * no discovery request is sent. No timing.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type * as client from 'openid-client';
import { DownstreamClients } from '../../src/vault/connections/oauth-client.js';
import type { Connection, ConnectionStore } from '../../src/vault/connections/store.js';

const connection: Connection = {
  id: 'crm',
  kind: 'oauth2_client_credentials',
  settings: { kind: 'oauth2_client_credentials', baseUrl: 'https://crm.example.com', allowInsecureHttp: false, clientId: 'deputy', tokenEndpoint: 'https://as.example.com/token', clientAuth: 'client_secret_basic' } as Connection['settings'],
  hasSecret: true,
  secretVersion: 1,
  secretUpdatedAt: 1,
  source: 'config',
  createdAt: 1,
  updatedAt: 1,
};

/** A stand-in store: each secret read waits until the test settles it (`answer` / `fail`); `changed(id)` is a local change. */
function store() {
  const reads: Array<{ resolve: (s: string) => void; reject: (e: unknown) => void }> = [];
  const listeners: Array<(id: string) => void> = [];
  const stand = {
    onChange: (l: (id: string) => void) => void listeners.push(l),
    secret: () => new Promise<string>((resolve, reject) => reads.push({ resolve, reject })),
  };
  return {
    connections: stand as unknown as ConnectionStore,
    reads,
    changed: (id: string) => listeners.forEach((l) => l(id)),
  };
}

const settle = () => new Promise((r) => setImmediate(r));

afterEach(() => {
  vi.restoreAllMocks();
});

describe('DownstreamClients.config', () => {
  it('a build that fails after its connection changed leaves the build begun since in the cache (before: it was thrown away)', async () => {
    const s = store();
    const clients = new DownstreamClients(s.connections, { timeoutSeconds: 5 });
    const first = clients.config(connection);
    await settle();
    s.changed('crm');
    const second = clients.config(connection);
    await settle();
    expect(s.reads).toHaveLength(2);
    s.reads[1]!.resolve('secret');
    const config: client.Configuration = await second;
    s.reads[0]!.reject(new Error('vault unreachable'));
    await expect(first).rejects.toThrow('vault unreachable');
    expect(await clients.config(connection)).toBe(config);
    expect(s.reads).toHaveLength(2);
  });

  it('a failed build is not kept; a build under way when its connection changes is not joined after the change', async () => {
    const s = store();
    const clients = new DownstreamClients(s.connections, { timeoutSeconds: 5 });
    const failed = clients.config(connection);
    await settle();
    s.reads[0]!.reject(new Error('vault unreachable'));
    await expect(failed).rejects.toThrow('vault unreachable');
    const before = clients.config(connection);
    const joined = clients.config(connection);
    await settle();
    expect(s.reads).toHaveLength(2);
    s.changed('crm');
    const after = clients.config(connection);
    await settle();
    expect(s.reads).toHaveLength(3);
    s.reads[1]!.resolve('old');
    s.reads[2]!.resolve('new');
    expect(await joined).toBe(await before);
    expect(await after).not.toBe(await before);
    expect(await clients.config(connection)).toBe(await after);
  });

  it('a build stalled past the discovery timeout is not joined: the next call builds on its own (before: it waited with it)', async () => {
    let clock = 1_000_000;
    vi.spyOn(Date, 'now').mockImplementation(() => clock);
    const s = store();
    const clients = new DownstreamClients(s.connections, { timeoutSeconds: 5 });
    void clients.config(connection).catch(() => {});
    clock += 5_001;
    const own = clients.config(connection);
    await settle();
    expect(s.reads).toHaveLength(2);
    s.reads[1]!.resolve('secret');
    await own;
    s.reads[0]!.reject(new Error('stalled'));
  });
});
