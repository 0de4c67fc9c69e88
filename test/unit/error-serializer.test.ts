/**
 * The one error serializer (src/errors/serialize.ts): every member of the error family renders
 * its status, body and headers; `expose: false` renders as a bare `server_error`; challenges
 * follow RFC 6750 §3 / RFC 9449 §7.1 / RFC 9728 §5.1; no stack, cause or secret reaches the body.
 */
import { describe, expect, it } from 'vitest';
import {
  AccessDenied, BadGateway, Conflict, ConnectionRequired, DeputyError, GatewayTimeout, InsufficientScope, InvalidClient,
  InvalidDpopProof, InvalidGrant, InvalidRequest, InvalidScope, InvalidTarget, InvalidToken, MethodNotAllowed, NotFound,
  PayloadTooLarge, ProtocolError, ServerError, TemporarilyUnavailable, UnauthorizedClient, UnsupportedMediaType,
  UnsupportedTokenType, UseDpopNonce,
} from '../../src/errors/index.js';
import { serializeError } from '../../src/errors/serialize.js';
import { SubjectTokenError } from '../../src/oauth/subject-token.js';

const NO_STORE = { 'Cache-Control': 'no-store' };

describe('serializeError: every code', () => {
  it.each<[string, DeputyError, number, Record<string, string>, Record<string, string>]>([
    ['invalid_request', new InvalidRequest('bad'), 400, { error: 'invalid_request', error_description: 'bad' }, NO_STORE],
    ['invalid_request (415)', new InvalidRequest('unsupported content type', { status: 415 }), 415, { error: 'invalid_request', error_description: 'unsupported content type' }, NO_STORE],
    ['invalid_client', new InvalidClient('client_assertion has no "exp"'), 401, { error: 'invalid_client', error_description: 'client_assertion has no "exp"' }, NO_STORE],
    ['invalid_grant', new InvalidGrant('the subject token has expired'), 400, { error: 'invalid_grant', error_description: 'the subject token has expired' }, NO_STORE],
    ['invalid_grant (subject token)', new SubjectTokenError('invalid_grant', 'subject_token has been revoked'), 400, { error: 'invalid_grant', error_description: 'subject_token has been revoked' }, NO_STORE],
    ['invalid_scope', new InvalidScope('no scope'), 400, { error: 'invalid_scope', error_description: 'no scope' }, NO_STORE],
    ['invalid_target', new InvalidTarget('one audience'), 400, { error: 'invalid_target', error_description: 'one audience' }, NO_STORE],
    ['unauthorized_client', new UnauthorizedClient('not yours'), 400, { error: 'unauthorized_client', error_description: 'not yours' }, NO_STORE],
    ['unsupported_token_type', new UnsupportedTokenType('cannot revoke'), 400, { error: 'unsupported_token_type', error_description: 'cannot revoke' }, NO_STORE],
    ['invalid_token', new InvalidToken('expired'), 401, { error: 'invalid_token', error_description: 'expired' }, NO_STORE],
    ['insufficient_scope', new InsufficientScope('deputy:admin'), 403, { error: 'insufficient_scope', error_description: 'the access token lacks the "deputy:admin" scope' }, NO_STORE],
    ['invalid_dpop_proof', new InvalidDpopProof('DPoP proof ath is missing'), 401, { error: 'invalid_dpop_proof', error_description: 'DPoP proof ath is missing' }, NO_STORE],
    ['invalid_dpop_proof at the token endpoint', new InvalidDpopProof('x').withStatus(400), 400, { error: 'invalid_dpop_proof', error_description: 'x' }, NO_STORE],
    ['use_dpop_nonce', new UseDpopNonce('n0nce'), 401, { error: 'use_dpop_nonce', error_description: 'a DPoP nonce is required; retry with the nonce in the DPoP-Nonce header' }, { 'DPoP-Nonce': 'n0nce', ...NO_STORE }],
    ['access_denied', new AccessDenied('policy says no'), 403, { error: 'access_denied', error_description: 'policy says no' }, NO_STORE],
    ['not_found', new NotFound('no such endpoint'), 404, { error: 'not_found', error_description: 'no such endpoint' }, NO_STORE],
    ['405', new MethodNotAllowed(), 405, { error: 'invalid_request', error_description: 'method not allowed on this endpoint' }, NO_STORE],
    ['conflict', new Conflict('exists'), 409, { error: 'conflict', error_description: 'exists' }, NO_STORE],
    ['payload_too_large', new PayloadTooLarge(1024), 413, { error: 'payload_too_large', error_description: 'request body exceeds 1024 bytes' }, NO_STORE],
    ['unsupported_media_type', new UnsupportedMediaType('application/json'), 415, { error: 'unsupported_media_type', error_description: 'request body must be application/json' }, NO_STORE],
    ['connection_required', new ConnectionRequired('connect first', 'https://d.example/connect/x'), 424, { connect_uri: 'https://d.example/connect/x', error: 'connection_required', error_description: 'connect first' }, NO_STORE],
    ['bad_gateway (exposed)', new BadGateway('upstream token endpoint failed'), 502, { error: 'bad_gateway', error_description: 'upstream token endpoint failed' }, NO_STORE],
    ['temporarily_unavailable', new TemporarilyUnavailable('the store is unavailable; retry later'), 503, { error: 'temporarily_unavailable', error_description: 'the store is unavailable; retry later' }, { 'Retry-After': '5', ...NO_STORE }],
    ['temporarily_unavailable (starting)', new TemporarilyUnavailable('starting', { retryAfterSeconds: 1 }), 503, { error: 'temporarily_unavailable', error_description: 'starting' }, { 'Retry-After': '1', ...NO_STORE }],
    ['gateway_timeout (exposed)', new GatewayTimeout('upstream timed out'), 504, { error: 'gateway_timeout', error_description: 'upstream timed out' }, NO_STORE],
    ["oidc-provider's own code, verbatim", new ProtocolError(400, 'unsupported_grant_type', 'unsupported grant_type requested (x)'), 400, { error: 'unsupported_grant_type', error_description: 'unsupported grant_type requested (x)' }, NO_STORE],
    ["oidc-provider's invalid_scope keeps its scope member", new ProtocolError(400, 'invalid_scope', 'requested scope is not allowed', { details: { scope: 'x' } }), 400, { scope: 'x', error: 'invalid_scope', error_description: 'requested scope is not allowed' }, NO_STORE],
  ])('%s', (_name, err, status, body, headers) => {
    expect(serializeError(err)).toEqual({ status, body, headers });
  });
});

describe('serializeError: expose', () => {
  const secret = 'postgres://admin:hunter2@db/deputy';
  it.each<[string, DeputyError]>([
    ['an unexpected error', new ServerError(new TypeError(`cannot read ${secret}`))],
    ['a 5xx not marked exposed', new DeputyError(500, 'server_error', `query failed on ${secret}`, { headers: { 'X-Debug': secret }, details: { where: secret } })],
    ["oidc-provider's non-exposed error", new ProtocolError(500, 'server_error', secret, { expose: false })],
    ['a 4xx explicitly not exposed', new DeputyError(400, 'invalid_request', secret, { expose: false })],
  ])('%s renders as a bare 500 server_error', (_name, err) => {
    const out = serializeError(err);
    expect(out).toEqual({ status: 500, body: { error: 'server_error', error_description: 'an unexpected error occurred' }, headers: NO_STORE });
    expect(JSON.stringify(out)).not.toMatch(/hunter2|TypeError|at .*\.ts/);
  });

  it('never puts a stack or cause in an exposed body', () => {
    const err = new InvalidGrant('subject_token: signature', { cause: new Error(`jose said ${secret}`) });
    const out = JSON.stringify(serializeError(err));
    expect(out).not.toContain('hunter2');
    expect(out).not.toContain('stack');
  });
});

describe('serializeError: WWW-Authenticate challenges', () => {
  const algs = ['ES256', 'EdDSA'];
  it.each<[string, DeputyError, string]>([
    [
      'RFC 6750 §3.1: no credentials, both schemes, no error',
      Object.assign(new InvalidToken('an access token is required'), { challenge: { schemes: ['Bearer', 'DPoP'], realm: 'deputy', error: false, scope: 'deputy:admin', algs } }),
      'Bearer realm="deputy", scope="deputy:admin", DPoP realm="deputy", scope="deputy:admin", algs="ES256 EdDSA"',
    ],
    [
      'RFC 6750 §3: Bearer with error and description (quotes escaped)',
      Object.assign(new InvalidToken('access token "aud" claim check failed'), { challenge: { schemes: ['Bearer'], realm: 'deputy', error: true } }),
      'Bearer realm="deputy", error="invalid_token", error_description="access token \\"aud\\" claim check failed"',
    ],
    [
      'RFC 9449 §7.1: DPoP with error, scope and algs',
      Object.assign(new InsufficientScope('authzen:evaluate'), { challenge: { schemes: ['DPoP'], realm: 'deputy', error: true, scope: 'authzen:evaluate', algs } }),
      'DPoP realm="deputy", error="insufficient_scope", error_description="the access token lacks the \\"authzen:evaluate\\" scope", scope="authzen:evaluate", algs="ES256 EdDSA"',
    ],
    [
      'RFC 9728 §5.1: resource_metadata',
      Object.assign(new InvalidToken('expired'), { challenge: { schemes: ['DPoP'], realm: 'deputy', error: true, resourceMetadata: 'https://d.example/.well-known/oauth-protected-resource/gw/x', algs } }),
      'DPoP realm="deputy", error="invalid_token", error_description="expired", resource_metadata="https://d.example/.well-known/oauth-protected-resource/gw/x", algs="ES256 EdDSA"',
    ],
    [
      'RFC 6749 §5.2: Basic for a client that tried HTTP Basic',
      new InvalidClient('HTTP Basic client authentication is not supported', { challenge: { schemes: ['Basic'], realm: 'https://d.example', error: true } }),
      'Basic realm="https://d.example", error="invalid_client", error_description="HTTP Basic client authentication is not supported"',
    ],
  ])('%s', (_name, err, header) => {
    const out = serializeError(err);
    expect(out.headers['WWW-Authenticate']).toBe(header);
    expect(out.headers['Cache-Control']).toBe('no-store');
  });

  it('a non-exposed error carries no challenge', () => {
    const err = new DeputyError(500, 'server_error', 'x', { expose: false, challenge: { schemes: ['Bearer'], realm: 'deputy', error: true } });
    expect(serializeError(err).headers).toEqual(NO_STORE);
  });
});
