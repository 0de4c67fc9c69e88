/**
 * One entity named twice in one AuthZEN request (the subject and the resource are the same
 * Cedar entity): Cedar holds one entity per uid, so which of the two the PDP kept decided the
 * verdict. Two different versions from the request are refused (`invalid_input`, naming the
 * entity), never settled by their order; equal ones are one entity (src/pdp/chain-evaluation.ts,
 * `oneEntityPerUid`). Over HTTP, as a PEP asks.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPdpHarness, type PdpHarness } from '../support/authzen.js';

let h: PdpHarness;
let policies: string;

beforeAll(async () => {
  policies = mkdtempSync(join(tmpdir(), 'deputy-entity-dupes-'));
  // A user may view a user record of the HR department: the verdict reads only the resource.
  writeFileSync(join(policies, 'schema.cedarschema'), `entity Group;
entity User in [Group] { id: String, department?: String };
action view appliesTo { principal: [User], resource: [User] };
`);
  writeFileSync(join(policies, 'policies.cedar'), `permit (principal, action == Action::"view", resource) when { resource has department && resource.department == "hr" };
`);
  h = await startPdpHarness({ policies });
});
afterAll(async () => {
  await h?.stop();
  rmSync(policies, { recursive: true, force: true });
});

const user = (id: string, properties: Record<string, unknown>) => ({ type: 'User', id, properties });
const evaluate = (subject: unknown, resource: unknown) => h.post('/access/v1/evaluation', { subject, action: { name: 'view' }, resource });

describe('the subject and the resource naming one entity', () => {
  it('with different properties: denied invalid_input naming the entity — the subject\'s version no longer stands in for the resource', async () => {
    // Before, the subject's entry was kept: its department "hr" made the resource "hr" — a permit.
    const res = await evaluate(user('alice', { department: 'hr' }), user('alice', { department: 'eng' }));
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ decision: false, context: { id: 'invalid_input' } });
    expect((res.body as { context: { reason_admin: { en: string } } }).context.reason_admin.en).toContain('"User" "alice" with different properties');
    // And the other way round: never a verdict from whichever came first.
    const reverse = await evaluate(user('alice', { department: 'eng' }), user('alice', { department: 'hr' }));
    expect(reverse.body).toMatchObject({ decision: false, context: { id: 'invalid_input' } });
  });

  it('with the same properties (in any order): one entity, decided as usual', async () => {
    const res = await evaluate(user('bob', { department: 'hr', id: 'bob' }), user('bob', { id: 'bob', department: 'hr' }));
    expect(res.body).toEqual({ decision: true });
    const other = await evaluate(user('bob', { department: 'eng' }), user('bob', { department: 'eng' }));
    expect(other.body).toMatchObject({ decision: false, context: { id: 'not_permitted' } });
  });

  it('different entities are unaffected', async () => {
    expect((await evaluate(user('carol', { department: 'eng' }), user('dave', { department: 'hr' }))).body).toEqual({ decision: true });
  });
});
