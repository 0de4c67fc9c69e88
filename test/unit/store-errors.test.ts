/**
 * Which driver errors mean "the store is away" (503 temporarily_unavailable + Retry-After on
 * every surface) and which are ordinary statement errors (never reclassified).
 */
import { describe, expect, it } from 'vitest';
import { RETRY_AFTER_SECONDS, TemporarilyUnavailable } from '../../src/errors/index.js';
import { classifyStoreError, findStoreUnavailable, isConnectionFailure, StoreUnavailable, StoreUnavailableError } from '../../src/store/index.js';

const withCode = (code: string, message = 'x') => Object.assign(new Error(message), { code });

describe('store connection failures', () => {
  it.each([
    ['connection refused', withCode('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432')],
    ['connection reset', withCode('ECONNRESET')],
    ['host unknown', withCode('ENOTFOUND')],
    ['admin_shutdown (pg_terminate_backend, server stopping)', withCode('57P01', 'terminating connection due to administrator command')],
    ['crash_shutdown', withCode('57P02')],
    ['cannot_connect_now (server starting)', withCode('57P03', 'the database system is starting up')],
    ['too_many_connections', withCode('53300')],
    ['read_only_sql_transaction (a standby after a failover)', withCode('25006', 'cannot execute INSERT in a read-only transaction')],
    ['disk_full', withCode('53100')],
    ['out_of_memory', withCode('53200')],
    ['configuration_limit_exceeded (class 53)', withCode('53400')],
    ['lock_not_available (lock_timeout)', withCode('55P03')],
    ['query_canceled (statement_timeout)', withCode('57014', 'canceling statement due to statement timeout')],
    ['database_dropped (class 57)', withCode('57P04')],
    ['idle_session_timeout (class 57)', withCode('57P05')],
    ['io_error', withCode('58030')],
    ['connection_failure (class 08)', withCode('08006')],
    ['sqlclient_unable_to_establish_sqlconnection (class 08)', withCode('08001')],
    ['a lost connection (node-postgres)', new Error('Connection terminated unexpectedly')],
    ['a pool timeout (node-postgres)', new Error('timeout exceeded when trying to connect')],
    ['a connect timeout (node-postgres)', new Error('Connection terminated due to connection timeout')],
    ['every address refused (AggregateError)', new AggregateError([withCode('ECONNREFUSED'), withCode('ECONNREFUSED')])],
  ])('%s is the store being unavailable', (_what, err) => {
    expect(isConnectionFailure(err)).toBe(true);
    const classified = classifyStoreError(err);
    expect(classified).toBeInstanceOf(StoreUnavailableError);
    expect((classified as Error).cause).toBe(err);
    // Deputy's own words, never the database's message.
    expect((classified as Error).message).toMatch(/^the database /);
  });

  it.each([
    ['unique_violation', withCode('23505', 'duplicate key value violates unique constraint')],
    ['undefined_table', withCode('42P01')],
    ['serialization_failure', withCode('40001')],
    ['deadlock_detected', withCode('40P01')],
    ['in_failed_sql_transaction (class 25, not 25006)', withCode('25P02')],
    ['active_sql_transaction (class 25, not 25006)', withCode('25001')],
    ['object_not_in_prerequisite_state (class 55, not 55P03)', withCode('55000')],
    ['insufficient_privilege', withCode('42501')],
    ['internal_error', withCode('XX000')],
    ['data_corrupted', withCode('XX001')],
    ['division_by_zero', withCode('22012')],
    ['a plain error', new Error('something else')],
    ['not an error', 'oops'],
  ])('%s is not reclassified', (_what, err) => {
    expect(isConnectionFailure(err)).toBe(false);
    expect(classifyStoreError(err)).toBe(err);
  });

  it('is found through wrapping causes, and only as the typed error (an upstream API reset is not the store)', () => {
    const typed = new StoreUnavailableError('the database is unreachable');
    expect(findStoreUnavailable(new Error('outer', { cause: new Error('middle', { cause: typed }) }))).toBe(typed);
    expect(findStoreUnavailable(new Error('upstream', { cause: withCode('ECONNRESET') }))).toBeUndefined();
    expect(StoreUnavailable).toBe(StoreUnavailableError); // the former name still works
  });

  it('renders as 503 temporarily_unavailable with Retry-After', () => {
    const err = new TemporarilyUnavailable('the store is unavailable; retry later');
    expect([err.status, err.code, err.headers['Retry-After']]).toEqual([503, 'temporarily_unavailable', String(RETRY_AFTER_SECONDS)]);
  });
});
