/**
 * The pin service: approving a server's live tools (Deputy signs), importing pins a publisher
 * signed offline, checking live definitions against pins, and exporting pins for offline
 * verification.
 *
 * Every stored pin is verified again when used (signature, trusted signer, server, digest): a
 * row written into the database by someone other than Deputy is worth nothing without a
 * trusted key. Verified JWS strings are remembered, so the cost is paid once per pin.
 *
 * @module
 */
import canonicalize from 'canonicalize';
import type { JSONWebKeySet } from 'jose';
import { InvalidRequest } from '../errors/index.js';
import type { McpServerConfig } from './config.js';
import type { PinStore, StoredPin } from './store.js';
import { changedMembers, pinnedDefinition, toolDigest, ToolPinError, verifyToolPin, WHOLE_DEFINITION, type PinCoverage, type PinnedMember, type PinSigner, type ToolPinSigner } from './tool-pin.js';
import { setBounded } from '../util/bounded-map.js';
import { sha256Base64url } from '../util/sha256.js';

/** How one live tool stands against its pin. */
export type PinVerdict =
  | { status: 'pinned'; digest: string; pin: StoredPin }
  /** `changed` names the members that differ (`definition` when the approved definition is unknown). */
  | { status: 'changed'; digest: string; pin: StoredPin; changed: ReadonlyArray<PinnedMember | 'definition'> }
  | { status: 'unpinned'; digest: string }
  /** A stored pin that no longer verifies (untrusted key, tampered row). Treated like a mismatch. */
  | { status: 'invalid'; digest: string; reason: string }
  /**
   * A live definition no pin can cover: not I-JSON (a lone surrogate, RFC 7493 §2.1), so it has
   * no RFC 8785 digest. Hidden and refused like a mismatch, that tool alone; `digest` is SHA-256
   * over its `JSON.stringify` text (lone surrogates escaped), to tell one such definition from another.
   */
  | { status: 'malformed'; digest: string; reason: string };

export interface ToolPinsOptions {
  pins: PinStore;
  /** Signs approvals (Deputy's receipt key). */
  signer: ToolPinSigner;
  /** Deputy's own pin-verification keys (the receipt JWKS) and issuer. */
  deputyKeys: () => JSONWebKeySet;
  issuer: string;
  /** Largest number of verified pin strings remembered. */
  cacheSize?: number;
}

export class ToolPins {
  readonly #o: ToolPinsOptions;
  /** jws → `${server}\0${tool}\0${digest}` it verified as, and what it covers. */
  readonly #verified = new Map<string, { key: string; covers: PinCoverage }>();

  constructor(options: ToolPinsOptions) {
    this.#o = options;
  }

  /** Deputy first, then the server's trusted publishers. */
  signers(server: McpServerConfig): PinSigner[] {
    return [
      { issuer: this.#o.issuer, jwks: this.#o.deputyKeys() },
      ...server.trustedPublishers.map((p) => ({ issuer: p.issuer, jwks: p.jwks as JSONWebKeySet, ...(p.server ? { server: p.server } : {}) })),
    ];
  }

  /**
   * Signs and stores a pin for each of `tools` (an operator's approval of what the server lists
   * now; re-approval replaces earlier pins). Returns the stored pins.
   *
   * @throws InvalidRequest naming a tool whose definition cannot be pinned (no name, not I-JSON); no pin is written then.
   */
  async approve(server: McpServerConfig, tools: ReadonlyArray<Readonly<Record<string, unknown>>>): Promise<StoredPin[]> {
    // Every definition digested before any pin is written: one that has no digest (not I-JSON, no
    // name) refuses the whole approval, naming it, rather than a 500 after the pins before it.
    const definitions = tools.map((tool) => {
      try {
        const definition = pinnedDefinition(tool);
        return { definition, digest: toolDigest(definition) };
      } catch (err) {
        if (!(err instanceof ToolPinError)) throw err;
        throw new InvalidRequest(`cannot pin tool "${String(tool.name).slice(0, 64)}": ${err.message}`);
      }
    });
    const out: StoredPin[] = [];
    for (const { definition, digest } of definitions) {
      const jws = await this.#o.signer.sign(server.id, definition);
      out.push(await this.#o.pins.put({ server: server.id, tool: definition.name, digest, jws, definition: canonicalize(definition)!, signer: 'deputy' }));
    }
    return out;
  }

  /**
   * Imports a pin signed offline by a publisher trusted for `server` (or by Deputy itself, from
   * an export). With `definition`, its digest must be the pin's.
   *
   * @throws InvalidRequest naming the failed check (untrusted key, wrong server, digest mismatch).
   */
  async import(server: McpServerConfig, jws: string, definition?: Readonly<Record<string, unknown>>): Promise<StoredPin> {
    let claims;
    try {
      claims = await verifyToolPin(jws, server.id, this.signers(server));
    } catch (err) {
      if (err instanceof ToolPinError) throw new InvalidRequest(`pin refused: ${err.message}`);
      throw err;
    }
    let text: string | undefined;
    if (definition !== undefined) {
      let def;
      let digest;
      try {
        def = pinnedDefinition(definition);
        digest = toolDigest(def, claims.covers);
      } catch (err) {
        throw new InvalidRequest(`pin refused: ${(err as Error).message}`);
      }
      if (def.name !== claims.tool || digest !== claims.digest) throw new InvalidRequest('pin refused: the definition given does not have the pin\'s digest');
      text = canonicalize(pinnedDefinition(def, claims.covers))!;
    }
    return this.#o.pins.put({ server: server.id, tool: claims.tool, digest: claims.digest, jws, definition: text, signer: claims.iss === this.#o.issuer ? 'deputy' : 'publisher' });
  }

  /**
   * The verdict of each live tool (by name), against the server's stored pins. A name the list
   * holds more than once (a hostile or broken upstream) has the verdict of its first definition
   * that is not pinned: every definition under a name must match its pin for the name to be
   * shown or called. (Kept by name alone, the last definition's verdict was the name's: a
   * tampered definition listed before the approved one was shown as pinned, and called.)
   */
  async check(server: McpServerConfig, tools: ReadonlyArray<Readonly<Record<string, unknown>>>): Promise<Map<string, PinVerdict>> {
    const pins = await this.#o.pins.forServer(server.id);
    const out = new Map<string, PinVerdict>();
    for (const tool of tools) {
      const name = String(tool.name);
      const earlier = out.get(name);
      if (earlier !== undefined && earlier.status !== 'pinned') continue;
      out.set(name, await this.#verdict(server, pins.get(name), tool));
    }
    return out;
  }

  /**
   * One definition's verdict against its stored pin (undefined: none): {@link ToolPins.#pinVerdict},
   * or `malformed` when the definition has no digest (not I-JSON, no name).
   */
  async #verdict(server: McpServerConfig, pin: StoredPin | undefined, tool: Readonly<Record<string, unknown>>): Promise<PinVerdict> {
    try {
      return await this.#pinVerdict(server, pin, tool);
    } catch (err) {
      // Only toolDigest throws ToolPinError here (#trusted and changedMembers catch their own): a
      // definition that is not I-JSON fails closed for that tool alone, not for the whole list.
      if (!(err instanceof ToolPinError)) throw err;
      return { status: 'malformed', digest: `sha-256:${sha256Base64url(JSON.stringify(tool))}`, reason: err.message };
    }
  }

  /**
   * The verdict of a definition that has a digest. The digest is taken over what the pin covers
   * (the whole definition, or a legacy pin's members); an unpinned tool's over the whole
   * definition, as an approval would sign it.
   *
   * @throws ToolPinError when the definition has no digest (from {@link toolDigest}).
   */
  async #pinVerdict(server: McpServerConfig, pin: StoredPin | undefined, tool: Readonly<Record<string, unknown>>): Promise<PinVerdict> {
    if (!pin) return { status: 'unpinned', digest: toolDigest(tool) };
    const trust = await this.#trusted(server, pin);
    if ('problem' in trust) return { status: 'invalid', digest: toolDigest(tool), reason: trust.problem };
    const digest = toolDigest(tool, trust.covers);
    if (pin.digest === digest) return { status: 'pinned', digest, pin };
    return { status: 'changed', digest, pin, changed: this.#changes(pin, tool, trust.covers) };
  }

  /** What `pin` covers when it is trusted for `server` now, or why it is not. */
  async #trusted(server: McpServerConfig, pin: StoredPin): Promise<{ covers: PinCoverage } | { problem: string }> {
    const key = `${server.id}\0${pin.tool}\0${pin.digest}`;
    const known = this.#verified.get(pin.jws);
    if (known?.key === key) return { covers: known.covers };
    let covers: PinCoverage;
    try {
      const claims = await verifyToolPin(pin.jws, server.id, this.signers(server));
      if (claims.tool !== pin.tool || claims.digest !== pin.digest) return { problem: 'the stored pin does not match its signed claims' };
      covers = claims.covers;
    } catch (err) {
      return { problem: err instanceof ToolPinError ? err.message : 'the stored pin does not verify' };
    }
    setBounded(this.#verified, pin.jws, { key, covers }, this.#o.cacheSize ?? 10_000);
    return { covers };
  }

  #changes(pin: StoredPin, live: Readonly<Record<string, unknown>>, covers: PinCoverage = WHOLE_DEFINITION): ReadonlyArray<PinnedMember | 'definition'> {
    if (pin.definition === undefined) return ['definition'];
    const changed = changedMembers(JSON.parse(pin.definition) as Record<string, unknown>, live, covers);
    return changed.length > 0 ? changed : ['definition'];
  }

  /** The stored pins of a server, by tool (exports). */
  stored(server: string): Promise<Map<string, StoredPin>> {
    return this.#o.pins.forServer(server);
  }

  /** Removes a tool's pin (the tool is then unpinned). */
  revoke(server: string, tool: string): Promise<boolean> {
    return this.#o.pins.delete(server, tool);
  }

  /** Forgets verified pins (after a trusted publisher key set changed). */
  forget(): void {
    this.#verified.clear();
  }
}

/** The reason an agent sees for a tool hidden or refused by its pin (names the tool and what changed). */
export function pinRefusal(server: string, tool: string, verdict: PinVerdict): string {
  switch (verdict.status) {
    case 'changed':
      return `tool "${tool}" of MCP server "${server}" no longer matches its pin: its ${verdict.changed.join(', ')} changed since it was approved`;
    case 'invalid':
      return `tool "${tool}" of MCP server "${server}" has a pin that does not verify (${verdict.reason})`;
    case 'malformed':
      return `tool "${tool}" of MCP server "${server}" cannot be pinned: ${verdict.reason}`;
    case 'unpinned':
      return `tool "${tool}" of MCP server "${server}" is not pinned; an operator must approve it`;
    default:
      return `tool "${tool}" of MCP server "${server}" is pinned`;
  }
}
