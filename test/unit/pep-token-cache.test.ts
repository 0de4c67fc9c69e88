/**
 * The in-process AuthZEN PEP's own token and its decision cache (src/agent/governance/authzen-pep.ts),
 * now on the shared single-flight cache (issue 16, eighth round): the bounds that cache enforces
 * hold for them — a token request stalled past the evaluation timeout is not joined, a wall clock
 * stepped back keeps neither a token nor a decision, a failed request is not kept, a decision's
 * life counts from the start of its request, concurrent identical evaluations share one request. Deputy is stood in for by a `fetch` that serves
 * discovery, the token endpoint and the evaluation endpoint, counting token requests.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AuthZenPep } from '../../src/agent/governance/authzen-pep.js';
import { clientKeys } from '../support/clients.js';

const ISSUER = 'https://deputy.example.com';
const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

/** A stand-in Deputy: `token(n)` answers the n-th token request (1-based), or never when it returns undefined. */
function deputy(token: (n: number) => Response | undefined, onEvaluation: () => void = () => {}) {
  const seen = { tokens: 0, evaluations: 0 };
  const fetch: typeof globalThis.fetch = async (input) => {
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
    if (url.pathname === '/.well-known/openid-configuration') {
      return json({ issuer: ISSUER, token_endpoint: `${ISSUER}/token`, jwks_uri: `${ISSUER}/jwks`, token_endpoint_auth_methods_supported: ['private_key_jwt'] });
    }
    if (url.pathname === '/token') {
      const answer = token(++seen.tokens);
      return answer ?? new Promise<Response>(() => {});
    }
    seen.evaluations++;
    onEvaluation();
    return json({ decision: true });
  };
  return { fetch, seen };
}

const granted = (n: number) => json({ access_token: `pep-token-${n}`, token_type: 'Bearer', expires_in: 3600 });
const request = { subject: { type: 'User', id: 'alice' }, action: { name: 'read' }, resource: { type: 'Doc', id: 'd1' } };

afterEach(() => {
  vi.restoreAllMocks();
});

describe('the PEP token cache', () => {
  it('concurrent evaluations share one token request; the token is reused', async () => {
    const stand = deputy(granted);
    const pep = new AuthZenPep({ issuer: ISSUER, pep: { clientId: 'pep', privateKey: (await clientKeys()).privateKey }, fetch: stand.fetch, cacheTtlMs: 0 });
    const answers = await Promise.all(Array.from({ length: 5 }, () => pep.evaluate(request)));
    expect(answers.every((a) => a.decision)).toBe(true);
    expect(await pep.evaluate(request)).toMatchObject({ decision: true });
    expect(stand.seen).toEqual({ tokens: 1, evaluations: 6 });
  });

  it('a token request stalled past the evaluation timeout is not joined: the next evaluation asks again', async () => {
    // The first token request never answers; later ones do.
    const stand = deputy((n) => (n === 1 ? undefined : granted(n)));
    const pep = new AuthZenPep({ issuer: ISSUER, pep: { clientId: 'pep', privateKey: (await clientKeys()).privateKey }, fetch: stand.fetch, cacheTtlMs: 0, timeoutMs: 200 });
    expect(await pep.evaluate(request)).toMatchObject({ decision: false, error: expect.stringMatching(/within 200 ms/) });
    await new Promise((r) => setTimeout(r, 10));
    // Before: this evaluation joined the stalled request and was denied the same way.
    expect(await pep.evaluate(request)).toMatchObject({ decision: true });
    expect(stand.seen.tokens).toBe(2);
  });

  it('a wall clock stepped back to before the token was requested: the token is not used, a new one is requested', async () => {
    const stand = deputy(granted);
    const pep = new AuthZenPep({ issuer: ISSUER, pep: { clientId: 'pep', privateKey: (await clientKeys()).privateKey }, fetch: stand.fetch, cacheTtlMs: 0 });
    await pep.evaluate(request);
    expect(stand.seen.tokens).toBe(1);
    const now = Date.now();
    // Stepped back half an hour: before, the token (used until 30 s before its hour) stood for 1 h 29 min more.
    vi.spyOn(Date, 'now').mockReturnValue(now - 1_800_000);
    await pep.evaluate(request);
    expect(stand.seen.tokens).toBe(2);
  });

  it('concurrent evaluations refused together (the PEP token expired, keys rotated) share one fresh token request', async () => {
    const seen = { tokens: 0, evaluations: 0 };
    let refusing = true;
    const fetch: typeof globalThis.fetch = async (input, init) => {
      const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
      if (url.pathname === '/.well-known/openid-configuration') {
        return json({ issuer: ISSUER, token_endpoint: `${ISSUER}/token`, jwks_uri: `${ISSUER}/jwks`, token_endpoint_auth_methods_supported: ['private_key_jwt'] });
      }
      if (url.pathname === '/token') return granted(++seen.tokens);
      seen.evaluations++;
      const bearer = new Headers(init?.headers).get('authorization');
      // The first token is refused (from when `refusing` is turned on); later ones are accepted.
      return refusing && bearer === 'Bearer pep-token-1' ? json({ error: 'invalid_token' }, 401) : json({ decision: true });
    };
    const pep = new AuthZenPep({ issuer: ISSUER, pep: { clientId: 'pep', privateKey: (await clientKeys()).privateKey }, fetch, cacheTtlMs: 0 });
    refusing = false;
    expect(await pep.evaluate(request)).toMatchObject({ decision: true });
    refusing = true;
    const answers = await Promise.all(Array.from({ length: 6 }, () => pep.evaluate(request)));
    expect(answers.every((a) => a.decision)).toBe(true);
    // Before: each refused evaluation forgot the token again, detaching the request before it (1 + 6 requests).
    expect(seen.tokens).toBe(2);
  });

  it('a refused token request is not kept: the next evaluation asks again', async () => {
    const stand = deputy((n) => (n === 1 ? json({ error: 'invalid_client' }, 401) : granted(n)));
    const pep = new AuthZenPep({ issuer: ISSUER, pep: { clientId: 'pep', privateKey: (await clientKeys()).privateKey }, fetch: stand.fetch, cacheTtlMs: 0 });
    expect(await pep.evaluate(request)).toMatchObject({ decision: false, error: expect.stringMatching(/invalid_client/) });
    expect(await pep.evaluate(request)).toMatchObject({ decision: true });
    expect(stand.seen.tokens).toBe(2);
  });
});

describe('the PEP decision cache', () => {
  const pepFor = async (stand: ReturnType<typeof deputy>) =>
    new AuthZenPep({ issuer: ISSUER, pep: { clientId: 'pep', privateKey: (await clientKeys()).privateKey }, fetch: stand.fetch, cacheTtlMs: 2000 });

  it('concurrent identical evaluations share one request (before: one each)', async () => {
    const stand = deputy(granted);
    const pep = await pepFor(stand);
    const answers = await Promise.all(Array.from({ length: 5 }, () => pep.evaluate(request)));
    expect(answers.every((a) => a.decision)).toBe(true);
    expect(stand.seen.evaluations).toBe(1);
    expect(await pep.evaluate(request)).toMatchObject({ decision: true, cached: true });
  });

  it('an identical evaluation that joined a request its initiator gave up on (its timeout) asks on its own: it is answered, not denied', async () => {
    const seen = { evaluations: 0 };
    let joined!: () => void;
    const sent = new Promise<void>((r) => (joined = r));
    // The first evaluation request hangs until its caller's signal aborts it (as fetch does); later ones answer.
    const fetch: typeof globalThis.fetch = async (_input, init) => {
      if (++seen.evaluations > 1) return json({ decision: true });
      joined();
      return new Promise<Response>((_, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal!.reason as Error)));
    };
    const pep = new AuthZenPep({ issuer: ISSUER, pep: 'none', fetch, cacheTtlMs: 2000, timeoutMs: 300 });
    const first = pep.evaluate(request);
    await sent;
    // Within the first's deadline, an identical evaluation: it joins the first's request.
    await new Promise((r) => setTimeout(r, 100));
    const second = pep.evaluate(request);
    expect(await first).toMatchObject({ decision: false, error: expect.stringMatching(/within 300 ms/) });
    // Before: denied with the first's timeout ("This operation was aborted"), though it had time left.
    expect(await second).toMatchObject({ decision: true, cached: false });
    expect(seen.evaluations).toBe(2);
  });

  it('a decision lives cacheTtlMs from the start of its request, not its arrival; a clock stepped back drops it', async () => {
    let clock = Date.now();
    vi.spyOn(Date, 'now').mockImplementation(() => clock);
    // The PDP's answer arrives 1.5 s after the request was sent.
    const stand = deputy(granted, () => (clock += 1500));
    const pep = await pepFor(stand);
    const start = clock;
    expect(await pep.evaluate(request)).toMatchObject({ decision: true, cached: false });
    clock = start + 1999;
    expect(await pep.evaluate(request)).toMatchObject({ cached: true });
    clock = start + 2000;
    // Before: reused until 2 s after the answer arrived (start + 3.5 s).
    expect(await pep.evaluate(request)).toMatchObject({ cached: false });
    expect(stand.seen.evaluations).toBe(2);
    const second = clock - 1500;
    clock = second - 1;
    // Before: a clock stepped back kept it for the step too.
    expect(await pep.evaluate(request)).toMatchObject({ cached: false });
    expect(stand.seen.evaluations).toBe(3);
  });

  it('a full cache (cacheSize) forgets the decision asked longest ago and keeps the recent ones (before: it emptied)', async () => {
    const stand = deputy(granted);
    const pep = new AuthZenPep({ issuer: ISSUER, pep: 'none', fetch: stand.fetch, cacheTtlMs: 60_000, cacheSize: 3 });
    const on = (id: string) => ({ ...request, resource: { type: 'Doc', id } });
    for (const id of ['d1', 'd2', 'd3', 'd4']) await pep.evaluate(on(id));
    expect(stand.seen.evaluations).toBe(4);
    for (const id of ['d2', 'd3', 'd4']) expect(await pep.evaluate(on(id))).toMatchObject({ cached: true });
    expect(await pep.evaluate(on('d1'))).toMatchObject({ cached: false });
    expect(stand.seen.evaluations).toBe(5);
  });

  it('cacheSize 0 keeps no decision: every evaluation asks the PDP (before: the last one was reused for cacheTtlMs, though the option said none are kept)', async () => {
    const stand = deputy(granted);
    const pep = new AuthZenPep({ issuer: ISSUER, pep: 'none', fetch: stand.fetch, cacheTtlMs: 60_000, cacheSize: 0 });
    expect(await pep.evaluate(request)).toMatchObject({ decision: true, cached: false });
    expect(await pep.evaluate(request)).toMatchObject({ decision: true, cached: false });
    expect(stand.seen.evaluations).toBe(2);
  });
});
