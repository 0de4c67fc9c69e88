import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_CONFIG_FILE, loadConfig, validateConfig } from '../../src/config/load.js';
import { MAX_SCOPE_TOKEN } from '../../src/util/scope.js';

let dir: string;
let n = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'deputy-config-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Writes a configuration file and returns its path. */
function file(text: string, ext = 'yaml'): string {
  const path = join(dir, `config-${++n}.${ext}`);
  writeFileSync(path, text);
  return path;
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

const DEFAULTS = {
  server: { port: 3000, host: '0.0.0.0', trustProxy: false, bodyLimitBytes: 65536, shutdownGraceSeconds: 10 },
  store: { dataDir: './data', poolSize: 10, checkpoint: { maxWalMegabytes: 16, timeoutSeconds: 300 }, pglite: { thread: 'main' } },
  keys: { dir: './keys', signingAlg: 'ES256', generate: true },
  tokens: { accessTokenTTL: 300, maxChainDepth: 5 },
  dpop: { requireNonce: false, iatWindowSeconds: 60 },
  admin: { clients: [] },
  trustedIssuers: [],
  agents: [],
  log: { level: 'info' },
};

describe('defaults', () => {
  it('the shipped file and an empty configuration give the same documented defaults', () => {
    const fromFile = loadConfig({ env: {} });
    expect(fromFile).toMatchObject(DEFAULTS);
    expect(fromFile.server.issuer).toBeUndefined();
    expect(fromFile.store.databaseUrl).toBeUndefined();
    expect(validateConfig({}, 'empty')).toEqual(fromFile);
    expect(loadConfig({ env: {}, file: file('') })).toEqual(fromFile);
  });

  it('key generation defaults to off in production only', () => {
    expect(loadConfig({ env: { NODE_ENV: 'production' } }).keys.generate).toBe(false);
    expect(loadConfig({ env: { NODE_ENV: 'development' } }).keys.generate).toBe(true);
    expect(loadConfig({ env: { NODE_ENV: 'production', DEPUTY_GENERATE_KEYS: 'true' } }).keys.generate).toBe(true);
  });

  it('a partial file keeps the defaults for what it leaves out', () => {
    const cfg = loadConfig({ env: {}, file: file('server:\n  port: 8443\ntokens:\n  accessTokenTTL: 120\n') });
    expect(cfg.server).toMatchObject({ ...DEFAULTS.server, port: 8443 });
    expect(cfg.tokens).toEqual({ ...DEFAULTS.tokens, accessTokenTTL: 120 });
    expect(cfg.store).toEqual(DEFAULTS.store);
  });

  it('is frozen', () => {
    const cfg = loadConfig({ env: {} });
    expect(Object.isFrozen(cfg)).toBe(true);
    expect(Object.isFrozen(cfg.server)).toBe(true);
    expect(() => {
      (cfg.server as { port: number }).port = 1;
    }).toThrow(TypeError);
  });
});

describe('environment overrides', () => {
  it('a value a variable set that the schema refuses is named by the variable, not only the field the file would hold', () => {
    const path = file('server:\n  port: 1234\n');
    const err = configError(() => loadConfig({ file: path, env: { PORT: '70000', DEPUTY_WORKERS: '0', LOG_LEVEL: 'verbose' } }));
    expect(err.issues).toEqual([
      'PORT (server.port): Too big: expected number to be <=65535',
      'DEPUTY_WORKERS (server.workers): Too small: expected number to be >=1',
      expect.stringMatching(/^LOG_LEVEL \(log\.level\): Invalid option/),
    ]);
    // The same value from the file is named by its field alone.
    expect(configError(() => loadConfig({ file: file('server:\n  port: 70000\n'), env: {} })).issues).toEqual(['server.port: Too big: expected number to be <=65535']);
  });

  it('each documented variable sets its field, over the file', () => {
    const path = file('server:\n  port: 1234\n  host: 10.0.0.1\nstore:\n  dataDir: /from/file\nlog:\n  level: error\n');
    const cfg = loadConfig({
      file: path,
      env: {
        PORT: '8080',
        HOST: '127.0.0.1',
        DEPUTY_ISSUER: 'https://deputy.example.com',
        DEPUTY_TRUST_PROXY: 'true',
        DATABASE_URL: 'postgres://deputy@db:5432/deputy',
        DEPUTY_DATA_DIR: '/var/lib/deputy',
        DEPUTY_CHECKPOINT_MAX_WAL_MB: '64',
        DEPUTY_CHECKPOINT_TIMEOUT: '60',
        DEPUTY_KEYS_DIR: '/etc/deputy/keys',
        DEPUTY_GENERATE_KEYS: 'no',
        DEPUTY_ACCESS_TOKEN_TTL: '120',
        DEPUTY_DPOP_REQUIRE_NONCE: '1',
        LOG_LEVEL: 'debug',
      },
    });
    expect(cfg.server).toMatchObject({ port: 8080, host: '127.0.0.1', issuer: 'https://deputy.example.com', trustProxy: true });
    expect(cfg.store).toMatchObject({ databaseUrl: 'postgres://deputy@db:5432/deputy', dataDir: '/var/lib/deputy', checkpoint: { maxWalMegabytes: 64, timeoutSeconds: 60 } });
    expect(cfg.keys).toMatchObject({ dir: '/etc/deputy/keys', generate: false });
    expect(cfg.tokens.accessTokenTTL).toBe(120);
    expect(cfg.dpop.requireNonce).toBe(true);
    expect(cfg.log.level).toBe('debug');
  });

  it('empty variables are ignored, including DEPUTY_CONFIG', () => {
    const cfg = loadConfig({ env: { PORT: '', DATABASE_URL: '', DEPUTY_CONFIG: '', LOG_LEVEL: '' } });
    expect(cfg.server.port).toBe(3000);
    expect(cfg.store.databaseUrl).toBeUndefined();
    expect(cfg.log.level).toBe('info');
  });

  it('DEPUTY_CONFIG selects the file; an explicit file wins over it', () => {
    const a = file('server:\n  port: 4001\n');
    const b = file('server:\n  port: 4002\n');
    expect(loadConfig({ env: { DEPUTY_CONFIG: a } }).server.port).toBe(4001);
    expect(loadConfig({ env: { DEPUTY_CONFIG: a }, file: b }).server.port).toBe(4002);
  });

  it('overrides (tests, embedding) sit between the file and the environment', () => {
    const path = file('server:\n  port: 4001\n  host: 10.0.0.1\n');
    const cfg = loadConfig({ file: path, env: { PORT: '4003' }, overrides: { server: { port: 4002, bodyLimitBytes: 2048 } } });
    expect(cfg.server).toMatchObject({ port: 4003, host: '10.0.0.1', bodyLimitBytes: 2048 });
  });

  it('a malformed variable is refused, naming the variable and its field', () => {
    for (const [name, value, message] of [
      ['PORT', 'eighty', /PORT \(server\.port\): must be an integer/],
      ['DEPUTY_TRUST_PROXY', 'maybe', /DEPUTY_TRUST_PROXY \(server\.trustProxy\): must be true or false/],
      ['DEPUTY_ACCESS_TOKEN_TTL', '-5', /DEPUTY_ACCESS_TOKEN_TTL \(tokens\.accessTokenTTL\): must be an integer/],
    ] as const) {
      const err = configError(() => loadConfig({ env: { [name]: value } }));
      expect(err.message).toMatch(message);
      expect(err.message).toContain(DEFAULT_CONFIG_FILE);
    }
  });

  it('a well-formed variable out of range is refused by the schema, naming the variable and the field', () => {
    expect(configError(() => loadConfig({ env: { PORT: '70000' } })).message).toMatch(/PORT \(server\.port\): .*65535/);
    // The field is named; the message is the schema's generic one for durations (it does not state the 3600 bound).
    expect(configError(() => loadConfig({ env: { DEPUTY_ACCESS_TOKEN_TTL: '4000' } })).message).toMatch(/DEPUTY_ACCESS_TOKEN_TTL \(tokens\.accessTokenTTL\): /);
    expect(configError(() => loadConfig({ env: { DATABASE_URL: 'mysql://x' } })).message).toMatch(
      /DATABASE_URL \(store\.databaseUrl\): must be a postgres:\/\/ or postgresql:\/\/ URL/,
    );
    expect(configError(() => loadConfig({ env: { LOG_LEVEL: 'loud' } })).message).toMatch(/LOG_LEVEL \(log\.level\): /);
  });

  it("an embedded store's checkpoint bounds outside their ranges are refused, naming the field", () => {
    expect(configError(() => loadConfig({ env: { DEPUTY_CHECKPOINT_MAX_WAL_MB: '0' } })).message).toMatch(/DEPUTY_CHECKPOINT_MAX_WAL_MB \(store\.checkpoint\.maxWalMegabytes\): .*1/);
    expect(configError(() => loadConfig({ env: { DEPUTY_CHECKPOINT_MAX_WAL_MB: '4096' } })).message).toMatch(/DEPUTY_CHECKPOINT_MAX_WAL_MB \(store\.checkpoint\.maxWalMegabytes\): .*1024/);
    expect(configError(() => loadConfig({ env: { DEPUTY_CHECKPOINT_TIMEOUT: '10' } })).message).toMatch(/DEPUTY_CHECKPOINT_TIMEOUT \(store\.checkpoint\.timeoutSeconds\): .*30/);
    expect(configError(() => loadConfig({ env: { DEPUTY_CHECKPOINT_TIMEOUT: '1m' } })).message).toMatch(/DEPUTY_CHECKPOINT_TIMEOUT \(store\.checkpoint\.timeoutSeconds\): must be an integer/);
    expect(configError(() => loadConfig({ env: {}, file: file('store:\n  checkpoint:\n    everySeconds: 5\n') })).message).toMatch(/store\.checkpoint/);
  });

  it("the embedded store's thread is main by default, worker by DEPUTY_PGLITE_THREAD or the file; anything else is refused, naming the field", () => {
    expect(loadConfig({ env: {} }).store.pglite.thread).toBe('main');
    expect(loadConfig({ env: { DEPUTY_PGLITE_THREAD: 'worker' } }).store.pglite.thread).toBe('worker');
    expect(loadConfig({ env: {}, file: file('store:\n  pglite:\n    thread: worker\n') }).store.pglite.thread).toBe('worker');
    expect(configError(() => loadConfig({ env: { DEPUTY_PGLITE_THREAD: 'threads' } })).message).toMatch(/DEPUTY_PGLITE_THREAD \(store\.pglite\.thread\): /);
    expect(configError(() => loadConfig({ env: {}, file: file('store:\n  pglite:\n    workers: 2\n') })).message).toMatch(/store\.pglite/);
  });
});

describe('invalid files', () => {
  it('name the file, the field path and the problem, for every failing field', () => {
    const path = file('server:\n  port: "80"\n  bodyLimitBytes: 10\nkeys:\n  signingAlg: HS256\n');
    const err = configError(() => loadConfig({ env: {}, file: path }));
    expect(err.source).toBe(path);
    expect(err.message).toContain(`invalid configuration (${path})`);
    expect(err.issues).toHaveLength(3);
    expect(err.message).toMatch(/server\.port: Invalid input: expected number, received string/);
    expect(err.message).toMatch(/server\.bodyLimitBytes: .*1024/);
    expect(err.message).toMatch(/keys\.signingAlg: .*ES256/);
  });

  it('nested paths name the array index', () => {
    const path = file(
      'agents:\n  - id: ok\n    name: OK\n    owner: a@example.com\n    jwks_uri: https://x.example/jwks\n  - id: bad\n    name: Bad\n    owner: b@example.com\n    maxDelegationDepth: 0\n    jwks_uri: https://x.example/jwks\n',
    );
    expect(configError(() => loadConfig({ env: {}, file: path })).message).toMatch(/agents\.1\.maxDelegationDepth \(agent "bad"\): /);
  });

  it("bound an agent's scopes (RFC 6749 §3.3 scope-token, at most 256 characters) and audiences (RFC 8707 §2 absolute URI without fragment, at most 2048), naming the agent and the field", () => {
    const agent = (field: string, value: string) =>
      file(`agents:\n  - id: wide\n    name: Wide\n    owner: a@example.com\n    jwks_uri: https://x.example/jwks\n    ${field}: [${JSON.stringify(value)}]\n`);
    const refused: Array<[string, string, RegExp]> = [
      ['scopes', 's'.repeat(MAX_SCOPE_TOKEN + 1), /at most 256 characters/],
      ['scopes', 'x'.repeat(1024 * 1024), /at most 256 characters/],
      ['scopes', 'read write', /scope token/],
      ['scopes', 'read\u0007', /scope token/],
      ['scopes', 'say"hi"', /scope token/],
      ['scopes', 'läsa', /scope token/],
      ['audiences', 'api', /absolute URI without a fragment/],
      ['audiences', 'https://api.example.com/#frag', /absolute URI without a fragment/],
      ['audiences', 'https://api.example.com/a b', /absolute URI without a fragment/],
      ['audiences', 'https://api.example.com/\u0000', /absolute URI without a fragment/],
      ['audiences', 'https://api.example.com/ä', /absolute URI without a fragment/],
      ['audiences', `https://api.example.com/${'a'.repeat(2048)}`, /at most 2048 characters/],
    ];
    for (const [field, value, message] of refused) {
      const err = configError(() => loadConfig({ env: {}, file: agent(field, value) }));
      expect(err.message, `${field}: ${value.slice(0, 40)}`).toMatch(new RegExp(`agents\\.0\\.${field}\\.0 \\(agent "wide"\\): .*${message.source}`));
    }
    for (const [field, value] of [['scopes', 's'.repeat(MAX_SCOPE_TOKEN)], ['scopes', 'https://scopes.example/read!#$%'], ['audiences', 'urn:deputy:agent:*'], ['audiences', 'https://api.example.com:8443/v1/x?y=%20']] as const) {
      expect(loadConfig({ env: {}, file: agent(field, value) }).agents[0]![field]).toEqual([value]);
    }
  });

  it('refuse unknown keys, at the top level and inside sections', () => {
    const top = configError(() => loadConfig({ env: {}, file: file('sever:\n  port: 80\n') }));
    expect(top.message).toMatch(/\(root\): Unrecognized key: "sever"/);
    const nested = configError(() => loadConfig({ env: {}, file: file('server:\n  prot: 80\n') }));
    expect(nested.message).toMatch(/server: Unrecognized key: "prot"/);
  });

  it('refuse a client id used twice across agents and admin clients', () => {
    const path = file(
      'admin:\n  clients:\n    - client_id: same\n      scopes: [deputy:admin]\n      jwks_uri: https://x.example/jwks\nagents:\n  - id: same\n    name: S\n    owner: o@example.com\n    jwks_uri: https://x.example/jwks\n',
    );
    expect(configError(() => loadConfig({ env: {}, file: path })).message).toMatch(
      /admin\.clients\.0\.client_id: client id "same" is already used by agents\.0\.id/,
    );
  });

  it('report a YAML syntax error with the file name', () => {
    const path = file('server:\n  port: 80\n    host: [unclosed\n');
    const err = configError(() => loadConfig({ env: {}, file: path }));
    expect(err.message).toContain(path);
    expect(err.message).toMatch(/not valid YAML\/JSON: /);
    expect(err.message.split('\n')).toHaveLength(2);
  });

  it('refuse a document that is not a mapping, and a missing file', () => {
    expect(configError(() => loadConfig({ env: {}, file: file('- a\n- b\n') })).message).toMatch(/\(root\): must be a mapping/);
    const missing = join(dir, 'missing.yaml');
    const err = configError(() => loadConfig({ env: {}, file: missing }));
    expect(err.message).toContain(missing);
    expect(err.message).toMatch(/cannot read file: ENOENT/);
  });

  it('accept JSON too (YAML is a superset)', () => {
    expect(loadConfig({ env: {}, file: file('{"server": {"port": 4444}}', 'json') }).server.port).toBe(4444);
  });
});

describe('members named __proto__', () => {
  const mcp = (toolCosts: string) => `mcpServers:\n  - { id: gh, url: https://mcp.example.com/mcp, costPerCall: 1, toolCosts: ${toolCosts} }\n`;

  it('a member named __proto__ is refused, naming its path (zod dropped it from a record silently: the default cost applied)', () => {
    expect(loadConfig({ file: file(mcp('{ create_issue: 5 }')), env: {} }).mcpServers[0]!.toolCosts).toEqual({ create_issue: 5 });
    const err = configError(() => loadConfig({ file: file(mcp('{ create_issue: 5, __proto__: 50000 }')), env: {} }));
    expect(err.issues).toEqual(['mcpServers.0.toolCosts.__proto__: "__proto__" is not a usable name']);
    const json = configError(() => loadConfig({ file: file('{"budgets": {"prices": {"__proto__": {"input": 1, "output": 1}}}}', 'json'), env: {} }));
    expect(json.issues).toEqual(['budgets.prices.__proto__: "__proto__" is not a usable name']);
    const override = configError(() => loadConfig({ file: file(''), env: {}, overrides: JSON.parse('{"server": {"__proto__": {"port": 1}}}') }));
    expect(override.issues).toEqual(['server.__proto__: "__proto__" is not a usable name']);
  });
});
