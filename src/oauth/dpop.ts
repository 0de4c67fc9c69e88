/**
 * DPoP proof verification at Deputy's resource endpoints (admin API, PDP, gateway): RFC 9449 §4.3
 * and §7.1. (At `/token`, oidc-provider checks proofs itself.)
 *
 * The checks run in the order of §4.3, each with its own error: one header; `typ` `dpop+jwt`;
 * an allowed asymmetric `alg`; a public `jwk` in the header; signature; `jti`; `htm`; `htu`;
 * `iat` window; nonce when required; `ath` for the presented token; key thumbprint equal to the
 * token's `cnf.jkt`; and `jti` single use across every instance (store insert-or-fail).
 *
 * @module
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { EmbeddedJWK, calculateJwkThumbprint, decodeProtectedHeader, jwtVerify, type JWK } from 'jose';
import { InvalidDpopProof, UseDpopNonce } from '../errors/index.js';
import type { Queryable } from '../store/index.js';
import { recordOnce } from './adapter.js';
import { DPOP_ALGS } from './provider.js';

export interface DpopVerifierOptions {
  db: Queryable;
  /** Accepted |now - iat| in seconds. */
  iatWindowSeconds: number;
  requireNonce: boolean;
  /** 32 bytes shared by every instance; nonces are stateless HMACs of a time step. */
  nonceSecret: Buffer;
  algorithms?: readonly string[];
}

export interface DpopRequest {
  /** Every `DPoP` header value received (more than one is an error). */
  proofs: readonly string[];
  method: string;
  /** The full request URL; query and fragment are ignored (RFC 9449 §4.3 step 9). */
  url: string;
  /** The access token presented with the proof: its hash must equal `ath`. */
  accessToken?: string;
  /** The token's `cnf.jkt`: the proof must be signed by that key. */
  expectedJkt?: string;
}

export interface VerifiedDpopProof {
  jkt: string;
  jti: string;
  iat: number;
}

const MAX_PROOF_LENGTH = 8 * 1024;
const NONCE_STEP_SECONDS = 60;

export class DpopVerifier {
  readonly #o: Required<DpopVerifierOptions>;

  constructor(options: DpopVerifierOptions) {
    this.#o = { algorithms: DPOP_ALGS, ...options };
  }

  /** The nonce clients should use now (sent in `DPoP-Nonce`). */
  currentNonce(now = Date.now()): string {
    return this.#nonceFor(Math.floor(now / 1000 / NONCE_STEP_SECONDS));
  }

  async verify(req: DpopRequest, now = Math.floor(Date.now() / 1000)): Promise<VerifiedDpopProof> {
    const proof = singleProof(req.proofs);
    const { payload, jwk } = await verifySignature(proof, this.#o.algorithms);
    const jti = checkClaims(payload, req, now, this.#o.iatWindowSeconds);
    this.#checkNonce(payload.nonce, now);
    checkAth(payload.ath, req.accessToken);
    const jkt = await calculateJwkThumbprint(jwk);
    if (req.expectedJkt !== undefined && jkt !== req.expectedJkt) {
      throw new InvalidDpopProof('DPoP proof key does not match the key the access token is bound to (cnf.jkt)');
    }
    await this.#checkReplay(jkt, jti);
    return { jkt, jti, iat: payload.iat as number };
  }

  #checkNonce(nonce: unknown, now: number): void {
    if (!this.#o.requireNonce) return;
    if (typeof nonce !== 'string' || !this.#isValidNonce(nonce, now)) throw new UseDpopNonce(this.currentNonce(now * 1000));
  }

  #isValidNonce(nonce: string, now: number): boolean {
    const step = Math.floor(now / NONCE_STEP_SECONDS);
    return [-2, -1, 0, 1].some((d) => safeEqual(nonce, this.#nonceFor(step + d)));
  }

  #nonceFor(step: number): string {
    return createHmac('sha256', this.#o.nonceSecret).update(`deputy-dpop-nonce:${step}`).digest('base64url');
  }

  async #checkReplay(jkt: string, jti: string): Promise<void> {
    const key = createHash('sha256').update(`${jkt}\0${jti}`).digest('base64url');
    // Kept for the whole window a proof can be accepted in, on both sides of the clock.
    const fresh = await recordOnce(this.#o.db, 'DPoPProof', key, 2 * this.#o.iatWindowSeconds + 5);
    if (!fresh) throw new InvalidDpopProof('DPoP proof has already been used (jti replay)');
  }
}

function singleProof(proofs: readonly string[]): string {
  if (proofs.length === 0) throw new InvalidDpopProof('DPoP proof is missing: send it in the DPoP header');
  if (proofs.length > 1) throw new InvalidDpopProof('exactly one DPoP header is allowed');
  const proof = proofs[0]!;
  if (proof.length > MAX_PROOF_LENGTH) throw new InvalidDpopProof('DPoP proof is too large');
  return proof;
}

async function verifySignature(proof: string, algorithms: readonly string[]) {
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
  try {
    const { payload } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: [...algorithms] });
    return { payload, jwk };
  } catch (cause) {
    throw new InvalidDpopProof('DPoP proof signature is invalid', { cause });
  }
}

function checkClaims(payload: Record<string, unknown>, req: DpopRequest, now: number, window: number): string {
  const { jti, htm, htu, iat } = payload;
  if (typeof jti !== 'string' || jti.length < 8 || jti.length > 256) throw new InvalidDpopProof('DPoP proof jti is missing or malformed');
  if (htm !== req.method) throw new InvalidDpopProof('DPoP proof htm does not match the request method');
  if (typeof htu !== 'string' || normalizeHtu(htu) !== normalizeHtu(req.url)) {
    throw new InvalidDpopProof('DPoP proof htu does not match the request URL');
  }
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw new InvalidDpopProof('DPoP proof iat is missing');
  if (Math.abs(now - iat) > window) throw new InvalidDpopProof('DPoP proof iat is outside the accepted window');
  return jti;
}

function checkAth(ath: unknown, accessToken: string | undefined): void {
  if (accessToken === undefined) return;
  if (typeof ath !== 'string') throw new InvalidDpopProof('DPoP proof ath is missing');
  const expected = createHash('sha256').update(accessToken).digest('base64url');
  if (!safeEqual(ath, expected)) throw new InvalidDpopProof('DPoP proof ath does not match the access token');
}

/** RFC 9449 §4.3 step 9: compare without query and fragment, with URL normalisation (RFC 3986 §6). */
export function normalizeHtu(value: string): string | undefined {
  try {
    const u = new URL(value);
    u.search = '';
    u.hash = '';
    return u.href;
  } catch {
    return undefined;
  }
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
