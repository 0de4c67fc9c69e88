/**
 * Named (prepared) statements: the hot statements of the enforcement path are parsed once per
 * connection and then only bound and executed (PostgreSQL protocol §55.2.3, extended query).
 *
 * PostgreSQL keeps a named statement's parse tree, and after five executions a generic plan when
 * it is no costlier than the custom ones (`plan_cache_mode = auto`), for the session that
 * prepared it. The name is derived from the statement's text, so a text always maps to one name
 * and a name to one text; callers whose text varies with their input (a group of n receipts) get
 * one name per shape, at most {@link MAX_NAMED} texts per store, of which shapes (`prepare:
 * 'shape'`) at most {@link MAX_SHAPES_NAMED} — past that a statement runs unnamed, as before. A
 * schema change made through the store (migrations, `exec`) starts a new generation of names,
 * so no statement prepared against the old schema is run again. Made elsewhere (another instance migrating a shared database), PostgreSQL re-plans the statements
 * itself; only one whose result columns changed fails ("cached plan must not change result
 * type", {@link isStalePlan}): the store then starts a new generation and runs the statement once
 * more under its new name (outside a transaction; inside one, the transaction fails and the next
 * one uses the new names).
 *
 * node-postgres prepares a named statement on each pooled connection the first time that
 * connection runs it (it tracks names per connection; a new connection re-prepares). PGlite is
 * one session; {@link runNamedOnPGlite} drives its protocol directly.
 *
 * @module
 */
import { parse as pgliteParse, protocol, type PGlite } from '@electric-sql/pglite';
import { sha256 } from '../util/sha256.js';

/** Distinct statement texts named per store at most; each costs a prepared statement per connection. */
export const MAX_NAMED = 128;

/**
 * Of {@link MAX_NAMED}, the most that shapes may take (`prepare: 'shape'`: a statement whose text
 * varies with its input, as a receipt group's with other modules' parts): a burst of new shapes
 * cannot take every name and leave later fixed statements unnamed — they keep at least
 * `MAX_NAMED - MAX_SHAPES_NAMED` (issue 16, tenth round).
 */
export const MAX_SHAPES_NAMED = 64;

/**
 * The names of a store's prepared statements: text → `deputy_<generation>_<sha-256 prefix>`,
 * bounded by {@link MAX_NAMED}, of which shapes take at most {@link MAX_SHAPES_NAMED}. First come,
 * first named: a text named keeps its name until a schema change ({@link invalidate}).
 */
export class StatementNames {
  #names = new Map<string, string>();
  #shapes = 0;
  #generation = 0;

  /**
   * The name for `sql`, or `undefined` when the bound is reached (run it unnamed).
   * @param shape - `sql` is one shape of a statement whose text varies with its input.
   */
  nameOf(sql: string, shape = false): string | undefined {
    const known = this.#names.get(sql);
    if (known !== undefined || this.#names.size >= MAX_NAMED || (shape && this.#shapes >= MAX_SHAPES_NAMED)) return known;
    if (shape) this.#shapes += 1;
    const name = `deputy_${this.#generation}_${sha256(sql).toString('hex').slice(0, 24)}`;
    this.#names.set(sql, name);
    return name;
  }

  /**
   * Forgets every name after a schema change: statements are named afresh (a new generation), so
   * one prepared before the change, whose result type may differ now, is never executed again.
   */
  invalidate(): void {
    this.#names.clear();
    this.#shapes = 0;
    this.#generation += 1;
  }
}

/**
 * Whether a statement failed because its prepared plan predates a change of its result columns
 * (SQLSTATE 0A000 with PostgreSQL's message; plancache.c): it succeeds when prepared afresh.
 */
export function isStalePlan(err: unknown): boolean {
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  return code === '0A000' && typeof message === 'string' && message.includes('cached plan must not change result type');
}

/**
 * Whether a named statement failed because it must be prepared again under a new name: its plan
 * is stale ({@link isStalePlan}), or its session no longer has it (SQLSTATE 26000
 * invalid_sql_statement_name: a `DEALLOCATE` / `DISCARD ALL`, as a connection pooler resetting a
 * server connection sends), while the driver still counts it as prepared on that connection.
 * Or a column's type changed under one of its parameters (42883 undefined_function, 42804
 * datatype_mismatch): PostgreSQL re-plans a named statement with the parameter types fixed at its
 * `Parse`, where the same text parsed afresh infers the new type. A statement that is simply
 * wrong fails the same way once more, having changed nothing (it failed at analysis).
 */
export function mustPrepareAgain(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return isStalePlan(err) || code === '26000' || code === '42883' || code === '42804';
}

/** Concatenates protocol messages into one buffer: PGlite runs a buffer's messages in one call. */
function batch(...messages: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(messages.reduce((n, m) => n + m.length, 0));
  let at = 0;
  for (const m of messages) {
    out.set(m, at);
    at += m.length;
  }
  return out;
}

/** What a named statement's `Describe` told when it was prepared: its parameter types and the row shape of its results. */
export interface PreparedShape {
  /** Parameter type OIDs, in order (PostgreSQL `ParameterDescription`). */
  types: number[];
  /** The `RowDescription` of its result rows (field names and type OIDs), or `undefined` for a statement that returns none (`NoData`). */
  rows: BackendMessage | undefined;
}

/** The backend message type of PGlite's protocol parser, as `parseResults` takes it. */
type BackendMessage = Parameters<typeof pgliteParse.parseResults>[0][number];

/**
 * Runs `sql` as the named statement `name` on PGlite: the first time, `Close` (a leftover of that
 * name is dropped; closing none is no error) + `Parse` + `Describe` (parameter types and row
 * shape) + `Sync`; every time, `Bind` + `Execute` + `Sync` in one call into the database.
 * PGlite's own `query` sends an unnamed `Parse` and five more protocol calls per statement.
 *
 * No `Describe` of the portal per execution: a named statement's result columns are fixed by its
 * `Parse` (PostgreSQL refuses to run one whose result type changed — "cached plan must not change
 * result type", {@link isStalePlan} — and the caller prepares it again), and a portal bound with
 * the default (text) result formats returns rows exactly as the statement's `RowDescription` says
 * (protocol §55.2.3: only the format codes differ, and text is the default). So the row shape
 * described once at `Parse` parses every execution's rows, and each execution saves the
 * describe step inside the database and the parse of a `RowDescription` message in JavaScript
 * (issue 16, eighth round).
 *
 * The caller holds PGlite's mutexes as its `query` does (query mutex; outside a transaction the
 * transaction mutex too) and syncs the data folder after a statement outside a transaction.
 *
 * @param described the shape of each statement already prepared on `db`, by name (filled here)
 * @returns the statement's rows, parsed by PGlite's own type parsers
 * @throws PGlite's `DatabaseError` (with `code`, `constraint`) as its `query` does
 */
export async function runNamedOnPGlite<R>(db: PGlite, described: Map<string, PreparedShape>, name: string, sql: string, params: readonly unknown[]): Promise<R[]> {
  const { serialize } = protocol;
  let shape = described.get(name);
  if (!shape) {
    const messages = await db.execProtocolStream(
      batch(serialize.close({ type: 'S', name }), serialize.parse({ name, text: sql }), serialize.describe({ type: 'S', name }), serialize.sync()),
      { syncToFs: false },
    );
    shape = { types: pgliteParse.parseDescribeStatementResults(messages), rows: messages.find((m) => m.name === 'rowDescription') };
    described.set(name, shape);
  }
  const { types } = shape;
  const values = params.map((param, i) => {
    if (param === null || param === undefined) return null;
    const serializer = db.serializers[types[i]!];
    return serializer ? serializer(param) : String(param);
  });
  // A statement the session lost (26000) is named afresh by the caller ({@link mustPrepareAgain}).
  const messages = await db.execProtocolStream(batch(serialize.bind({ statement: name, values }), serialize.execute({}), serialize.sync()), { syncToFs: false });
  if (shape.rows === undefined) return [];
  return (pgliteParse.parseResults([shape.rows, ...messages], db.parsers)[0]?.rows ?? []) as R[];
}
