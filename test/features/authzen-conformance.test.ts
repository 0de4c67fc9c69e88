/**
 * The public AuthZEN interop scenarios, run as they are (test/fixtures/authzen, copied unchanged
 * from shared/conformance/authzen) over real HTTP against the example Cedar policy sets in
 * config/policies/examples. Comparison rules are those of the fixtures' README: single
 * decisions by `decision`, batches by length and each item's `decision`, searches as unordered
 * sets of results.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES, FIXTURES, startPdpHarness, type PdpHarness } from '../support/authzen.js';
import type { Json } from '../support/http.js';

interface Case {
  request: Json;
  expected: unknown;
}

function cases(file: string, key: string): Case[] {
  const doc = JSON.parse(readFileSync(`${FIXTURES}/${file}`, 'utf8')) as Record<string, Case[]>;
  const list = doc[key];
  if (!Array.isArray(list) || list.length === 0) throw new Error(`${file} has no "${key}" cases`);
  return list;
}

/** Runs every case; returns the mismatches (index, expected, got) so a failure shows them all. */
async function run(h: PdpHarness, path: string, list: Case[], compare: (expected: unknown, body: Json) => boolean): Promise<unknown[]> {
  const mismatches: unknown[] = [];
  for (const [i, c] of list.entries()) {
    const res = await h.post(path, c.request);
    if (res.status !== 200 || !compare(c.expected, res.body)) mismatches.push({ i, request: c.request, expected: c.expected, status: res.status, got: res.body });
  }
  return mismatches;
}

const decisionIs = (expected: unknown, body: Json) => (body.decision ?? false) === expected;
const batchIs = (expected: unknown, body: Json) => {
  const want = expected as Array<{ decision: boolean }>;
  const got = body.evaluations as Array<{ decision: boolean }> | undefined;
  return Array.isArray(got) && got.length === want.length && want.every((w, i) => got[i]!.decision === w.decision);
};
const sameResults = (key: (r: Json) => string) => (expected: unknown, body: Json) => {
  const want = ((expected as { results: Json[] }).results ?? []).map(key).sort();
  const got = ((body.results as Json[] | undefined) ?? []).map(key).sort();
  return JSON.stringify(want) === JSON.stringify(got);
};

describe('AuthZEN interop: Todo (drafts 00, 01, 02, batch)', () => {
  let h: PdpHarness;
  beforeAll(async () => {
    h = await startPdpHarness({ policies: `${EXAMPLES}/todo` });
  });
  afterAll(() => h?.stop());

  it.each([
    ['todo/decisions-authorization-api-1_0-00.json', 'evaluation'],
    ['todo/decisions-authorization-api-1_0-01.json', 'evaluation'],
    ['todo/decisions-authorization-api-1_0-02.json', 'evaluation'],
    ['todo/decisions.json', 'decisions'],
    ['historical/todo-spec-1.0/decisions.json', 'decisions'],
  ])('%s: every single evaluation matches', async (file, key) => {
    const list = cases(file, key);
    expect(list.some((c) => c.expected === true) && list.some((c) => c.expected === false)).toBe(true);
    expect(await run(h, '/access/v1/evaluation', list, decisionIs)).toEqual([]);
  });

  it('decisions-authorization-api-1_0-02.json: every batch (shared subject and action) matches', async () => {
    expect(await run(h, '/access/v1/evaluations', cases('todo/decisions-authorization-api-1_0-02.json', 'evaluations'), batchIs)).toEqual([]);
  });

  it('the same single cases sent to /evaluations without an `evaluations` array answer as single evaluations', async () => {
    const list = cases('todo/decisions-authorization-api-1_0-02.json', 'evaluation').slice(0, 10);
    expect(await run(h, '/access/v1/evaluations', list, decisionIs)).toEqual([]);
  });
});

describe('AuthZEN interop: API gateway', () => {
  let h: PdpHarness;
  beforeAll(async () => {
    h = await startPdpHarness({ policies: `${EXAMPLES}/api-gateway` });
  });
  afterAll(() => h?.stop());

  it('api-gateway/decisions.json: every evaluation matches', async () => {
    expect(await run(h, '/access/v1/evaluation', cases('api-gateway/decisions.json', 'evaluation'), decisionIs)).toEqual([]);
  });
});

describe('AuthZEN interop: search (subject, resource, action) and IdP', () => {
  let h: PdpHarness;
  beforeAll(async () => {
    h = await startPdpHarness({ policies: `${EXAMPLES}/search` });
  });
  afterAll(() => h?.stop());

  const byEntity = (r: Json) => `${r.type}\0${r.id}`;
  it.each([
    ['search/subject-results.json', 'evaluation', 'subject', byEntity],
    ['search/resource-results.json', 'evaluation', 'resource', byEntity],
    ['search/action-results.json', 'evaluation', 'action', (r: Json) => String(r.name)],
    ['idp/results.json', 'search', 'resource', byEntity],
  ] as const)('%s: every search returns exactly the expected results', async (file, key, kind, keyOf) => {
    const list = cases(file, key);
    expect(list.some((c) => (c.expected as { results: unknown[] }).results.length > 0)).toBe(true);
    expect(await run(h, `/access/v1/search/${kind}`, list, sameResults(keyOf))).toEqual([]);
  });
});
