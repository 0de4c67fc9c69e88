/**
 * Receipts over HTTP:
 *
 * - `GET /receipts/jwks` — the public receipt keys (RFC 7517 JWK Set), every key that ever signed
 *   a receipt. Public like `/jwks`: auditors verify offline with it.
 * - `GET /admin/agents/:id/receipts?limit&cursor` — an agent's receipts in chain order, paged,
 *   with the chain head.
 * - `GET /admin/agents/:id/receipts/export?from&to` — a range (default: the whole chain up to the
 *   head when the export starts) as JSON Lines, streamed.
 * - `GET /admin/receipts/:id` — one receipt.
 *
 * Admin routes require a `deputy:admin` token for the admin resource, like `/admin/agents`, and
 * follow the admin API's dialect (./admin-api.ts): the listing pages like every other, and each
 * receipt carries `issued_at` (RFC 3339) beside its `claims`, which are reproduced as signed
 * (`iat` stays a JWT NumericDate).
 *
 * @module
 */
import { Readable } from 'node:stream';
import Router from '@koa/router';
import type { ReceiptService } from '../audit/receipts.js';
import { formatLine, JSONL_MEDIA_TYPE } from '../audit/jsonl.js';
import type { SignedReceipt } from '../audit/receipt.js';
import { InvalidRequest, NotFound } from '../errors/index.js';
import type { KeyStore } from '../keys/index.js';
import { nextCursor, pageRequest, requireAdmin, wireTime } from './admin-api.js';
import type { Authenticate } from './util.js';

/** Where the receipt-signing JWKS (RFC 7517 §5) is published, for auditors. */
export const RECEIPTS_JWKS_PATH = '/receipts/jwks';

export interface ReceiptRoutesDeps {
  receipts: ReceiptService;
  keys: Pick<KeyStore, 'receiptJwks'>;
  authenticate: Authenticate;
  /** The admin resource identifier (token audience). */
  audience: string;
}

export function receiptRoutes(deps: ReceiptRoutesDeps): Router {
  const router = new Router();
  const admin = requireAdmin(deps);

  router.get(RECEIPTS_JWKS_PATH, async function receiptJwks(ctx) {
    ctx.type = 'application/jwk-set+json; charset=utf-8';
    ctx.set('Cache-Control', 'public, max-age=300');
    ctx.body = deps.keys.receiptJwks();
  });

  router.get('/admin/agents/:id/receipts', admin, async function listReceipts(ctx) {
    const agent = agentParam(ctx.params.id);
    const { limit, after } = pageRequest(ctx.query, `receipts/${agent}`, (key) => /^\d{1,15}$/.test(key));
    const afterSeq = after === undefined ? 0 : Number(after);
    const [page, head] = await Promise.all([deps.receipts.list(agent, { afterSeq, limit }), deps.receipts.head(agent)]);
    ctx.body = {
      agent,
      head: head ?? null,
      receipts: page.receipts.map(view),
      next_cursor: nextCursor(`receipts/${agent}`, page.next === undefined ? undefined : String(page.next)),
    };
  });

  router.get('/admin/agents/:id/receipts/export', admin, async function exportReceipts(ctx) {
    const agent = agentParam(ctx.params.id);
    const from = intParam(ctx.query.from, 'from', 1) ?? 1;
    // Up to the head as the export starts: receipts appended meanwhile belong to the next export.
    const to = intParam(ctx.query.to, 'to', 1) ?? (await deps.receipts.head(agent))?.seq ?? 0;
    if (to < from && ctx.query.to !== undefined) throw new InvalidRequest('"to" must not be less than "from"');
    ctx.type = `${JSONL_MEDIA_TYPE}; charset=utf-8`;
    ctx.attachment(`receipts-${agent.replace(/[^A-Za-z0-9._-]/g, '_')}-${from}-${to}.jsonl`);
    ctx.body = Readable.from(lines(deps.receipts.range(agent, from, to)));
  });

  router.get('/admin/receipts/:id', admin, async function readReceipt(ctx) {
    const id = ctx.params.id!;
    const receipt = id.length <= 256 ? await deps.receipts.get(id) : undefined;
    if (!receipt) throw new NotFound(`receipt "${id.slice(0, 256)}" does not exist`);
    ctx.body = view(receipt);
  });

  return router;
}

async function* lines(receipts: AsyncIterable<SignedReceipt>): AsyncGenerator<string> {
  for await (const r of receipts) yield formatLine(r);
}

/**
 * The wire view: the stored receipt, its claims (decoded, as signed) and `issued_at`, the claims'
 * `iat` (NumericDate, seconds) as the admin API's RFC 3339 timestamp.
 */
function view(r: SignedReceipt): Record<string, unknown> {
  const claims = JSON.parse(Buffer.from(r.jws.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
  const issuedAt = typeof claims.iat === 'number' ? wireTime(claims.iat) : null;
  return { id: r.id, agent: r.agent, seq: r.seq, hash: r.hash, prev: r.prev, issued_at: issuedAt, receipt: r.jws, claims };
}

function agentParam(raw: string | undefined): string {
  if (!raw || raw.length > 256) throw new InvalidRequest('agent id must be 1 to 256 characters');
  return raw;
}

function intParam(raw: unknown, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== 'string' || !/^\d{1,15}$/.test(raw) || n < min || n > max) {
    throw new InvalidRequest(`${name} must be an integer from ${min}${max === Number.MAX_SAFE_INTEGER ? '' : ` to ${max}`}`);
  }
  return n;
}
