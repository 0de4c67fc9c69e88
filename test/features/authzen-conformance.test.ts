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

  describe('pagination (§8.2) and search semantics (§8.1, §8.4–8.6)', () => {
    const query = { subject: { type: 'user', id: 'alice' }, action: { name: 'view' }, resource: { type: 'record' } };

    it('pages with opaque tokens: count per page, total, and next_token "" on the last page', async () => {
      const ids: string[] = [];
      const counts: number[] = [];
      let page: Json = { limit: 7 };
      for (let i = 0; i < 10; i++) {
        const res = await h.post('/access/v1/search/resource', { ...query, page });
        expect(res.status).toBe(200);
        expect(Object.keys(res.body)[0]).toBe('page');
        expect(res.body.page.total).toBe(20);
        counts.push(res.body.page.count);
        ids.push(...(res.body.results as Json[]).map((r) => r.id as string));
        if (res.body.page.next_token === '') break;
        page = { token: res.body.page.next_token };
      }
      expect(counts).toEqual([7, 7, 6]);
      expect(ids).toEqual(Array.from({ length: 20 }, (_, i) => String(101 + i)));
    });

    it('a token used with another request, with another limit, or forged is a 400', async () => {
      const first = await h.post('/access/v1/search/resource', { ...query, page: { limit: 5 } });
      const token = first.body.page.next_token as string;
      expect(token).not.toBe('');
      const other = await h.post('/access/v1/search/resource', { ...query, action: { name: 'edit' }, page: { token } });
      expect(other.status).toBe(400);
      expect(other.body.error_description).toMatch(/different search request/);
      expect((await h.post('/access/v1/search/resource', { ...query, page: { token, limit: 6 } })).status).toBe(400);
      expect((await h.post('/access/v1/search/resource', { ...query, page: { token: 'eyJvIjo1fQ' } })).status).toBe(400);
      expect((await h.post('/access/v1/search/resource', { ...query, page: { limit: -1 } })).status).toBe(400);
      // The older drafts' `page.next_token` in a request is read as the token; the same limit may be repeated.
      const second = await h.post('/access/v1/search/resource', { ...query, page: { next_token: token, limit: 5 } });
      expect((second.body.results as Json[]).map((r) => r.id)).toEqual(['106', '107', '108', '109', '110']);
    });

    it('ignores the id of the searched entity; an unknown type or action is an empty result', async () => {
      const withId = await h.post('/access/v1/search/resource', { ...query, resource: { type: 'record', id: '999' } });
      expect(withId.body.page.total).toBe(20);
      const subjects = await h.post('/access/v1/search/subject', { subject: { type: 'user', id: 'zed' }, action: { name: 'delete' }, resource: { type: 'record', id: '101' } });
      expect(subjects.body.results).toEqual([{ type: 'user', id: 'alice' }]);
      for (const [kind, body] of [
        ['resource', { ...query, resource: { type: 'spaceship' } }],
        ['subject', { subject: { type: 'robot' }, action: { name: 'view' }, resource: { type: 'record', id: '101' } }],
        ['action', { subject: { type: 'user', id: 'alice' }, resource: { type: 'spaceship', id: '1' } }],
        ['resource', { ...query, action: { name: 'fly' } }],
      ] as const) {
        const res = await h.post(`/access/v1/search/${kind}`, body);
        expect(res.status).toBe(200);
        expect(res.body).toMatchObject({ results: [], page: { next_token: '', count: 0, total: 0 } });
      }
    });

    it('a search request without its required members is a 400', async () => {
      expect((await h.post('/access/v1/search/resource', { subject: { type: 'user', id: 'alice' }, resource: { type: 'record' } })).status).toBe(400);
      expect((await h.post('/access/v1/search/subject', { subject: { id: 'x' }, action: { name: 'view' }, resource: { type: 'record', id: '1' } })).status).toBe(400);
      expect((await h.post('/access/v1/search/action', { subject: { type: 'user', id: 'alice' } })).status).toBe(400);
    });
  });
});
