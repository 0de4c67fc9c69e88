/**
 * Signed tool pins (DESIGN capability 6, tool integrity): an attestation that a named MCP tool
 * of a named server had exactly this definition when an operator (or the tool's publisher)
 * approved it.
 *
 * - **Digest**: SHA-256 (FIPS 180-4) over the RFC 8785 (JCS) canonical JSON of the tool's whole
 *   definition — every member the live tool has (MCP 2025-11-25 "Tools", `Tool`: `name`, `title`,
 *   `icons`, `description`, `inputSchema`, `outputSchema`, `annotations`, `execution`, `_meta`,
 *   and any member a later revision adds) — written `sha-256:<base64url>`. Every member counts: a
 *   swapped icon, an MCP Apps UI resource in `_meta` or a new `execution` changes the digest as
 *   surely as a widened input schema does. The one member left out is Deputy's own
 *   `_meta["dev.deputy/pin"]` (what the gateway adds when it lists the tool), so an agent
 *   recomputes the digest from the tool it was shown.
 * - **Coverage** (`covers` claim): pins signed since issue 16's thirteenth round carry
 *   `covers: "definition"` (the whole definition, above). A pin without `covers` was signed
 *   before and covers {@link LEGACY_PINNED_MEMBERS} only; it verifies as it was signed (its
 *   digest over those members), so a swap of an uncovered member does not hide its tool until
 *   the tool is approved again — re-approval (`deputy mcp approve`) upgrades it. Any other
 *   `covers` value is refused (fail closed).
 * - **Pin**: a JWS Compact Serialization (RFC 7515 §7.1) of a JWT (RFC 7519) with protected
 *   header `{ alg: ES256 | EdDSA | RS256, kid, typ: "deputy-tool-pin+jwt" }` (RFC 8725 §3.11
 *   explicit typing: a pin is never a token, nor a receipt) and claims
 *   `{ iss, iat, server, tool, digest, covers }`. Deputy signs with its receipt key (so the
 *   receipt JWKS verifies both offline); a publisher signs with a key the operator trusts for
 *   that server.
 *
 * Pure functions and plain data: no store, no HTTP.
 *
 * @module
 */
import canonicalize from 'canonicalize';
import { iJsonProblem } from '../util/i-json.js';
import { SIGNING_ALGS } from '../util/algorithms.js';
import { createLocalJWKSet, errors, importJWK, jwtVerify, SignJWT, type CryptoKey, type JSONWebKeySet, type JWK } from 'jose';
import { sha256Base64url } from '../util/sha256.js';

/** RFC 8725 §3.11 explicit type of every pin. */
export const TOOL_PIN_TYP = 'deputy-tool-pin+jwt';
/**
 * Accepted pin signature algorithms: those of Deputy's own signing keys (RFC 7518 §3.4 ES256,
 * §3.3 RS256, RFC 8037 EdDSA; src/util/algorithms.ts), for Deputy's pins and publishers' alike.
 */
export const TOOL_PIN_ALGORITHMS = SIGNING_ALGS;
/**
 * The `_meta` key under which the agent receives each tool's pin (MCP `_meta` keys take a
 * reverse-DNS prefix for implementations' own members; MCP 2025-06-18 "General fields").
 */
export const PIN_META_KEY = 'dev.deputy/pin';

/**
 * The members a pin without a `covers` claim covers (pins signed before issue 16's thirteenth
 * round), in the order changes are reported.
 */
export const LEGACY_PINNED_MEMBERS = ['name', 'title', 'description', 'inputSchema', 'outputSchema', 'annotations'] as const;

/** What a pin covers: `definition`, the whole definition; `members`, {@link LEGACY_PINNED_MEMBERS} (no `covers` claim). */
export type PinCoverage = 'definition' | 'members';
/** The `covers` claim value of a pin over the whole definition. */
export const WHOLE_DEFINITION: PinCoverage = 'definition';

/** A member name of a tool definition (a pin reports changes by member). */
export type PinnedMember = string;

/** A tool definition reduced to the members a pin covers (JSON values only). */
export type ToolDefinition = { name: string } & Record<string, unknown>;

/** The signed claims of a pin. */
export interface ToolPinClaims {
  /** Deputy's issuer, or the publisher's identifier. */
  iss: string;
  /** Seconds since the epoch (RFC 7519 §4.1.6). */
  iat: number;
  /** The MCP server the tool belongs to (Deputy's server id, or the name the publisher signs for). */
  server: string;
  /** The tool's `name`. */
  tool: string;
  /** {@link toolDigest} of the approved definition, under {@link ToolPinClaims.covers}. */
  digest: string;
  /** What the digest covers (`members` when the pin has no `covers` claim). */
  covers: PinCoverage;
}

/** A key trusted to sign pins, with the `iss` its pins carry. */
export interface PinSigner {
  issuer: string;
  jwks: JSONWebKeySet;
  /** The `server` claim this signer's pins must carry (Deputy's server id when absent). */
  server?: string | undefined;
}

/** Why a pin was refused; the message names the check, never key material. */
export class ToolPinError extends Error {
  readonly code = 'ERR_TOOL_PIN';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ToolPinError';
  }
}

/**
 * The members of `tool` a pin under `covers` digests: all of them but Deputy's own
 * `_meta["dev.deputy/pin"]` (an empty `_meta` left by its removal dropped too), or the legacy
 * members only. `undefined` members are left out. `name` must be a non-empty string.
 *
 * @throws ToolPinError when the definition has no name.
 */
export function pinnedDefinition(tool: Readonly<Record<string, unknown>>, covers: PinCoverage = WHOLE_DEFINITION): ToolDefinition {
  if (typeof tool.name !== 'string' || tool.name.length === 0) throw new ToolPinError('a tool definition needs a non-empty string "name"');
  const out: Record<string, unknown> = {};
  const members = covers === WHOLE_DEFINITION ? Object.keys(tool) : LEGACY_PINNED_MEMBERS;
  for (const member of members) if (tool[member] !== undefined) out[member] = tool[member];
  if (covers === WHOLE_DEFINITION) withoutOwnMeta(out);
  return out as ToolDefinition;
}

/** Drops `_meta[PIN_META_KEY]` from `definition` (a copy of `_meta`; the caller's object is not touched). */
function withoutOwnMeta(definition: Record<string, unknown>): void {
  const meta = definition._meta;
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta) || !Object.hasOwn(meta, PIN_META_KEY)) return;
  const { [PIN_META_KEY]: _own, ...rest } = meta as Record<string, unknown>;
  if (Object.keys(rest).length === 0) delete definition._meta;
  else definition._meta = rest;
}

/**
 * RFC 8785 canonical JSON of the members of `tool` a pin under `covers` covers.
 *
 * @throws ToolPinError when the definition has no name, is not I-JSON (a lone surrogate, a non-finite number)
 *   or nests deeper than `MAX_JSON_DEPTH` (src/util/i-json.ts); the message names which and where.
 */
export function canonicalDefinition(tool: Readonly<Record<string, unknown>>, covers: PinCoverage = WHOLE_DEFINITION): string {
  const definition = pinnedDefinition(tool, covers);
  // Checked before the canonicalizer recurses: an upstream's definition nested past the stack is refused by name, not by a RangeError.
  const problem = iJsonProblem(definition, 'the tool definition');
  if (problem) throw new ToolPinError(problem);
  const text = canonicalize(definition);
  if (text === undefined) throw new ToolPinError('the tool definition is not JSON');
  return text;
}

/** `sha-256:` + base64url (RFC 4648 §5) of SHA-256 over {@link canonicalDefinition}. */
export function toolDigest(tool: Readonly<Record<string, unknown>>, covers: PinCoverage = WHOLE_DEFINITION): string {
  return `sha-256:${sha256Base64url(canonicalDefinition(tool, covers))}`;
}

/**
 * The members whose values differ between a pinned and a live definition under `covers`
 * (compared as RFC 8785 canonical JSON, so member order and number spelling do not count): the
 * legacy members first in their order, then any other member by name.
 */
export function changedMembers(pinned: Readonly<Record<string, unknown>>, live: Readonly<Record<string, unknown>>, covers: PinCoverage = WHOLE_DEFINITION): PinnedMember[] {
  const a = pinnedDefinition({ name: '-', ...pinned }, covers);
  const b = pinnedDefinition({ name: '-', ...live }, covers);
  const others = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((m) => !(LEGACY_PINNED_MEMBERS as readonly string[]).includes(m)).sort();
  const same = (m: string): boolean => {
    try {
      return canonicalize(a[m] ?? null) === canonicalize(b[m] ?? null);
    } catch {
      return false; // not JSON on one side: a change
    }
  };
  return [...LEGACY_PINNED_MEMBERS, ...others].filter((m) => !same(m));
}

/** A private JWK with `kid` and `alg` (Deputy's receipt key, or a publisher's key in tests and tooling). */
export interface PinSigningKey {
  jwk: JWK & { kid: string; alg: string };
}

/** Signs pins with one key; the private key is imported once. */
export class ToolPinSigner {
  readonly #kid: string;
  readonly #alg: string;
  readonly #key: Promise<CryptoKey | Uint8Array>;

  constructor(
    readonly issuer: string,
    key: PinSigningKey,
  ) {
    if (!(TOOL_PIN_ALGORITHMS as readonly string[]).includes(key.jwk.alg)) throw new TypeError(`tool pins are signed with ${TOOL_PIN_ALGORITHMS.join(', ')}`);
    this.#kid = key.jwk.kid;
    this.#alg = key.jwk.alg;
    this.#key = importJWK(key.jwk, key.jwk.alg);
    this.#key.catch(() => {}); // reported by sign()
  }

  /** The compact JWS pinning the whole definition of `tool` of `server` as it is now (`covers: "definition"`). */
  async sign(server: string, tool: Readonly<Record<string, unknown>>, now = Date.now()): Promise<string> {
    const definition = pinnedDefinition(tool);
    return new SignJWT({ server, tool: definition.name, digest: toolDigest(definition), covers: WHOLE_DEFINITION })
      .setProtectedHeader({ alg: this.#alg, kid: this.#kid, typ: TOOL_PIN_TYP })
      .setIssuer(this.issuer)
      .setIssuedAt(Math.floor(now / 1000))
      .sign(await this.#key);
  }
}

/**
 * Verifies a pin for `server` against the signers trusted for it (Deputy's own key set first,
 * then the server's trusted publishers): signature with a key of the signer's JWKS, an allowed
 * `alg`, `typ: deputy-tool-pin+jwt`, `iss` of that signer, and well-formed claims naming this
 * server. Returns the claims.
 *
 * @throws ToolPinError naming the failed check (untrusted key, wrong server, malformed …).
 */
export async function verifyToolPin(jws: string, server: string, signers: readonly PinSigner[]): Promise<ToolPinClaims> {
  if (typeof jws !== 'string' || jws.length > 16 * 1024 || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(jws)) {
    throw new ToolPinError('a pin must be a JWS compact serialization');
  }
  let lastError: unknown;
  for (const signer of signers) {
    try {
      const { payload } = await jwtVerify(jws, createLocalJWKSet(signer.jwks), {
        algorithms: [...TOOL_PIN_ALGORITHMS],
        typ: TOOL_PIN_TYP,
        issuer: signer.issuer,
      });
      const claims = asClaims(payload);
      const expected = signer.server ?? server;
      if (claims.server !== expected) throw new ToolPinError(`the pin is for server "${claims.server.slice(0, 64)}", not "${expected}"`);
      return { ...claims, server };
    } catch (err) {
      if (err instanceof ToolPinError) throw err;
      lastError = err;
    }
  }
  throw new ToolPinError(describe(lastError), { cause: lastError });
}

function asClaims(payload: Record<string, unknown>): ToolPinClaims {
  const { iss, iat, server, tool, digest, covers } = payload;
  if (typeof iss !== 'string' || typeof iat !== 'number' || typeof server !== 'string' || typeof tool !== 'string' || tool.length === 0) {
    throw new ToolPinError('the pin lacks iss, iat, server or tool');
  }
  if (typeof digest !== 'string' || !/^sha-256:[A-Za-z0-9_-]{43}$/.test(digest)) throw new ToolPinError('the pin\'s digest must be sha-256:<base64url>');
  // No `covers`: a pin signed before the claim existed, over the legacy members. Anything else is unknown: refused.
  if (covers !== undefined && covers !== WHOLE_DEFINITION) throw new ToolPinError('the pin\'s "covers" claim must be "definition"');
  return { iss, iat, server, tool, digest, covers: covers === undefined ? 'members' : WHOLE_DEFINITION };
}

function describe(err: unknown): string {
  if (err instanceof errors.JWKSNoMatchingKey) return 'the pin is signed by a key not trusted for this server';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'the pin\'s signature does not verify';
  if (err instanceof errors.JWTClaimValidationFailed) return `the pin's "${err.claim}" claim is not acceptable`;
  if (err instanceof errors.JOSEAlgNotAllowed) return 'the pin\'s algorithm is not allowed';
  if (err instanceof errors.JOSEError) return 'the pin is not a valid JWS';
  return 'no trusted signer is configured for this server';
}
