/**
 * The Identity Assertion JWT Authorization Grant (ID-JAG,
 * draft-ietf-oauth-identity-assertion-authz-grant; Okta Cross App Access, MCP
 * enterprise-managed authorization) at `/token`: an RFC 7523 §2.1 `jwt-bearer` grant whose
 * `assertion` is an ID-JAG a trusted enterprise IdP issued for Deputy. The result is the token a
 * token exchange issues (./token-exchange.ts): DPoP-bound, `sub` the user, `act` the client,
 * recorded, receipted (event `jwt_bearer`), revocable in cascade, a one-link chain for the PDP.
 *
 * The steps, in order; each refusal names its check:
 *
 * 1. `readAssertionRequest` — `assertion` once, not oversized; `scope`, `resource` (RFC 8707)
 *    as for token exchange; Deputy's own scopes and resources refused (`refuseDeputyOwn`).
 * 2. The authenticated client is an active registered agent (`unauthorized_client`), and the
 *    request carries a verified DPoP proof (`invalid_dpop_proof`).
 * 3. `verifyAssertion` — before any key is fetched: a JWS whose `iss` is a trusted issuer
 *    allowed to send ID-JAGs (`oauth.idJag.issuers`); then src/federation verifies it with that
 *    issuer's keys (typ `oauth-id-jag+jwt`, `aud` = Deputy's issuer, times within
 *    `oauth.idJag.maxAgeSeconds`, `jti`, `client_id`) and maps `sub` exactly as for a subject
 *    token of that IdP. Every failure is `invalid_grant` (RFC 7523 §3.1).
 * 4. Its `client_id` is the authenticated client (`invalid_grant`).
 * 5. Single use: `iss` + `jti` looked up in the shared once-store (a known replay is
 *    `invalid_grant` before any work), then **spent by the issuing write** of step 7, with the
 *    token record, the receipt and the request's DPoP proof and client assertion `jti`s: one
 *    transaction, strict across instances (of two concurrent uses exactly one commits; the other
 *    is `invalid_grant` with nothing written), recorded until the assertion's `exp`. So an
 *    assertion is spent exactly when a token is issued from it: a refused request (policy deny,
 *    bad scope or target, a store failure) leaves it unspent — its retry still needs the
 *    client's key and a fresh DPoP proof, and gets at most the one token the assertion allows.
 * 6. Its `cnf` / `may_act`, when present, bind as in a subject token.
 * 7. Steps 6–8 of token exchange (`issueDelegated`): one audience — the requested `resource`,
 *    else the assertion's `resource` claim, else the agent's only audience — which, when the
 *    assertion names resources, must be one of them; scopes within the request, the assertion's
 *    `scope` claim and the agent's registration; the `delegate` decision; sign, record, receipt.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc7523#section-2.1 RFC 7523 §2.1, §3}
 * @module
 */
import { InvalidGrant, InvalidRequest, InvalidTarget } from '../errors/index.js';
import { FederationError } from '../federation/errors.js';
import { peekIssuer } from '../federation/issuer.js';
import type { FederatedIdentity } from '../federation/identity.js';
import { findRecorded, type SingleUse } from './adapter.js';
import { federatedSubject } from './subject-token.js';
import {
  activeAgent,
  checkConfirmation,
  checkMayAct,
  grantRequestDigest,
  issueDelegated,
  many,
  MAX_TARGET,
  refuseDeputyOwn,
  requireDpop,
  single,
  ACCESS_TOKEN_TYPE,
  type ExchangeDeps,
  type ExchangeInput,
  type TokenExchangeParameters,
  type TokenExchangeResponse,
} from './token-exchange.js';
import { sha256Base64url } from '../util/sha256.js';

/** RFC 7523 §2.1 grant type. */
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/** Request parameters of the grant (RFC 7523 §2.1, RFC 6749 §3.3 `scope`, RFC 8707 `resource`). */
export const JWT_BEARER_PARAMETERS = ['assertion', 'scope', 'resource'] as const;

/** Largest accepted `assertion`, in characters (an ID-JAG is 1–2 KiB). */
const MAX_ASSERTION = 16 * 1024;

/** Which trusted issuers may send ID-JAGs, and how old one may be (`oauth.idJag`). */
export interface IdentityAssertionPolicy {
  /** Ids of trusted issuers (`trustedIssuers[].id`) whose ID-JAGs are accepted. */
  issuers: readonly string[];
  /** Longest accepted age (now − `iat`) and lifetime (`exp` − `iat`), in seconds. */
  maxAgeSeconds: number;
}

/** {@link ExchangeDeps} and the ID-JAG policy. */
export interface IdentityAssertionDeps extends ExchangeDeps {
  idJag: IdentityAssertionPolicy;
}

/** The request's parameters, read. */
interface AssertionRequest {
  assertion: string;
  targets: string[];
  scopes: string[] | undefined;
}

/**
 * Step 1: the RFC 7523 §2.1 parameters.
 * @throws InvalidRequest / InvalidTarget naming the parameter at fault
 */
export function readAssertionRequest(params: TokenExchangeParameters): AssertionRequest {
  const assertion = single(params, 'assertion');
  if (assertion === undefined) throw new InvalidRequest('missing required parameter "assertion"');
  if (assertion.length > MAX_ASSERTION) throw new InvalidRequest('assertion is too large');
  const targets = [...new Set(many(params, 'resource'))];
  if (targets.some((t) => t.length > MAX_TARGET)) throw new InvalidTarget('a resource value is too long');
  const scope = single(params, 'scope');
  return { assertion, targets, scopes: scope === undefined ? undefined : [...new Set(scope.split(' ').filter(Boolean))] };
}

/**
 * Step 3: the assertion verified by its issuer's keys (src/federation `verifyIdJag`).
 * @throws InvalidGrant naming the failed check
 */
async function verifyAssertion(deps: IdentityAssertionDeps, assertion: string): Promise<FederatedIdentity> {
  const iss = peekIssuer(assertion);
  if (iss === undefined) throw new InvalidGrant('assertion: not a JWT with an "iss" claim');
  const trusted = deps.federation.issuerFor(iss);
  if (trusted === undefined || !deps.idJag.issuers.includes(trusted.id)) {
    throw new InvalidGrant(`assertion: its issuer is not trusted to send ID-JAGs (oauth.idJag.issuers: ${deps.idJag.issuers.join(', ') || 'none'})`);
  }
  try {
    return await deps.federation.verifyIdJag(assertion, { audience: deps.issuer, maxAgeSeconds: deps.idJag.maxAgeSeconds });
  } catch (err) {
    if (err instanceof FederationError) throw new InvalidGrant(`assertion: ${err.description}`, { cause: err });
    throw err;
  }
}

/** The ID-JAG's `resource` claim (a URI, or an array of them); `undefined` when absent. */
function assertedResources(identity: FederatedIdentity): string[] | undefined {
  const value = identity.claims.resource;
  if (value === undefined) return undefined;
  const list = typeof value === 'string' ? [value] : Array.isArray(value) ? value : undefined;
  if (list === undefined || list.length === 0 || !list.every((r): r is string => typeof r === 'string')) {
    throw new InvalidGrant('assertion: its "resource" claim must be a URI or an array of URIs');
  }
  return list;
}

/** The ID-JAG's `scope` claim (RFC 6749 §3.3 string); `undefined` when absent. */
function assertedScopes(identity: FederatedIdentity): string[] | undefined {
  const value = identity.claims.scope;
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new InvalidGrant('assertion: its "scope" claim must be a space-separated string');
  return value.split(' ').filter(Boolean);
}

/**
 * Step 7a: the resources of the token request, within the assertion's. A requested resource the
 * assertion does not name is `invalid_target`; without a request, the assertion's.
 */
function targetsWithin(requested: string[], asserted: string[] | undefined): string[] {
  if (asserted === undefined) return requested;
  if (requested.length === 0) return asserted;
  const beyond = requested.find((r) => !asserted.includes(r));
  if (beyond !== undefined) throw new InvalidTarget(`the ID-JAG does not grant the resource "${beyond.slice(0, 200)}"`);
  return requested;
}

/** Where ID-JAG `jti`s are recorded (`oidc_models.model`). */
const ID_JAG_NAMESPACE = 'IdJag';

/**
 * Steps 4–5: issued to this client, and not used before. Returns the assertion's `jti` as a
 * single-use value for the issuing write (step 7), which spends it atomically with the token;
 * nothing is written here.
 * @throws InvalidGrant for another client's ID-JAG, or one already spent
 */
async function checkClientAndLookUp(deps: IdentityAssertionDeps, identity: FederatedIdentity, clientId: string): Promise<SingleUse> {
  if (identity.claims.client_id !== clientId) throw new InvalidGrant('assertion: the ID-JAG was issued to another client (client_id)');
  const jti = String(identity.claims.jti);
  const key = sha256Base64url(`${identity.issuer}\0${jti}`);
  const ttlSeconds = Math.max(1, identity.expiresAt - Math.floor(Date.now() / 1000));
  const item: SingleUse = { once: { namespace: ID_JAG_NAMESPACE, key, ttlSeconds }, replayed: () => new InvalidGrant('assertion: this ID-JAG has already been used (jti)') };
  if ((await findRecorded(deps.store, [item.once])).size > 0) throw item.replayed();
  return item;
}

/**
 * The jwt-bearer grant with an ID-JAG, over plain values (the same {@link ExchangeInput} as token
 * exchange); returns the RFC 6749 §5.1 response with `issued_token_type` as token exchange does.
 *
 * @throws DeputyError: `invalid_request`, `invalid_grant` (naming the failed check of the
 *   assertion), `invalid_target`, `invalid_scope`, `unauthorized_client`, `invalid_dpop_proof`
 *   (RFC 6749 §5.2, RFC 7523 §3.1, RFC 8707 §2, RFC 9449 §5); a store outage propagates.
 */
export async function grantIdentityAssertion(input: ExchangeInput, deps: IdentityAssertionDeps): Promise<TokenExchangeResponse> {
  const request = readAssertionRequest(input.params);
  refuseDeputyOwn(request, deps.issuer);
  const agent = await activeAgent(deps, input.clientId);
  const dpop = requireDpop(input.dpop);
  const identity = await verifyAssertion(deps, request.assertion);
  const spent = await checkClientAndLookUp(deps, identity, agent.id);
  // The verified assertion as the subject of the delegation: a first link, like an IdP token.
  const subject = federatedSubject(identity, assertedScopes(identity));
  checkMayAct(deps, subject, agent, dpop);
  checkConfirmation(subject, dpop);

  const issued = await issueDelegated(deps, {
    agent, subject, subjectToken: undefined, dpop,
    targets: targetsWithin(request.targets, assertedResources(identity)),
    scopes: request.scopes,
    event: 'jwt_bearer',
    requestDigest: grantRequestDigest(JWT_BEARER_GRANT, input.params, JWT_BEARER_PARAMETERS, agent.id, dpop),
    ...(input.requestId !== undefined ? { requestId: input.requestId } : {}),
    spends: [...(input.spends ?? []), spent],
  });
  deps.logger.info({ client_id: agent.id, user: subject.user.id, issuer: identity.issuerId, audience: issued.audience, scope: issued.scope }, 'ID-JAG granted');
  return { access_token: issued.value, issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'DPoP', expires_in: issued.expiresIn, scope: issued.scope };
}
