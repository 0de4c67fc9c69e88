/**
 * Entity slices under attack (issue 16, fourth round, red team): for policy shapes that read data
 * only reachable through attribute hops, records, sets, tags, ancestors of reached entities,
 * extension values and action groups, Cedar's answer (decision, determining policies, erroring
 * policies) on the sliced request equals its answer on the full entity set. A `forbid` that errors
 * or evaluates differently on the slice would be a permit that should have been a deny.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { CedarEngine } from '../../src/pdp/engine.js';
import { PolicyStore } from '../../src/pdp/policy-store.js';
import type { EntityJson } from '../../src/pdp/cedar.js';
import { policyReads, sliceRequest } from '../../src/pdp/entity-slice.js';
import { ests, isAuthorized } from '../support/cedar-direct.js';
import type { CedarRequest } from '../../src/pdp/engine.js';

const ref = (type: string, id: string) => ({ __entity: { type, id } });
const ent = (type: string, id: string, attrs: Record<string, unknown> = {}, parents: Array<{ type: string; id: string }> = [], tags?: Record<string, unknown>): EntityJson =>
  ({ uid: { type, id }, attrs, parents, ...(tags ? { tags } : {}) }) as EntityJson;

/** Entities of one decision: more than any one call reaches, linked through attributes, records, sets and tags. */
const ENTITIES: EntityJson[] = [
  ent('User', 'alice', { department: 'eng', level: 3, clearance: 'top', manager: ref('User', 'bob'), meta: { badge: ref('Badge', 'b1') }, profile: { nick: 'al' } }, [{ type: 'Group', id: 'staff' }]),
  ent('User', 'bob', { department: 'sales', level: 9, manager: ref('User', 'carol'), ip: { __extn: { fn: 'ip', arg: '10.0.0.7' } } }, [{ type: 'Group', id: 'managers' }]),
  ent('User', 'carol', { department: 'board', level: 12, secret: true }, [{ type: 'Group', id: 'execs' }]),
  ent('User', 'dave', { department: 'eng', level: 1, quarantined: true }, [{ type: 'Group', id: 'blocked' }], { flag: 'red' }),
  ent('Agent', 'agent-a', { owner: ref('User', 'bob'), department: 'robots' }),
  ent('Badge', 'b1', { revoked: true, issuer: ref('User', 'dave') }),
  ent('Group', 'staff', {}, []),
  ent('Group', 'managers', {}, [{ type: 'Group', id: 'execs' }]),
  ent('Group', 'execs', { tier: 'gold' }, []),
  ent('Group', 'blocked', {}, []),
  ent('Folder', 'f1', { owner: ref('User', 'carol'), readers: [ref('User', 'alice'), ref('User', 'dave')] }, [{ type: 'Folder', id: 'root' }]),
  ent('Folder', 'root', { classification: 'secret' }, []),
  ent('Doc', 'd1', { owner: ref('User', 'alice'), readers: [ref('User', 'bob')], meta: { owner: ref('User', 'carol'), secret: 'yes' }, cost: { __extn: { fn: 'decimal', arg: '1.50' } } }, [{ type: 'Folder', id: 'f1' }], { steward: ref('User', 'dave') }),
  ent('Doc', 'd2', { owner: ref('User', 'dave'), readers: [], meta: { note: 'plain' } }, [], { steward: ref('User', 'carol') }),
  ent('Action', 'read', {}, [{ type: 'Action', id: 'readGroup' }]),
  ent('Action', 'readGroup', {}, []),
  ent('Action', 'write', {}, []),
];

/** One shape per line: each forbid reads data only some hop away; the permits let everything else through. */
const SHAPES: Record<string, string> = {
  'two-hops': `forbid (principal, action, resource) when { resource has owner && resource.owner.manager.department == "sales" };`,
  'three-hops': `forbid (principal, action, resource is Doc) when { resource.owner.manager.manager has secret };`,
  'hop-then-in-literal': `forbid (principal, action, resource) when { resource has owner && resource.owner.manager in Group::"execs" };`,
  'hop-ancestor-of-reached': `forbid (principal, action, resource) when { resource has owner && resource.owner in Group::"blocked" };`,
  'set-of-refs': `forbid (principal, action, resource is Doc) when { resource.readers.contains(User::"bob") && User::"bob".level > 5 };`,
  'set-member-attr': `forbid (principal is User, action, resource is Folder) when { resource.readers.contains(principal) && principal has quarantined };`,
  'record-ref': `forbid (principal, action, resource is Doc) when { resource.meta has owner && resource.meta.owner.level > 10 };`,
  'record-has': `forbid (principal, action, resource is Doc) when { resource.meta has secret };`,
  'principal-has': `forbid (principal is User, action == Action::"write", resource) when { principal has clearance };`,
  'principal-record-ref': `forbid (principal is User, action, resource) when { principal.meta has badge && principal.meta.badge.revoked && principal.meta.badge.issuer has quarantined };`,
  'agent-owner': `forbid (principal is Agent, action, resource) when { principal.owner.level > 5 && principal.owner.ip.isInRange(ip("10.0.0.0/8")) };`,
  'same-name-other-type': `forbid (principal is Agent, action, resource) when { principal.owner.department == "sales" };`,
  'like-through-hop': `forbid (principal, action, resource is Doc) when { resource.owner.department like "e*" && resource.owner is User };`,
  'unless': `forbid (principal, action, resource is Doc) unless { resource.owner.level < 3 };`,
  'context-record-ref': `forbid (principal, action, resource) when { context has req && context.req.by.level > 8 };`,
  'context-set-ref': `forbid (principal, action, resource) when { context has on && context.on.contains(User::"carol") && User::"carol".secret };`,
  'context-set-hop': `forbid (principal, action, resource) when { context has each && context.each.contains(User::"alice") && context.each.containsAny([User::"dave"]) };`,
  'ancestor-attr': `forbid (principal, action, resource in Folder::"root") when { Folder::"root".classification == "secret" && resource has owner && resource.owner.department == "eng" };`,
  'action-group': `forbid (principal, action in Action::"readGroup", resource) when { resource has owner && resource.owner.level == 1 };`,
  'tag-hop': `forbid (principal, action, resource) when { resource.hasTag("steward") && resource.getTag("steward").level < 2 };`,
  // An entity reached only through a tag value: missing from the slice, \`has\` would be false (no error) and the forbid silent.
  'tag-hop-has': `forbid (principal, action, resource) when { resource.hasTag("steward") && resource.getTag("steward") has secret };`,
  // Cedar 4's \`e has a.b.c\`: one \`has\` node whose \`attr\` is a path (an array), not a name.
  'multi-level-has': `forbid (principal is User, action, resource) when { principal has profile.nick };`,
  'multi-level-has-hop': `forbid (principal, action, resource is Doc) when { resource has owner.manager.level };`,
  'context-multi-level-has': `forbid (principal, action, resource) when { context has req.by.secret };`,
  // Context pruning (entity-slice.ts, 3): a record used whole, through brackets, by `has`, or as an `if` value keeps every member.
  'context-whole-eq': `forbid (principal, action, resource) when { context == {} };`,
  'context-member-whole-eq': `forbid (principal, action, resource) when { context has req && context.req == {"by": User::"bob"} };`,
  'context-bracket': `forbid (principal, action, resource) when { context has req && context["req"]["by"] == User::"carol" };`,
  'context-has-unnamed': `forbid (principal, action, resource) when { context has extra };`,
  'context-if-whole': `forbid (principal, action, resource) when { (if context has req then context.req else {"x": 1}) has extra };`,
  'context-nested-member': `forbid (principal, action, resource) when { context has req && context.req has deep && context.req.deep.a == "x" };`,
  'tag-of-hop': `forbid (principal, action, resource is Doc) when { resource.owner.hasTag("flag") && resource.owner.getTag("flag") == "red" };`,
  'decimal': `forbid (principal, action, resource is Doc) when { resource has cost && resource.cost.greaterThan(decimal("1.00")) && resource.owner.level > 2 };`,
  'group-attr': `forbid (principal, action, resource) when { resource has owner && resource.owner.manager has manager && Group::"execs".tier == "gold" && resource.owner.manager.manager in Group::"execs" };`,
};
const PERMITS = `permit (principal, action, resource);\npermit (principal is User, action, resource) when { principal.department == "eng" };`;

const PRINCIPALS = [['User', 'alice'], ['User', 'bob'], ['User', 'dave'], ['Agent', 'agent-a']] as const;
const RESOURCES = [['Doc', 'd1'], ['Doc', 'd2'], ['Folder', 'f1']] as const;
const ACTIONS = ['read', 'write'];
const CONTEXTS = [
  {}, { req: { by: ref('User', 'bob') } }, { req: { by: ref('User', 'carol') } }, { on: [ref('User', 'carol')] }, { each: [ref('User', 'alice'), ref('User', 'dave')] },
  // Members no shape names, some of which Cedar refuses (a malformed escape, a non-integer, a bad type name): a refusal must stay one.
  { req: { by: ref('User', 'bob'), extra: 7, deep: { a: 'x', b: [1, ref('User', 'dave')] } }, extra: true },
  { junk: { __extn: { fn: 'ip', arg: 'not-an-ip' } } }, { junk: 1.5 }, { junk: { __entity: { type: 'Bad Type', id: 'x' } } }, { junk: { __entity: { type: 'if', id: 'x' } } },
  { junk: { a: { __entity: { type: 'User', id: 'x', extra: 1 } } } }, { junk: [Number.MAX_SAFE_INTEGER, 'x', { y: false }] },
];

describe('entity slices under attack: every shape decides as the full entity set does', () => {
  for (const [name, shape] of Object.entries(SHAPES)) {
    it(name, () => {
      const text = `${PERMITS}\n${shape}`;
      const reads = policyReads(ests(text));
      let denials = 0;
      for (const [pt, pid] of PRINCIPALS)
        for (const [rt, rid] of RESOURCES)
          for (const action of ACTIONS)
            for (const context of CONTEXTS) {
              const request = { principal: { type: pt, id: pid }, action: { type: 'Action', id: action }, resource: { type: rt, id: rid }, context, entities: ENTITIES } as unknown as CedarRequest;
              const full = isAuthorized(text, request);
              const sliced = isAuthorized(text, sliceRequest(reads, request));
              expect({ name, pt, pid, rt, rid, action, context, ...sliced }).toEqual({ name, pt, pid, rt, rid, action, context, ...full });
              if ('decision' in full && full.decision === 'deny') denials++;
            }
      // Each forbid fires for some request: the shape is exercised, not vacuous.
      expect(denials).toBeGreaterThan(0);
    });
  }
});

describe('entities.json in the forms the schema allows: read at a decision as the load check read them', () => {
  const SCHEMA = `entity Group = { head?: User, heads?: Set<User>, meta?: { who: User }, net?: ipaddr } tags User;
entity User in [Group] = { id: String };
entity Doc;
action read appliesTo { principal: User, resource: Doc };`;
  const POLICIES = `permit (principal, action, resource);
@id("head") forbid (principal, action, resource) when { principal in Group::"g" && Group::"g" has head && Group::"g".head == principal };
@id("heads") forbid (principal, action, resource) when { principal in Group::"g" && Group::"g" has heads && Group::"g".heads.contains(principal) };
@id("meta") forbid (principal, action, resource) when { principal in Group::"g" && Group::"g" has meta && Group::"g".meta.who == principal };
@id("tag") forbid (principal, action, resource) when { principal in Group::"g" && Group::"g".hasTag("boss") && Group::"g".getTag("boss") == principal };
@id("net") forbid (principal, action, resource) when { principal in Group::"g" && Group::"g" has net && Group::"g".net == ip("10.0.0.0/8") };`;
  const cases: Array<[string, Record<string, unknown>, Record<string, unknown>?]> = [
    ['tag', {}, { boss: { type: 'User', id: 'alice' } }],
    ['head', { head: { type: 'User', id: 'alice' } }],
    ['heads', { heads: [{ type: 'User', id: 'alice' }] }],
    ['meta', { meta: { who: { type: 'User', id: 'alice' } } }],
    ['net', { net: '10.0.0.0/8' }],
  ];
  for (const [policy, attrs, tags] of cases) {
    it(`a forbid reading an implicit ${policy} denies, sliced or not`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'deputy-implicit-'));
      try {
        writeFileSync(join(dir, 'schema.cedarschema'), SCHEMA);
        writeFileSync(join(dir, 'p.cedar'), POLICIES);
        writeFileSync(join(dir, 'entities.json'), JSON.stringify([{ uid: { type: 'Group', id: 'g' }, attrs, parents: [], ...(tags ? { tags } : {}) }]));
        const store = new PolicyStore({ dir, logger: createLogger('silent') });
        await store.load();
        const snapshot = store.current;
        const group = snapshot.data.find('Group', 'g')!;
        const request = {
          principal: { type: 'User', id: 'alice' }, action: { type: 'Action', id: 'read' }, resource: { type: 'Doc', id: 'd' }, context: {},
          entities: [{ uid: { type: 'User', id: 'alice' }, attrs: { id: 'alice' }, parents: [{ type: 'Group', id: 'g' }] }, group],
        } as unknown as CedarRequest;
        for (const slice of [false, true]) {
          expect(new CedarEngine({ cacheSize: 0, slice }).authorize(snapshot, request)).toEqual({ allowed: false, kind: 'forbidden', policies: [policy] });
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
