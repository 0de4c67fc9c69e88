/**
 * Shapes of the claims that restrict or identify a subject token. A claim Deputy honours is
 * either well-formed or the token is refused: a malformed restriction is never dropped
 * silently (fail closed). Absent claims are fine; presence rules belong to the presets.
 *
 * | claim | shape | why it matters |
 * |-------|-------|----------------|
 * | `aud` | string, or non-empty array of strings (RFC 7519 §4.1.3) | audience restriction |
 * | `may_act` | object naming `sub` and/or `client_id` (strings), optional string `iss` (RFC 8693 §4.4) | who may act |
 * | `act` | object with a string `sub`, nested the same way (RFC 8693 §4.1) | delegation chain |
 * | `cnf` | object; `jkt` a string when present (RFC 7800 §3.1, RFC 9449 §6.1) | sender constraint |
 * | `scope`, `scp` | space-separated string or array of strings (RFC 8693 §4.2; Okta, Entra) | delegated scopes |
 * | `groups`, `roles` | array of strings, or a string | policy attributes |
 * | `tid`, `oid`, `uid`, `sub`, `azp`, `client_id`, `cid`, `appid`, `jti`, `uti` | non-empty string of at most 255 characters, not shaped like a token, no lone surrogate | identity and tenant |
 * | `email`, `preferred_username`, `upn`, `name` | non-empty string of at most 1,024 characters, not shaped like a token, no lone surrogate | user attributes |
 *
 * `exp`, `nbf`, `iat` and `iss` are type-checked by jose during verification.
 *
 * Why the bounds: these values become Deputy's user id (`okta:{host}:{uid ?? sub}`…), its tokens'
 * claims and every receipt's `user`, which holds at most 2,048 characters and never a token. OpenID
 * Connect Core 1.0 §2 caps `sub` at 255 ASCII characters; the other identifiers (GUIDs, Okta ids,
 * client ids, token ids) are far shorter in every IdP Deputy presets. A token outside them was
 * answered with a server error; it is refused as malformed, naming the claim.
 *
 * @module
 */
import type { JWTPayload } from 'jose';
import { chainFromAct, ChainClaimError } from '../delegation/index.js';
import { hasLoneSurrogate } from '../util/i-json.js';
import { looksLikeToken } from '../util/token-shape.js';
import { refuse } from './errors.js';

const IDENTIFIER_CLAIMS = ['sub', 'tid', 'oid', 'uid', 'azp', 'client_id', 'cid', 'appid', 'jti', 'uti'] as const;
const ATTRIBUTE_CLAIMS = ['email', 'preferred_username', 'upn', 'name'] as const;
/** OpenID Connect Core 1.0 §2: `sub` "MUST NOT exceed 255 ASCII characters"; the same for every identifier. */
const MAX_IDENTIFIER = 255;
const MAX_ATTRIBUTE = 1024;
const LIST_CLAIMS = ['scope', 'scp', 'groups', 'roles'] as const;

function isNonEmptyString(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A non-empty string of at most `max` UTF-16 units holding no JWS-shaped run and no lone
 * surrogate (RFC 7493 §2.1: JSON text may spell one, `"\ud800"`; it reaches Cedar, receipts and
 * the store, none of which takes it — the PDP denied such a `sub` after the ID-JAG was spent, and
 * an attribute it reads no policy of passed).
 */
function isBoundedText(max: number): (value: unknown) => boolean {
  return (value) => isNonEmptyString(value) && value.length <= max && !looksLikeToken(value) && !hasLoneSurrogate(value);
}

function isStringList(value: unknown): boolean {
  return typeof value === 'string' || (Array.isArray(value) && value.every(isNonEmptyString));
}

function isAudience(value: unknown): boolean {
  return isNonEmptyString(value) || (Array.isArray(value) && value.length > 0 && value.every(isNonEmptyString));
}

/** RFC 8693 §4.4: an object identifying the party allowed to act. */
function isMayAct(value: unknown): boolean {
  if (!isObject(value)) return false;
  const { sub, client_id: clientId, iss } = value;
  if (sub === undefined && clientId === undefined) return false;
  return [sub, clientId, iss].every((member) => member === undefined || isNonEmptyString(member));
}

function isAct(value: unknown): boolean {
  try {
    chainFromAct(value);
    return true;
  } catch (err) {
    if (err instanceof ChainClaimError) return false;
    throw err;
  }
}

function isCnf(value: unknown): boolean {
  return isObject(value) && (value.jkt === undefined || isNonEmptyString(value.jkt));
}

const SHAPES: ReadonlyArray<readonly [string, (value: unknown) => boolean, string]> = [
  ['aud', isAudience, 'a string or a non-empty array of strings'],
  ['may_act', isMayAct, 'an object naming "sub" or "client_id" (strings)'],
  ['act', isAct, 'an object with a string "sub", nested the same way'],
  ['cnf', isCnf, 'an object ("jkt" a string)'],
  ...LIST_CLAIMS.map((name) => [name, isStringList, 'a string or an array of strings'] as const),
  ...IDENTIFIER_CLAIMS.map((name) => [name, isBoundedText(MAX_IDENTIFIER), `a non-empty string of at most ${MAX_IDENTIFIER} characters, not shaped like a token, no lone surrogate`] as const),
  ...ATTRIBUTE_CLAIMS.map((name) => [name, isBoundedText(MAX_ATTRIBUTE), `a non-empty string of at most ${MAX_ATTRIBUTE} characters, not shaped like a token, no lone surrogate`] as const),
];

/**
 * Refuses (`ERR_FEDERATION_CLAIMS`, naming the claim) a verified claims set in which a claim of
 * the table above is present but malformed. The description never quotes the value.
 *
 * @param what - how the description names the token (`the subject token`, `the ID-JAG`): the
 *   client reads it in `error_description`, and an ID-JAG is no subject token.
 */
export function checkClaimShapes(claims: JWTPayload, what = 'the subject token'): void {
  for (const [name, valid, shape] of SHAPES) {
    if (Object.hasOwn(claims, name) && !valid(claims[name])) {
      throw refuse('ERR_FEDERATION_CLAIMS', `${what}'s "${name}" claim is malformed: it must be ${shape}`);
    }
  }
}
