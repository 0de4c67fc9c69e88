/**
 * DPoP proof verification (RFC 9449 §4.3) for every Deputy surface: `/token` (through
 * {@link tokenEndpointDpop}, ahead of oidc-provider's grants), and the resource endpoints — admin
 * API, PDP, gateway (§7.1).
 *
 * The checks run in the order of §4.3, each with its own error: one header; `typ` `dpop+jwt`;
 * an allowed asymmetric `alg`; a public `jwk` in the header; signature; `jti`; `htm`; `htu`
 * (RFC 3986 §6 normalized, ./uri.ts); freshness — a valid server nonce, or `iat` within the
 * window; `ath` for the presented token; key thumbprint equal to the token's `cnf.jkt`. Then the
 * `jti` is spent (§11.1), once across every instance (store insert-or-fail), *before* anything
 * else about the request is looked at: a proof that verified is never accepted again, whatever
 * happens to the request it came with. {@link DpopVerifier.check} leaves the spending to a
 * caller that folds it into its own first write (the gateway's receipt transaction) and spends
 * it alone on every path that refuses the request before that write.
 *
 * Nonces (§8, §9) are one mechanism for the whole origin: {@link DpopNonces} computes exactly
 * the values oidc-provider computes from the same secret, so a nonce from `/token` is good at
 * the gateway and the PDP, and the other way round.
 *
 * @module
 */
import { hkdfSync } from 'node:crypto';
import { constantTimeEqual } from '../util/constant-time.js';
import { EmbeddedJWK, calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, jwtVerify, type JWK } from 'jose';
import { InvalidDpopProof, UseDpopNonce } from '../errors/index.js';
import type { Queryable } from '../store/index.js';
import { findRecorded, recordOnce, type OnceKey } from './adapter.js';
import { metrics } from '../observability/metrics.js';
import { DPOP_ALGS } from '../util/algorithms.js';
import { normalizeHttpUrl } from './uri.js';
import { setBounded } from '../util/bounded-map.js';
import { sha256Base64url } from '../util/sha256.js';

/** DPoP verification settings: the store (spent `jti`s), the `iat` window in seconds, whether a nonce is required (RFC 9449 §8) and its secret, accepted algorithms. */
export interface DpopVerifierOptions {
  db: Queryable;
  /** Accepted |now - iat| in seconds for a proof without a nonce. */
  iatWindowSeconds: number;
  requireNonce: boolean;
  /** 32 bytes shared by every instance; the secret oidc-provider's `features.dPoP.nonceSecret` gets too. */
  nonceSecret: Buffer;
  algorithms?: readonly string[];
}

/** The request a proof is checked against: the `DPoP` header values, method (`htm`), URL (`htu`), the access token (`ath`) and the key it is bound to (`cnf.jkt`). */
export interface DpopRequest {
  /** Every `DPoP` header value received (more than one is an error). */
  proofs: readonly string[];
  method: string;
  /** The request URL as the issuer names it; query and fragment are ignored (RFC 9449 §4.3 step 9). */
  url: string;
  /** The access token presented with the proof: its hash must equal `ath`. */
  accessToken?: string;
  /** The token's `cnf.jkt`: the proof must be signed by that key. */
  expectedJkt?: string;
}

/** A proof whose signature and claims verified: its key thumbprint (RFC 7638, `cnf.jkt`), `jti`, `iat`, `htu`, and the next nonce to send. */
export interface VerifiedDpopProof {
  /** RFC 7638 thumbprint of the proof key. */
  jkt: string;
  jti: string;
  /** Seconds since the epoch. */
  iat: number;
  /** The proof's `htu` as sent (it matched the request URL after normalization). */
  htu: string;
  /** The nonce to hand out in `DPoP-Nonce` (§8.2, §9) when the proof's is not the newest. */
  nextNonce?: string;
}

/**
 * A proof that verified but whose `jti` is not spent yet ({@link DpopVerifier.check}). Whoever
 * holds one must spend `replayKey` before acting on the request — alone
 * ({@link DpopVerifier.spend}) or in the same transaction as the first thing the request
 * writes (the gateway's receipt) — and on every path that refuses the request after it, so the
 * proof is never accepted twice.
 */
export interface UnspentDpopProof extends VerifiedDpopProof {
  replayKey: OnceKey;
}

/** The store namespace of spent proofs (`oidc_models.model`). */
export const DPOP_REPLAY_NAMESPACE = 'DPoPProof';

/** RFC 9449 §11.1: the error for a proof whose `jti` was spent already. */
export function dpopReplayed(): InvalidDpopProof {
  metrics.dpopReplays.inc();
  return new InvalidDpopProof('DPoP proof has already been used (jti replay)');
}

const MAX_PROOF_LENGTH = 8 * 1024;

/**
 * Stateless DPoP nonces (RFC 9449 §8): HKDF-SHA256(secret, salt = the 60-second time step as a
 * 64-bit big-endian integer, info "DPoP"), base64url — the algorithm of oidc-provider 9.13.3
 * (`lib/helpers/challenge.js`, `ServerChallenge(nonceSecret, 'DPoP')`), so both accept each
 * other's nonces. Steps -2..+2 around now are accepted; the one handed out is step +1.
 */
export class DpopNonces {
  static readonly STEP_SECONDS = 60;
  /** How long after it is handed out a nonce can still be accepted, in seconds. */
  static readonly LIFETIME_SECONDS = 4 * DpopNonces.STEP_SECONDS;
  readonly #secret: Buffer;

  constructor(secret: Buffer) {
    if (secret.byteLength !== 32) throw new TypeError('the DPoP nonce secret must be 32 bytes');
    this.#secret = secret;
  }

  /** The nonce to hand out now. `now` in seconds since the epoch. */
  next(now = Date.now() / 1000): string {
    return this.#forStep(DpopNonces.#step(now) + 1);
  }

  /** Whether `nonce` is one of the currently accepted values. */
  check(nonce: string, now = Date.now() / 1000): boolean {
    const step = DpopNonces.#step(now);
    let ok = false;
    for (let d = -2; d <= 2; d++) ok = constantTimeEqual(nonce, this.#forStep(step + d)) || ok;
    return ok;
  }

  static #step(now: number): number {
    return Math.floor(now / DpopNonces.STEP_SECONDS);
  }

  /** Derived nonces by step: every check derives up to six, and they change once per step. */
  readonly #derived = new Map<number, string>();

  #forStep(step: number): string {
    let nonce = this.#derived.get(step);
    if (nonce === undefined) {
      const salt = Buffer.alloc(8);
      salt.writeBigUInt64BE(BigInt(step));
      nonce = Buffer.from(hkdfSync('sha256', this.#secret, salt, 'DPoP', 32)).toString('base64url');
      // The five accepted steps and the next: anything older is never asked for again.
      if (this.#derived.size >= 8) this.#derived.clear();
      this.#derived.set(step, nonce);
    }
    return nonce;
  }
}

/**
 * Verifies DPoP proofs (RFC 9449 §4.3): `typ` `dpop+jwt`, pinned algorithms, embedded public key,
 * `htm` / `htu` / `ath` / `iat`, and nonces (§8). Throws `InvalidDpopProof` or `UseDpopNonce`; the caller spends the `jti`.
 */
export class DpopVerifier {
  readonly #o: Required<DpopVerifierOptions>;
  readonly #nonces: DpopNonces;

  constructor(options: DpopVerifierOptions) {
    this.#o = { algorithms: DPOP_ALGS, ...options };
    this.#nonces = new DpopNonces(options.nonceSecret);
  }

  /** The nonce clients should use now (sent in `DPoP-Nonce`). `now` in milliseconds. */
  currentNonce(now = Date.now()): string {
    return this.#nonces.next(now / 1000);
  }

  /**
   * Verifies a proof for a request and spends its `jti`.
   *
   * @param now seconds since the epoch
   * @throws InvalidDpopProof (`invalid_dpop_proof`) naming the failed check, including a replay
   * @throws UseDpopNonce (`use_dpop_nonce`, with `DPoP-Nonce`) when a nonce is required, the
   *   proof's nonce is not (or no longer) valid, or a proof without nonce is outside the `iat` window
   */
  async verify(req: DpopRequest, now = Math.floor(Date.now() / 1000)): Promise<VerifiedDpopProof> {
    const { replayKey, ...verified } = await this.check(req, now);
    await this.spend(replayKey);
    return verified;
  }

  /**
   * Every check of {@link verify} except spending the `jti`: the caller must spend the returned
   * `replayKey` (see {@link UnspentDpopProof}). Same errors as {@link verify}, replay excepted.
   *
   * @param now seconds since the epoch
   */
  async check(req: DpopRequest, now = Math.floor(Date.now() / 1000)): Promise<UnspentDpopProof> {
    const proof = singleProof(req.proofs);
    const jwk = proofKey(proof, this.#o.algorithms);
    const payload = await verifiedPayload(proof, this.#o.algorithms);
    return this.#checkPayload(payload, jwk, req, now);
  }

  /**
   * {@link check} with the signature's verification left running (a WebCrypto job on libuv's
   * thread pool), so that a caller can overlap it with work of its own — the gateway signs its
   * receipt meanwhile (issue 16). The header is checked first and every other check is made now
   * on the payload as sent; `signature` settles when jose's `jwtVerify` of the same compact JWS
   * ends. When one of those checks refuses the proof, the signature is awaited first, so a
   * proof that does not verify gets the signature's error whatever else is wrong with it, as
   * with {@link check}.
   *
   * Whoever holds the result must await `signature` before acting on the request or writing
   * anything for it, spending the `jti` included (a forged proof spends nothing); it rejects
   * with `InvalidDpopProof`. Same errors as {@link check}.
   *
   * @param now seconds since the epoch
   */
  async checkDeferred(req: DpopRequest, now = Math.floor(Date.now() / 1000)): Promise<UnspentDpopProof & { signature: Promise<void> }> {
    const proof = singleProof(req.proofs);
    const jwk = proofKey(proof, this.#o.algorithms);
    const signature = verifiedPayload(proof, this.#o.algorithms).then(() => undefined);
    // Handled by whoever awaits it: not an unhandled rejection while the caller works.
    signature.catch(() => {});
    try {
      return { ...(await this.#checkPayload(decodedPayload(proof), jwk, req, now)), signature };
    } catch (err) {
      await signature;
      throw err;
    }
  }

  /** Every check of a proof's payload and key after its signature's (§4.3 steps 7-12). */
  async #checkPayload(payload: Record<string, unknown>, jwk: JWK, req: DpopRequest, now: number): Promise<UnspentDpopProof> {
    const { jti, htu, iat } = checkClaims(payload, req);
    const nonce = this.#checkFreshness(payload.nonce, iat, now);
    checkAth(payload.ath, req.accessToken);
    const jkt = await cachedThumbprint(jwk);
    if (req.expectedJkt !== undefined && jkt !== req.expectedJkt) {
      throw new InvalidDpopProof('DPoP proof key does not match the key the access token is bound to (cnf.jkt)');
    }
    const next = this.#nonces.next(now);
    // As oidc-provider does at /token: whoever does not hold the newest nonce is handed it.
    return { jkt, jti, iat, htu, ...(nonce === next ? {} : { nextNonce: next }), replayKey: this.#replayKey(jkt, jti) };
  }

  /**
   * RFC 9449 §11.1: spends a checked proof's `jti`, once across every instance (insert-or-fail).
   *
   * @throws InvalidDpopProof when it was spent already (a replay)
   */
  async spend(replayKey: OnceKey): Promise<void> {
    const fresh = await recordOnce(this.#o.db, replayKey.namespace, replayKey.key, replayKey.ttlSeconds);
    if (!fresh) throw dpopReplayed();
  }

  /**
   * RFC 9449 §11.1: whether a checked proof's `jti` is spent already, read without writing (no
   * commit, no WAL flush). Only an early refusal of a known replay: a proof found unspent here
   * must still be spent by {@link spend} or a statement that records `replayKey`, which alone
   * decides a race.
   */
  async spent(replayKey: OnceKey): Promise<boolean> {
    return (await findRecorded(this.#o.db, [replayKey])).size > 0;
  }

  /**
   * A valid nonce proves freshness (§8, §11.1); without one, `iat` must be within the window.
   * A stale proof is answered with a nonce, so a client with a wrong clock can still succeed.
   */
  #checkFreshness(nonce: unknown, iat: number, now: number): string | undefined {
    if (nonce !== undefined) {
      if (typeof nonce !== 'string') throw new InvalidDpopProof('DPoP proof nonce must be a string');
      if (!this.#nonces.check(nonce, now)) throw new UseDpopNonce(this.#nonces.next(now), 'DPoP proof nonce is not valid (or no longer); retry with the nonce in the DPoP-Nonce header');
      return nonce;
    }
    if (this.#o.requireNonce) throw new UseDpopNonce(this.#nonces.next(now));
    if (Math.abs(now - iat) > this.#o.iatWindowSeconds) {
      throw new UseDpopNonce(this.#nonces.next(now), `DPoP proof iat is not within ${this.#o.iatWindowSeconds} seconds of the server time; retry with the nonce in the DPoP-Nonce header`);
    }
    return undefined;
  }

  /** RFC 9449 §11.1: the `jti` is accepted once, on every instance, for as long as the proof could be. */
  #replayKey(jkt: string, jti: string): OnceKey {
    const key = sha256Base64url(`${jkt}\0${jti}`);
    const ttlSeconds = Math.max(2 * this.#o.iatWindowSeconds, DpopNonces.LIFETIME_SECONDS + DpopNonces.STEP_SECONDS) + 5;
    return { namespace: DPOP_REPLAY_NAMESPACE, key, ttlSeconds };
  }
}

function singleProof(proofs: readonly string[]): string {
  if (proofs.length === 0) throw new InvalidDpopProof('DPoP proof is missing: send it in the DPoP header');
  if (proofs.length > 1) throw new InvalidDpopProof('exactly one DPoP header is allowed');
  const proof = proofs[0]!;
  if (proof.length > MAX_PROOF_LENGTH) throw new InvalidDpopProof('DPoP proof is too large');
  return proof;
}

/** The proof's header checks (§4.3 steps 2-5): `typ`, an allowed `alg`, a public `jwk`; returns the `jwk`. */
function proofKey(proof: string, algorithms: readonly string[]): JWK {
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(proof);
  } catch (cause) {
    throw new InvalidDpopProof('DPoP proof is not a compact JWS', { cause });
  }
  if (header.typ !== 'dpop+jwt') throw new InvalidDpopProof('DPoP proof typ must be "dpop+jwt"');
  if (typeof header.alg !== 'string' || !algorithms.includes(header.alg)) {
    throw new InvalidDpopProof(`DPoP proof alg must be one of ${algorithms.join(', ')}`);
  }
  const jwk = header.jwk as JWK | undefined;
  if (!jwk || typeof jwk !== 'object') throw new InvalidDpopProof('DPoP proof header must carry the public key (jwk)');
  if ('d' in jwk || 'k' in jwk) throw new InvalidDpopProof('DPoP proof jwk must be a public key');
  return jwk;
}

/** The proof's signature by its embedded key (§4.3 step 6, jose `jwtVerify`); returns the verified payload. */
async function verifiedPayload(proof: string, algorithms: readonly string[]): Promise<Record<string, unknown>> {
  try {
    const { payload } = await jwtVerify(proof, cachedEmbeddedJwk, { typ: 'dpop+jwt', algorithms: [...algorithms] });
    return payload;
  } catch (cause) {
    throw new InvalidDpopProof('DPoP proof signature is invalid', { cause });
  }
}

/**
 * The payload as sent, not verified yet ({@link DpopVerifier.checkDeferred}): jose's `decodeJwt`
 * of the same compact JWS that `jwtVerify` verifies, so the claims checked are the ones signed.
 */
function decodedPayload(proof: string): Record<string, unknown> {
  try {
    return decodeJwt(proof);
  } catch (cause) {
    throw new InvalidDpopProof('DPoP proof is not a compact JWS', { cause });
  }
}

/** RFC 7638 thumbprints of proof keys, by the header's `jwk` as sent (bounded like the imported keys). */
const proofKeyThumbprints = new Map<string, Promise<string>>();

/**
 * {@link calculateJwkThumbprint} of a proof key, remembered for an identical `jwk`: the thumbprint
 * is a function of the key's members alone, and an agent sends the same key in every proof.
 */
function cachedThumbprint(jwk: JWK): Promise<string> {
  const id = JSON.stringify(jwk);
  let jkt = proofKeyThumbprints.get(id);
  if (!jkt) {
    jkt = calculateJwkThumbprint(jwk);
    setBounded(proofKeyThumbprints, id, jkt, MAX_IMPORTED_PROOF_KEYS);
    jkt.catch(() => proofKeyThumbprints.delete(id));
  }
  return jkt;
}

/** Imported proof keys, by `alg` and the header's `jwk` as sent: a client signs every proof with one key. */
const importedProofKeys = new Map<string, ReturnType<typeof EmbeddedJWK>>();
const MAX_IMPORTED_PROOF_KEYS = 1_000;

/**
 * jose's {@link EmbeddedJWK} (every check it makes on the header's `jwk`), remembering the
 * imported key for identical `alg` + `jwk`: importing an EC / RSA public key costs about as much
 * as verifying with it, and an agent sends the same key in every proof. Failures are not kept.
 */
function cachedEmbeddedJwk(...args: Parameters<typeof EmbeddedJWK>): ReturnType<typeof EmbeddedJWK> {
  const [header] = args;
  if (!header) return EmbeddedJWK(...args);
  const id = `${String(header.alg)}\0${JSON.stringify(header.jwk)}`;
  let key = importedProofKeys.get(id);
  if (!key) {
    key = EmbeddedJWK(...args);
    setBounded(importedProofKeys, id, key, MAX_IMPORTED_PROOF_KEYS);
    key.catch(() => importedProofKeys.delete(id));
  }
  return key;
}

function checkClaims(payload: Record<string, unknown>, req: DpopRequest): { jti: string; htu: string; iat: number } {
  const { jti, htm, htu, iat } = payload;
  if (typeof jti !== 'string' || jti.length < 8 || jti.length > 256) throw new InvalidDpopProof('DPoP proof jti is missing or malformed');
  if (htm !== req.method) throw new InvalidDpopProof('DPoP proof htm does not match the request method');
  if (typeof htu !== 'string' || !sameHtu(htu, req.url)) throw new InvalidDpopProof('DPoP proof htu does not match the request URL');
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw new InvalidDpopProof('DPoP proof iat is missing');
  return { jti, htu, iat };
}

function checkAth(ath: unknown, accessToken: string | undefined): void {
  if (accessToken === undefined) return;
  if (typeof ath !== 'string') throw new InvalidDpopProof('DPoP proof ath is missing');
  const expected = sha256Base64url(accessToken);
  if (!constantTimeEqual(ath, expected)) throw new InvalidDpopProof('DPoP proof ath does not match the access token');
}

/**
 * RFC 9449 §4.3 step 9: `htu` names the request URL, compared without query and fragment after
 * RFC 3986 §6.2.2-§6.2.3 normalization ({@link normalizeHttpUrl}); a malformed value never matches.
 */
export function sameHtu(htu: string, requestUrl: string): boolean {
  const a = normalizeHttpUrl(htu);
  return a !== undefined && a === normalizeHttpUrl(requestUrl);
}

/** The normal form of a DPoP `htu` (or request URL): see {@link normalizeHttpUrl}. */
export const normalizeHtu = normalizeHttpUrl;
