/**
 * The admin API's dialect helpers (src/http/admin-api.ts): spelling, timestamps, pagination.
 * The HTTP behaviour on every endpoint is in test/features/admin-dialect.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { InvalidRequest } from '../../src/errors/index.js';
import { nextCursor, pageRequest, parseAdminBody, schemaMembers, snakeCase, toWire, wireFields, wireTime } from '../../src/http/admin-api.js';

describe('member names', () => {
  it('snake-cases camelCase names and leaves snake_case ones alone', () => {
    expect(snakeCase('maxDelegationDepth')).toBe('max_delegation_depth');
    expect(snakeCase('baseUrl')).toBe('base_url');
    expect(snakeCase('jwks_uri')).toBe('jwks_uri');
    expect(snakeCase('id')).toBe('id');
  });

  it('renames top-level members only: nested values are passed through', () => {
    expect(toWire({ baseUrl: 'x', authorizationParams: { accessType: 'y' } })).toEqual({ base_url: 'x', authorization_params: { accessType: 'y' } });
  });

  it('lists the members of an object schema and of every option of a union', () => {
    const a = z.strictObject({ kind: z.literal('a'), baseUrl: z.string() });
    const b = z.strictObject({ kind: z.literal('b'), tokenEndpoint: z.string() });
    expect(schemaMembers(a)).toEqual(['kind', 'baseUrl']);
    expect(schemaMembers(z.discriminatedUnion('kind', [a, b]))).toEqual(['kind', 'baseUrl', 'tokenEndpoint']);
  });
});

describe('parseAdminBody', () => {
  const schema = z
    .strictObject({ maxDelegationDepth: z.number().int().min(1), jwks_uri: z.string().optional() })
    .refine((v) => v.maxDelegationDepth < 5 || v.jwks_uri !== undefined, { message: 'maxDelegationDepth over 4 needs jwks_uri', path: ['maxDelegationDepth'] });
  const fields = wireFields(schemaMembers(schema));
  const parse = (body: unknown) => parseAdminBody(schema, body, 'thing', fields);
  const refusal = (body: unknown): string => {
    try {
      parse(body);
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidRequest);
      return (err as InvalidRequest).description;
    }
    throw new Error('not refused');
  };

  it('reads the wire spelling into the internal one', () => {
    expect(parse({ max_delegation_depth: 2, jwks_uri: 'u' })).toEqual({ maxDelegationDepth: 2, jwks_uri: 'u' });
  });

  it('refuses every other spelling that snake-cases to a member, naming the right one', () => {
    expect(refusal({ maxDelegationDepth: 2 })).toBe('invalid thing: maxDelegationDepth is not a field; use max_delegation_depth');
    expect(refusal({ max_delegation_depth: 2, jwksUri: 'u' })).toBe('invalid thing: jwksUri is not a field; use jwks_uri');
  });

  it('refuses unknown members by name, and names failing members and messages in the wire spelling', () => {
    expect(refusal({ max_delegation_depth: 2, colour: 'blue' })).toBe('invalid thing: "colour" is not a field');
    expect(refusal({ max_delegation_depth: 0 })).toMatch(/^invalid thing: max_delegation_depth: /);
    expect(refusal({ max_delegation_depth: 7 })).toBe('invalid thing: max_delegation_depth: max_delegation_depth over 4 needs jwks_uri');
  });

  it('refuses a body that is not a JSON object', () => {
    for (const body of [undefined, null, 'x', 3, [1]]) expect(refusal(body)).toBe('thing must be a JSON object');
  });
});

describe('wireTime', () => {
  it('gives RFC 3339 UTC for ISO strings, Dates and epoch seconds; null for none', () => {
    expect(wireTime(1_700_000_000)).toBe('2023-11-14T22:13:20.000Z');
    expect(wireTime(new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 6)))).toBe('2026-01-02T03:04:05.006Z');
    expect(wireTime('2026-01-02T04:04:05.006+01:00')).toBe('2026-01-02T03:04:05.006Z');
    expect(wireTime(undefined)).toBeNull();
    expect(wireTime(null)).toBeNull();
  });
});

describe('pagination', () => {
  const refusal = (query: Record<string, unknown>, listing = 'agents', valid?: (k: string) => boolean): string => {
    try {
      pageRequest(query, listing, valid);
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidRequest);
      return (err as InvalidRequest).description;
    }
    throw new Error('not refused');
  };

  it('defaults to 50 and accepts 1 to 200', () => {
    expect(pageRequest({}, 'agents')).toEqual({ limit: 50 });
    expect(pageRequest({ limit: '1' }, 'agents')).toEqual({ limit: 1 });
    expect(pageRequest({ limit: '200' }, 'agents')).toEqual({ limit: 200 });
    for (const limit of ['0', '201', '-1', '1.5', '1e2', '', 'x', ['1', '2'], '00000000001']) {
      expect(refusal({ limit })).toBe('limit must be an integer from 1 to 200');
    }
  });

  it('round-trips a cursor within its listing only', () => {
    const cursor = nextCursor('agents', 'agent:with:colons');
    expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(pageRequest({ cursor }, 'agents')).toEqual({ limit: 50, after: 'agent:with:colons' });
    expect(refusal({ cursor }, 'connections')).toMatch(/^cursor is malformed/);
    expect(nextCursor('agents', undefined)).toBeNull();
  });

  it('refuses malformed cursors and keys the listing refuses', () => {
    for (const cursor of ['', '!!', 'a'.repeat(401), Buffer.from('agents:').toString('base64url'), ['a', 'b']]) {
      expect(refusal({ cursor })).toMatch(/^cursor is malformed/);
    }
    const digits = (k: string) => /^\d+$/.test(k);
    expect(pageRequest({ cursor: nextCursor('receipts/a', '7') }, 'receipts/a', digits)).toEqual({ limit: 50, after: '7' });
    expect(refusal({ cursor: nextCursor('receipts/a', 'x') }, 'receipts/a', digits)).toMatch(/^cursor is malformed/);
  });
});
