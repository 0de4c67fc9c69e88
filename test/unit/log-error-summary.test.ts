/**
 * The logger's `err` serializer (src/log.ts): an `Error` by type, message, code, stack and cause;
 * a caller's summary object (`{ code, cause }`: src/http/errors.ts `logError`, oidc-provider's
 * 503) by its string code and cause — before, `String()` of it logged `[object Object]` — and
 * never any other member: not a copied library message (it can quote an upstream's answer), not
 * a thrown object's statement parameters.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { BadGateway } from '../../src/errors/index.js';
import { classifyError, logError } from '../../src/http/errors.js';
import { createLogger, errorCause, operatorCause, unexpectedError } from '../../src/log.js';
import { KeyError } from '../../src/keys/keystore.js';
import { VaultDecryptError } from '../../src/vault/envelope.js';
import { UnknownKeyEncryptionKey } from '../../src/vault/key-wrapper.js';
import { EventEmitter } from 'node:events';
import type Provider from 'oidc-provider';
import { useErrorRendering } from '../../src/oauth/oidc-provider/errors.js';
import { classifyStoreError, StoreUnavailableError } from '../../src/store/index.js';
import type Koa from 'koa';

/** Runs `write` on a logger at debug and returns the one line it wrote, parsed. */
function logged(write: (log: ReturnType<typeof createLogger>) => void): Record<string, unknown> {
  let out = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      out += chunk.toString();
      done();
    },
  });
  write(createLogger('debug', sink));
  return JSON.parse(out) as Record<string, unknown>;
}

/** Logs `fields` at warn and returns the parsed line. */
const lineOf = (fields: Record<string, unknown>) => logged((log) => log.warn(fields, 'm'));

describe('the err serializer', () => {
  it('keeps a summary\'s code and cause', () => {
    expect(lineOf({ err: { code: 'bad_gateway', cause: 'Error (ECONNREFUSED)' } }).err).toEqual({ code: 'bad_gateway', cause: 'Error (ECONNREFUSED)' });
    expect(lineOf({ err: { code: 'server_error', cause: undefined } }).err).toEqual({ code: 'server_error' });
  });

  it('drops every other member of a plain object — a copied library message included — and non-string values', () => {
    const secret = 'sk_live_0123456789abcdef';
    // As the MCP SDK words an upstream's refusal: its body, quoted (a reflected key with it).
    const line = lineOf({ err: { message: `Error POSTing to endpoint (HTTP 401): invalid key ${secret}`, params: [secret], query: `INSERT ... '${secret}'`, code: 42, cause: { secret } } });
    expect(line.err).toEqual({});
    expect(JSON.stringify(line)).not.toContain(secret);
  });

  it('still logs an Error by type, message and code, and anything else as a string', () => {
    const err = Object.assign(new Error('boom'), { code: 'E1', params: ['x-secret'] });
    expect(lineOf({ err }).err).toMatchObject({ type: 'Error', message: 'boom', code: 'E1' });
    expect(JSON.stringify(lineOf({ err }))).not.toContain('x-secret');
    expect(lineOf({ err: 'plain text' }).err).toEqual({ message: 'plain text' });
  });
});

describe('logError (src/http/errors.ts): what failed, never what the client sent', () => {
  it('an unexpected error (a 500) by its name, code, causes and stack frames — never its message, a secret in it or in its cause\'s (before: both, twice)', () => {
    const secret = 'sk_live_unexpected_0123456789';
    const bug = new TypeError(`cannot read "x" of the token ${secret}\nsecond line ${secret}`, { cause: Object.assign(new Error(`upstream said ${secret}`), { code: 'E_UPSTREAM' }) });
    const line = logged((log) => logError(log, classifyError(bug)));
    expect(line).toMatchObject({ level: 'error', msg: 'unhandled error', err: { cause: 'TypeError ← Error (E_UPSTREAM)' } });
    const stack = (line.err as { stack?: string }).stack ?? '';
    expect(stack).toMatch(/^\s+at .*log-error-summary\.test\.ts/);
    expect(JSON.stringify(line)).not.toContain(secret);
    expect(logged((log) => logError(log, classifyError('a thrown string with sk_live_x'))).err).toEqual({ cause: 'thrown string' });
  });

  it('a message line that reads like a stack frame ("    at <secret>") is not kept as one — its own, a custom-named error\'s, or its cause\'s spliced into the stack by a library', () => {
    const secret = 'sk_live_frame_0123456789';
    const bug = new TypeError(`upstream answered:\n    at ${secret}\n  at (${secret}:1:1)`);
    const named = Object.assign(new Error(`first\n\tat ${secret}`), { name: 'ResponseBodyError' });
    const wrapped = new Error('wrapped', { cause: new Error(`inner\n    at ${secret}`) });
    wrapped.stack = `Error: wrapped\n    at outer (file:///app/src/a.ts:1:1)\nCaused by: Error: inner\n    at ${secret}\n    at inner (file:///app/src/b.ts:2:2)`;
    for (const err of [bug, named, wrapped]) {
      const line = logged((log) => logError(log, classifyError(err)));
      expect(JSON.stringify(line)).not.toContain(secret);
      expect((line.err as { stack?: string }).stack).toMatch(/^\s+at /);
    }
    const kept = (logged((log) => logError(log, classifyError(wrapped))).err as { stack: string }).stack;
    expect(kept).toBe('    at outer (file:///app/src/a.ts:1:1)\n    at inner (file:///app/src/b.ts:2:2)');
  });

  it('names a 5xx\'s cause by its name and code', () => {
    const err = new BadGateway('the upstream could not be reached', { cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }) });
    expect(logged((log) => logError(log, err))).toMatchObject({ level: 'warn', msg: 'request not served', err: { code: 'bad_gateway', cause: 'Error (ECONNREFUSED)' } });
  });

  it('a store outage\'s 503 names what Deputy saw (unreachable, timed out) and the code underneath, as before the round did not', () => {
    const secret = 'postgres://deputy:pw-0123456789@db.internal/deputy';
    const refused = classifyStoreError(Object.assign(new Error(`connect ECONNREFUSED ${secret}`), { code: 'ECONNREFUSED' }));
    expect(logged((log) => logError(log, classifyError(refused)))).toMatchObject({ level: 'warn', msg: 'request not served', err: { code: 'temporarily_unavailable', cause: 'StoreUnavailableError: the database is unreachable ← Error (ECONNREFUSED)' } });
    const tooMany = classifyStoreError(Object.assign(new Error(`sorry, too many clients already ${secret}`), { code: '53300' }));
    expect(logged((log) => logError(log, classifyError(tooMany))).err).toEqual({ code: 'temporarily_unavailable', cause: 'StoreUnavailableError: the database refuses more connections (too_many_connections) ← Error (53300)' });
    const timedOut = new StoreUnavailableError('store ping timed out after 2000 ms');
    expect(logged((log) => logError(log, classifyError(timedOut))).err).toEqual({ code: 'temporarily_unavailable', cause: 'StoreUnavailableError: store ping timed out after 2000 ms' });
    expect(JSON.stringify(logged((log) => logError(log, classifyError(refused))))).not.toContain(secret);
  });

  it('oidc-provider\'s store outage (/token, /introspect, /revoke) names the driver\'s error as the HTTP surfaces do: by name and code, never its message (before: "Error: connect ECONNREFUSED <its text>")', () => {
    const secret = 'postgres://deputy:pw-0123456789@db.internal/deputy';
    const provider = new EventEmitter();
    const written: unknown[] = [];
    const line = logged((log) => {
      useErrorRendering(provider as unknown as Provider, (_ctx, err) => written.push(err), log);
      const outage = classifyStoreError(Object.assign(new Error(`connect ECONNREFUSED ${secret}`), { code: 'ECONNREFUSED' }));
      provider.emit('grant.error', { path: '/token' } as Koa.Context, outage);
    });
    expect(written).toHaveLength(1);
    expect(line).toMatchObject({ level: 'warn', msg: 'oauth request not served: store unavailable', path: '/token', err: { cause: 'StoreUnavailableError: the database is unreachable ← Error (ECONNREFUSED)' } });
    expect(JSON.stringify(line)).not.toContain(secret);
  });

  it('a malformed JSON body: V8 quotes it in the parse error\'s message, which the refusal line leaves out', () => {
    // Short enough for V8 to quote whole (a longer text is quoted by its first ten characters).
    const secret = 'hunter2!';
    let parseError: unknown;
    try {
      JSON.parse(secret);
    } catch (err) {
      parseError = Object.assign(err as Error, { status: 400, expose: true });
    }
    expect((parseError as Error).message).toContain(secret);
    const line = logged((log) => logError(log, classifyError(parseError)));
    expect(line).toMatchObject({ level: 'debug', msg: 'request refused', err: { code: 'invalid_request', cause: 'SyntaxError' } });
    expect(JSON.stringify(line)).not.toContain(secret);
  });
});

describe('errorCause: the one way a log line names an error it does not own', () => {
  it('by name and code, never by message', () => {
    const secret = 'sk_live_0123456789abcdef';
    expect(errorCause(Object.assign(new Error(`Error POSTing to endpoint: invalid key ${secret}`), { code: 'UND_ERR_SOCKET' }))).toBe('Error (UND_ERR_SOCKET)');
    expect(errorCause(new TypeError(`bad ${secret}`))).toBe('TypeError');
    expect(errorCause({ message: secret })).toBeUndefined();
  });

  it('names a code-less error by its causes (fetch: TypeError ← Error (ECONNREFUSED)) and keeps a numeric code (the MCP SDK\'s upstream status)', () => {
    const secret = 'sk_live_0123456789abcdef';
    const refused = Object.assign(new Error(`connect ECONNREFUSED ${secret}`), { code: 'ECONNREFUSED' });
    expect(errorCause(new TypeError('fetch failed', { cause: refused }))).toBe('TypeError ← Error (ECONNREFUSED)');
    expect(errorCause(Object.assign(new Error(`Streamable HTTP error: ${secret}`), { code: 401 }))).toBe('Error (401)');
    const cyclic: Error = new Error(secret);
    cyclic.cause = cyclic;
    expect(errorCause(cyclic)).toBe('Error ← Error ← Error');
    expect(errorCause(new TypeError(secret, { cause: secret }))).toBe('TypeError');
  });
});

// An operator diagnosing a real failure from a 500's line: an instance without the vault KEK a row
// names (a rotation on one instance, `DEPUTY_VAULT_KEK` not updated on the others) logged only
// `VaultDecryptError (ERR_VAULT_DECRYPT)`, not which KEK; a KEK file broken by hand, only
// `KeyError (ERR_DEPUTY_KEYS)`, not which field (issue 16, ninth round red team).
describe('operator-worded errors (src/util/operator-worded.ts): their message is what the operator acts on, and kept', () => {
  it('a 500 caused by a secret under a KEK this instance has not loaded names the KEK, and so does an error wrapping it', () => {
    const err = new VaultDecryptError('the key-encryption key "kek-2026-11" of this secret is not loaded', { cause: new UnknownKeyEncryptionKey('kek-2026-11') });
    const line = logged((log) => logError(log, classifyError(err)));
    expect(line).toMatchObject({ level: 'error', msg: 'unhandled error', err: { cause: 'VaultDecryptError (ERR_VAULT_DECRYPT): the key-encryption key "kek-2026-11" of this secret is not loaded' } });
    expect((line.err as { stack?: string }).stack).toMatch(/^\s+at /);
    // Wrapped by a library (a cause one link down) it is found all the same.
    expect(unexpectedError(new TypeError('wrapped', { cause: err })).cause).toBe('TypeError ← VaultDecryptError (ERR_VAULT_DECRYPT): the key-encryption key "kek-2026-11" of this secret is not loaded');
  });

  it('a KEK file that could not be re-read names the field, and any other error still only its name and code', () => {
    const bad = new KeyError('keys/vault-kek.json: keys[1].k must be 32 bytes, base64url');
    expect(operatorCause(bad)).toBe('KeyError (ERR_DEPUTY_KEYS): keys/vault-kek.json: keys[1].k must be 32 bytes, base64url');
    const secret = 'sk_live_not_worded_0123456789';
    const library = Object.assign(new Error(`bad key ${secret}`), { code: 'ERR_LIB' });
    expect(operatorCause(library)).toBe('Error (ERR_LIB)');
    expect(JSON.stringify(logged((log) => logError(log, classifyError(library))))).not.toContain(secret);
  });
});
