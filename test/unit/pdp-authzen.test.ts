/**
 * AuthZEN wire parsing (defaults, draft-00 shapes, per-item errors, limits), response bodies,
 * and the schema projection that turns request JSON into Cedar values.
 */
import { describe, expect, it } from 'vitest';
import { InvalidRequest } from '../../src/errors/index.js';
import { checkDepth, decisionBody, parseEvaluation, parseEvaluations, parseSearch } from '../../src/pdp/authzen.js';
import { cedar, type SchemaJson } from '../../src/pdp/cedar.js';
import { deny } from '../../src/pdp/decision.js';
import { ProjectionError, SchemaInfo } from '../../src/pdp/schema.js';

const subject = { type: 'user', id: 'alice' };
const action = { name: 'read' };
const resource = { type: 'doc', id: '1' };

describe('parseEvaluation (§6.1)', () => {
  it('reads the four members; properties default to empty; unknown members are ignored', () => {
    expect(parseEvaluation({ subject, action, resource, extra: 1 })).toEqual({
      subject: { type: 'user', id: 'alice', properties: {} },
      action: { name: 'read', properties: {} },
      resource: { type: 'doc', id: '1', properties: {} },
      context: {},
    });
  });

  it('reads draft-00 attributes on the entity as properties; `properties` wins on a clash', () => {
    const e = parseEvaluation({ subject: { ...subject, identity: 'PID', properties: { identity: 'P2', dept: 'x' } }, action, resource: { ...resource, ownerID: 'bob' } });
    expect(e.subject.properties).toEqual({ identity: 'P2', dept: 'x' });
    expect(e.resource.properties).toEqual({ ownerID: 'bob' });
  });

  it('accepts an empty id (ids are strings scoped to the type) but not an empty type', () => {
    expect(parseEvaluation({ subject: { type: 'user', id: '' }, action, resource }).subject.id).toBe('');
    expect(() => parseEvaluation({ subject: { type: '', id: 'a' }, action, resource })).toThrow(/subject.type must not be empty/);
  });

  it('treats null members as absent (§11.5)', () => {
    expect(() => parseEvaluation({ subject: null, action, resource })).toThrow(/subject is required/);
    expect(parseEvaluation({ subject, action, resource, context: null }).context).toEqual({});
  });
});

describe('parseEvaluations (§7)', () => {
  it('without (or with an empty) `evaluations` it is a single evaluation', () => {
    expect(parseEvaluations({ subject, action, resource }, 10).kind).toBe('single');
    expect(parseEvaluations({ subject, action, resource, evaluations: [] }, 10).kind).toBe('single');
  });

  it('top-level members are defaults; an item overrides them; an incomplete item is an error in place', () => {
    const parsed = parseEvaluations({ subject, action, context: { t: 1 }, evaluations: [{ resource }, { action: { name: 'write' }, resource, context: { t: 2 } }, { action }] }, 10);
    expect(parsed.kind).toBe('batch');
    if (parsed.kind !== 'batch') return;
    expect(parsed.semantic).toBe('execute_all');
    expect(parsed.items[0]).toMatchObject({ ok: true, evaluation: { action: { name: 'read' }, context: { t: 1 } } });
    expect(parsed.items[1]).toMatchObject({ ok: true, evaluation: { action: { name: 'write' }, context: { t: 2 } } });
    expect(parsed.items[2]).toEqual({ ok: false, error: 'resource is required' });
  });

  /** The parsed items of a batch (the test fails when it is not one). */
  function items(body: Record<string, unknown>) {
    const parsed = parseEvaluations(body, 10);
    if (parsed.kind !== 'batch') throw new Error('expected a batch');
    return parsed.items;
  }

  it('an item member sent as null inherits the default, like an omitted one (§11.5: null means absent)', () => {
    const defaults = { subject, action, resource, context: { t: 1 } };
    const [omitted, nulls] = items({ ...defaults, evaluations: [{}, { subject: null, action: null, resource: null, context: null }] });
    const inherited = { subject: { ...subject, properties: {} }, action: { ...action, properties: {} }, resource: { ...resource, properties: {} }, context: { t: 1 } };
    expect(omitted).toEqual({ ok: true, evaluation: inherited });
    expect(nulls).toEqual({ ok: true, evaluation: inherited });
    // Without a default, null is as missing as ever.
    expect(items({ subject, action, evaluations: [{ resource: null }] })[0]).toEqual({ ok: false, error: 'resource is required' });
  });

  it('an item member replaces the default whole: type, id, name, properties and context members are never merged', () => {
    const defaults = {
      subject: { type: 'user', id: 'alice', properties: { role: 'admin' } },
      action: { name: 'write', properties: { soft: true } },
      resource: { type: 'record', id: 'record-1', properties: { status: 'active' } },
      context: { time: 't0', ip: '10.0.0.1' },
    };
    const [replaced, noType, noId, noName] = items({
      ...defaults,
      evaluations: [
        { subject: { type: 'user', id: 'bob' }, action: { name: 'read' }, resource: { type: 'record', id: 'record-2' }, context: { time: 't1' } },
        // The superseded certification draft's "default value merging" shape: no type in the item.
        { resource: { id: 'record-1', properties: { status: 'active' } } },
        { subject: { type: 'user' } },
        { action: { properties: { soft: false } } },
      ],
    });
    expect(replaced).toEqual({
      ok: true,
      evaluation: {
        subject: { type: 'user', id: 'bob', properties: {} },
        action: { name: 'read', properties: {} },
        resource: { type: 'record', id: 'record-2', properties: {} },
        context: { time: 't1' },
      },
    });
    expect(noType).toEqual({ ok: false, error: 'resource.type is required' });
    expect(noId).toEqual({ ok: false, error: 'subject.id is required' });
    expect(noName).toEqual({ ok: false, error: 'action.name is required' });
  });

  it('a malformed default fails only the items that rely on it', () => {
    const parsed = parseEvaluations({ subject, action: { name: 5 }, evaluations: [{ action, resource }, { resource }] }, 10);
    if (parsed.kind !== 'batch') throw new Error('expected a batch');
    expect(parsed.items.map((i) => i.ok)).toEqual([true, false]);
  });

  it('checks the options and the batch size', () => {
    expect(parseEvaluations({ subject, action, evaluations: [{ resource }], options: { evaluations_semantic: 'deny_on_first_deny' } }, 10)).toMatchObject({ semantic: 'deny_on_first_deny' });
    expect(() => parseEvaluations({ evaluations: [{}], options: { evaluations_semantic: 'any' } }, 10)).toThrow(/evaluations_semantic/);
    expect(() => parseEvaluations({ evaluations: [{}, {}, {}] }, 2)).toThrow(/at most 2/);
    expect(() => parseEvaluations({ evaluations: 'x' }, 2)).toThrow(InvalidRequest);
  });
});

describe('parseSearch (§8)', () => {
  it('the searched entity needs only a type; page.token, page.next_token (older drafts) and page.limit', () => {
    expect(parseSearch('subject', { subject: { type: 'user' }, action, resource })).toMatchObject({ subject: { type: 'user', id: '' }, page: { token: undefined, limit: undefined } });
    expect(parseSearch('resource', { subject, action, resource: { type: 'doc' }, page: { next_token: 'abc', limit: 3 } }).page).toEqual({ token: 'abc', limit: 3 });
    expect(parseSearch('action', { subject, resource }).action).toBeUndefined();
    expect(() => parseSearch('resource', { subject, action, resource: { type: 'doc' }, page: { limit: 1.5 } })).toThrow(/non-negative integer/);
    expect(() => parseSearch('resource', { subject, resource: { type: 'doc' } })).toThrow(/action is required/);
  });
});

describe('checkDepth (§11.7)', () => {
  it('refuses nesting beyond the limit, objects and arrays alike, without recursion', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(() => checkDepth(deep, 32)).toThrow(/nested deeper than 32/);
    expect(() => checkDepth({ a: { b: { c: [1, 2, { d: 1 }] } } }, 5)).not.toThrow();
    expect(() => checkDepth({ a: { b: { c: [1, 2, { d: 1 }] } } }, 4)).toThrow();
  });
});

describe('decisionBody (§5.5)', () => {
  const d = deny('forbidden', 'agent "b" (link 2 of 2): forbidden by policy "p"', { user: 'No.', link: { position: 2, depth: 2, type: 'Agent', id: 'b' }, policies: ['p'] });
  it('a permit is just the decision', () => {
    expect(decisionBody({ decision: true, policies: ['x'] }, 'admin')).toEqual({ decision: true });
  });
  it('administrators get reason_admin, the link and the policies; others only reason_user', () => {
    expect(decisionBody(d, 'admin')).toEqual({
      decision: false,
      context: { id: 'forbidden', reason_user: { en: 'No.' }, reason_admin: { en: 'agent "b" (link 2 of 2): forbidden by policy "p"' }, link: { position: 2, depth: 2, type: 'Agent', id: 'b' }, policies: ['p'] },
    });
    expect(decisionBody(d, 'user')).toEqual({ decision: false, context: { id: 'forbidden', reason_user: { en: 'No.' } } });
  });
});

describe('SchemaInfo.project', () => {
  const text = `
    namespace App {
      type Chain = { depth: Long, current: Bool, tags?: Set<String> };
      entity User { id: String, email?: String, age?: Long, admin?: Bool, ip?: ipaddr, boss?: User, meta?: { level: Long, note?: String } };
      entity Doc;
      action read appliesTo { principal: User, resource: Doc, context: { chain: Chain } };
    }
    entity Doc;`;
  const resolved = cedar.schemaToJsonWithResolvedTypes(text);
  if (resolved.type !== 'success') throw new Error('schema');
  const schema = new SchemaInfo(resolved.json as SchemaJson<string>);
  const user = schema.entityType('User')!;

  it('resolves names: unqualified when unambiguous, qualified always', () => {
    expect(user.name).toBe('App::User');
    expect(schema.entityType('App::User')).toBe(user);
    expect(schema.entityType('Doc')?.name).toBe('Doc'); // the empty namespace's Doc and App::Doc: exact match only
    expect(schema.entityType('App::Doc')?.name).toBe('App::Doc');
    expect(schema.action('read')?.uid).toEqual({ type: 'App::Action', id: 'read' });
    expect(schema.entityType('Nope')).toBeUndefined();
  });

  it('keeps declared attributes with their Cedar forms and drops the rest', () => {
    expect(schema.projectAttributes({ id: 'u', email: 'e', age: 3, admin: true, ip: '10.0.0.1', boss: 'b', meta: { level: 2, junk: 1 }, junk: 'x' }, user, 'subject.properties')).toEqual({
      id: 'u',
      email: 'e',
      age: 3,
      admin: true,
      ip: { __extn: { fn: 'ip', arg: '10.0.0.1' } },
      boss: { __entity: { type: 'App::User', id: 'b' } },
      meta: { level: 2 },
    });
    expect(schema.projectAttributes({ id: 'u', boss: { type: 'User', id: 'b' }, email: null }, user, 'p')).toEqual({ id: 'u', boss: { __entity: { type: 'App::User', id: 'b' } } });
  });

  it.each([
    [{ id: 1 }, 'subject.properties.id must be a string'],
    [{ id: 'u', age: 1.5 }, 'subject.properties.age must be an integer (Long)'],
    [{ id: 'u', admin: 'yes' }, 'subject.properties.admin must be a boolean'],
    [{ id: 'u', meta: { note: 'x' } }, 'subject.properties.meta.level is required by the schema'],
    [{ id: 'u', boss: { type: 'Doc', id: 'd' } }, 'subject.properties.boss must be an entity reference to App::User'],
    [{}, 'subject.properties.id is required by the schema'],
  ])('%j → %s (the value is never quoted)', (source, message) => {
    expect(() => schema.projectAttributes(source, user, 'subject.properties')).toThrow(ProjectionError);
    expect(() => schema.projectAttributes(source, user, 'subject.properties')).toThrow(message);
  });

  it('follows common types and the text syntax\'s Bool', () => {
    const ctx = schema.action('read')!.context!;
    expect(schema.project({ chain: { depth: 2, current: false, tags: ['a'], x: 1 }, other: 1 }, ctx, 'context')).toEqual({ chain: { depth: 2, current: false, tags: ['a'] } });
    expect(() => schema.project({ chain: { depth: 2, current: 'no' } }, ctx, 'context')).toThrow('context.chain.current must be a boolean');
  });
});
