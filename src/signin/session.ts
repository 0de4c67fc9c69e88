/**
 * The sign-in session and the sign-in transaction, each a short JWT encrypted for Deputy alone
 * (JWE, `dir` + `A256GCM`, RFC 7516 / RFC 7518 §5.3, with jose `EncryptJWT`) and carried in a
 * cookie: no server-side state, and nothing a browser can read or forge.
 *
 * Keys: HKDF-SHA256 (RFC 5869) of the server's cookie keys (`keys/server-secrets.json`
 * `cookieKeys`), one derived key per purpose so a transaction can never be replayed as a
 * session. The first cookie key seals; every listed key opens (rotation: add a key in front).
 *
 * @module
 */
import { hkdfSync, randomBytes } from 'node:crypto';
import { EncryptJWT, jwtDecrypt, type JWTPayload } from 'jose';

/** What a sealed cookie is for; each purpose has its own key and `typ`. */
export type SealPurpose = 'session' | 'signin-tx';

/** The signed-in user, as the federation code identified them (src/federation/identity.ts). */
export interface SignInSession {
  /** Deputy's user id (`okta:{host}:{uid}`, `entra:{tid}:{oid}`, `{iss}#{sub}`). */
  userId: string;
  /** The trusted issuer configuration (`trustedIssuers[].id`) the user signed in at. */
  issuerId: string;
  email?: string;
  name?: string;
  tenant?: string;
  groups: string[];
  roles: string[];
  /** Synchronizer token (OWASP CSRF cheat sheet) every form of this session carries. */
  csrf: string;
  /** Expiry, epoch seconds. */
  expiresAt: number;
}

/** A sign-in in progress: what the callback must match (state, nonce) and redeem with (PKCE verifier). */
export interface SignInTransaction {
  issuerId: string;
  state: string;
  nonce: string;
  codeVerifier: string;
  /** A path under Deputy to return to, already checked by {@link safeReturnPath}. */
  returnTo: string;
}

/** Most group / role names kept in a session (cookies are bounded, RFC 6265 §6.1). */
const MAX_LIST = 50;

/** Seals and opens Deputy's encrypted cookies. */
export class CookieSealer {
  readonly #keys: ReadonlyMap<SealPurpose, readonly Uint8Array[]>;

  /** @param cookieKeys the server's cookie keys, newest first (at least one). */
  constructor(cookieKeys: readonly string[]) {
    if (cookieKeys.length === 0) throw new TypeError('at least one cookie key is required');
    const derive = (purpose: SealPurpose) => cookieKeys.map((k) => new Uint8Array(hkdfSync('sha256', Buffer.from(k, 'base64url'), Buffer.alloc(0), `deputy ${purpose} cookie`, 32)));
    this.#keys = new Map([
      ['session', derive('session')],
      ['signin-tx', derive('signin-tx')],
    ]);
  }

  /** An encrypted JWT of `claims`, valid `ttlSeconds`. */
  seal(purpose: SealPurpose, claims: JWTPayload, ttlSeconds: number): Promise<string> {
    return new EncryptJWT(claims)
      .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', typ: `deputy-${purpose}+jwt` })
      .setIssuedAt()
      .setExpirationTime(`${ttlSeconds}s`)
      .encrypt(this.#keys.get(purpose)![0]!);
  }

  /** The claims of a sealed value, or undefined when absent, expired, tampered with or of another purpose. */
  async open(purpose: SealPurpose, value: string | undefined): Promise<JWTPayload | undefined> {
    if (!value || value.length > 8192) return undefined;
    for (const key of this.#keys.get(purpose)!) {
      try {
        const { payload } = await jwtDecrypt(value, key, { typ: `deputy-${purpose}+jwt`, keyManagementAlgorithms: ['dir'], contentEncryptionAlgorithms: ['A256GCM'], requiredClaims: ['exp'] });
        return payload;
      } catch {
        // Another key, or not ours: try the next, then give up.
      }
    }
    return undefined;
  }

  /** Seals a session. */
  sealSession(session: Omit<SignInSession, 'expiresAt' | 'csrf'>, ttlSeconds: number): Promise<string> {
    return this.seal(
      'session',
      {
        sub: session.userId,
        iss_id: session.issuerId,
        ...(session.email ? { email: session.email } : {}),
        ...(session.name ? { name: session.name } : {}),
        ...(session.tenant ? { tid: session.tenant } : {}),
        groups: session.groups.slice(0, MAX_LIST),
        roles: session.roles.slice(0, MAX_LIST),
        csrf: randomBytes(24).toString('base64url'),
      },
      ttlSeconds,
    );
  }

  /** Opens a session cookie; undefined when there is no valid session. */
  async openSession(value: string | undefined): Promise<SignInSession | undefined> {
    const p = await this.open('session', value);
    if (!p || typeof p.sub !== 'string' || typeof p.iss_id !== 'string' || typeof p.csrf !== 'string' || typeof p.exp !== 'number') return undefined;
    const list = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
    const text = (v: unknown) => (typeof v === 'string' ? v : undefined);
    const session: SignInSession = { userId: p.sub, issuerId: p.iss_id, groups: list(p.groups), roles: list(p.roles), csrf: p.csrf, expiresAt: p.exp };
    const email = text(p.email);
    const name = text(p.name);
    const tenant = text(p.tid);
    return { ...session, ...(email ? { email } : {}), ...(name ? { name } : {}), ...(tenant ? { tenant } : {}) };
  }

  /** Seals a sign-in in progress (state, nonce, PKCE verifier, return path) for `ttlSeconds`. */
  sealTransaction(tx: SignInTransaction, ttlSeconds: number): Promise<string> {
    return this.seal('signin-tx', { ...tx }, ttlSeconds);
  }

  /** Opens a sign-in transaction cookie; undefined when absent, expired, forged or incomplete. */
  async openTransaction(value: string | undefined): Promise<SignInTransaction | undefined> {
    const p = await this.open('signin-tx', value);
    const fields = ['issuerId', 'state', 'nonce', 'codeVerifier', 'returnTo'] as const;
    if (!p || !fields.every((f) => typeof p[f] === 'string')) return undefined;
    return { issuerId: p.issuerId as string, state: p.state as string, nonce: p.nonce as string, codeVerifier: p.codeVerifier as string, returnTo: p.returnTo as string };
  }
}

/**
 * A return path after sign-in: only a path on Deputy itself (`/…`, not `//host` or `/\\host`,
 * no scheme, no control characters), so sign-in is never an open redirector (RFC 9700 §4.11).
 * Anything else becomes `/signin/session`.
 */
export function safeReturnPath(value: unknown): string {
  const fallback = '/signin/session';
  if (typeof value !== 'string' || value.length === 0 || value.length > 2048) return fallback;
  if (!value.startsWith('/') || value.startsWith('//') || value.startsWith('/\\')) return fallback;
  if (/[\x00-\x1f\x7f\\]/.test(value)) return fallback;
  const parsed = URL.parse(value, 'http://deputy.invalid');
  if (!parsed || parsed.origin !== 'http://deputy.invalid') return fallback;
  return parsed.pathname + parsed.search;
}
