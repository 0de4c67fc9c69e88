/**
 * The MCP gateway's own enforcement steps (src/mcp/steps.ts): the pin check's decisions and
 * the one mapping of a pipeline refusal to the agent's JSON-RPC error.
 */
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import type { Admission, PepDecision } from '../../src/enforcement/index.js';
import { NOTHING, Pipeline, receipt } from '../../src/enforcement/index.js';
import { AccessDenied, DeputyError, TemporarilyUnavailable } from '../../src/errors/index.js';
import type { McpServerConfig } from '../../src/mcp/config.js';
import { checkPin, describeMessage, MCP_DENIED, McpRefusal, toJsonRpcError, type McpMessage, type PinLookup } from '../../src/mcp/steps.js';
import type { ReceiptInput } from '../../src/audit/receipt.js';
import { createLogger } from '../../src/log.js';

const AUDIENCE = 'https://deputy.example/mcp/github';
const server = { id: 'github' } as McpServerConfig;

function message(decision: PepDecision): McpMessage & { decision: PepDecision; action: ReturnType<typeof describeMessage> } {
  return {
    admission: {} as Admission,
    caller: {} as McpMessage['caller'],
    server,
    question: { method: 'tools/call', action: 'invoke', tool: 'create_issue' },
    decision,
    action: describeMessage(AUDIENCE, 'tools/call', { server: 'github', method: 'tools/call', tool: 'create_issue', arguments_digest: 'sha-256:x' }),
  };
}

/** A logger that writes nothing (these cases log nothing). */
const silent = createLogger('silent');

describe('toJsonRpcError', () => {
  it.each([
    ['a policy denial', new AccessDenied('sub-agents may not'), MCP_DENIED, 'Deputy refused tools/call "t": sub-agents may not', { reason: 'sub-agents may not' }],
    ['a budget denial (402)', new DeputyError(402, 'budget_exhausted' as never, 'the budget is spent'), MCP_DENIED, 'Deputy refused tools/call "t": the budget is spent', { reason: 'the budget is spent', status: 402, error: 'budget_exhausted' }],
    ['a pin refusal', new McpRefusal(MCP_DENIED, 'tool changed', { reason: 'tool changed', tool: 't' }), MCP_DENIED, 'tool changed', { reason: 'tool changed', tool: 't' }],
    ['a tool not offered', new McpRefusal(ErrorCode.InvalidParams, 'not offered', {}), ErrorCode.InvalidParams, 'not offered', {}],
    ['a receipt not written (503)', new TemporarilyUnavailable('the call could not be recorded; it was not forwarded'), ErrorCode.InternalError, 'the call could not be recorded; it was not forwarded', { status: 503, error: 'temporarily_unavailable', retry_after: 5 }],
  ])('maps %s', (_, error, code, message, data) => {
    const mapped = toJsonRpcError(error, 'tools/call "t"', silent) as McpError;
    expect(mapped).toBeInstanceOf(McpError);
    expect(mapped.code).toBe(code);
    expect(mapped.message).toContain(message);
    expect(mapped.data).toEqual(data);
  });

  it('passes an upstream JSON-RPC error through, and never shows an unexposed 5xx description', () => {
    const upstream = new McpError(ErrorCode.RequestTimeout, 'timed out');
    expect(toJsonRpcError(upstream, 'x', silent)).toBe(upstream);
    const hidden = toJsonRpcError(new DeputyError(500, 'server_error' as never, 'secret detail', { expose: false }), 'x', silent) as McpError;
    expect(hidden.message).not.toContain('secret detail');
  });
});

/** The typed refusal a denial carries (the pin step's are all {@link McpRefusal}). */
function refusalOf(decision: PepDecision | undefined): McpRefusal {
  const refusal = decision && !decision.allowed ? decision.refusal : undefined;
  expect(refusal).toBeInstanceOf(McpRefusal);
  return refusal as McpRefusal;
}

describe('checkPin', () => {
  const lookup = (answer: Awaited<ReturnType<PinLookup>>): PinLookup => async () => answer;

  it('does not look up a tool for a call already denied (no upstream request)', async () => {
    let looked = false;
    const step = checkPin(async () => ((looked = true), undefined));
    expect(await step.run(message({ allowed: false, reason: 'no' }))).toBe(NOTHING);
    expect(looked).toBe(false);
  });

  it('adds the pin to the receipt claims of a pinned tool', async () => {
    const added = await checkPin(lookup({ allowed: true, pin: { pin: 'pinned', pin_digest: 'sha-256:d' } })).run(message({ allowed: true, policies: ['p1'] }));
    expect(added.decision).toBeUndefined();
    expect(added.action?.claims?.mcp).toMatchObject({ tool: 'create_issue', pin: 'pinned', pin_digest: 'sha-256:d' });
  });

  it('denies a changed tool with its refusal, keeping the policies', async () => {
    const added = await checkPin(lookup({ allowed: false, reason: 'changed', pin: { pin: 'changed', pin_digest: 'sha-256:e' }, data: { changed: ['description'] } })).run(message({ allowed: true, policies: ['p1'] }));
    expect(added.decision).toMatchObject({ allowed: false, reason: 'changed', policies: ['p1'] });
    const refusal = refusalOf(added.decision);
    expect(refusal.data).toEqual({ reason: 'changed', tool: 'create_issue', changed: ['description'] });
  });

  it('denies a tool the server does not offer as invalid params', async () => {
    const added = await checkPin(lookup(undefined)).run(message({ allowed: true, policies: [] }));
    expect(refusalOf(added.decision).rpcCode).toBe(ErrorCode.InvalidParams);
  });
});

describe('the shared receipt step with an MCP description', () => {
  it('writes the mcp claim, the policies and the resource of the tool', async () => {
    const written: ReceiptInput[] = [];
    const record = Pipeline.start<Parameters<ReturnType<typeof receipt>['run']>[0]>().then(
      receipt({ receipts: { append: async (r: ReceiptInput) => void written.push(r) } as never, logger: { error() {} } as never }),
    );
    const proof = { take: () => undefined, spendIfPending: async () => {} };
    const admission = { proof, audience: AUDIENCE, requestId: 'r1', principal: { agentId: 'a', userId: 'u', chain: ['a'], scopes: new Set(['mcp:github']), tokenJti: 'j' } } as unknown as Admission;
    await record.run({ admission, decision: { allowed: false, reason: 'no', policies: ['p1'] }, action: message({ allowed: true }).action });
    expect(written[0]).toMatchObject({ event: 'mcp_message', action: 'tools/call', resource: `${AUDIENCE}/tools/create_issue`, decision: 'deny', reason: 'no', policies: ['p1'], mcp: { server: 'github', tool: 'create_issue' } });
  });
});
