/**
 * The agent library's error classification (`deputyErrorOf`, `deputyErrorFromResponse`): which
 * responses are Deputy's refusals and which typed error each becomes — and what the official
 * `openai` and `@anthropic-ai/sdk` clients keep of a Deputy refusal (a local server answering as
 * Deputy's gateway does: 402 problem, 403 access_denied, 401 DPoP challenge).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BudgetExceededError, DeputyProtocolError, PolicyDeniedError, deputyErrorFromResponse, deputyErrorOf } from '../../src/agent/index.js';

const PROBLEM = {
  type: 'https://deputy.example.com/problems/budget-exceeded',
  title: 'Budget exhausted',
  status: 402,
  detail: 'agent "travel-agent" spent 1000 of 1000 requests this day',
  budget: 'travel-daily',
  unit: 'requests',
  limit: 1000,
  spent: 1000,
  resets_at: '2026-11-30T00:00:00Z',
};

const problemHeaders = { 'content-type': 'application/problem+json', 'retry-after': '120' };
const dpopChallenge = { 'www-authenticate': 'DPoP algs="ES256", error="invalid_token", error_description="token revoked"', 'content-type': 'application/json' };

describe('deputyErrorOf', () => {
  it('402 problem → BudgetExceededError with every member and Retry-After', () => {
    const err = deputyErrorOf(402, problemHeaders, PROBLEM);
    expect(err).toBeInstanceOf(BudgetExceededError);
    expect(err).toMatchObject({ status: 402, error: 'budget_exceeded', description: PROBLEM.detail, retryAfterSeconds: 120, problem: PROBLEM });
    expect((err as BudgetExceededError).problem.resets_at).toBe('2026-11-30T00:00:00Z');
  });

  it('Retry-After as an HTTP date; a 402 that is not a problem is not Deputy\'s', () => {
    const at = new Date(Date.now() + 60_000).toUTCString();
    expect((deputyErrorOf(402, { 'content-type': 'application/problem+json', 'retry-after': at }, PROBLEM) as BudgetExceededError).retryAfterSeconds).toBeGreaterThan(50);
    expect(deputyErrorOf(402, { 'content-type': 'text/html' }, '<p>pay</p>')).toBeUndefined();
  });

  it('403 access_denied → PolicyDeniedError with the reason; another 403 is the upstream\'s', () => {
    const err = deputyErrorOf(403, {}, { error: 'access_denied', error_description: 'Sub-agents may not delete.' });
    expect(err).toBeInstanceOf(PolicyDeniedError);
    expect((err as PolicyDeniedError).reason).toBe('Sub-agents may not delete.');
    expect(deputyErrorOf(403, {}, { message: 'forbidden by the API' })).toBeUndefined();
  });

  it('401 with a DPoP or Bearer challenge → DeputyProtocolError; a 401 without one is not Deputy\'s', () => {
    expect(deputyErrorOf(401, dpopChallenge, { error: 'invalid_token', error_description: 'token revoked' })).toMatchObject({ error: 'invalid_token', description: 'token revoked', status: 401 });
    expect(deputyErrorOf(401, { 'www-authenticate': 'Bearer realm="deputy", error="invalid_token"' }, undefined)).toMatchObject({ error: 'invalid_token' });
    expect(deputyErrorOf(401, {}, { error: 'invalid_token' })).toBeUndefined();
    expect(deputyErrorOf(401, { 'www-authenticate': 'Basic realm="x"' }, { error: 'invalid_token' })).toBeUndefined();
  });

  it('424 connection_required keeps connect_uri; other statuses are not classified', () => {
    const err = deputyErrorOf(424, {}, { error: 'connection_required', error_description: 'connect first', connect_uri: 'https://deputy/connect/drive?ticket=t' });
    expect(err).toBeInstanceOf(DeputyProtocolError);
    expect(err!.details).toEqual({ connect_uri: 'https://deputy/connect/drive?ticket=t' });
    expect(deputyErrorOf(500, {}, { error: 'server_error' })).toBeUndefined();
    expect(deputyErrorOf(404, {}, { error: 'not_found' })).toBeUndefined();
  });

  it('provider-compatible bodies: a nested error object, or that object alone (openai\'s APIError.error)', () => {
    const nested = { error: { type: 'access_denied', code: 'access_denied', message: 'Sub-agents may not use this model.' } };
    expect(deputyErrorOf(403, {}, nested)).toMatchObject({ name: 'PolicyDeniedError', reason: 'Sub-agents may not use this model.' });
    expect(deputyErrorOf(403, {}, nested.error)).toMatchObject({ name: 'PolicyDeniedError', reason: 'Sub-agents may not use this model.' });
    const problem = { ...PROBLEM, error: { type: 'budget_exceeded', code: 'budget_exceeded', message: PROBLEM.detail, budget: 'travel-daily' } };
    const fromBody = deputyErrorOf(402, problemHeaders, problem) as BudgetExceededError;
    expect(fromBody).toMatchObject({ error: 'budget_exceeded', retryAfterSeconds: 120 });
    expect(fromBody.problem.budget).toBe('travel-daily');
    const fromSdk = deputyErrorOf(402, problemHeaders, problem.error) as BudgetExceededError;
    expect(fromSdk).toBeInstanceOf(BudgetExceededError);
    expect(fromSdk.problem.budget).toBe('travel-daily');
    expect(deputyErrorOf(401, dpopChallenge, { error: { code: 'invalid_token', message: 'token revoked' } })).toMatchObject({ error: 'invalid_token', description: 'token revoked' });
  });

  it('deputyErrorFromResponse leaves the response readable, and reads only small JSON bodies of a declared length', async () => {
    const text = JSON.stringify(PROBLEM);
    const res = new Response(text, { status: 402, headers: { ...problemHeaders, 'content-length': String(Buffer.byteLength(text)) } });
    expect(await deputyErrorFromResponse(res)).toMatchObject({ problem: PROBLEM });
    expect(await res.json()).toEqual(PROBLEM);
    expect(await deputyErrorFromResponse(new Response('not json', { status: 403, headers: { 'content-length': '8' } }))).toBeUndefined();
    // An error stream with no end (no Content-Length) is never waited for.
    const endless = new ReadableStream({ pull: () => new Promise<void>(() => undefined) });
    expect(await deputyErrorFromResponse(new Response(endless, { status: 403, headers: { 'content-type': 'application/json' } }))).toBeUndefined();
    expect(await deputyErrorFromResponse(new Response('{}', { status: 200 }))).toBeUndefined();
  });
});

describe('what the official SDKs keep of a Deputy refusal', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      const path = req.url ?? '';
      req.resume();
      if (path.includes('/budget/')) return void res.writeHead(402, problemHeaders).end(JSON.stringify(PROBLEM));
      if (path.includes('/denied/')) return void res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'access_denied', error_description: 'Sub-agents may not delete.' }));
      return void res.writeHead(401, dpopChallenge).end(JSON.stringify({ error: 'invalid_token', error_description: 'token revoked' }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const openai = (path: string) => new OpenAI({ baseURL: `${base}/${path}/v1`, apiKey: 'x', maxRetries: 0 });
  const anthropic = (path: string) => new Anthropic({ baseURL: `${base}/${path}`, apiKey: 'x', maxRetries: 0 });
  const chat = (path: string) => openai(path).chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
  const message = (path: string) => anthropic(path).messages.create({ model: 'm', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);

  it('openai: APIError(402) with headers, but error = the body\'s "error" member only (the problem is lost)', async () => {
    const e = (await chat('budget')) as InstanceType<typeof OpenAI.APIError>;
    expect(e).toBeInstanceOf(OpenAI.APIError);
    expect(e.status).toBe(402);
    expect(e.error).toBeUndefined();
    const typed = deputyErrorOf(e.status!, e.headers!, e.error);
    expect(typed).toBeInstanceOf(BudgetExceededError);
    expect((typed as BudgetExceededError).retryAfterSeconds).toBe(120);
  });

  it('openai: PermissionDeniedError(403) and AuthenticationError(401) keep the code, not the description', async () => {
    const denied = (await chat('denied')) as InstanceType<typeof OpenAI.APIError>;
    expect(denied).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(deputyErrorOf(denied.status!, denied.headers!, denied.error)).toBeInstanceOf(PolicyDeniedError);
    const revoked = (await chat('revoked')) as InstanceType<typeof OpenAI.APIError>;
    expect(revoked).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(deputyErrorOf(revoked.status!, revoked.headers!, revoked.error)).toMatchObject({ error: 'invalid_token', status: 401 });
  });

  it('@anthropic-ai/sdk: APIError with the whole body: every problem member survives', async () => {
    const e = (await message('budget')) as InstanceType<typeof Anthropic.APIError>;
    expect(e).toBeInstanceOf(Anthropic.APIError);
    const typed = deputyErrorOf(e.status!, e.headers!, e.error) as BudgetExceededError;
    expect(typed).toBeInstanceOf(BudgetExceededError);
    expect(typed.problem).toEqual(PROBLEM);
    const denied = (await message('denied')) as InstanceType<typeof Anthropic.APIError>;
    expect(denied).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect((deputyErrorOf(denied.status!, denied.headers!, denied.error) as PolicyDeniedError).reason).toBe('Sub-agents may not delete.');
  });
});

describe('the library stands alone', () => {
  it('src/agent imports nothing from the server: only its own modules, dependency-free src/util modules and client packages', async () => {
    const { readdirSync, readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const root = new URL('../../src/agent/', import.meta.url).pathname;
    const util = new URL('../../src/util/', import.meta.url).pathname;
    const files = readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(4);
    const allowed = new Set(['jose', 'openid-client', 'canonicalize', '@microsoft/agent-governance-sdk']);
    // A src/util module the library shares (the single-flight read cache) must itself import
    // nothing but Node's built-ins and other such src/util modules: it ships with the library and
    // may not pull the server in.
    const standsAlone = (path: string, seen = new Set<string>()): boolean => {
      if (seen.has(path)) return true;
      seen.add(path);
      return [...readFileSync(path, 'utf8').matchAll(/from '([^']+)'/g)].every(([, spec]) => {
        if (spec!.startsWith('node:')) return true;
        if (!spec!.startsWith('.')) return false;
        const target = new URL(spec!, `file://${path}`).pathname;
        return target.startsWith(util) && standsAlone(target.replace(/\.js$/, '.ts'), seen);
      });
    };
    for (const f of files) {
      const text = readFileSync(join(root, f), 'utf8');
      for (const [, spec] of text.matchAll(/from '([^']+)'/g)) {
        if (spec!.startsWith('node:')) continue;
        if (spec!.startsWith('.')) {
          const target = new URL(spec!, `file://${join(root, f)}`).pathname;
          const shared = target.startsWith(util) && standsAlone(target.replace(/\.js$/, '.ts'));
          expect(target.startsWith(root) || shared, `${f} imports ${spec}`).toBe(true);
        } else {
          expect(allowed.has(spec!), `${f} imports ${spec}`).toBe(true);
        }
      }
    }
  });
});
