/**
 * Small helpers shared by Deputy's routes: JSON body parsing with limits, schema validation
 * that names the failing fields, and the bridge from a Koa request to the framework-free
 * access-token verifier.
 *
 * @module
 */
import { bodyParser } from '@koa/bodyparser';
import type Koa from 'koa';
import type { z } from 'zod';
import { InvalidRequest, PayloadTooLarge, UnsupportedMediaType } from '../errors/index.js';
import type { AccessTokenVerifier, AuthenticatedRequest } from '../oauth/access-token.js';

/** Authenticates a Koa request for a Deputy resource (audience) and optional scope. */
export type Authenticate = (ctx: Koa.Context, audience: string, scope?: string) => Promise<AuthenticatedRequest>;

/**
 * `verifier.authenticate` for a Koa request. The DPoP `htu` is built from the issuer, not from
 * the Host header, so a proof is checked against the URL the client was told to use.
 */
export function koaAuthenticate(verifier: AccessTokenVerifier, issuer: string): Authenticate {
  const base = issuer.replace(/\/$/, '');
  return (ctx, audience, scope) =>
    verifier.authenticate(
      {
        authorization: ctx.get('Authorization') || undefined,
        dpopProofs: headerValues(ctx.req.headersDistinct?.dpop),
        method: ctx.method,
        url: base + ctx.path,
      },
      audience,
      scope,
    );
}

function headerValues(v: string[] | undefined): string[] {
  return (v ?? []).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
}

/** JSON bodies only, within the limit; a malformed body is `invalid_request`. */
export function jsonBody(limitBytes: number): Koa.Middleware {
  const parse = bodyParser({
    enableTypes: ['json'],
    jsonLimit: limitBytes,
    encoding: 'utf-8',
    onError: (err) => {
      const status = (err as { status?: number }).status;
      if (status === 413) throw new PayloadTooLarge(limitBytes);
      throw new InvalidRequest('request body is not valid JSON');
    },
  });
  return async function parseJsonBody(ctx, next) {
    if (ctx.method === 'GET' || ctx.method === 'HEAD' || ctx.method === 'DELETE') return next();
    if (ctx.request.length && !ctx.is('application/json')) throw new UnsupportedMediaType('application/json');
    return parse(ctx, next);
  };
}

/** Validates `input` with `schema`; the error lists each failing field as `path: problem`. */
export function parseWith<S extends z.ZodType>(schema: S, input: unknown, what: string): z.infer<S> {
  if (input === undefined || input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new InvalidRequest(`${what} must be a JSON object`);
  }
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issues = result.error.issues.slice(0, 10).map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
  throw new InvalidRequest(`invalid ${what}: ${issues.join('; ')}`);
}
