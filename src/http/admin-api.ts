/**
 * The admin API's one dialect, shared by every `/admin/*` route (agents, connections, policies,
 * receipts):
 *
 * - **Member names are snake_case** on read and on write, like the OAuth documents Deputy lives
 *   among (`client_id`, `jwks_uri`, RFC 7591 §2). The services and the YAML configuration keep
 *   their camelCase names (`maxDelegationDepth`); {@link wireFields} maps one to the other at the
 *   HTTP edge only. A camelCase spelling on write is refused, naming the right one.
 * - **Unknown members are refused**: every write schema is strict, and the refusal names the member.
 * - **Timestamps are RFC 3339 UTC strings** (`2026-11-29T17:11:22.123Z`, {@link wireTime}):
 *   readable in logs and shells, ordered as text, and already what most of the admin API sent.
 *   Epoch seconds (JWT NumericDate) stay only inside signed JWTs and receipts, which are
 *   reproduced exactly as signed.
 * - **One pagination** ({@link pageRequest} / {@link nextCursor}): `limit` (1–200, default 50)
 *   and an opaque `cursor` in; `next_cursor` (or `null` on the last page) out.
 * - **One authentication path** ({@link requireAdmin}) and `Cache-Control: no-store` on every
 *   admin response ({@link adminNoStore}).
 *
 * @module
 */
import type Koa from 'koa';
import type { z } from 'zod';
import { InvalidRequest } from '../errors/index.js';
import type { AuthenticatedRequest } from '../oauth/access-token.js';
import { ADMIN_SCOPE } from '../oauth/deputy-own.js';
import type { Authenticate } from './util.js';
import { noStore } from '../util/http.js';

/** Where the admin API lives: `/admin` and everything under it. */
export const ADMIN_PREFIX = '/admin';

/**
 * `Cache-Control: no-store` on every response under {@link ADMIN_PREFIX}, answered or refused,
 * matched route or not (RFC 9111 §5.2.2.5): admin responses describe credentials and policy.
 * Installed once, application-wide (src/http/app.ts).
 */
export function adminNoStore(): Koa.Middleware {
  // Not `async`: passes `next()`'s promise on (one promise fewer per request, issue 16).
  return function adminResponsesNoStore(ctx, next) {
    if (ctx.path === ADMIN_PREFIX || ctx.path.startsWith(`${ADMIN_PREFIX}/`)) noStore(ctx);
    return next();
  };
}

/**
 * Authenticates an admin call, the one path every admin router uses: a Deputy token for the
 * admin resource (`audience`) with `deputy:admin`, issued to an operator client
 * (`operatorAuthenticate` in ./util.ts). The caller lands in `ctx.state.auth` and in the log.
 *
 * @throws InvalidToken / InsufficientScope / DPoP errors from `authenticate` (401 / 403).
 */
export function requireAdmin(deps: { authenticate: Authenticate; audience: string }): Koa.Middleware {
  return async function authenticateAdmin(ctx, next) {
    const auth: AuthenticatedRequest = await deps.authenticate(ctx, deps.audience, ADMIN_SCOPE);
    ctx.state.auth = auth;
    ctx.state.log.info({ admin: auth.claims.client_id, method: ctx.method, path: ctx.path }, 'admin call');
    await next();
  };
}

// ---------------------------------------------------------------------------------------------
// Timestamps

/**
 * The admin API's timestamp: an RFC 3339 §5.6 `date-time` in UTC with milliseconds.
 *
 * @param at an ISO string, a `Date`, or epoch **seconds** (the unit JWT NumericDate and the
 *   connection store use); `undefined` / `null` give `null`.
 */
export function wireTime(at: string | number | Date | null | undefined): string | null {
  if (at === undefined || at === null) return null;
  const date = typeof at === 'number' ? new Date(at * 1000) : new Date(at);
  return date.toISOString();
}

// ---------------------------------------------------------------------------------------------
// Member names

/** `maxDelegationDepth` → `max_delegation_depth`; snake_case names are returned unchanged. */
export function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/**
 * The two spellings of one resource's writable top-level members: internal (services, YAML) and
 * wire (admin API, {@link snakeCase}). Nested values (JWK Sets, routes, `authorization_params`)
 * are passed through untouched: their members are already protocol names or the operator's own
 * keys.
 */
export interface WireFields {
  /** Every wire name, e.g. `max_delegation_depth`, `jwks_uri`. */
  readonly wire: ReadonlySet<string>;
  /** wire → internal, for the members whose spellings differ. */
  readonly fromWire: ReadonlyMap<string, string>;
}

/** The {@link WireFields} of the given internal member names. */
export function wireFields(internalNames: Iterable<string>): WireFields {
  const fromWire = new Map<string, string>();
  for (const name of internalNames) fromWire.set(snakeCase(name), name);
  return { wire: new Set(fromWire.keys()), fromWire: new Map([...fromWire].filter(([wire, internal]) => wire !== internal)) };
}

/** The member names of a zod object schema, or of every option of a union of them. */
export function schemaMembers(schema: z.ZodType): string[] {
  const s = schema as unknown as { shape?: Record<string, unknown>; options?: z.ZodType[] };
  if (s.shape) return Object.keys(s.shape);
  if (s.options) return [...new Set(s.options.flatMap(schemaMembers))];
  return [];
}

/** `value` with its top-level members renamed to their wire spelling ({@link snakeCase}). */
export function toWire(value: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [snakeCase(k), v]));
}

/**
 * The wire name a write member misspells: any other spelling of a wire member that snake-cases
 * to it (`maxDelegationDepth`, `jwksUri` → `max_delegation_depth`, `jwks_uri`).
 */
function rightSpelling(member: string, fields: WireFields): string | undefined {
  const wire = snakeCase(member);
  return wire !== member && fields.wire.has(wire) ? wire : undefined;
}

/**
 * Reads an admin request body: refuses the internal spelling of any member (400
 * `invalid_request`: "maxDelegationDepth is not a field; use max_delegation_depth"), renames wire
 * members to their internal names, validates with the strict `schema`, and reports failures with
 * wire names (`max_delegation_depth: …`, `"foo" is not a field`).
 *
 * @param what names the body in errors ("agent", "connection").
 * @throws InvalidRequest naming each failing member (at most 10).
 */
export function parseAdminBody<S extends z.ZodType>(schema: S, body: unknown, what: string, fields: WireFields): z.infer<S> {
  if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new InvalidRequest(`${what} must be a JSON object`);
  }
  const misspelt = Object.keys(body).flatMap((k) => {
    const right = rightSpelling(k, fields);
    return right === undefined ? [] : [`${k} is not a field; use ${right}`];
  });
  if (misspelt.length) throw new InvalidRequest(`invalid ${what}: ${misspelt.slice(0, 10).join('; ')}`);
  const internal = Object.fromEntries(Object.entries(body).map(([k, v]) => [fields.fromWire.get(k) ?? k, v]));
  const result = schema.safeParse(internal);
  if (result.success) return result.data;
  const issues = result.error.issues.slice(0, 10).map((issue) => describeIssue(issue, fields));
  throw new InvalidRequest(`invalid ${what}: ${issues.join('; ')}`);
}

function describeIssue(issue: z.core.$ZodIssue, fields: WireFields): string {
  const path = issue.path.map((p, i) => (i === 0 && typeof p === 'string' ? snakeCase(p) : String(p))).join('.');
  if (issue.code === 'unrecognized_keys') {
    const named = issue.keys.map((k) => `"${k}" is not a field`).join('; ');
    return path ? `${path}: ${named}` : named;
  }
  return `${path || '(root)'}: ${inWireNames(issue.message, fields)}`;
}

/** Messages written for the YAML (e.g. "set allowInsecureHttp") name the wire member instead. */
function inWireNames(message: string, fields: WireFields): string {
  return message.replace(/\b[a-z][A-Za-z]*[A-Z][A-Za-z]*\b/g, (word) => (fields.wire.has(snakeCase(word)) ? snakeCase(word) : word));
}

// ---------------------------------------------------------------------------------------------
// Pagination

/** Page size bounds shared by every admin listing. */
export const PAGE_LIMIT = { default: 50, max: 200 } as const;

/** A listing's page request: at most `limit` items after the item keyed `after`. */
export interface PageRequest {
  limit: number;
  /** The key (id, or sequence number as text) of the last item of the previous page. */
  after?: string;
}

/**
 * Reads `limit` and `cursor` from a listing's query. A cursor is opaque to clients: the listing's
 * name and the last key of the previous page, base64url-encoded; a cursor of another listing, or
 * one whose key `validKey` refuses, is malformed.
 *
 * @param listing names the listing ("agents", "connections", "receipts"), bound into cursors.
 * @throws InvalidRequest (400) for a limit outside 1–200 or a malformed cursor.
 */
export function pageRequest(query: Record<string, unknown>, listing: string, validKey: (key: string) => boolean = () => true): PageRequest {
  const limit = parseLimit(query.limit);
  const cursor = query.cursor;
  if (cursor === undefined) return { limit };
  const after = typeof cursor === 'string' ? decodeCursor(cursor, listing) : undefined;
  if (after === undefined || !validKey(after)) throw new InvalidRequest('cursor is malformed: pass back the next_cursor of the previous page of this listing');
  return { limit, after };
}

/** The `next_cursor` member of a listing: a cursor after `lastKey`, or `null` on the last page. */
export function nextCursor(listing: string, lastKey: string | undefined): string | null {
  return lastKey === undefined ? null : Buffer.from(`${listing}:${lastKey}`, 'utf8').toString('base64url');
}

function parseLimit(raw: unknown): number {
  if (raw === undefined) return PAGE_LIMIT.default;
  const n = Number(raw);
  if (typeof raw !== 'string' || !/^\d{1,4}$/.test(raw) || n < 1 || n > PAGE_LIMIT.max) {
    throw new InvalidRequest(`limit must be an integer from 1 to ${PAGE_LIMIT.max}`);
  }
  return n;
}

function decodeCursor(cursor: string, listing: string): string | undefined {
  if (!/^[A-Za-z0-9_-]{1,400}$/.test(cursor)) return undefined;
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  return text.startsWith(`${listing}:`) && text.length > listing.length + 1 ? text.slice(listing.length + 1) : undefined;
}
