/**
 * Entity slices against adversarial names and objects (issue 16, eleventh round, red team): the
 * slice's index by type then id, its visited set by entity identity and its `for…in` walks must
 * give Cedar's answer on the full request (decision, determining and erroring policies) for
 * members named `__proto__` (an own key `JSON.parse` makes; a plain assignment would set the
 * prototype instead and lose the member), for a polluted `Object.prototype` (inherited keys are
 * no members), for types and ids named after `Object.prototype` members, empty, or holding the
 * old key's separator, the same id under two types, parent cycles and deep parent chains.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { policyReads, sliceRequest } from '../../src/pdp/entity-slice.js';
import type { EntityJson } from '../../src/pdp/cedar.js';
import type { CedarRequest } from '../../src/pdp/engine.js';
import { ests, isAuthorized } from '../support/cedar-direct.js';

const TEXT = `permit (principal, action, resource);
@id("level") forbid (principal, action, resource) when { principal has level && principal.level > 5 };
@id("boss") forbid (principal, action, resource) when { principal has boss && principal.boss in Group::"execs" };
@id("ctx") forbid (principal, action, resource) when { context has req && context.req.level > 5 };
@id("in") forbid (principal, action, resource) when { principal in Group::"blocked" };
@id("set") forbid (principal, action, resource) when { principal has peers && principal.peers.containsAny([User::"x\\0y", User::""]) };`;

const BAD_EXTN = { __extn: { fn: 'ip', arg: 'not-an-ip' } };
const request = (context: unknown, entities: unknown[], principal = { type: 'User', id: 'alice' }): CedarRequest =>
  ({ principal, action: { type: 'Action', id: 'read' }, resource: { type: 'Doc', id: 'd' }, context, entities }) as unknown as CedarRequest;

function expectExact(text: string, req: CedarRequest): void {
  const full = isAuthorized(text, req);
  const sliced = isAuthorized(text, sliceRequest(policyReads(ests(text)), req));
  expect(sliced).toEqual(full);
}

const polluted = Object.prototype as Record<string, unknown>;
afterEach(() => {
  for (const k of ['level', 'junk', 'req', 'type', 'id', 'boss']) delete polluted[k];
});

describe('entity slice: members named __proto__ are members', () => {
  const alice = (attrs: string) => JSON.parse(`{"uid": {"type": "User", "id": "alice"}, "attrs": ${attrs}, "parents": []}`) as EntityJson;

  it('a context member __proto__ Cedar refuses is still refused (it was dropped: a refused request allowed)', () => {
    for (const ctx of [`{"__proto__": ${JSON.stringify(BAD_EXTN)}}`, `{"req": {"level": 1, "__proto__": ${JSON.stringify(BAD_EXTN)}}}`, `{"__proto__": 1.5}`, `{"__proto__": {"level": 9}}`]) {
      expectExact(TEXT, request(JSON.parse(ctx), [alice('{"level": 1}')]));
    }
  });

  it('an attribute __proto__ Cedar refuses is still refused when other attributes are left out', () => {
    for (const attrs of [`{"level": 1, "other": 2, "__proto__": ${JSON.stringify(BAD_EXTN)}}`, `{"other": 2, "__proto__": {"__entity": {"type": "if", "id": "x"}}}`]) {
      expectExact(TEXT, request({}, [alice(attrs)]));
    }
  });

  it('a policy reading context["__proto__"] or principal["__proto__"] sees the member', () => {
    const text = `permit (principal, action, resource);
@id("p") forbid (principal, action, resource) when { context has "__proto__" };
@id("q") forbid (principal, action, resource) when { principal has "__proto__" };`;
    expectExact(text, request(JSON.parse('{"__proto__": {"a": 1}, "other": 2}'), [alice('{"x": 1}')]));
    expectExact(text, request({}, [alice('{"__proto__": {"a": 1}, "other": 2}')]));
  });
});

describe('entity slice: a polluted Object.prototype adds no members', () => {
  it('inherited keys are neither context members, attributes nor references', () => {
    const entities = [
      { uid: { type: 'User', id: 'alice' }, attrs: { level: 1, note: 'x' }, parents: [] },
      { uid: { type: 'Group', id: 'execs' }, attrs: {}, parents: [] },
    ];
    polluted.junk = BAD_EXTN;
    polluted.level = 9;
    polluted.req = { level: 9 };
    expectExact(TEXT, request({ a: 1, req: { level: 1, b: 2 } }, entities));
    expectExact(TEXT, request({}, entities));
  });
});

describe('entity slice: uids the old key string could confuse, cycles and depth', () => {
  const NAMES = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', '', 'a\0b', 'x\0y', 'valueOf'];
  it('ids named after Object.prototype members, empty or with the separator, under two types', () => {
    for (const id of NAMES) {
      const entities = [
        { uid: { type: 'User', id }, attrs: { boss: { __entity: { type: 'User', id: NAMES[(NAMES.indexOf(id) + 1) % NAMES.length]! } }, peers: NAMES.map((n) => ({ __entity: { type: 'User', id: n } })) }, parents: [{ type: 'Group', id }] },
        { uid: { type: 'Group', id }, attrs: { level: 9 }, parents: [{ type: 'Group', id: 'blocked' }] },
        ...NAMES.filter((n) => n !== id).map((n) => ({ uid: { type: 'User', id: n }, attrs: { level: n.length }, parents: [{ type: 'Group', id: 'execs' }] })),
        { uid: { type: 'Group', id: 'execs' }, attrs: {}, parents: [{ type: 'Group', id: 'blocked' }] },
        { uid: { type: 'Group', id: 'blocked' }, attrs: {}, parents: [{ type: 'Group', id: 'execs' }] },
      ];
      expectExact(TEXT, request({}, entities, { type: 'User', id }));
      expectExact(TEXT, request({ req: { level: 1, who: { __entity: { type: 'User', id } } } }, entities, { type: 'User', id: 'a\0b' }));
    }
  });

  it('a parent chain 300 deep and a cycle through it', () => {
    const n = 300;
    const entities = [{ uid: { type: 'User', id: 'alice' }, attrs: {}, parents: [{ type: 'Group', id: 'g0' }] }];
    for (let i = 0; i < n; i++) entities.push({ uid: { type: 'Group', id: `g${i}` }, attrs: {}, parents: [{ type: 'Group', id: i === n - 1 ? 'blocked' : `g${i + 1}` }] });
    entities.push({ uid: { type: 'Group', id: 'blocked' }, attrs: {}, parents: [{ type: 'Group', id: 'g0' }] });
    expectExact(TEXT, request({}, entities));
  });
});

describe('schema projection: a declared member named __proto__ is projected as a member', () => {
  it('an AuthZEN property or context member "__proto__" the schema declares reaches Cedar (a forbid reading it denies)', async () => {
    const { cedar } = await import('../../src/pdp/cedar.js');
    const { SchemaInfo } = await import('../../src/pdp/schema.js');
    const resolved = cedar.schemaToJsonWithResolvedTypes(`entity User = { "__proto__": String, level: Long }; entity Doc;
action read appliesTo { principal: User, resource: Doc, context: { "__proto__": String } };`);
    if (resolved.type !== 'success') throw new Error('schema');
    const schema = new SchemaInfo(resolved.json as never);
    const attrs = schema.projectAttributes(JSON.parse('{"__proto__": "blocked", "level": 1}'), schema.entityType('User')!, 'subject.properties');
    expect(Object.keys(attrs).sort()).toEqual(['__proto__', 'level']);
    const context = schema.project(JSON.parse('{"__proto__": "blocked"}'), schema.action('read')!.context!, 'context') as Record<string, unknown>;
    expect(Object.keys(context)).toEqual(['__proto__']);
    const text = `permit (principal, action, resource);
@id("attr") forbid (principal, action, resource) when { principal["__proto__"] == "blocked" };
@id("ctx") forbid (principal, action, resource) when { context["__proto__"] == "blocked" };`;
    const req = request(context, [{ uid: { type: 'User', id: 'alice' }, attrs, parents: [] }]);
    expect(isAuthorized(text, req)).toEqual({ decision: 'deny', reason: ['policy1', 'policy2'], errors: [] });
    expectExact(text, req);
  });
});

describe('AuthZEN parsing: a subject property named __proto__ is a property', () => {
  it('in `properties` and in the draft-00 form (top-level members)', async () => {
    const { parseEvaluation } = await import('../../src/pdp/authzen.js');
    const body = JSON.parse(`{"subject": {"type": "user", "id": "alice", "__proto__": {"a": 1}, "properties": {"__proto__": "blocked", "level": 1}},
      "action": {"name": "read"}, "resource": {"type": "doc", "id": "d"}}`);
    const { subject } = parseEvaluation(body);
    expect(Object.keys(subject.properties).sort()).toEqual(['__proto__', 'level']);
    expect(Object.getOwnPropertyDescriptor(subject.properties, '__proto__')?.value).toBe('blocked');
  });
});
