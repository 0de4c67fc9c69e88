/**
 * The OpenID AuthZEN Authorization API 1.0 certification scenario
 * (github.com/openid/authzen certification/authorization-api-1_0-scenario.md, as of e287920e),
 * Basic and Batch levels, over real HTTP against config/policies/examples/certification (the
 * scenario's required fixture). Requests have the scenario's shapes; expectations are its own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES, startPdpHarness, type PdpHarness } from '../support/authzen.js';
import type { Json } from '../support/http.js';

const alice = { type: 'user', id: 'alice' };
const bob = { type: 'user', id: 'bob' };
const record1 = { type: 'record', id: 'record-1' };
const record2 = { type: 'record', id: 'record-2' };
const archived = { ...record2, properties: { status: 'archived' } };
const read = { name: 'read' };
const write = { name: 'write' };

let h: PdpHarness;
beforeAll(async () => {
  h = await startPdpHarness({ policies: `${EXAMPLES}/certification` });
});
afterAll(() => h?.stop());

const decisions = (body: Json) => (body.evaluations as Json[]).map((e) => e.decision);

describe('AuthZEN certification: Basic (the fixture, c-1-4 rules 1-8)', () => {
  it.each([
    ['rule 1', { subject: alice, action: read, resource: record1 }, true],
    ['rule 2', { subject: alice, action: write, resource: record1 }, true],
    ['rule 3', { subject: bob, action: read, resource: record1 }, true],
    ['rule 4', { subject: bob, action: write, resource: record1 }, false],
    ['rule 5 (c-2-2-4)', { subject: alice, action: write, resource: archived }, false],
    ['rule 6 (c-2-2-5)', { subject: { ...bob, properties: { role: 'admin' } }, action: write, resource: archived }, true],
    ['rule 7 (c-2-2-6)', { subject: alice, action: { name: 'delete', properties: { soft: true } }, resource: record1 }, true],
    ['rule 8 (c-2-2-7)', { subject: alice, action: { name: 'delete', properties: { soft: false } }, resource: record1 }, false],
  ])('%s', async (_name, request, expected) => {
    const res = await h.post('/access/v1/evaluation', request);
    expect(res.status).toBe(200);
    expect(res.body.decision).toBe(expected);
  });
});

describe('AuthZEN certification: Batch (c-3)', () => {
  it.each([
    ['c-3-2-2 shared subject and resource, per-item action', { subject: bob, resource: record1, evaluations: [{ action: read }, { action: write }] }, [true, false]],
    [
      'c-3-2-3 per-item resource properties',
      { subject: alice, action: write, evaluations: [{ resource: { ...record1, properties: { status: 'active' } } }, { resource: archived }] },
      [true, false],
    ],
    [
      'c-3-2-4 per-item subject properties',
      { action: write, resource: archived, evaluations: [{ subject: alice }, { subject: { ...bob, properties: { role: 'admin' } } }] },
      [false, true],
    ],
    [
      'c-3-2-5 fully specified items, no defaults',
      { evaluations: [{ subject: alice, action: read, resource: record1 }, { subject: bob, action: write, resource: record1 }] },
      [true, false],
    ],
    [
      'c-3-2-7 an empty item inherits every default; a given resource replaces the default whole',
      { subject: alice, action: write, resource: { ...record1, properties: { status: 'active' } }, evaluations: [{}, { resource: archived }] },
      [true, false],
    ],
  ])('%s', async (_name, request, expected) => {
    const res = await h.post('/access/v1/evaluations', request);
    expect(res.status).toBe(200);
    expect(decisions(res.body)).toEqual(expected);
    expect(res.body).not.toHaveProperty('decision');
  });

  it('c-3-2-7 from a typed PEP SDK: members sent as null inherit the defaults like omitted ones', async () => {
    const res = await h.post('/access/v1/evaluations', {
      subject: alice,
      action: write,
      resource: { ...record1, properties: { status: 'active' } },
      context: null,
      evaluations: [
        { subject: null, action: null, resource: null, context: null },
        { subject: null, action: null, resource: archived, context: null },
      ],
    });
    expect(res.status).toBe(200);
    expect(decisions(res.body)).toEqual([true, false]);
  });

  it('no member-by-member merging: an item entity lacking `type` does not take the default\'s (superseded c-3-2-7 draft)', async () => {
    const res = await h.post('/access/v1/evaluations', {
      subject: alice,
      action: write,
      resource: { type: 'record' },
      evaluations: [{ resource: { id: 'record-1', properties: { status: 'active' } } }, { resource: archived }],
    });
    expect(res.status).toBe(200);
    expect(decisions(res.body)).toEqual([false, false]);
    expect((res.body.evaluations as Json[])[0]!.context).toMatchObject({ id: 'invalid_request', error: { status: 400, message: 'resource.type is required' } });
  });

  it('c-3-2-1 and c-3-2-6: shared subject and action, per-item resource; top-level context, overridden per item', async () => {
    const plain = await h.post('/access/v1/evaluations', { subject: alice, action: read, evaluations: [{ resource: record1 }, { resource: record2 }] });
    expect(plain.status).toBe(200);
    expect(decisions(plain.body)).toEqual([true, true]);
    const withContext = await h.post('/access/v1/evaluations', {
      subject: alice,
      action: read,
      context: { time: '2025-06-27T18:03-07:00' },
      evaluations: [{ resource: record1 }, { resource: record2, context: { time: '2025-06-27T19:00-07:00', source: 'batch-override' } }],
    });
    expect(withContext.status).toBe(200);
    expect(decisions(withContext.body)).toEqual([true, true]);
  });

  it('c-3-4-1: an item missing a required member is denied in place; the batch answers 200', async () => {
    const res = await h.post('/access/v1/evaluations', { subject: alice, action: read, options: { evaluations_semantic: 'execute_all' }, evaluations: [{ resource: record1 }, {}] });
    expect(res.status).toBe(200);
    expect(decisions(res.body)).toEqual([true, false]);
    expect((res.body.evaluations as Json[])[1]!.context).toMatchObject({ error: { status: 400, message: 'resource is required' } });
  });

  it('c-3-4-2 and c-3-4-3: without (or with an empty) evaluations, a single evaluation', async () => {
    for (const extra of [{}, { evaluations: [] }]) {
      const res = await h.post('/access/v1/evaluations', { subject: alice, action: read, resource: record1, ...extra });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ decision: true });
    }
  });
});

describe('AuthZEN evaluations semantics (§7.1.2, with the spec\'s example shape)', () => {
  // write: record-1 permitted, record-2 (archived) denied, then record-1 again.
  const batch = (semantic: string | undefined, items: unknown[] = [{ resource: record1 }, { resource: record2 }, { resource: record1 }]) => ({
    subject: alice,
    action: write,
    ...(semantic === undefined ? {} : { options: { evaluations_semantic: semantic } }),
    evaluations: items,
  });

  it.each([
    [undefined, [true, false, true]],
    ['execute_all', [true, false, true]],
    ['deny_on_first_deny', [true, false]],
    ['permit_on_first_permit', [true]],
  ])('%s', async (semantic, expected) => {
    const res = await h.post('/access/v1/evaluations', batch(semantic));
    expect(res.status).toBe(200);
    expect(decisions(res.body)).toEqual(expected);
  });

  it('an item in error is a denial: deny_on_first_deny stops there, permit_on_first_permit goes on', async () => {
    const items = [{ resource: record1 }, { resource: { type: 'record' } }, { resource: record2 }, { resource: record1 }];
    expect(decisions((await h.post('/access/v1/evaluations', batch('deny_on_first_deny', items))).body)).toEqual([true, false]);
    const permitFirst = [{ resource: { type: 'record' } }, { resource: record2 }, { resource: record1 }, { resource: record2 }];
    expect(decisions((await h.post('/access/v1/evaluations', batch('permit_on_first_permit', permitFirst))).body)).toEqual([false, false, true]);
  });
});
