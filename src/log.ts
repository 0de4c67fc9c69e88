/**
 * Structured JSON logging (pino). Log lines carry identifiers (request id, client id, agent id),
 * never tokens, proofs, assertions or secrets: request headers and bodies are not logged, and
 * the paths below are redacted as a second line of defence.
 *
 * @module
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import { activeTraceId } from './observability/tracing.js';
import { isOperatorWorded } from './util/operator-worded.js';

export type { Logger } from 'pino';

const REDACT = [
  'authorization',
  '*.authorization',
  'dpop',
  '*.dpop',
  '*.access_token',
  '*.refresh_token',
  '*.subject_token',
  '*.actor_token',
  '*.client_assertion',
  '*.secret',
  '*.password',
  '*.token',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'deputy' },
      redact: { paths: REDACT, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: serializeError },
      // The W3C trace id of the active span (traces on, src/observability/tracing.ts): logs and traces join on it.
      mixin: traceIdField,
    },
    destination,
  );
}

function traceIdField(): { trace_id?: string } {
  const traceId = activeTraceId();
  return traceId === undefined ? {} : { trace_id: traceId };
}

/**
 * Errors are logged by type, message, code and stack only. Database drivers attach the failed
 * statement and its parameters to errors; parameters can hold secrets, so they never reach a log.
 *
 * A plain object under `err` is the summary a caller built for the line (`{ code, cause }` of a
 * 5xx, `{ cause, stack }` of an unexpected error, src/http/errors.ts): its string `code`, `cause`
 * and `stack` are kept, and nothing else. `String()`
 * of it was `[object Object]`: the line lost what failed. Not its `message`: the summaries built
 * as `{ message: err.message }` copy a library's message, which can quote what an upstream
 * answered (the MCP SDK puts the response body in its HTTP errors) — a reflected credential with it.
 */
export function serializeError(err: unknown): Record<string, unknown> {
  if (isPlainObject(err)) return summaryFields(err);
  if (!(err instanceof Error)) return { message: String(err) };
  const e = err as Error & { code?: unknown };
  return {
    type: e.name,
    message: e.message,
    ...(typeof e.code === 'string' ? { code: e.code } : {}),
    ...(e.stack ? { stack: e.stack } : {}),
    ...(e.cause instanceof Error ? { cause: serializeError(e.cause) } : {}),
  };
}

/** An object literal (not an `Error`, an array or a class instance). */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** The string `code`, `cause` and `stack` (frames only: src/http/errors.ts) of a caller's error summary; `{}` when it has none. */
function summaryFields(summary: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of ['code', 'cause', 'stack'] as const) {
    const value = summary[key];
    if (typeof value === 'string') out[key] = value;
  }
  return out;
}

/**
 * An error named for a log line's `err: { cause }`: its name and `code` (`Error (ECONNREFUSED)`,
 * `SyntaxError`), never its message — a library's message can quote what it parsed or what an
 * upstream answered (V8's `JSON.parse`, the MCP SDK's HTTP errors). A numeric code is kept too
 * (the MCP SDK's HTTP errors carry the upstream's status there). An error without a code is named
 * with its own `cause`s, by the same rule (`TypeError ← Error (ECONNREFUSED)`): `fetch` throws a
 * bare `TypeError: fetch failed` and puts what failed (refused, not found, a bad certificate) in
 * its cause, which is what an operator acts on.
 */
export function errorCause(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  const names: string[] = [];
  let current: unknown = err;
  // Bounded: a cause chain can be long or cyclic; three links cover fetch's (TypeError ← Error).
  for (let depth = 0; depth < 3 && current instanceof Error; depth++) {
    const code = codeOf(current);
    names.push(code === undefined ? current.name : `${current.name} (${code})`);
    if (code !== undefined) break;
    current = current.cause;
  }
  return names.join(' ← ');
}

/**
 * {@link errorCause}, followed by the message of the first error in the chain whose class words
 * its messages for the operator (src/util/operator-worded.ts: `KeyError`, `VaultDecryptError`):
 * `VaultDecryptError (ERR_VAULT_DECRYPT): the key-encryption key "kek-2" of this secret is not
 * loaded`. Every other message stays out, as in {@link errorCause}.
 */
export function operatorCause(err: unknown): string | undefined {
  const cause = errorCause(err);
  let current: unknown = err;
  for (let depth = 0; depth < 3 && current instanceof Error; depth++, current = current.cause) {
    if (isOperatorWorded(current)) return `${cause}: ${(current as Error).message}`;
  }
  return cause;
}

/**
 * An unexpected error (a bug) as a log line's `err`: by name and code, with its causes'
 * ({@link errorCause}: `TypeError ← Error (ECONNREFUSED)`), and where it was thrown (the stack's
 * `at …` frames). Never its message (but an operator-worded one: {@link operatorCause}), nor the stack's first lines, which repeat it: an unexpected
 * error is by definition not one Deputy worded, and a library's message can quote what it was
 * given — a token, a header, a request body (V8's `JSON.parse` quotes the text it failed on).
 */
export function unexpectedError(err: unknown): { cause: string; stack?: string } {
  const cause = operatorCause(err) ?? `thrown ${typeof err}`;
  const stack = err instanceof Error && typeof err.stack === 'string' ? stackFrames(err, err.stack) : '';
  return stack === '' ? { cause } : { cause, stack };
}

/**
 * The `at …` lines of `err`'s V8 stack, and none of its message's lines, however many it spans:
 * the stack is read from the end of the message on (V8 writes it first, after the error's name),
 * and a line that is one of the message's, or of its causes' (a library that splices a cause's
 * stack into its own), is left out even when it reads like a frame — a message line such as
 * `    at <a token>` matched `^\s+at ` and was logged as one (issue 16, ninth round red team).
 */
function stackFrames(err: Error, stack: string): string {
  const message = typeof err.message === 'string' ? err.message : '';
  const end = message === '' ? -1 : stack.indexOf(message);
  const quoted = messageLines(err);
  return (end === -1 ? stack : stack.slice(end + message.length))
    .split('\n')
    .filter((line) => /^\s+at /.test(line) && !quoted.has(line.trim()))
    .join('\n');
}

/** The trimmed lines of the messages of `err` and its causes (as deep as {@link errorCause} looks, and one more). */
function messageLines(err: Error): Set<string> {
  const lines = new Set<string>();
  let current: unknown = err;
  for (let depth = 0; depth < 4 && current instanceof Error; depth++, current = current.cause) {
    if (typeof current.message === 'string') for (const line of current.message.split('\n')) lines.add(line.trim());
  }
  return lines;
}

/** An error's string or finite numeric `code`, bounded; `undefined` for any other. */
function codeOf(err: Error): string | undefined {
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') return code.slice(0, 64);
  if (typeof code === 'number' && Number.isFinite(code)) return String(code);
  return undefined;
}
