/**
 * Red team (issue 16, ninth round): failure lines that logged a whole error — `{ err }` through
 * pino's serializer, which writes the message and the stack (whose first line repeats it). A
 * driver's or library's message can quote a value it was given (a statement's parameter, a
 * response body, a connection string), so a secret in it reached the log. Every such line now
 * logs `unexpectedError(err)` (src/log.ts): the error's class, code and causes, and the stack's
 * frames, never a message. Driven here through two of them (the gateway's receipt step, the
 * fixed-cost budget's settle), and the class guarded over the source: no logger call in `src/`
 * hands a raw error to `err`.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { ReceiptAppender } from '../../src/audit/index.js';
import { fixedCostBudgeter } from '../../src/budgets/budgeter.js';
import type { BudgetLedger } from '../../src/budgets/ledger.js';
import { PendingProof, type ActionContext, type Decided, type Described } from '../../src/enforcement/context.js';
import { receipt } from '../../src/enforcement/steps/receipt.js';
import { TemporarilyUnavailable } from '../../src/errors/index.js';
import { createLogger, type Logger } from '../../src/log.js';

const secret = 'sk_live_failure_line_0123456789';

/** A store driver's error that quotes a statement parameter (as pg's and PGlite's can), with a SQLSTATE. */
function quotingError(): Error {
  return Object.assign(new Error(`invalid input syntax for type json: "${secret}"`), { code: '22P02' });
}

function capture(): { logger: Logger; lines: () => Record<string, unknown>[]; text: () => string } {
  let out = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      out += chunk.toString();
      done();
    },
  });
  return { logger: createLogger('info', sink), text: () => out, lines: () => out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

function gatewayContext(): ActionContext & Decided & Described {
  const admission = {
    proof: new PendingProof(undefined, async () => {}),
    audience: 'https://api.example.com',
    requestId: 'req-1',
    principal: { userId: 'alice', userAttrs: {}, agentId: 'agent-a', chain: ['agent-a'], scopes: new Set(['read']), tokenJti: 'jti-1' },
  };
  return {
    admission: admission as unknown as ActionContext['admission'],
    decision: { allowed: true },
    action: { event: 'gateway_call', name: 'http:GET', resource: 'https://api.example.com/items', digest: { method: 'GET' } } as unknown as Described['action'],
  };
}

describe('failure lines name the error, never its message', () => {
  it('the gateway\'s receipt step: "gateway receipt could not be written" names the class and code; the quoted secret never reaches the log', async () => {
    const log = capture();
    const receipts: ReceiptAppender = { append: () => Promise.reject(quotingError()) } as unknown as ReceiptAppender;
    const step = receipt({ receipts, logger: log.logger });
    await expect(step.run(gatewayContext())).rejects.toBeInstanceOf(TemporarilyUnavailable);
    const line = log.lines().find((l) => l.msg === 'gateway receipt could not be written');
    expect(line).toMatchObject({ level: 'error', err: { cause: 'Error (22P02)' } });
    expect(log.text()).not.toContain(secret);
  });

  it('the fixed-cost budget\'s settle: "budget reservation could not be settled" names the class and code; the quoted secret never reaches the log', async () => {
    const log = capture();
    const ledger = {
      unbudgeted: () => false,
      reserve: async () => ({ items: [{ budget: 'b1' }] }),
      settle: () => Promise.reject(quotingError()),
      release: async () => {},
    } as unknown as BudgetLedger;
    const budgeter = fixedCostBudgeter<object>({ ledger, logger: log.logger, demand: () => ({ scope: {} as never, amounts: { requests: 1 }, requestId: 'req-2' }) });
    const hold = await budgeter.reserve({});
    expect(hold && 'settle' in hold).toBe(true);
    await (hold as { settle(o: unknown): Promise<void> }).settle({ kind: 'delivered' });
    const line = log.lines().find((l) => l.msg === 'budget reservation could not be settled; it is released when it expires');
    expect(line).toMatchObject({ level: 'error', err: { cause: 'Error (22P02)' } });
    expect(log.text()).not.toContain(secret);
  });

  it('no logger call in src/ hands a raw error to `err` (pino would write its message and stack)', () => {
    const root = join(import.meta.dirname, '../../src');
    const offenders: string[] = [];
    // `{ err }`, `{ err: e }`, `{ err: cause, … }`: a bare identifier, not a summary built for the line.
    const raw = /\.(?:fatal|error|warn|info|debug|trace)\(\{\s*(?:err\s*[,}]|err:\s*[A-Za-z_$][\w$]*\s*[,}])/;
    // The process's own start/stop lines (src/main.ts) are the lead's call: printed at a terminal, not per request.
    const exempt = new Set(['main.ts']);
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        if (statSync(path).isDirectory()) walk(path);
        else if (name.endsWith('.ts') && !exempt.has(path.slice(root.length + 1))) {
          readFileSync(path, 'utf8').split('\n').forEach((line, i) => {
            if (raw.test(line)) offenders.push(`${path.slice(root.length + 1)}:${i + 1}: ${line.trim()}`);
          });
        }
      }
    };
    walk(root);
    expect(offenders).toEqual([]);
  });
});
