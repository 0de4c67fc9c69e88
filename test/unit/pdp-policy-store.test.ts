/**
 * PolicyStore: all-or-nothing loading with every problem named, atomic swaps, and the engine's
 * fail-closed rule and decision cache on top of it.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { CedarEngine, type CedarRequest } from '../../src/pdp/engine.js';
import { PolicyLoadError, PolicyStore } from '../../src/pdp/policy-store.js';

const SCHEMA = `
entity User { id: String, level?: Long };
entity Doc { id: String, owner?: String };
action read, write appliesTo { principal: [User], resource: [Doc], context: { depth: Long } };
`;
const POLICIES = `
@id("owner-reads")
permit (principal, action == Action::"read", resource) when { resource has owner && resource.owner == principal.id };
`;

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function folder(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'deputy-pdp-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

const store = (dir: string) => new PolicyStore({ dir, logger: createLogger('silent') });

async function loadError(files: Record<string, string>): Promise<PolicyLoadError> {
  const err = await store(folder(files)).load().then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(PolicyLoadError);
  return err as PolicyLoadError;
}

function request(owner: string, overrides: Partial<CedarRequest> = {}): CedarRequest {
  return {
    principal: { type: 'User', id: 'alice' },
    action: { type: 'Action', id: 'read' },
    resource: { type: 'Doc', id: 'd1' },
    context: { depth: 1 },
    entities: [
      { uid: { type: 'User', id: 'alice' }, attrs: { id: 'alice' }, parents: [] },
      { uid: { type: 'Doc', id: 'd1' }, attrs: { id: 'd1', owner }, parents: [] },
    ],
    ...overrides,
  };
}

describe('loading', () => {
  it('loads a valid folder: policy ids from @id (or file#n), effects, @reason, entities and aliases', async () => {
    const s = store(folder({
      'schema.cedarschema': SCHEMA,
      'a.cedar': POLICIES,
      'b.cedar': '@reason("No writes.")\nforbid (principal, action == Action::"write", resource);\n',
      'entities.json': JSON.stringify([{ uid: { type: 'Doc', id: 'd9' }, attrs: { id: 'd9' }, parents: [] }]),
      'aliases.json': JSON.stringify({ Doc: { nine: 'd9' } }),
      'README.md': 'ignored',
    }));
    const snap = await s.load();
    expect(snap.generation).toBe(1);
    expect([...snap.policies.values()]).toEqual([
      { id: 'owner-reads', effect: 'permit', file: 'a.cedar' },
      { id: 'b.cedar#1', effect: 'forbid', file: 'b.cedar', reason: 'No writes.' },
    ]);
    expect(snap.data.find('Doc', 'nine')).toMatchObject({ attrs: { id: 'd9' } });
    expect(snap.data.canonicalId('Doc', 'nine')).toBe('d9');
    expect(snap.schema.action('read')?.resourceTypes).toEqual(new Set(['Doc']));
  });

  it('accepts the JSON schema format', async () => {
    const json = { '': { entityTypes: { User: {}, Doc: {} }, actions: { read: { appliesTo: { principalTypes: ['User'], resourceTypes: ['Doc'] } } } } };
    const snap = await store(folder({ 'schema.cedarschema.json': JSON.stringify(json), 'p.cedar': 'permit (principal, action == Action::"read", resource);' })).load();
    expect(snap.schema.entityType('User')?.name).toBe('User');
  });

  it.each([
    ['no schema', { 'p.cedar': POLICIES }, /exactly one schema file/],
    ['two schemas', { 'a.cedarschema': SCHEMA, 'b.cedarschema': SCHEMA, 'p.cedar': POLICIES }, /exactly one schema file/],
    ['no policies', { 'schema.cedarschema': SCHEMA }, /no policy files/],
    ['a schema that does not parse', { 'schema.cedarschema': 'entity User {', 'p.cedar': POLICIES }, /schema\.cedarschema/],
    ['a policy that does not parse', { 'schema.cedarschema': SCHEMA, 'p.cedar': 'permit (principal, action, resource' }, /p\.cedar/],
    ['a policy that does not validate', { 'schema.cedarschema': SCHEMA, 'p.cedar': '@id("x")\npermit (principal, action, resource) when { principal.nope };' }, /p\.cedar policy "x":.*nope/],
    ['an unknown action', { 'schema.cedarschema': SCHEMA, 'p.cedar': '@id("y")\npermit (principal, action == Action::"fly", resource);' }, /policy "y".*fly/],
    ['duplicate ids', { 'schema.cedarschema': SCHEMA, 'a.cedar': POLICIES, 'b.cedar': POLICIES }, /policy id "owner-reads" is also used in a\.cedar/],
    ['templates', { 'schema.cedarschema': SCHEMA, 'p.cedar': 'permit (principal == ?principal, action, resource);' }, /templates are not supported/],
    ['entities that are not JSON', { 'schema.cedarschema': SCHEMA, 'p.cedar': POLICIES, 'entities.json': '[' }, /entities\.json: not valid JSON/],
    ['entities of the wrong shape', { 'schema.cedarschema': SCHEMA, 'p.cedar': POLICIES, 'entities.json': '{}' }, /must be a JSON array/],
    ['entities that do not fit the schema', { 'schema.cedarschema': SCHEMA, 'p.cedar': POLICIES, 'entities.json': '[{"uid":{"type":"Doc","id":"d"},"attrs":{"id":1},"parents":[]}]' }, /entities\.json/],
    // Cedar threw (serde's recursion limit) rather than answered: an untyped error, which a reload on SIGHUP swallowed unlogged.
    ['entities nested past Cedar\'s parser\'s recursion limit', { 'schema.cedarschema': SCHEMA, 'p.cedar': POLICIES, 'entities.json': `[{"uid":{"type":"User","id":"a"},"attrs":{"id":"a"},"parents":[${'['.repeat(200)}${']'.repeat(200)}]}]` }, /^entities\.json: Cedar could not read it: recursion limit exceeded/],
    ['a JSON schema nested past Cedar\'s parser\'s recursion limit', { 'schema.cedarschema.json': `${'['.repeat(300)}${']'.repeat(300)}`, 'p.cedar': POLICIES }, /^schema\.cedarschema\.json: Cedar could not read it: recursion limit exceeded/],
    ['aliases for an unknown type', { 'schema.cedarschema': SCHEMA, 'p.cedar': POLICIES, 'aliases.json': '{"Ship":{"a":"b"}}' }, /"Ship" is not an entity type/],
  ])('%s is refused, naming the problem', async (_name, files, message) => {
    const err = await loadError(files as Record<string, string>);
    expect(err.issues.join('\n')).toMatch(message);
  });

  // A Kubernetes ConfigMap volume: every file a symbolic link into `..data`, itself a link to a
  // timestamped folder. Dirent.isFile() is false for a link: the set loaded as "no policy files".
  it('a folder of symbolic links (a ConfigMap volume) loads; a link that leads nowhere is refused, named', async () => {
    const dir = folder({});
    mkdirSync(join(dir, '..2026_11_30'));
    writeFileSync(join(dir, '..2026_11_30', 'schema.cedarschema'), SCHEMA);
    writeFileSync(join(dir, '..2026_11_30', 'p.cedar'), POLICIES);
    symlinkSync('..2026_11_30', join(dir, '..data'));
    for (const name of ['schema.cedarschema', 'p.cedar']) symlinkSync(join('..data', name), join(dir, name));
    await expect(store(dir).load()).resolves.toMatchObject({ generation: 1, policies: new Map([['owner-reads', expect.anything()]]) });
    symlinkSync(join('..data', 'gone.cedar'), join(dir, 'gone.cedar'));
    const err = await store(dir).load().then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(PolicyLoadError);
    expect((err as PolicyLoadError).issues).toEqual(['gone.cedar: cannot read the file: ENOENT']);
  });

  it('a missing folder is refused', async () => {
    await expect(store('/nonexistent/deputy/policies').load()).rejects.toThrow(/cannot read the policy folder: ENOENT/);
  });
});

describe('reload', () => {
  it('swaps atomically: a refused set leaves the current snapshot (and Cedar\'s copy of it) serving', async () => {
    const dir = folder({ 'schema.cedarschema': SCHEMA, 'p.cedar': POLICIES });
    const s = store(dir);
    const engine = new CedarEngine({ cacheSize: 0 });
    const swaps: number[] = [];
    s.onReload((snap) => swaps.push(snap.generation));
    await s.load();
    expect(engine.authorize(s.current, request('alice')).allowed).toBe(true);

    writeFileSync(join(dir, 'p.cedar'), 'permit (principal, action, resource');
    await expect(s.reload('admin')).rejects.toBeInstanceOf(PolicyLoadError);
    expect(s.current.generation).toBe(1);
    expect(engine.authorize(s.current, request('alice')).allowed).toBe(true);

    writeFileSync(join(dir, 'p.cedar'), '@id("nobody")\nforbid (principal, action, resource);\n' + POLICIES);
    await expect(s.reload('admin')).resolves.toMatchObject({ changed: true, generation: 2, policies: 2 });
    expect(engine.authorize(s.current, request('alice'))).toMatchObject({ allowed: false, kind: 'forbidden', policies: ['nobody'] });
    // Generation 3 reuses generation 1's slot; generation 2 stays intact meanwhile.
    writeFileSync(join(dir, 'p.cedar'), POLICIES);
    await s.reload('file');
    expect(engine.authorize(s.current, request('alice')).allowed).toBe(true);
    expect(swaps).toEqual([1, 2, 3]);
  });

  // An operator's mistake: a file the reload cannot read as text (here 3 GiB, sparse: Node's
  // readFile refuses it with a RangeError before reading). It was not a PolicyLoadError: on SIGHUP
  // or a file change the refusal was swallowed unlogged, on the admin API a 500; and a file of up to
  // 2 GiB was read whole into memory before the 16 MiB bound was checked.
  it('a file too large to read is refused by its size, unread, and logged like any refused set', async () => {
    const dir = folder({ 'schema.cedarschema': SCHEMA, 'p.cedar': POLICIES });
    const lines: Array<Record<string, unknown>> = [];
    const s = new PolicyStore({ dir, logger: createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) }) });
    await s.load();
    truncateSync(join(dir, 'p.cedar'), 3 * 1024 ** 3);
    const err = await s.reload('signal').then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(PolicyLoadError);
    expect((err as PolicyLoadError).issues).toEqual(['p.cedar: larger than 16777216 bytes']);
    expect(lines.filter((l) => l.msg === 'policy set refused; the previous set keeps serving')).toMatchObject([{ trigger: 'signal', issues: ['p.cedar: larger than 16777216 bytes'], serving: 1 }]);
    expect(s.current.generation).toBe(1);
  });

  // 300 nested parentheses overflowed the stack inside Cedar's WebAssembly on the reload, and left
  // it corrupt: the set still serving then failed every decision ("memory access out of bounds").
  it('a policy nested deeper than Cedar\'s parser can go is refused before Cedar sees it; the set serving keeps deciding', async () => {
    const dir = folder({ 'schema.cedarschema': SCHEMA, 'p.cedar': POLICIES });
    const s = store(dir);
    const engine = new CedarEngine({ cacheSize: 0 });
    await s.load();
    writeFileSync(join(dir, 'p.cedar'), `@id("deep") permit (principal, action, resource) when { ${'('.repeat(300)}true${')'.repeat(300)} };`);
    const err = await s.reload('signal').then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(PolicyLoadError);
    expect((err as PolicyLoadError).issues).toEqual(['p.cedar: brackets nested deeper than 32 levels (Cedar\'s parser would overflow the stack)']);
    expect(engine.authorize(s.current, request('alice')).allowed).toBe(true);
    // A schema's Set<…> and records count too; brackets in strings and comments do not.
    writeFileSync(join(dir, 'schema.cedarschema'), SCHEMA.replace('level?: Long', `level?: ${'Set<'.repeat(40)}Long${'>'.repeat(40)}`));
    writeFileSync(join(dir, 'p.cedar'), `// ${'('.repeat(100)}\n@reason("${'['.repeat(100)}")\n` + POLICIES);
    expect(((await s.reload('signal').then(() => undefined, (e: unknown) => e)) as PolicyLoadError).issues).toEqual(['schema.cedarschema: brackets nested deeper than 32 levels (Cedar\'s parser would overflow the stack)']);
    writeFileSync(join(dir, 'schema.cedarschema'), SCHEMA);
    await expect(s.reload('signal')).resolves.toMatchObject({ changed: true, generation: 2 });
    expect(engine.authorize(s.current, request('alice')).allowed).toBe(true);
  });

  it('two stores in one process keep their own policy sets', async () => {
    const a = store(folder({ 'schema.cedarschema': SCHEMA, 'p.cedar': POLICIES }));
    const b = store(folder({ 'schema.cedarschema': SCHEMA, 'p.cedar': 'forbid (principal, action, resource);' + POLICIES }));
    await a.load();
    await b.load();
    const engine = new CedarEngine({ cacheSize: 0 });
    expect(engine.authorize(a.current, request('alice')).allowed).toBe(true);
    expect(engine.authorize(b.current, request('alice')).allowed).toBe(false);
  });
});

describe('engine', () => {
  it('not permitted, permitted, forbidden', async () => {
    const s = store(folder({ 'schema.cedarschema': SCHEMA, 'p.cedar': POLICIES + '@id("no-write")\nforbid (principal, action == Action::"write", resource);\n' }));
    await s.load();
    const engine = new CedarEngine({ cacheSize: 0 });
    expect(engine.authorize(s.current, request('bob'))).toEqual({ allowed: false, kind: 'not_permitted', policies: [] });
    expect(engine.authorize(s.current, request('alice'))).toEqual({ allowed: true, policies: ['owner-reads'] });
    expect(engine.authorize(s.current, request('alice', { action: { type: 'Action', id: 'write' } }))).toEqual({ allowed: false, kind: 'forbidden', policies: ['no-write'] });
  });

  it('fails closed when a forbid policy errors at evaluation (Cedar alone would skip it and permit)', async () => {
    const overflow = '@id("overflow")\nforbid (principal, action, resource) when { context.depth * 4611686018427387904 > 0 };\n';
    const s = store(folder({ 'schema.cedarschema': SCHEMA, 'p.cedar': POLICIES + overflow }));
    await s.load();
    const engine = new CedarEngine({ cacheSize: 0 });
    expect(engine.authorize(s.current, request('alice', { context: { depth: 0 } })).allowed).toBe(true);
    expect(engine.authorize(s.current, request('alice', { context: { depth: 4 } }))).toEqual({ allowed: false, kind: 'policy_error', policies: ['overflow'] });
  });

  it('a request Cedar cannot parse is a request error (a deny), not an exception', async () => {
    const s = store(folder({ 'schema.cedarschema': SCHEMA, 'p.cedar': POLICIES }));
    await s.load();
    const engine = new CedarEngine({ cacheSize: 0 });
    expect(engine.authorize(s.current, request('alice', { context: { depth: 1, ip: { __extn: { fn: 'ip', arg: 'not an address' } } } }))).toMatchObject({ allowed: false, kind: 'request_error' });
  });

  it('action groups declared in the schema reach Cedar as action entities', async () => {
    const schema = `${SCHEMA}\naction readish in [read] appliesTo { principal: [User], resource: [Doc], context: { depth: Long } };`;
    const s = store(folder({ 'schema.cedarschema': schema, 'p.cedar': '@id("readers")\npermit (principal, action in Action::"read", resource);' }));
    await s.load();
    const readish = s.current.schema.action('readish')!;
    expect(readish.entities).toEqual([
      { uid: { type: 'Action', id: 'readish' }, attrs: {}, parents: [{ type: 'Action', id: 'read' }] },
      { uid: { type: 'Action', id: 'read' }, attrs: {}, parents: [] },
    ]);
    const engine = new CedarEngine({ cacheSize: 0 });
    const ask = (withHierarchy: boolean) => {
      const base = request('bob', { action: readish.uid });
      return engine.authorize(s.current, { ...base, entities: [...base.entities, ...(withHierarchy ? readish.entities : [])] }).allowed;
    };
    expect(ask(true)).toBe(true);
    expect(ask(false)).toBe(false);
  });

  it('caches answers per policy generation and complete request', async () => {
    const dir = folder({ 'schema.cedarschema': SCHEMA, 'p.cedar': POLICIES });
    const s = store(dir);
    await s.load();
    const engine = new CedarEngine({ cacheSize: 2 });
    engine.authorize(s.current, request('alice'));
    engine.authorize(s.current, request('alice'));
    expect(engine.calls).toBe(1);
    engine.authorize(s.current, request('bob')); // different entity data: a different key
    expect(engine.calls).toBe(2);
    engine.authorize(s.current, request('carol')); // evicts the least recently used ("alice")
    engine.authorize(s.current, request('bob'));
    expect(engine.calls).toBe(3);
    engine.authorize(s.current, request('alice'));
    expect(engine.calls).toBe(4);
    writeFileSync(join(dir, 'p.cedar'), '@id("nobody")\nforbid (principal, action, resource);\n');
    await s.reload('admin');
    expect(engine.authorize(s.current, request('alice')).allowed).toBe(false);
    expect(engine.calls).toBe(5);
  });
});
