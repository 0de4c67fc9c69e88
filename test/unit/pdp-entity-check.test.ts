/**
 * `entities.json` checked in closed chunks (src/pdp/entity-check.ts) refuses exactly what Cedar
 * refuses in one call over the whole file: random small files (duplicate uids, both uid forms,
 * wrong attribute types, missing required attributes, parents of a type the schema forbids,
 * unknown types, malformed entries) get the same verdict with chunks of 2 entities as whole.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cedar } from '../../src/pdp/cedar.js';
import { checkEntities, closedChunks } from '../../src/pdp/entity-check.js';

const SCHEMA = readFileSync(resolve(import.meta.dirname, '../../config/policies/schema.cedarschema'), 'utf8');

const uidArb = fc.record({ type: fc.constantFrom('User', 'Group', 'Resource', 'Nope'), id: fc.constantFrom('a', 'b', 'c', 'd', 'e') });
const refArb = fc.oneof(uidArb, uidArb.map((u) => ({ __entity: u })));
const attrsArb = fc.oneof(
  fc.constant({}),
  fc.record({ id: fc.oneof(fc.constantFrom('x', 'y'), fc.integer({ min: 0, max: 3 })) }),
  fc.record({ id: fc.constant('x'), groups: fc.oneof(fc.constant(['g']), fc.constant('g')) }),
);
const entityArb = fc.oneof(
  { weight: 20, arbitrary: fc.record({ uid: refArb, attrs: attrsArb, parents: fc.array(refArb, { maxLength: 2 }) }) },
  { weight: 1, arbitrary: fc.constantFrom({ uid: 'User::"a"', attrs: {}, parents: [] }, { attrs: {}, parents: [] }, null, { uid: { type: 'User', id: 'a' }, attrs: { id: 'a' }, parents: 'Group::"a"' }) },
);

describe('entities.json checked in closed chunks', () => {
  it('gets the verdict Cedar gives the whole file in one call', () => {
    let refused = 0;
    fc.assert(
      fc.property(fc.array(entityArb, { maxLength: 8 }), (entities) => {
        const whole = cedar.checkParseEntities({ entities: entities as never, schema: SCHEMA });
        expect(checkEntities(entities, SCHEMA, 2).type).toBe(whole.type);
        if (whole.type === 'failure') refused++;
      }),
      { numRuns: 150, seed: 16 },
    );
    // The draw reaches refusals (and, by the assertion above, the chunked check refuses them too).
    expect(refused).toBeGreaterThan(20);
  }, 120_000); // ~600 Cedar calls, each parsing the schema: seconds alone, more on a loaded machine

  // Cedar reports one error of several in an order that varies from call to call (its hash maps'
  // seeds), so messages are compared on files with one fault each. A valid entity ahead of it
  // makes two chunks: the check on the pre-parsed schema (one chunk is Cedar's plain call).
  const VALID = { uid: { type: 'User', id: 'ok' }, attrs: { id: 'ok' }, parents: [] };
  it.each([
    ['an attribute of the wrong type', [{ uid: { type: 'User', id: 'a' }, attrs: { id: 3 }, parents: [] }]],
    ['a missing required attribute', [{ uid: { type: 'User', id: 'a' }, attrs: {}, parents: [] }]],
    ['a type the schema does not declare', [{ uid: { type: 'Nope', id: 'a' }, attrs: {}, parents: [] }]],
    ['a parent of a type the schema forbids', [{ uid: { type: 'User', id: 'a' }, attrs: { id: 'a' }, parents: [{ type: 'Resource', id: 'r' }] }]],
    ['an action the schema does not declare', [{ uid: { type: 'Action', id: 'nope' }, attrs: {}, parents: [] }]],
    ['an action whose parents differ from the schema', [{ uid: { type: 'Action', id: 'complete' }, attrs: {}, parents: [] }]],
    ['an action as the schema declares it', [{ uid: { type: 'Action', id: 'read' }, attrs: {}, parents: [] }]],
    ['a uid given twice with different contents', [{ uid: { type: 'Group', id: 'g' }, attrs: {}, parents: [] }, { uid: { type: 'Group', id: 'g' }, attrs: {}, parents: [{ type: 'Group', id: 'h' }] }]],
    ['a malformed entry', [{ uid: 'User::"a"', attrs: {}, parents: [] }]],
  ])('answers %s with Cedar\'s own words', (_case, fault) => {
    const entities = [VALID, ...fault];
    expect(closedChunks(entities, 1)).toHaveLength(2);
    const whole = cedar.checkParseEntities({ entities: entities as never, schema: SCHEMA });
    expect(checkEntities(entities, SCHEMA, 1)).toEqual(whole);
  });

  it('falls back to Cedar\'s own check, and its error, for a schema Cedar refuses', () => {
    const broken = `${SCHEMA}\nentity Broken {`;
    const entities = [VALID, { uid: { type: 'User', id: 'a' }, attrs: { id: 'a' }, parents: [] }];
    const whole = cedar.checkParseEntities({ entities: entities as never, schema: broken });
    expect(whole.type).toBe('failure');
    expect(checkEntities(entities, broken, 1)).toEqual(whole);
  });

  it('refuses a uid given twice with different contents when size alone would split the copies', () => {
    // Cedar accepts an identical repeat and refuses a differing one: both copies must meet in one call.
    const user = (id: string) => ({ uid: { type: 'User', id }, attrs: { id }, parents: [] });
    const entities = [user('a'), user('b'), user('c'), { uid: { __entity: { type: 'User', id: 'a' } }, attrs: { id: 'z' }, parents: [] }];
    expect(cedar.checkParseEntities({ entities: entities as never, schema: SCHEMA }).type).toBe('failure');
    expect(checkEntities(entities, SCHEMA, 1).type).toBe('failure');
  });

  it('keeps each closed group (shared uid, parent links) in one chunk, every entity once, chunks bounded', () => {
    const entities = [
      { uid: { type: 'User', id: 'u1' }, parents: [{ type: 'Group', id: 'g1' }] },
      { uid: { type: 'User', id: 'u2' }, parents: [] },
      { uid: { type: 'Group', id: 'g1' }, parents: [] },
      { uid: { type: 'User', id: 'u3' }, parents: [{ __entity: { type: 'Group', id: 'g1' } }] },
      { uid: { type: 'User', id: 'u4' }, parents: [] },
      { uid: { type: 'User', id: 'u5' }, parents: [] },
    ];
    const chunks = closedChunks(entities, 2);
    expect(chunks.flat()).toHaveLength(entities.length);
    expect(new Set(chunks.flat())).toEqual(new Set(entities));
    const chunkOf = (i: number) => chunks.findIndex((c) => c.includes(entities[i]));
    expect(chunkOf(0)).toBe(chunkOf(2));
    expect(chunkOf(3)).toBe(chunkOf(2));
    // The group of three stays whole; the others are packed two per chunk.
    expect(chunks.map((c) => c.length).sort()).toEqual([1, 2, 3]);
  });
});
