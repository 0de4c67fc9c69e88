/**
 * Small helpers shared by Deputy's routes: JSON body parsing with limits, schema validation
 * that names the failing fields, and the bridge from a Koa request to the framework-free
 * access-token verifier.
 *
 * @module
 */
import { bodyParser } from '@koa/bodyparser';
import type Koa from 'koa';
import type { AdminClientConfig } from '../config/schema.js';
import { InvalidRequest, InvalidToken, PayloadTooLarge, UnsupportedMediaType } from '../errors/index.js';
import { withChallenge, type AccessTokenVerifier, type AuthenticatedRequest } from '../oauth/access-token.js';
import type { OperatorTokenRevocations } from '../oauth/operator-token-revocation.js';
import { protoMemberRefusals } from '../util/own-member.js';
import { iJsonProblem } from '../util/i-json.js';

/** Authenticates a Koa request for a Deputy resource (audience) and optional scope. */
export type Authenticate = (ctx: Koa.Context, audience: string, scope?: string) => Promise<AuthenticatedRequest>;

/**
 * `verifier.authenticate` for a Koa request. The DPoP `htu` is built from the issuer, not from
 * the Host header, so a proof is checked against the URL the client was told to use. A fresher
 * DPoP nonce goes out in `DPoP-Nonce` (RFC 9449 §9).
 */
export function koaAuthenticate(verifier: AccessTokenVerifier, issuer: string): Authenticate {
  return async (ctx, audience, scope) => {
    const auth = await verifier.authenticate(
      {
        authorization: ctx.get('Authorization') || undefined,
        dpopProofs: headerValues(ctx.req.headersDistinct?.dpop),
        method: ctx.method,
        url: issuer + ctx.path,
      },
      audience,
      scope,
    );
    if (auth.dpopNonce !== undefined) ctx.set('DPoP-Nonce', auth.dpopNonce);
    return auth;
  };
}

/** Operator clients (`admin.clients`): client_id → the scopes the client may hold. */
export type OperatorClients = ReadonlyMap<string, ReadonlySet<string>>;

export function operatorClients(clients: readonly AdminClientConfig[]): OperatorClients {
  return new Map(clients.map((c) => [c.client_id, new Set<string>(c.scopes)]));
}

/**
 * `authenticate` for Deputy's operator surfaces (`/admin/*`, `/access/v1/*`): besides audience
 * and scope, the token must have been issued by client_credentials to an operator client
 * configured with that scope — never by token exchange (no `act`, RFC 8693 §4.1) and never to an
 * agent — and not revoked (RFC 7009, `revocations`: at once through this instance, within 2 s
 * through another). Defence in depth: the token endpoint already refuses Deputy's own scopes and
 * resources to agents (src/oauth/deputy-own.ts), so such a token should not exist; if it does, it
 * is refused here with 401 `invalid_token` (RFC 6750 §3.1) and the scheme's challenge, as is a
 * revoked one. A store failure reading revocations propagates (503: fail closed).
 */
export function operatorAuthenticate(authenticate: Authenticate, operators: OperatorClients, revocations: OperatorTokenRevocations): Authenticate {
  return async (ctx, audience, scope) => {
    const auth = await authenticate(ctx, audience, scope);
    const allowed = operators.get(auth.claims.client_id);
    if (auth.claims.act !== undefined || allowed === undefined || (scope !== undefined && !allowed.has(scope))) {
      throw withChallenge(
        new InvalidToken(`this resource accepts only tokens issued to its operator clients (admin.clients${scope ? ` with ${scope}` : ''}); agent tokens are refused`),
        auth.scheme,
        scope,
      );
    }
    if (await revocations.isRevoked(auth.claims.jti!, auth.claims.exp!)) {
      throw withChallenge(new InvalidToken('this access token has been revoked'), auth.scheme, scope);
    }
    return auth;
  };
}

function headerValues(v: string[] | undefined): string[] {
  return (v ?? []).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
}

/**
 * JSON bodies only, within the limit; a malformed body is `invalid_request`. So is one with a
 * member named `__proto__` (at any depth), naming its path: the parser refuses it (co-body's
 * prototype-poisoning check), and zod would drop it from a record silently if it did not
 * (src/util/own-member.ts); "not valid JSON" sent the writer looking for a syntax error. And so
 * is a body that is not I-JSON or nests deeper than `MAX_JSON_DEPTH` (src/util/i-json.ts), naming
 * where: the AuthZEN bodies, MCP arguments and LLM bodies already were (issue 16, fourteenth round
 * red team: a JWK member named with a lone surrogate was a 500 on `POST /admin/agents`).
 */
export function jsonBody(limitBytes: number): Koa.Middleware {
  const parse = bodyParser({
    enableTypes: ['json'],
    jsonLimit: limitBytes,
    encoding: 'utf-8',
    onError: (err) => {
      const status = (err as { status?: number }).status;
      if (status === 413) throw new PayloadTooLarge(limitBytes);
      const proto = protoMembersOf((err as { body?: unknown }).body);
      if (proto.length) throw new InvalidRequest(`invalid request body: ${proto.join('; ')}`);
      throw new InvalidRequest('request body is not valid JSON');
    },
  });
  return async function parseJsonBody(ctx, next) {
    if (ctx.method === 'GET' || ctx.method === 'HEAD' || ctx.method === 'DELETE') return next();
    if (ctx.request.length && !ctx.is('application/json')) throw new UnsupportedMediaType('application/json');
    return parse(ctx, async () => {
      // Stored as given (jsonb, a text column) and echoed: a lone surrogate would fail the store
      // (500) or come back as U+FFFD, and nesting past the stack would fail JSON.stringify.
      const problem = iJsonProblem(ctx.request.body, 'the request body');
      if (problem) throw new InvalidRequest(problem);
      await next();
    });
  };
}

/** The refusals of the members named `__proto__` in a body the parser refused (10 at most); none when it is no JSON at all. */
function protoMembersOf(text: unknown): string[] {
  if (typeof text !== 'string') return [];
  try {
    return protoMemberRefusals(JSON.parse(text) as unknown, 10);
  } catch {
    return [];
  }
}
