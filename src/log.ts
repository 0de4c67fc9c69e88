/**
 * Structured JSON logging (pino). Log lines carry identifiers (request id, client id, agent id),
 * never tokens, proofs, assertions or secrets: request headers and bodies are not logged, and
 * the paths below are redacted as a second line of defence.
 *
 * @module
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import { activeTraceId } from './observability/tracing.js';

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
 */
export function serializeError(err: unknown): Record<string, unknown> {
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
