/**
 * The logger's `err` serializer (src/log.ts): an `Error` by type, message, code, stack and cause;
 * a caller's summary object (`{ code, cause }`, `{ message }`: src/http/errors.ts `logError`,
 * streamed-pep, the vault, oidc-provider's 503) by its string code, message and cause — before,
 * `String()` of it logged `[object Object]` — and never any other member (a thrown object
 * carrying a statement's parameters keeps them out of the log).
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';

/** Logs `fields` at warn and returns the parsed line. */
function lineOf(fields: Record<string, unknown>): Record<string, unknown> {
  let out = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      out += chunk.toString();
      done();
    },
  });
  createLogger('warn', sink).warn(fields, 'm');
  return JSON.parse(out) as Record<string, unknown>;
}

describe('the err serializer', () => {
  it('keeps a summary\'s code, message and cause', () => {
    expect(lineOf({ err: { code: 'bad_gateway', cause: 'Error: connect ECONNREFUSED' } }).err).toEqual({ code: 'bad_gateway', cause: 'Error: connect ECONNREFUSED' });
    expect(lineOf({ err: { message: 'other side closed' } }).err).toEqual({ message: 'other side closed' });
    expect(lineOf({ err: { code: 'server_error', cause: undefined } }).err).toEqual({ code: 'server_error' });
  });

  it('drops every other member of a plain object, and non-string values', () => {
    const secret = 'sk_live_0123456789abcdef';
    const line = lineOf({ err: { message: 'insert failed', params: [secret], query: `INSERT ... '${secret}'`, code: 42, cause: { secret } } });
    expect(line.err).toEqual({ message: 'insert failed' });
    expect(JSON.stringify(line)).not.toContain(secret);
  });

  it('still logs an Error by type, message and code, and anything else as a string', () => {
    const err = Object.assign(new Error('boom'), { code: 'E1', params: ['x-secret'] });
    expect(lineOf({ err }).err).toMatchObject({ type: 'Error', message: 'boom', code: 'E1' });
    expect(JSON.stringify(lineOf({ err }))).not.toContain('x-secret');
    expect(lineOf({ err: 'plain text' }).err).toEqual({ message: 'plain text' });
  });
});
