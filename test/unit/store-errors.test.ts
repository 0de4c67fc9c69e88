/**
 * Which driver errors mean "the store is away" (503 temporarily_unavailable + Retry-After on
 * every surface) and which are ordinary statement errors (never reclassified).
 */
import { describe, expect, it } from 'vitest';
import { RETRY_AFTER_SECONDS, TemporarilyUnavailable } from '../../src/errors/index.js';
import { classifyStoreError, CONFLICT_ATTEMPTS, findStoreUnavailable, isConnectionFailure, isTransactionConflict, retryConflicts, StoreUnavailable, StoreUnavailableError, transactionConflict } from '../../src/store/index.js';

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
    ['serialization_failure (a concurrent transaction won)', withCode('40001', 'could not serialize access due to read/write dependencies among transactions')],
    ['deadlock_detected (a concurrent transaction won)', withCode('40P01', 'deadlock detected')],
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
    ['transaction_integrity_constraint_violation (class 40, not 40001/40P01: the data\'s)', withCode('40002')],
    ['statement_completion_unknown (class 40: it may have committed)', withCode('40003')],
    ['transaction_rollback (class 40)', withCode('40000')],
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

describe('transactions the server aborted for a conflict (40001, 40P01)', () => {
  it('are found as the driver\'s error, as the store\'s typed error and through wrapping causes; nothing else is one', () => {
    const raw = withCode('40P01', 'deadlock detected');
    expect(transactionConflict(raw)).toBe('40P01');
    expect(transactionConflict(classifyStoreError(withCode('40001')))).toBe('40001');
    expect(isTransactionConflict(new Error('outer', { cause: classifyStoreError(raw) }))).toBe(true);
    for (const other of [withCode('40003'), withCode('40002'), withCode('23505'), withCode('ECONNRESET'), withCode('25006'), new Error('40001'), undefined, 'oops']) {
      expect(isTransactionConflict(other)).toBe(false);
    }
  });

  it('are run again, at most CONFLICT_ATTEMPTS times in all, and the last conflict is thrown as the store\'s typed error', async () => {
    let runs = 0;
    const always = () => {
      runs += 1;
      return Promise.reject(classifyStoreError(withCode('40001')));
    };
    const err = await retryConflicts(always).catch((e: unknown) => e);
    expect(runs).toBe(CONFLICT_ATTEMPTS);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(((err as Error).cause as { code: string }).code).toBe('40001');

    runs = 0;
    const second = await retryConflicts(async () => {
      runs += 1;
      if (runs === 1) throw classifyStoreError(withCode('40P01'));
      return 'committed';
    });
    expect([second, runs]).toEqual(['committed', 2]);
  });

  it('any other error is thrown at once, never run again (a lost connection may have committed)', async () => {
    for (const other of [withCode('23505'), classifyStoreError(withCode('ECONNRESET')), withCode('40003'), new Error('a bug')]) {
      let runs = 0;
      await expect(retryConflicts(async () => {
        runs += 1;
        throw other;
      })).rejects.toBe(other);
      expect(runs).toBe(1);
    }
  });
});
