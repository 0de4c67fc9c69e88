/**
 * What an MCP agent is told when Deputy itself fails inside a JSON-RPC handler (issue 16, tenth
 * round red team). `toJsonRpcError` passed every error that is not a DeputyError through
 * unchanged, and the MCP SDK answers a thrown error with its own `message`: a store that cannot
 * serve (a read-only standby after a failover, a full disk: `StoreUnavailableError`) reached the
 * agent as "the database is read-only (a standby?)", and a driver's or a bug's error with its
 * message, where every HTTP surface answers 503 `temporarily_unavailable` or a bare 500.
 * Then (second red team) such an error was answered but logged nowhere: it is logged once, as
 * the HTTP error boundary logs it, with the message's request id and never its message.
 */
import { Writable } from 'node:stream';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { AccessDenied, RETRY_AFTER_SECONDS, TemporarilyUnavailable } from '../../src/errors/index.js';
import { createLogger } from '../../src/log.js';
import { toJsonRpcError } from '../../src/mcp/steps.js';
import { StoreUnavailableError } from '../../src/store/index.js';

/** A logger at debug, carrying a request id as the session's does, and the lines it wrote (parsed). */
function capture() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger('debug', sink).child({ reqId: 'req-1' }), lines };
}

const driver = Object.assign(new Error('cannot execute INSERT in a read-only transaction'), { code: '25006' });

describe('a Deputy failure that is not a DeputyError, as a JSON-RPC error', () => {
  it.each([
    ['a store that cannot serve', new StoreUnavailableError('the database is read-only (a standby?)', { cause: driver })],
    ['a store that cannot serve, wrapped by a service', new Error('budget reservation failed', { cause: new StoreUnavailableError('the database is out of disk space') })],
  ])('%s: says temporarily unavailable, not why', (_, error) => {
    const { log, lines } = capture();
    const mapped = toJsonRpcError(error, 'tools/call "t"', log) as McpError;
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'warn', reqId: 'req-1', err: { code: 'temporarily_unavailable' } });
    expect(mapped).toBeInstanceOf(McpError);
    expect(mapped.code).toBe(ErrorCode.InternalError);
    expect(mapped.message).toMatch(/unavailable; retry later/);
    expect(mapped.message).not.toMatch(/read-only|disk|standby|25006|budget reservation/);
  });

  it.each([
    ['a driver error', Object.assign(new Error('duplicate key value violates unique constraint "receipts_pkey"'), { code: '23505' })],
    ['a bug', new TypeError("Cannot read properties of undefined (reading 'secret')")],
  ])('%s: says internal error, nothing of its message; logged once at error with the request id, by name and frames', (_, error) => {
    const { log, lines } = capture();
    const mapped = toJsonRpcError(error, 'tools/call "t"', log) as McpError;
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'error', reqId: 'req-1', msg: 'unhandled error' });
    expect((lines[0]!.err as { cause: string }).cause).toMatch(/^(Error|TypeError)/);
    expect((lines[0]!.err as { stack?: string }).stack).toMatch(/^\s+at /);
    expect(JSON.stringify(lines[0])).not.toMatch(/duplicate|receipts_pkey|undefined \(|secret/);
    expect(mapped).toBeInstanceOf(McpError);
    expect(mapped.code).toBe(ErrorCode.InternalError);
    expect(mapped.message).not.toMatch(/duplicate|receipts_pkey|undefined|secret/);
  });
});

describe('what Deputy or the upstream meant to answer is not logged again', () => {
  it.each([
    ['a refusal', new AccessDenied('policy says no')],
    ['a Deputy failure (logged where it happened)', new TemporarilyUnavailable('the receipt could not be written')],
    ['an upstream McpError', new McpError(ErrorCode.InvalidParams, 'bad params')],
  ])('%s', (_, error) => {
    const { log, lines } = capture();
    toJsonRpcError(error, 'x', log);
    expect(lines).toEqual([]);
  });
});

describe('a failure worth retrying carries the HTTP gateways\' 503 as data', () => {
  it('503 temporarily_unavailable: status, error and retry_after (its Retry-After); a bug\'s InternalError has no data', () => {
    const { log } = capture();
    const retry = toJsonRpcError(new TemporarilyUnavailable('the call could not be recorded; it was not forwarded', { retryAfterSeconds: 7 }), 'tools/call "t"', log) as McpError;
    expect([retry.code, retry.data]).toEqual([ErrorCode.InternalError, { status: 503, error: 'temporarily_unavailable', retry_after: 7 }]);
    const store = toJsonRpcError(new StoreUnavailableError('the database is read-only (a standby?)', { cause: driver }), 'tools/call "t"', log) as McpError;
    expect(store.data).toEqual({ status: 503, error: 'temporarily_unavailable', retry_after: RETRY_AFTER_SECONDS });
    const bug = toJsonRpcError(new TypeError('x'), 'tools/call "t"', log) as McpError;
    expect([bug.code, bug.data]).toEqual([ErrorCode.InternalError, undefined]);
  });
});
