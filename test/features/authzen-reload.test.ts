/**
 * Policy reload: through the admin API and through the file watcher. A refused policy set
 * (syntax or validation errors) leaves every decision as it was; a good one takes effect.
 */
import { cpSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { REPO, startPdpHarness, type PdpHarness } from '../support/authzen.js';
import type { Json } from '../support/http.js';

let h: PdpHarness;
let dir: string;

const readOwnDoc = {
  subject: { type: 'User', id: 'alice', properties: { email: 'alice@example.com' } },
  action: { name: 'read' },
  resource: { type: 'Resource', id: 'doc-1', properties: { owner: 'alice@example.com' } },
};
const MAINTENANCE = '@id("maintenance")\n@reason("Read-only maintenance.")\nforbid (principal, action == Action::"read", resource);\n';

async function admin(method: 'GET' | 'POST', path: string, token = h.adminToken): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${h.deputy.url}${path}`, { method, headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as Json };
}
const decision = async () => (await h.post('/access/v1/evaluation', readOwnDoc)).body;
const generation = async () => (await admin('GET', '/admin/policies')).body.generation as number;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'deputy-policies-'));
  cpSync(`${REPO}config/policies/schema.cedarschema`, join(dir, 'schema.cedarschema'));
  cpSync(`${REPO}config/policies/default.cedar`, join(dir, 'default.cedar'));
  h = await startPdpHarness({ policies: dir, config: { pdp: { watch: true } } });
});
afterAll(async () => {
  await h?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('reload through the admin API (POST /admin/policies/reload)', () => {
  it('requires a deputy:admin token', async () => {
    expect((await admin('POST', '/admin/policies/reload', h.pepToken)).status).toBe(401);
    const shown = await admin('GET', '/admin/policies');
    expect(shown.status).toBe(200);
    expect(shown.body).toMatchObject({ dir, policies: expect.arrayContaining([{ id: 'owner', effect: 'permit', file: 'default.cedar' }]) });
  });

  it('an unchanged folder is a no-op', async () => {
    const before = await generation();
    expect((await admin('POST', '/admin/policies/reload')).body).toMatchObject({ changed: false, generation: before });
  });

  it.each([
    ['a syntax error', 'broken.cedar', 'permit (principal, action, resource', /broken\.cedar/],
    ['a policy that does not validate against the schema', 'typo.cedar', '@id("typo")\npermit (principal, action, resource) when { resource.ownr == "x" };\n', /typo\.cedar policy "typo"/],
    ['a duplicate policy id', 'dup.cedar', '@id("owner")\npermit (principal, action == Action::"read", resource);\n', /policy id "owner" is also used in default\.cedar/],
    ['entities that do not fit the schema', 'entities.json', '[{"uid":{"type":"Resource","id":"r"},"attrs":{"id":7},"parents":[]}]', /entities\.json/],
  ])('%s is refused with 422 and the errors; decisions are unchanged', async (_name, file, text, message) => {
    const before = await generation();
    expect(await decision()).toEqual({ decision: true });
    writeFileSync(join(dir, file), text);
    try {
      const res = await admin('POST', '/admin/policies/reload');
      expect(res.status).toBe(422);
      expect(res.body.error_description).toMatch(/refused and the previous set keeps serving/);
      expect(res.body.error_description).toMatch(message);
      expect(await generation()).toBe(before);
      expect(await decision()).toEqual({ decision: true });
    } finally {
      unlinkSync(join(dir, file));
    }
  });

  // The file watcher may pick a change up first (then `changed` is false here): the generation is what counts.
  it('a valid change takes effect at once, and so does removing it', async () => {
    const before = await generation();
    writeFileSync(join(dir, 'maintenance.cedar'), MAINTENANCE);
    const res = await admin('POST', '/admin/policies/reload');
    expect(res).toMatchObject({ status: 200, body: { generation: before + 1, policies: 8 } });
    expect(await decision()).toMatchObject({ decision: false, context: { id: 'forbidden', policies: ['maintenance'], reason_user: { en: 'Read-only maintenance.' } } });
    unlinkSync(join(dir, 'maintenance.cedar'));
    expect((await admin('POST', '/admin/policies/reload')).body).toMatchObject({ generation: before + 2, policies: 7 });
    expect(await decision()).toEqual({ decision: true });
  });
});

describe('reload on file change (fs.watch, debounced)', () => {
  it('a good file takes effect without any call; a bad one is refused and logged, decisions unchanged', async () => {
    const before = await generation();
    writeFileSync(join(dir, 'maintenance.cedar'), MAINTENANCE);
    await vi.waitFor(async () => expect(await generation()).toBe(before + 1), { timeout: 15_000, interval: 100 });
    expect((await decision()).decision).toBe(false);

    const refusals = () => h.deputy.logs.filter((l) => l.includes('policy set refused')).length;
    const refused = refusals();
    writeFileSync(join(dir, 'maintenance.cedar'), 'forbid (principal, action == Action::"read", resource'); // broken
    await vi.waitFor(() => expect(refusals()).toBeGreaterThan(refused), { timeout: 15_000, interval: 100 });
    expect(await generation()).toBe(before + 1);
    expect((await decision()).decision).toBe(false);

    unlinkSync(join(dir, 'maintenance.cedar'));
    await vi.waitFor(async () => expect(await generation()).toBe(before + 2), { timeout: 15_000, interval: 100 });
    expect(await decision()).toEqual({ decision: true });
  });
});
