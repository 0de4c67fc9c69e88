/**
 * evaluateMembers' one-entity-per-uid rule (src/pdp/chain-evaluation.ts), with an engine stub
 * that records the entities Cedar would get: Deputy's data for a uid (a delegated member's
 * principal, the PDP's entity data) is what Cedar sees, whatever the request says about the same
 * uid and in whichever order the entries come. The HTTP side (two request-built versions → a
 * deny `invalid_input`) is test/features/authzen-entity-duplicates.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { EntityJson } from '../../src/pdp/cedar.js';
import { evaluateMembers, plainMember, type ActionRequest, type Member } from '../../src/pdp/chain-evaluation.js';
import type { CedarEngine } from '../../src/pdp/engine.js';
import type { BuiltEntity } from '../../src/pdp/entities.js';
import type { PolicySnapshot } from '../../src/pdp/policy-store.js';

const uid = (type: string, id: string) => ({ type, id });
const entity = (type: string, id: string, attrs: Record<string, string>, parents: Array<{ type: string; id: string }> = []): EntityJson => ({ uid: uid(type, id), attrs, parents });
const built = (...entities: EntityJson[]): BuiltEntity => ({ uid: entities[0]!.uid as { type: string; id: string }, entities });

/** Runs evaluateMembers with a permitting engine; returns the entities it was given. */
function entitiesSeen(members: Member[], resource: BuiltEntity): EntityJson[] | unknown {
  let seen: EntityJson[] | undefined;
  const engine = { authorize: (_s: unknown, q: { entities: EntityJson[] }) => ((seen = q.entities), { allowed: true, policies: ['p'] }) } as unknown as CedarEngine;
  const req: ActionRequest = {
    action: { name: 'view', uid: uid('Action', 'view'), principalTypes: new Set(['User', 'Agent', 'Group']), resourceTypes: new Set(['User', 'Group']), context: undefined, entities: [entity('Action', 'view', {})] },
    resource,
    context: {},
    actionProperties: {},
  };
  const decision = evaluateMembers(engine, {} as PolicySnapshot, members, req);
  return seen ?? decision;
}

const delegatedMember = (principal: BuiltEntity): Member => ({
  principal,
  chain: { position: 0, depth: 1, current: false, delegated: true, scopes: [] },
  link: { position: 0, depth: 1, type: 'User', id: 'alice' },
  label: 'user "alice"',
});

describe('evaluateMembers: one entity per uid', () => {
  it("a delegated member's principal (from verified tokens) is never replaced by the request's resource with its uid", () => {
    const derived = entity('User', 'alice', { department: 'eng' }, [uid('Group', 'staff')]);
    const seen = entitiesSeen([delegatedMember(built(derived))], built(entity('User', 'alice', { department: 'hr' }, [uid('Group', 'admins')])));
    expect(seen).toEqual([derived, entity('Action', 'view', {})]);
  });

  it("the PDP's entity data wins over a request-built entity with its uid, even when the request's comes first", () => {
    const fromData = entity('Group', 'eng', { kind: 'team' });
    const plain = plainMember(built(entity('Group', 'eng', { kind: 'admins' })), uid('Group', 'eng'));
    // The resource (request-built) has the PDP's Group "eng" among its ancestors.
    const seen = entitiesSeen([plain], built(entity('User', 'bob', {}, [uid('Group', 'eng')]), fromData)) as EntityJson[];
    expect(seen.filter((e) => (e.uid as { id: string }).id === 'eng')).toEqual([fromData]);
  });
});

describe('evaluateMembers: equal duplicates are one entity', () => {
  // Red team (issue 16, seventh round): a Cedar JSON array is a set (Cedar has no list type), and
  // parents are a set too; two versions differing only in the order (or repetition) of a set's
  // elements are the same entity, not a conflict.
  it('the subject and the resource naming one entity with a set attribute (and parents) in another order: one entity, decided', () => {
    const plain = plainMember(built({ uid: uid('User', 'a'), attrs: { tags: ['hr', 'x'], nested: { s: [1, 2] } }, parents: [uid('Group', 'g1'), uid('Group', 'g2')] } as unknown as EntityJson), uid('User', 'a'));
    const resource = built({ uid: uid('User', 'a'), attrs: { nested: { s: [2, 1, 2] }, tags: ['x', 'hr'] }, parents: [uid('Group', 'g2'), uid('Group', 'g1')] } as unknown as EntityJson);
    const seen = entitiesSeen([plain], resource);
    expect(Array.isArray(seen)).toBe(true);
    expect((seen as EntityJson[]).filter((e) => (e.uid as { id: string }).id === 'a')).toHaveLength(1);
  });

  it('a set attribute with different elements is still a conflict (invalid_input)', () => {
    const plain = plainMember(built({ uid: uid('User', 'a'), attrs: { tags: ['hr', 'x'] }, parents: [] } as unknown as EntityJson), uid('User', 'a'));
    const resource = built({ uid: uid('User', 'a'), attrs: { tags: ['x', 'eng'] }, parents: [] } as unknown as EntityJson);
    expect(entitiesSeen([plain], resource)).toMatchObject({ decision: false, denial: { kind: 'invalid_input' } });
  });
});
