/**
 * Gateway building blocks without HTTP: secret redaction across chunk boundaries, route
 * matching, path checks, request header filtering, connection configuration, the PDP mapping,
 * and the token cache's single flight.
 */
import { finished } from 'node:stream/promises';
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { matchRoute, ScopeAuthorizer, type GatewayAuthorizationRequest } from '../../src/gateway/authorizer.js';
import { chained, redactText, SecretScrubber, upstreamHeaders } from '../../src/gateway/forward.js';
import { upstreamPath } from '../../src/gateway/gateway.js';
import { MIN_DERIVED_LENGTH, Redactor, RedactorMemo } from '../../src/gateway/redact.js';
import { AllOf, PdpGatewayAuthorizer } from '../../src/gateway/pdp-authorizer.js';
import { connectionConfigSchema, connectionInputSchema, routeSchema, type RouteConfig } from '../../src/vault/connections/config.js';
import { TokenCache, useUntil } from '../../src/vault/connections/oauth-client.js';
import type { Connection } from '../../src/vault/connections/store.js';
import { leaks } from '../support/leaks.js';

async function scrub(chunks: string[], secrets: string[]): Promise<string> {
  return scrubBytes(chunks.map((c) => Buffer.from(c)), secrets);
}

async function scrubBytes(chunks: Buffer[], secrets: string[]): Promise<string> {
  const out: Buffer[] = [];
  const s = Readable.from(chunks).pipe(new SecretScrubber(secrets));
  for await (const c of s) out.push(c as Buffer);
  return Buffer.concat(out).toString();
}

describe('SecretScrubber', () => {
  const secret = 'sk_live_ABCDEFGHIJKLMNOP';
  const text = `{"key":"${secret}","again":"${secret}${secret}","url":"/x?k=${encodeURIComponent('a b&c')}"}`;
  const expected = text.split(secret).join('[redacted]');

  it('redacts every occurrence, whatever the chunk boundaries', async () => {
    for (let cut = 1; cut < text.length; cut++) {
      expect(await scrub([text.slice(0, cut), text.slice(cut)], [secret]), `cut at ${cut}`).toBe(expected);
    }
    expect(await scrub(text.split(''), [secret])).toBe(expected);
  });

  it('redacts URL-encoded forms and the longest of overlapping secrets, and passes other bytes unchanged', async () => {
    const odd = 'p@ss word/+=';
    expect(await scrub([`a=${encodeURIComponent(odd)}&b=${odd}`], [odd])).toBe('a=[redacted]&b=[redacted]');
    expect(await scrub(['xx-secret-long-yy'], ['secret', 'secret-long'])).toBe('xx-[redacted]-yy');
    const binary = Buffer.from([0, 255, 1, 254, 2]).toString('latin1');
    expect(await scrub([binary], [secret])).toBe(binary);
    expect(await scrub(['nothing here'], [])).toBe('nothing here');
  });

  it('redacts header values', () => {
    expect(redactText(`https://x/cb?api_key=${secret}`, [secret])).toBe('https://x/cb?api_key=[redacted]');
  });
});

/** `\uXXXX` for the characters `pick` selects (UTF-16 code units: surrogate pairs for astral ones). */
function jsonEscape(value: string, pick: (c: string, i: number) => boolean = () => true, upper = false): string {
  let out = '';
  [...value].forEach((c, i) => {
    if (!pick(c, i)) return void (out += c);
    for (let k = 0; k < c.length; k++) {
      const hex = c.charCodeAt(k).toString(16).padStart(4, '0');
      out += `\\u${upper ? hex.toUpperCase() : hex}`;
    }
  });
  return out;
}

/** `%XX` for the UTF-8 bytes of the characters `pick` selects. */
function percentEscape(value: string, pick: (c: string, i: number) => boolean = () => true, upper = false): string {
  return [...value]
    .map((c, i) => (pick(c, i) ? [...Buffer.from(c)].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('') : c))
    .map((s) => (upper ? s.replace(/%[0-9a-f]{2}/g, (m) => m.toUpperCase()) : s))
    .join('');
}

/** base64 of `value` inside a larger buffer, starting at byte offset `align` of it. */
function embedded(value: string, align: number, encoding: 'base64' | 'base64url'): string {
  return Buffer.concat([Buffer.from('{"x":"'.slice(0, align + 3)), Buffer.from(value), Buffer.from('","more":"data"}')]).toString(encoding);
}

const everyOther = (_: string, i: number) => i % 2 === 0;
const nonAlnum = (c: string) => !/[A-Za-z0-9]/.test(c);

/** Encodings of a value an upstream may echo, each of which must be redacted (issue 10.5). */
const ENCODINGS: ReadonlyArray<readonly [string, (v: string) => string]> = [
  ['as is', (v) => v],
  ['upper case', (v) => v.toUpperCase()],
  ['lower case', (v) => v.toLowerCase()],
  ['alternating case', (v) => [...v].map((c, i) => (i % 2 ? c.toUpperCase() : c.toLowerCase())).join('')],
  ['base64, padded', (v) => Buffer.from(v).toString('base64')],
  ['base64, unpadded', (v) => Buffer.from(v).toString('base64').replace(/=+$/, '')],
  ['base64url', (v) => Buffer.from(v).toString('base64url')],
  ['base64 inside a larger blob, alignment 0', (v) => embedded(v, 0, 'base64')],
  ['base64 inside a larger blob, alignment 1', (v) => embedded(v, 1, 'base64')],
  ['base64 inside a larger blob, alignment 2', (v) => embedded(v, 2, 'base64')],
  ['base64url inside a larger blob, alignment 1', (v) => embedded(v, 1, 'base64url')],
  ['base64url inside a larger blob, alignment 2', (v) => embedded(v, 2, 'base64url')],
  ['base64, percent-encoded', (v) => encodeURIComponent(Buffer.from(v).toString('base64'))],
  ['hex, lower case', (v) => Buffer.from(v).toString('hex')],
  ['hex, upper case', (v) => Buffer.from(v).toString('hex').toUpperCase()],
  ['JSON \\u escapes, every character', (v) => jsonEscape(v)],
  ['JSON \\u escapes, upper-case digits', (v) => jsonEscape(v, undefined, true)],
  ['JSON \\u escapes, every other character', (v) => jsonEscape(v, everyOther)],
  ['JSON \\u escapes, punctuation only', (v) => jsonEscape(v, nonAlnum)],
  ['JSON with escaped solidus', (v) => JSON.stringify(v).slice(1, -1).replace(/\//g, '\\/')],
  ['percent escapes, lower case', (v) => percentEscape(v)],
  ['percent escapes, upper case', (v) => percentEscape(v, undefined, true)],
  ['percent escapes, every other character', (v) => percentEscape(v, everyOther)],
  ['encodeURIComponent', (v) => encodeURIComponent(v)],
  ['form encoding (+ for space)', (v) => new URLSearchParams({ v }).toString().slice(2)],
  ['form encoding, upper case', (v) => new URLSearchParams({ v }).toString().slice(2).toUpperCase()],
];

/** Credential values: an API key with base64 punctuation, a header value with a scheme, non-ASCII. */
const VALUES = ['sk_live_Ab/+9xYz=Q-Ru~long', 'Bearer eyJhbGciOi.J9-_x/Y+z==', 'pässwörd-ünïcode-Ω-🔑-key'];

describe('credential redaction in other encodings (issue 10.5)', () => {
  for (const value of VALUES) {
    for (const [name, encode] of ENCODINGS) {
      // Case-insensitivity is for ASCII letters (credentials are ASCII); non-ASCII ones are matched
      // in the value's own, all-upper and all-lower case only.
      if (name === 'alternating case' && !/^[\x00-\x7f]*$/.test(value)) continue;
      it(`${JSON.stringify(value)}: ${name}`, async () => {
        const form = encode(value);
        const text = `before ${form} after`;
        expect(leaks(text, value), 'the oracle sees the unredacted form').toBe(true);
        const header = redactText(text, [value]);
        expect(leaks(header, value), header).toBe(false);
        // Exactly the encoded value is replaced (base64 padding aside); inside a larger blob, the
        // characters that also encode the neighbouring bytes remain.
        expect(header).toMatch(name.includes('larger blob') ? /^before .*\[redacted\].* after$/ : /^before \[redacted\](=|%3D)* after$/);
        // Whatever the chunk boundaries: every two-chunk cut, and one byte at a time.
        const bytes = Buffer.from(text);
        for (let cut = 1; cut < bytes.length; cut++) {
          const out = await scrubBytes([bytes.subarray(0, cut), bytes.subarray(cut)], [value]);
          expect(out, `cut at ${cut}`).toBe(header);
        }
        expect(await scrubBytes([...bytes].map((b) => Buffer.from([b])), [value])).toBe(header);
      });
    }
  }

  it('finds the bare secret inside an encoded header value that quotes it with other text', async () => {
    const secret = 'tok_9f8e7d6c5b4a39281706';
    for (const blob of [Buffer.from(`{"headers":{"authorization":"Bearer ${secret}"}}`).toString('base64'), jsonEscape(`Authorization: Bearer ${secret}`)]) {
      expect(leaks(await scrubBytes([Buffer.from(blob)], [secret, `Bearer ${secret}`]), secret)).toBe(false);
    }
  });

  it('redacts a raw secret right after a percent sign or a backslash (no escape swallows its first characters)', async () => {
    const hexKey = 'deadbeefcafe0123456789ab';
    expect(await scrub([`100%${hexKey}`], [hexKey])).toBe('100%[redacted]');
    expect(await scrub([`a\\${hexKey}`], [hexKey])).toBe('a\\[redacted]');
    expect(await scrub([`C:\\u0041${hexKey}`], [hexKey])).toBe('C:\\u0041[redacted]');
  });

  it('passes unrelated text unchanged: other base64, hex, escapes, and values too short for encoded forms', async () => {
    const value = 'sk_live_Ab/+9xYz=Q-Ru~long';
    const unrelated = [
      Buffer.from('some other credential entirely, sk_test_zzzz').toString('base64'),
      Buffer.from('another value').toString('hex'),
      '\\u0041\\u00e9 %41%2b %zz \\x \\u12 100% a+b',
      JSON.stringify({ lorem: 'ipsum dolor sit amet', n: 12345678 }),
    ].join('\n');
    expect(await scrub([unrelated], [value])).toBe(unrelated);
    expect(redactText(unrelated, [value])).toBe(unrelated);
    const short = 'k'.repeat(MIN_DERIVED_LENGTH - 1);
    expect(new Redactor([short]).needles.map(String)).toEqual([short]);
    expect(new Redactor([]).empty).toBe(true);
    expect(new Redactor(['']).empty).toBe(true);
  });

  it('builds the needles once: one redactor serves headers and every chunk of a body', async () => {
    const value = 'sk_live_Ab/+9xYz=Q-Ru~long';
    const redactor = new Redactor([value, `Bearer ${value}`]);
    expect(redactText(Buffer.from(value).toString('base64'), redactor)).toMatch(/^\[redacted\]=*$/);
    const out: Buffer[] = [];
    for await (const c of Readable.from([Buffer.from(`x ${value.toUpperCase()} y`)]).pipe(new SecretScrubber(redactor))) out.push(c as Buffer);
    expect(Buffer.concat(out).toString()).toBe('x [redacted] y');
  });
});

describe('RedactorMemo', () => {
  it('gives one redactor per list of values, finds what a fresh one finds, and keeps at most max lists', () => {
    const memo = new RedactorMemo(2);
    const a = memo.get(['sk_live_value_one', 'Bearer sk_live_value_one'], 0);
    expect(memo.get(['sk_live_value_one', 'Bearer sk_live_value_one'], 1)).toBe(a);
    // Lists that a join would confuse are different keys.
    expect(memo.get(['a\u0000b'], 2)).not.toBe(memo.get(['a', 'b'], 2));
    expect(memo.size).toBe(2);
    // The oldest first: `a` was dropped by the two lists above.
    expect(memo.get(['sk_live_value_one', 'Bearer sk_live_value_one'], 3)).not.toBe(a);
    const body = Buffer.from(`x ${Buffer.from('sk_live_value_one').toString('base64')} y`);
    expect(memo.get(['sk_live_value_one'], 4).find(body)).toEqual(new Redactor(['sk_live_value_one']).find(body));
    expect(memo.get([], 5).empty).toBe(true);
  });

  it('keeps a redactor (the secret, spelled otherwise) no longer than maxAgeMs after it was built', () => {
    const memo = new RedactorMemo(256, 2000);
    const a = memo.get(['sk_live_value_one'], 0);
    expect(memo.get(['sk_live_value_one'], 1999)).toBe(a);
    const b = memo.get(['sk_live_value_two'], 1000);
    expect(memo.get(['sk_live_value_one'], 2000)).not.toBe(a); // rebuilt at 2000
    expect(memo.get(['sk_live_value_three'], 3000)).toBeDefined(); // sweeps b (built at 1000)
    expect(memo.size).toBe(2);
    expect(memo.get(['sk_live_value_two'], 3001)).not.toBe(b);
  });
});

describe('routes and paths', () => {
  const routes: RouteConfig[] = [
    routeSchema.parse({ methods: ['GET'], path: '/repos/**', action: 'read' }),
    routeSchema.parse({ methods: ['POST'], path: '/repos/*/*/issues', action: 'create_issue', scopes: ['w'] }),
  ];
  it('matches methods, single-segment and rest wildcards; HEAD follows GET', () => {
    expect(matchRoute(routes, 'GET', '/repos/a/b/contents/x')?.action).toBe('read');
    expect(matchRoute(routes, 'GET', '/repos')?.action).toBe('read');
    expect(matchRoute(routes, 'HEAD', '/repos/a')?.action).toBe('read');
    expect(matchRoute(routes, 'POST', '/repos/a/b/issues')?.action).toBe('create_issue');
    expect(matchRoute(routes, 'POST', '/repos/a/b/c/issues')).toBeUndefined();
    expect(matchRoute(routes, 'POST', '/repos/a/issues')).toBeUndefined();
    expect(matchRoute(routes, 'DELETE', '/repos/a')).toBeUndefined();
    expect(matchRoute(routes, 'GET', '/users')).toBeUndefined();
  });

  it('keeps paths under the base: dot segments in any spelling are refused, encoded slashes kept', () => {
    expect(upstreamPath('')).toBe('/');
    expect(upstreamPath('/projects/group%2Fproject')).toBe('/projects/group%2Fproject');
    for (const bad of ['/a/../b', '/%2e%2e/x', '/.%2E/x', '/a/..%2fb', '/a/.', '/a\\b', '/a%5c..', '/a%00']) {
      expect(() => upstreamPath(bad), bad).toThrow(/not allowed|malformed/);
    }
  });
});

describe('upstream request headers', () => {
  it('drops the agent\'s credentials, hop-by-hop and forwarding fields; the injected credential wins', () => {
    const out = upstreamHeaders(
      {
        authorization: 'DPoP agent-token', dpop: 'proof', cookie: 'a=1', connection: 'close, x-hop', 'x-hop': '1', te: 'trailers',
        'x-forwarded-for': '1.2.3.4', forwarded: 'for=1.2.3.4', host: 'deputy', 'accept-encoding': 'gzip', 'x-api-key': 'agent', accept: 'application/json',
        'proxy-authorization': 'Basic x',
      },
      [['X-Api-Key', 'injected']],
      { 'x-request-id': 'r1' },
    );
    expect(out).toEqual({ accept: 'application/json', 'x-request-id': 'r1', 'accept-encoding': 'identity', 'x-api-key': 'injected' });
  });

  it('a polluted Object.prototype adds no field; a field named __proto__ is a field, not the prototype', () => {
    const polluted = Object.prototype as Record<string, unknown>;
    polluted['x-polluted'] = 'yes';
    try {
      const incoming = JSON.parse('{"accept": "text/plain", "__proto__": "kept"}') as Record<string, string>;
      const out = upstreamHeaders(incoming, [['X-Api-Key', 'injected']], {});
      expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
      expect(Object.keys(out).sort()).toEqual(['__proto__', 'accept', 'accept-encoding', 'x-api-key']);
      expect(Object.getOwnPropertyDescriptor(out, '__proto__')?.value).toBe('kept');
    } finally {
      delete polluted['x-polluted'];
    }
  });
});

describe('connection configuration', () => {
  const base = { id: 'gh', baseUrl: 'https://api.github.com' };
  it('accepts each kind and names the field of a mistake', () => {
    expect(connectionConfigSchema.parse({ ...base, kind: 'api_key', header: 'Authorization', scheme: 'Bearer', secret: { env: 'GH' } })).toMatchObject({ requiredScopes: [], routes: [], allowInsecureHttp: false });
    expect(connectionInputSchema.parse({ ...base, kind: 'api_key', query: 'api_key', secret: 'inline' }).secret).toBe('inline');
    const issues = (input: unknown) => connectionConfigSchema.safeParse(input).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];
    expect(issues({ ...base, kind: 'api_key' })).toEqual(['header: give exactly one of header or query']);
    expect(issues({ ...base, kind: 'api_key', header: 'Cookie' })).toEqual(['header: "Cookie" cannot carry a credential']);
    expect(issues({ ...base, kind: 'api_key', header: 'X', secret: 'inline' })[0]).toMatch(/^secret:/); // config takes references only
    expect(issues({ ...base, id: 'callback', kind: 'api_key', header: 'X' })[0]).toMatch(/reserved/);
    expect(issues({ ...base, baseUrl: 'http://plain', kind: 'api_key', header: 'X' })[0]).toMatch(/allowInsecureHttp/);
    expect(issues({ ...base, kind: 'oauth2_client_credentials', clientId: 'c' })).toEqual(['issuer: give issuer (discovery) or tokenEndpoint']);
    expect(issues({ ...base, kind: 'oauth2_user', clientId: 'c', tokenEndpoint: 'https://as/token' })[0]).toMatch(/authorizationEndpoint/);
    expect(issues({ ...base, kind: 'on_behalf_of', grant: 'entra_obo', clientId: 'c', issuer: 'https://as', clientAuth: 'none' })[0]).toMatch(/public clients/);
  });
});

const connection = (settings: Record<string, unknown>): Connection => ({
  id: 'crm', kind: 'api_key', settings: connectionConfigSchema.parse({ id: 'crm', kind: 'api_key', baseUrl: 'https://crm', header: 'X', ...settings }) as Connection['settings'],
  hasSecret: true, secretVersion: 1, secretUpdatedAt: 0, source: 'config', createdAt: 0, updatedAt: 0,
});

function request(conn: Connection, method: string, path: string, scopes: string[]): GatewayAuthorizationRequest {
  const route = matchRoute(conn.settings.routes, method, path);
  return {
    subject: { userId: 'u1', userAttrs: { groups: [], roles: [] }, chain: ['a', 'b'], agentId: 'b', scopes: new Set(scopes), token: 'tok', jti: 'j' },
    action: { name: route?.action ?? `http:${method}`, method, path, route },
    resource: { type: 'connection', id: conn.id, kind: conn.kind, connection: conn },
  };
}

describe('authorizers', () => {
  const conn = connection({ requiredScopes: ['crm'], routes: [{ methods: ['DELETE'], path: '/c/*', action: 'crm.delete', scopes: ['crm.write'] }] });

  it('scopes: required and route scopes, and a route for every call when routes are listed', async () => {
    const a = new ScopeAuthorizer();
    expect(await a.authorize(request(conn, 'DELETE', '/c/1', ['crm', 'crm.write']))).toEqual({ allowed: true });
    expect(await a.authorize(request(conn, 'DELETE', '/c/1', ['crm']))).toMatchObject({ allowed: false, reason: expect.stringMatching(/"crm.write"/) });
    expect(await a.authorize(request(conn, 'GET', '/c/1', ['crm', 'crm.write']))).toMatchObject({ allowed: false, reason: expect.stringMatching(/no route for GET \/c\/1/) });
  });

  it('pdp: the AuthZEN evaluation carries the token as subject, the tool or method action, the connection as resource', async () => {
    const seen: unknown[] = [];
    const pdp = new PdpGatewayAuthorizer(
      { evaluate: async (input) => (seen.push(input), { decision: false, denial: { kind: 'forbidden', admin: 'admin reason', user: 'user reason', policies: ['p1'] } }) },
      { issuer: 'https://deputy', declaresAction: (n) => n === 'crm.delete', adminReasons: false },
    );
    expect(await pdp.authorize(request(conn, 'DELETE', '/c/1', ['crm']))).toMatchObject({ allowed: false, reason: 'user reason' });
    expect(seen[0]).toEqual({
      subject: { type: 'Agent', id: 'b', properties: { token: 'tok' } },
      action: { name: 'crm.delete', properties: { method: 'DELETE', path: '/c/1', connection: 'crm', tool: 'crm.delete' } },
      resource: { type: 'Resource', id: 'crm', properties: { audience: 'https://deputy/gw/crm', owner: 'u1', scope: 'crm.write' } },
      context: {},
    });
    const plain = connection({ requiredScopes: ['crm'] });
    expect(pdp.evaluation(request(plain, 'PATCH', '/x', [])).action.name).toBe('write');
    expect(pdp.evaluation(request(plain, 'HEAD', '/x', [])).action.name).toBe('read');
    // AllOf: the first refusal wins and later authorizers are not asked.
    const count = seen.length;
    const denied = await new AllOf(new ScopeAuthorizer(), pdp).authorize(request(conn, 'GET', '/c/1', ['crm']));
    expect(denied).toMatchObject({ allowed: false, reason: expect.stringMatching(/no route/) });
    expect(seen.length).toBe(count);
  });
});

describe('token cache', () => {
  it('shares one fetch among concurrent callers, reuses until the margin before expiry, and refetches after drop', async () => {
    const cache = new TokenCache();
    let fetches = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const fetch = async () => {
      fetches += 1;
      await gate;
      return { value: `t${fetches}`, useUntil: 10_000 };
    };
    const all = Promise.all([cache.get('k', fetch, 0), cache.get('k', fetch, 0), cache.get('k', fetch, 0)]);
    release();
    expect(await all).toEqual(['t1', 't1', 't1']);
    expect(await cache.get('k', fetch, 9_999)).toBe('t1');
    expect(await cache.get('k', fetch, 10_000)).toBe('t2');
    cache.drop('k');
    expect(await cache.get('k', fetch, 0)).toBe('t3');
    // A failed fetch is not cached.
    await expect(cache.get('x', async () => { throw new Error('down'); }, 0)).rejects.toThrow('down');
    expect(await cache.get('x', async () => ({ value: 'ok', useUntil: 1 }), 0)).toBe('ok');
  });

  it('the shared cache\'s bounds (issue 16, eighth round): a stalled fetch is not joined past its bound, a clock stepped back drops a token, no token past 24 h, the size is bounded', async () => {
    let fetches = 0;
    const never = () => new Promise<never>(() => { fetches += 1; });
    const fetch = (useUntil: number) => async () => ({ value: `t${(fetches += 1)}`, useUntil });
    // A fetch stalled for 30 s is joined; one stalled for longer is not (before: joined for ever).
    const stalled = new TokenCache({ joinWithinMs: 30_000 });
    void stalled.get('k', never, 0);
    void stalled.get('k', fetch(100_000), 30_000);
    expect(fetches).toBe(1);
    const late = stalled.get('k', fetch(100_000), 30_001);
    expect(fetches).toBe(2);
    expect(await late).toBe('t2');
    // The wall clock stepped back to before the fetch began: not used (before: used until its useUntil).
    const cache = new TokenCache();
    expect(await cache.get('c', fetch(2_000_000), 1_000_000)).toBe('t3');
    expect(await cache.get('c', fetch(2_000_000), 1_500_000)).toBe('t3');
    expect(await cache.get('c', fetch(2_000_000), 999_999)).toBe('t4');
    // An AS lifetime of two days: used for 24 h from the fetch's start, not 48 h.
    expect(await cache.get('long', fetch(2 * TokenCache.MAX_USE_MS), 0)).toBe('t5');
    expect(await cache.get('long', fetch(2 * TokenCache.MAX_USE_MS), TokenCache.MAX_USE_MS - 1)).toBe('t5');
    expect(await cache.get('long', fetch(2 * TokenCache.MAX_USE_MS), TokenCache.MAX_USE_MS)).toBe('t6');
    // At most maxEntries tokens: a third key empties the cache.
    const small = new TokenCache({ maxEntries: 2 });
    await small.get('a', fetch(10_000), 0);
    await small.get('b', fetch(10_000), 0);
    await small.get('c', fetch(10_000), 0);
    expect(await small.get('a', fetch(10_000), 0)).toBe('t10');
  });

  it('a token dropped for one connection (its upstream answered 401) leaves another connection\'s fetch under way shared and kept', async () => {
    const cache = new TokenCache();
    let fetches = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const held = async () => {
      fetches += 1;
      await gate;
      return { value: `b${fetches}`, useUntil: 10_000 };
    };
    const first = cache.get('conn-b', held, 0);
    // Connection A's upstream refuses its token while B's fetch is under way, over and over.
    cache.drop('conn-a');
    // Before: B's callers no longer joined its fetch (one token request each)…
    const second = cache.get('conn-b', held, 1);
    cache.drop('conn-a');
    release();
    expect(await Promise.all([first, second])).toEqual(['b1', 'b1']);
    // …and its token was not kept: the next call fetched again.
    expect(await cache.get('conn-b', held, 2)).toBe('b1');
    expect(fetches).toBe(1);
    // The dropped key's own fetch under way is still detached: not joined, not kept.
    let releaseA!: () => void;
    const gateA = new Promise<void>((r) => (releaseA = r));
    const heldA = async () => {
      const n = (fetches += 1);
      await gateA;
      return { value: `a${n}`, useUntil: 10_000 };
    };
    const stale = cache.get('conn-a', heldA, 3);
    cache.drop('conn-a');
    const fresh = cache.get('conn-a', heldA, 4);
    releaseA();
    expect(await Promise.all([stale, fresh])).toEqual(['a2', 'a3']);
    expect(await cache.get('conn-a', heldA, 5)).toBe('a3');
    expect(fetches).toBe(3);
  });

  it('calls refused together (the token revoked upstream) share one fresh fetch; a token refused after a newer one is cached drops nothing', async () => {
    const cache = new TokenCache();
    let fetches = 0;
    const fetch = async () => ({ value: `t${(fetches += 1)}`, useUntil: Date.now() + 60_000 });
    expect(await cache.get('k', fetch)).toBe('t1');
    // Six calls used t1 and were refused; each drops it and asks again, concurrently.
    const again = Array.from({ length: 6 }, () => {
      cache.drop('k', 't1');
      return cache.get('k', fetch);
    });
    // Before: each drop detached the fetch before it (six fetches, none kept).
    expect(await Promise.all(again)).toEqual(Array(6).fill('t2'));
    cache.drop('k', 't1');
    expect(await cache.get('k', fetch)).toBe('t2');
    expect(fetches).toBe(2);
    cache.drop('k', 't2');
    expect(await cache.get('k', fetch)).toBe('t3');
  });

  it('uses a token until 10% of its life (5-60 s) before expiry; 300 s when the AS gave no expires_in', () => {
    expect(useUntil(3600, 0)).toBe((3600 - 60) * 1000);
    expect(useUntil(100, 0)).toBe((100 - 10) * 1000);
    expect(useUntil(20, 0)).toBe((20 - 5) * 1000);
    expect(useUntil(undefined, 0)).toBe((300 - 30) * 1000);
  });
});

describe('chained response stages (stream.pipeline without its per-call AbortController)', () => {
  it('passes the bytes through every stage to the end', async () => {
    const out = chained([Readable.from([Buffer.from('ab'), Buffer.from('cd')]), new PassThrough(), new SecretScrubber(['bc'])]);
    const chunks: Buffer[] = [];
    for await (const c of out) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('a[redacted]d');
  });

  it('an error in any stage destroys them all; a consumer that goes away stops the source', async () => {
    const source = new PassThrough();
    const middle = new PassThrough();
    const out = chained([source, middle, new PassThrough()]);
    middle.destroy(new Error('size limit'));
    await expect(finished(out)).rejects.toThrow('size limit');
    expect(source.destroyed).toBe(true);
    const upstream = new PassThrough();
    const last = chained([upstream, new PassThrough()]);
    last.destroy();
    await new Promise((r) => setImmediate(r));
    expect(upstream.destroyed).toBe(true);
  });
});
