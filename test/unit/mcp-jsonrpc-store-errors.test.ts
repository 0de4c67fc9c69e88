/**
 * What an MCP agent is told when Deputy itself fails inside a JSON-RPC handler (issue 16, tenth
 * round red team). `toJsonRpcError` passed every error that is not a DeputyError through
 * unchanged, and the MCP SDK answers a thrown error with its own `message`: a store that cannot
 * serve (a read-only standby after a failover, a full disk: `StoreUnavailableError`) reached the
 * agent as "the database is read-only (a standby?)", and a driver's or a bug's error with its
 * message, where every HTTP surface answers 503 `temporarily_unavailable` or a bare 500.
 */
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { toJsonRpcError } from '../../src/mcp/steps.js';
import { StoreUnavailableError } from '../../src/store/index.js';

const driver = Object.assign(new Error('cannot execute INSERT in a read-only transaction'), { code: '25006' });

describe('a Deputy failure that is not a DeputyError, as a JSON-RPC error', () => {
  it.each([
    ['a store that cannot serve', new StoreUnavailableError('the database is read-only (a standby?)', { cause: driver })],
    ['a store that cannot serve, wrapped by a service', new Error('budget reservation failed', { cause: new StoreUnavailableError('the database is out of disk space') })],
  ])('%s: says temporarily unavailable, not why', (_, error) => {
    const mapped = toJsonRpcError(error, 'tools/call "t"') as McpError;
    expect(mapped).toBeInstanceOf(McpError);
    expect(mapped.code).toBe(ErrorCode.InternalError);
    expect(mapped.message).toMatch(/unavailable; retry later/);
    expect(mapped.message).not.toMatch(/read-only|disk|standby|25006|budget reservation/);
  });

  it.each([
    ['a driver error', Object.assign(new Error('duplicate key value violates unique constraint "receipts_pkey"'), { code: '23505' })],
    ['a bug', new TypeError("Cannot read properties of undefined (reading 'secret')")],
  ])('%s: says internal error, nothing of its message', (_, error) => {
    const mapped = toJsonRpcError(error, 'tools/call "t"') as McpError;
    expect(mapped).toBeInstanceOf(McpError);
    expect(mapped.code).toBe(ErrorCode.InternalError);
    expect(mapped.message).not.toMatch(/duplicate|receipts_pkey|undefined|secret/);
  });
});
