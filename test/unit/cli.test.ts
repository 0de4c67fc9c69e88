/** Pure pieces of the CLI and the start summary: URL policy, resources by scope, bodies, what a start prints. */
import { describe, expect, it } from 'vitest';
import { jsonBody } from '../../src/cli/admin-resource.js';
import { deploymentConfig } from '../../src/cli/deployment-config.js';
import { UsageError } from '../../src/cli/errors.js';
import { resourceForScope } from '../../src/cli/oauth.js';
import { insecureAllowed } from '../../src/cli/shared.js';
import { validateConfig } from '../../src/config/load.js';
import { startupSummary } from '../../src/startup-summary.js';
import { parse } from 'yaml';

describe('CLI helpers', () => {
  it('accepts https, and plain http only on loopback hosts', () => {
    expect(insecureAllowed('https://deputy.example.com')).toBe(false);
    for (const u of ['http://localhost:3000', 'http://127.0.0.1:3000', 'http://[::1]:3000']) expect(insecureAllowed(u)).toBe(true);
    for (const u of ['http://deputy.example.com', 'http://10.0.0.1', 'ftp://localhost', 'not a url']) expect(() => insecureAllowed(u)).toThrow(UsageError);
  });

  it("names Deputy's resource for each operator scope", () => {
    expect(resourceForScope('https://d.example.com/', 'deputy:admin')).toBe('https://d.example.com/admin');
    expect(resourceForScope('https://d.example.com', 'authzen:evaluate')).toBe('https://d.example.com/access');
    expect(resourceForScope('https://d.example.com', 'calendar.read')).toBeUndefined();
  });

  it('takes a JSON object body from exactly one of --data / --file', () => {
    expect(jsonBody({ data: '{"a":1}' })).toEqual({ a: 1 });
    for (const bad of [{}, { data: '{}', file: 'x' }, { data: 'nope' }, { data: '[1]' }, { data: 'null' }, { file: '/nonexistent/x.json' }]) {
      expect(() => jsonBody(bad)).toThrow(UsageError);
    }
  });

  it('writes a deployment configuration that validates, with the issuer and port of a local URL', () => {
    const publicJwk = { kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0' };
    const local = parse(deploymentConfig({ clientId: 'ops', issuer: 'http://localhost:4000', publicJwk })) as { server: { issuer: string; port: number } };
    expect(local.server).toEqual({ issuer: 'http://localhost:4000', port: 4000 });
    const remote = deploymentConfig({ clientId: 'ops', issuer: 'https://deputy.example.com', publicJwk });
    const config = validateConfig(parse(remote), 'init');
    expect(config.server.issuer).toBe('https://deputy.example.com');
    expect(config.server.port).toBe(3000);
    expect(config.admin.clients[0]!.client_id).toBe('ops');
  });
});

describe('startupSummary', () => {
  const base = validateConfig({}, 'test');
  it('says what is configured and, with no admin client, how to make one', () => {
    const text = startupSummary(base, 'http://localhost:3000', {}, () => false);
    expect(text).toMatch(/configuration\s+config\/deputy\.yaml/);
    expect(text).toMatch(/keys\s+\/.*keys/);
    expect(text).toContain('http://localhost:3000/.well-known/oauth-authorization-server');
    expect(text).toMatch(/no admin client is configured[\s\S]*deputy\.mjs init/);
  });
  it('after `deputy init`, names the configuration it wrote instead of sending the user back to init', () => {
    const text = startupSummary(base, 'http://localhost:3000', {}, (file) => file === 'deputy.local.yaml');
    expect(text).toContain('DEPUTY_CONFIG=deputy.local.yaml npm start');
    expect(text).not.toMatch(/deputy\.mjs init/);
  });
  it('never prints the database password', () => {
    const config = validateConfig({ store: { databaseUrl: 'postgres://deputy:s3cr3t-pw@db.internal:5432/deputy' } }, 'test');
    const text = startupSummary(config, 'https://d.example.com', { DEPUTY_CONFIG: '/etc/deputy.yaml' });
    expect(text).not.toContain('s3cr3t-pw');
    expect(text).toContain('PostgreSQL postgres://deputy:***@db.internal:5432/deputy');
    expect(text).toContain('/etc/deputy.yaml');
  });
});
