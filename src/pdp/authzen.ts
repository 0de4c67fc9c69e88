/**
 * The AuthZEN Authorization API 1.0 wire format ↔ the PDP's own types: request parsing and
 * validation, and the response bodies. No HTTP here (src/http/authzen.ts is the transport).
 *
 * Parsing follows the spec where it is strict and is liberal where drafts differed:
 * - §5, §6.1 and §10.1.1 (JSON Serialization): `subject`, `action`, `resource` are required, with string `type` / `id` /
 *   `name`; a missing or ill-typed one is a 400 (InvalidRequest). Unknown members are ignored.
 * - Draft 00 put attributes directly on the subject / resource (`"ownerID": …`); those members
 *   are read as properties (a `properties` member wins over a top-level one of the same name).
 * - §7.1 `evaluations`: top-level `subject` / `action` / `resource` / `context` are defaults
 *   for each item (§7.1.1 "Default values"). An item that omits a member — or sends it as
 *   `null`, as typed PEP SDKs serialise an unset field — inherits the default whole; an item
 *   that gives a member replaces the default whole (entity-level override: no merging of `type`,
 *   `id`, `name` or `properties` between the two, as the AuthZEN certification scenario c-3-2-7
 *   states). An item that is still incomplete gets `decision: false` with an error in its place
 *   (§7.2.1 "Errors"), the rest of the batch is evaluated. A missing or empty `evaluations` is a
 *   single evaluation.
 * - §8.2 pagination: `page.token` (and the older `page.next_token`), `page.limit`.
 *
 * @module
 */
import { InvalidRequest } from '../errors/index.js';
import type { Decision } from './decision.js';
import type { EntityInput } from './entities.js';
import { isObject } from './schema.js';
import { setMember } from '../util/own-member.js';
import { iJsonProblem, MAX_JSON_DEPTH } from '../util/i-json.js';

/** An AuthZEN Action (§5.3): its name and properties. */
export interface ActionInput {
  name: string;
  properties: Readonly<Record<string, unknown>>;
}

/** One Access Evaluation request (§6.1): subject, action, resource, context (absent = `{}`). */
export interface EvaluationInput {
  subject: EntityInput;
  action: ActionInput;
  resource: EntityInput;
  context: Readonly<Record<string, unknown>>;
}

/** One item of a batch: a complete evaluation, or why it is not one. */
export type BatchItem = { ok: true; evaluation: EvaluationInput } | { ok: false; error: string };

/** `options.evaluations_semantic` of a batch (§7.1.2); `execute_all` by default. */
export type EvaluationsSemantic = 'execute_all' | 'deny_on_first_deny' | 'permit_on_first_permit';
const SEMANTICS: readonly EvaluationsSemantic[] = ['execute_all', 'deny_on_first_deny', 'permit_on_first_permit'];

/** A parsed `/evaluations` body: one evaluation (no `evaluations` member, §7.1), or a batch. */
export type EvaluationsInput = { kind: 'single'; evaluation: EvaluationInput } | { kind: 'batch'; items: BatchItem[]; semantic: EvaluationsSemantic };

/** What a search (§8) enumerates. */
export type SearchKind = 'subject' | 'resource' | 'action';

/** A parsed search request (§8), page included (§8.2). */
export interface SearchInput {
  kind: SearchKind;
  /** For a subject search, only `type` (and `properties`) matter: the id is ignored (§8.4.1). */
  subject: EntityInput;
  /** Absent for an action search. */
  action: ActionInput | undefined;
  /** For a resource search, only `type` (and `properties`) matter. */
  resource: EntityInput;
  context: Readonly<Record<string, unknown>>;
  page: { token: string | undefined; limit: number | undefined };
}

const ENTITY_MEMBERS = new Set(['type', 'id', 'properties']);
const MAX_STRING = 8 * 1024;

/**
 * Rejects a body nested deeper than `max` levels (AuthZEN 1.0 §11.7: nested JSON attacks;
 * `pdp.maxJsonDepth`, at most {@link MAX_JSON_DEPTH}). Lone surrogates are not refused here: the
 * PDP denies them with `invalid_input`, as it does an unknown entity type (./pdp.ts).
 *
 * @throws InvalidRequest (400 `invalid_request`) naming where the nesting goes too deep.
 */
export function checkDepth(value: unknown, max: number): void {
  const problem = iJsonProblem(value, 'the request body', { maxDepth: max, depthOnly: true });
  if (problem) throw new InvalidRequest(problem);
}

/** `POST /access/v1/evaluation` (§6.1). */
export function parseEvaluation(body: unknown): EvaluationInput {
  const b = requireObject(body, 'request body');
  return {
    subject: entity(b.subject, 'subject', true),
    action: action(b.action, 'action'),
    resource: entity(b.resource, 'resource', true),
    context: optionalObject(b.context, 'context'),
  };
}

/**
 * `POST /access/v1/evaluations` (§7.1): a single evaluation when `evaluations` is absent or empty,
 * else one {@link BatchItem} per item, its members taken from the item or, when the item omits
 * them (or sends `null`), from the top-level defaults — whole, never merged member by member.
 *
 * @throws InvalidRequest (400) for a malformed batch: `evaluations` not an array or over
 *   `maxBatch` items, `options` not an object, an unknown `options.evaluations_semantic`.
 */
export function parseEvaluations(body: unknown, maxBatch: number): EvaluationsInput {
  const b = requireObject(body, 'request body');
  if (b.evaluations !== undefined && b.evaluations !== null && !Array.isArray(b.evaluations)) throw new InvalidRequest('evaluations must be an array');
  const list = (b.evaluations ?? []) as unknown[];
  if (list.length === 0) return { kind: 'single', evaluation: parseEvaluation(b) };
  if (list.length > maxBatch) throw new InvalidRequest(`evaluations has ${list.length} items; at most ${maxBatch} are accepted`);
  const options = optionalObject(b.options, 'options');
  const semantic = options.evaluations_semantic ?? 'execute_all';
  if (!SEMANTICS.includes(semantic as EvaluationsSemantic)) throw new InvalidRequest(`options.evaluations_semantic must be one of ${SEMANTICS.join(', ')}`);
  // Defaults are parsed when they are used, so a malformed default fails only the items relying on it.
  const items = list.map((raw, i): BatchItem => {
    try {
      const item = requireObject(raw, `evaluations[${i}]`);
      // Omitted and null alike inherit the default; a given value replaces it whole.
      const pick = (name: 'subject' | 'action' | 'resource' | 'context') => item[name] ?? b[name];
      return {
        ok: true,
        evaluation: {
          subject: entity(pick('subject'), 'subject', true),
          action: action(pick('action'), 'action'),
          resource: entity(pick('resource'), 'resource', true),
          context: optionalObject(pick('context'), 'context'),
        },
      };
    } catch (err) {
      if (err instanceof InvalidRequest) return { ok: false, error: err.description };
      throw err;
    }
  });
  return { kind: 'batch', items, semantic: semantic as EvaluationsSemantic };
}

/** `POST /access/v1/search/{subject,resource,action}` (§8). */
export function parseSearch(kind: SearchKind, body: unknown): SearchInput {
  const b = requireObject(body, 'request body');
  const page = optionalObject(b.page, 'page');
  const token = page.token ?? page.next_token;
  if (token !== undefined && token !== null && typeof token !== 'string') throw new InvalidRequest('page.token must be a string');
  const limit = page.limit;
  if (limit !== undefined && limit !== null && (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 0)) {
    throw new InvalidRequest('page.limit must be a non-negative integer');
  }
  return {
    kind,
    subject: entity(b.subject, 'subject', kind !== 'subject'),
    action: kind === 'action' ? undefined : action(b.action, 'action'),
    resource: entity(b.resource, 'resource', kind !== 'resource'),
    context: optionalObject(b.context, 'context'),
    page: { token: typeof token === 'string' && token !== '' ? token : undefined, limit: typeof limit === 'number' ? limit : undefined },
  };
}

function entity(raw: unknown, what: 'subject' | 'resource', idRequired: boolean): EntityInput {
  if (raw === undefined || raw === null) throw new InvalidRequest(`${what} is required`);
  const e = requireObject(raw, what);
  const type = requireString(e.type, `${what}.type`);
  let id = '';
  if (idRequired) id = requireString(e.id, `${what}.id`, true);
  else if (e.id !== undefined && e.id !== null && typeof e.id !== 'string') throw new InvalidRequest(`${what}.id must be a string`);
  const properties: Record<string, unknown> = {};
  // setMember, not `=` / Object.assign: a property named `__proto__` stays a property (src/util/own-member.ts).
  for (const [k, v] of Object.entries(e)) if (!ENTITY_MEMBERS.has(k)) setMember(properties, k, v); // draft 00
  for (const [k, v] of Object.entries(optionalObject(e.properties, `${what}.properties`))) setMember(properties, k, v);
  return { type, id, properties };
}

function action(raw: unknown, what: string): ActionInput {
  if (raw === undefined || raw === null) throw new InvalidRequest(`${what} is required`);
  const a = requireObject(raw, what);
  return { name: requireString(a.name, `${what}.name`), properties: optionalObject(a.properties, `${what}.properties`) };
}

function requireObject(v: unknown, what: string): Record<string, unknown> {
  if (!isObject(v)) throw new InvalidRequest(`${what} must be a JSON object`);
  return v;
}

function optionalObject(v: unknown, what: string): Record<string, unknown> {
  if (v === undefined || v === null) return {};
  return requireObject(v, what);
}

function requireString(v: unknown, what: string, allowEmpty = false): string {
  if (v === undefined || v === null) throw new InvalidRequest(`${what} is required`);
  if (typeof v !== 'string') throw new InvalidRequest(`${what} must be a string`);
  if (!allowEmpty && v.length === 0) throw new InvalidRequest(`${what} must not be empty`);
  if (v.length > MAX_STRING) throw new InvalidRequest(`${what} is longer than ${MAX_STRING} characters`);
  return v;
}

/** How much of a denial a caller sees (AuthZEN 1.0 §5.5.2: `reason_admin` must not be shared with end users). */
export type Explain = 'admin' | 'user';

/** A Decision (§5.5) as the wire object: `{ decision }`, and `context` with reasons on a deny. */
export function decisionBody(d: Decision, explain: Explain): Record<string, unknown> {
  if (d.decision) return { decision: true };
  const { denial } = d;
  const context: Record<string, unknown> = { id: denial.kind, reason_user: { en: denial.user } };
  if (explain === 'admin') {
    context.reason_admin = { en: denial.admin };
    if (denial.link) context.link = denial.link;
    if (denial.policies.length > 0) context.policies = denial.policies;
  }
  return { decision: false, context };
}

/** A batch item that could not be parsed: denied in place (§7.2.1 "Errors"). */
export function itemErrorBody(message: string): Record<string, unknown> {
  return { decision: false, context: { id: 'invalid_request', error: { status: 400, message } } };
}
