/**
 * Deputy's key material: token-signing keys (a JWKS), receipt-signing keys (a separate JWKS),
 * the vault key-encryption key (KEK) and server secrets (DPoP nonce secret, cookie keys).
 *
 * Sources, in order: environment variables (`DEPUTY_SIGNING_KEYS`, `DEPUTY_VAULT_KEK`,
 * `DEPUTY_SERVER_SECRETS`, `DEPUTY_RECEIPT_KEYS`, each the JSON content of the matching file),
 * then files in the keys folder. Missing files are generated (mode 0600) only when generation is allowed, i.e. in
 * development. Private keys never leave this module except as the provider's signing JWKS.
 *
 * Signing-key lifecycle: exactly one key is `active` (signs); `retired` keys no longer sign but
 * stay in the published JWKS until every token they signed has expired (RFC 7517 §5 key sets).
 * A running instance keeps signing with the key it loaded until it restarts, so retention counts
 * from the rotation plus a rollout grace (the time operators have to roll every instance), then
 * the longest token lifetime and clock skew.
 *
 * Receipt keys are separate from token keys so that a receipt can never be mistaken for a token
 * (and vice versa) and so that auditors pin only the receipt JWKS. Receipts are long-lived
 * evidence: every receipt key, active or retired, stays published for good.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeCompleteFile } from '../util/complete-file.js';
import { OPERATOR_WORDED } from '../util/operator-worded.js';
import { exportJWK, generateKeyPair, calculateJwkThumbprint, type JWK } from 'jose';

import { RECEIPT_ALGS, SIGNING_ALGS, type ReceiptAlg, type SigningAlg } from '../util/algorithms.js';

/** Token-signing and receipt algorithms: one source, src/util/algorithms.ts. */
export { RECEIPT_ALGS, SIGNING_ALGS, type ReceiptAlg, type SigningAlg };

/** A token-signing key as stored: private JWK, status (`active` / `retired`), creation and retirement times. */
export interface SigningKeyRecord {
  /** Private JWK with `kid`, `alg` and `use: "sig"`. */
  jwk: JWK & { kid: string; alg: SigningAlg };
  status: 'active' | 'retired';
  /** Seconds since the epoch. */
  createdAt: number;
  retiredAt?: number;
}

/** A vault key-encryption key as stored: `kid`, the 256-bit key `k` (base64url), status, creation and retirement times. */
export interface KekRecord {
  kid: string;
  /** 32 random bytes, base64url. */
  k: string;
  status: 'active' | 'retired';
  createdAt: number;
  /** When `vault:rotate` retired it (seconds since the epoch); retired KEKs still unwrap. */
  retiredAt?: number;
}

/** Server secrets: the DPoP nonce secret (RFC 9449 §8) and the cookie-signing keys. */
export interface ServerSecrets {
  /** 32 bytes, base64url: HKDF input for stateless DPoP nonces (same on every instance). */
  dpopNonceSecret: string;
  /** Keys for signed cookies (oidc-provider). */
  cookieKeys: string[];
}

/** Where keys are loaded from (`dir`, `env`), the signing algorithm, whether missing files may be generated, and the longest token lifetime (seconds, for retired-key retention). */
export interface KeyStoreOptions {
  dir: string;
  signingAlg: SigningAlg;
  generate: boolean;
  /** Longest lifetime of a token signed by these keys, in seconds (retention of retired keys). */
  maxTokenLifetime: number;
  env?: Readonly<Record<string, string | undefined>>;
}

export const SIGNING_KEYS_FILE = 'signing-keys.json';
export const VAULT_KEK_FILE = 'vault-kek.json';
export const SERVER_SECRETS_FILE = 'server-secrets.json';
export const RECEIPT_KEYS_FILE = 'receipt-keys.json';
/** Clock skew allowed to verifiers beyond a token's `exp` when deciding to drop a retired key. */
const RETENTION_SKEW = 60;
/**
 * After `keys:rotate`, instances not yet restarted still sign with the retired key. Its public
 * part stays published this long beyond the token lifetime: roll every instance within it.
 */
export const ROLLOUT_GRACE_SECONDS = 24 * 3600;

/** Key material missing or malformed. The message names the file or variable and the problem. */
export class KeyError extends Error {
  readonly code = 'ERR_DEPUTY_KEYS';
  /** Its messages name a file or variable and a field, never key material: logged as they are. */
  readonly [OPERATOR_WORDED] = true;
  constructor(message: string) {
    super(message);
    this.name = 'KeyError';
  }
}

/**
 * Deputy's loaded key material: the signing JWKS (active key signs, retired keys stay published),
 * receipt keys, vault KEKs (reloadable) and server secrets. Built by {@link loadKeyStore}, which throws {@link KeyError}.
 */
export class KeyStore {
  readonly #signing: readonly SigningKeyRecord[];
  #kek: readonly KekRecord[];
  /** Re-reads the KEK source (the file; undefined for `DEPUTY_VAULT_KEK`) for {@link reloadVaultKeks}. */
  readonly #readKeks: (() => readonly KekRecord[]) | undefined;
  readonly #secrets: ServerSecrets;
  readonly #retention: number;
  readonly #receipt: readonly SigningKeyRecord[];

  constructor(
    signing: readonly SigningKeyRecord[],
    kek: readonly KekRecord[],
    secrets: ServerSecrets,
    maxTokenLifetime: number,
    receipt: readonly SigningKeyRecord[],
    readKeks?: () => readonly KekRecord[],
  ) {
    assertOneActive(signing.map((k) => k.status), 'signing keys');
    assertOneActive(kek.map((k) => k.status), 'vault key-encryption keys');
    assertOneActive(receipt.map((k) => k.status), 'receipt keys');
    this.#signing = signing;
    this.#kek = kek;
    this.#readKeks = readKeks;
    this.#secrets = secrets;
    this.#retention = ROLLOUT_GRACE_SECONDS + maxTokenLifetime + RETENTION_SKEW;
    this.#receipt = receipt;
  }

  /** The key that signs new receipts. */
  get activeReceiptKey(): SigningKeyRecord & { jwk: { alg: ReceiptAlg } } {
    return this.#receipt.find((k) => k.status === 'active')! as SigningKeyRecord & { jwk: { alg: ReceiptAlg } };
  }

  /** Public receipt keys: all of them, retired included (receipts are kept indefinitely). */
  receiptJwks(): { keys: JWK[] } {
    return { keys: this.#receipt.map((k) => toPublicJwk(k.jwk)) };
  }

  /** The key that signs new tokens. */
  get activeSigningKey(): SigningKeyRecord {
    return this.#signing.find((k) => k.status === 'active')!;
  }

  /** Public keys to publish: the active key and retired keys whose tokens may still be live. */
  publicJwks(now = epoch()): { keys: JWK[] } {
    const live = this.#signing.filter((k) => k.status === 'active' || (k.retiredAt ?? 0) + this.#retention > now);
    return { keys: live.map((k) => toPublicJwk(k.jwk)) };
  }

  /** The private JWKS handed to oidc-provider: only the active key, so it is the one that signs. */
  providerJwks(): { keys: JWK[] } {
    return { keys: [{ ...this.activeSigningKey.jwk }] };
  }

  /** The active vault key-encryption key and every KEK still able to unwrap data keys. */
  vaultKeks(): { active: { kid: string; key: Buffer }; all: ReadonlyMap<string, Buffer> } {
    return kekSet(this.#kek);
  }

  /**
   * Re-reads the KEKs from where they were loaded (after `vault:rotate` replaced the file) and
   * returns them. A source that became unreadable or invalid keeps the loaded KEKs and throws
   * {@link KeyError}: a half-written or broken file must never drop a key still in use.
   */
  reloadVaultKeks(): ReturnType<KeyStore['vaultKeks']> {
    if (this.#readKeks) {
      const next = this.#readKeks();
      assertOneActive(next.map((k) => k.status), 'vault key-encryption keys');
      this.#kek = next;
    }
    return this.vaultKeks();
  }

  get dpopNonceSecret(): Buffer {
    return Buffer.from(this.#secrets.dpopNonceSecret, 'base64url');
  }

  get cookieKeys(): string[] {
    return [...this.#secrets.cookieKeys];
  }
}

/** Loads (and in development generates) every key Deputy needs. */
export async function loadKeyStore(options: KeyStoreOptions): Promise<KeyStore> {
  const env = options.env ?? process.env;
  const signing = await loadOrCreate(options, env.DEPUTY_SIGNING_KEYS, 'DEPUTY_SIGNING_KEYS', SIGNING_KEYS_FILE, async () => ({
    keys: [await generateSigningKey(options.signingAlg)],
  }), parseSigningFile);
  const kek = await loadOrCreate(options, env.DEPUTY_VAULT_KEK, 'DEPUTY_VAULT_KEK', VAULT_KEK_FILE, async () => ({
    keys: [generateKek()],
  }), parseKekFile);
  const secrets = await loadOrCreate(options, env.DEPUTY_SERVER_SECRETS, 'DEPUTY_SERVER_SECRETS', SERVER_SECRETS_FILE, async () =>
    generateServerSecrets(), parseSecretsFile);
  const receipt = await loadOrCreate(options, env.DEPUTY_RECEIPT_KEYS, 'DEPUTY_RECEIPT_KEYS', RECEIPT_KEYS_FILE, async () => ({
    keys: [await generateSigningKey('ES256')],
  }), parseReceiptFile);
  // The environment of a running process does not change: only a file can bring a rotated KEK.
  const kekPath = join(options.dir, VAULT_KEK_FILE);
  const readKeks = env.DEPUTY_VAULT_KEK ? undefined : () => parseKekFile(readFileOrThrow(kekPath), kekPath).keys;
  return new KeyStore(signing.keys, kek.keys, secrets, options.maxTokenLifetime, receipt.keys, readKeks);
}

/**
 * Rotates token-signing keys in `dir`: the active key retires, a new key becomes active, and
 * retired keys whose tokens have all expired are dropped. Returns the new active `kid`.
 */
export async function rotateSigningKeys(dir: string, alg: SigningAlg, maxTokenLifetime: number, now = epoch()): Promise<string> {
  const path = join(dir, SIGNING_KEYS_FILE);
  const file = parseSigningFile(readFileOrThrow(path), path);
  const kept = file.keys
    .map((k): SigningKeyRecord => (k.status === 'active' ? { ...k, status: 'retired', retiredAt: now } : k))
    .filter((k) => (k.retiredAt ?? now) + ROLLOUT_GRACE_SECONDS + maxTokenLifetime + RETENTION_SKEW > now);
  const next = await generateSigningKey(alg, now);
  writeSecretFile(path, { keys: [next, ...kept] }, true);
  return next.jwk.kid;
}

/** KEK records as the vault takes them: the active KEK and every KEK by id. */
export function kekSet(records: readonly KekRecord[]): { active: { kid: string; key: Buffer }; all: ReadonlyMap<string, Buffer> } {
  assertOneActive(records.map((k) => k.status), 'vault key-encryption keys');
  const all = new Map(records.map((k) => [k.kid, Buffer.from(k.k, 'base64url')] as const));
  const active = records.find((k) => k.status === 'active')!;
  return { active: { kid: active.kid, key: all.get(active.kid)! }, all };
}

/** The result of a KEK rotation: the new active `kid`, the previous one, and the file written. */
export interface VaultKekRotation {
  /** The new active KEK. */
  kid: string;
  /** The KEK it replaced (now `retired`, still able to unwrap). */
  previous: string;
  /** The complete new KEK file content, e.g. for `DEPUTY_VAULT_KEK`. */
  file: { keys: KekRecord[] };
}

/**
 * Rotates the vault key-encryption key: the active KEK retires (it keeps unwrapping the data
 * keys it wrapped until they are re-wrapped), a new one becomes active. `json` is the current
 * KEK set when it comes from `DEPUTY_VAULT_KEK` rather than the file in `dir`; with `write`, the
 * result replaces the file atomically (mode 0600), so an instance re-reading it never sees a
 * partial file.
 */
export function rotateVaultKek(options: { dir: string; json?: string; write: boolean; now?: number }): VaultKekRotation {
  const now = options.now ?? epoch();
  const { path, current } = readKekSet(options);
  const previous = current.find((k) => k.status === 'active');
  if (!previous) throw new KeyError(`${path}: no active key-encryption key`);
  const next = generateKek(now);
  const file = { keys: [next, ...current.map((k): KekRecord => (k.status === 'active' ? { ...k, status: 'retired', retiredAt: now } : k))] };
  if (options.write) writeSecretFile(join(options.dir, VAULT_KEK_FILE), file, true);
  return { kid: next.kid, previous: previous.kid, file };
}

/**
 * Drops retired KEKs that no stored data key uses any more and that retired at least
 * `minRetiredSeconds` ago: an instance keeps wrapping new rows with the KEK it loaded until it
 * re-reads the file (the vault's refresh interval), so a KEK dropped sooner could still be in
 * use. Returns the kids dropped and the resulting KEK set.
 */
export function pruneVaultKeks(options: {
  dir: string;
  json?: string;
  inUse: ReadonlySet<string>;
  minRetiredSeconds: number;
  write: boolean;
  now?: number;
}): { dropped: string[]; file: { keys: KekRecord[] } } {
  const now = options.now ?? epoch();
  const { current } = readKekSet(options);
  const droppable = (k: KekRecord) =>
    k.status === 'retired' && !options.inUse.has(k.kid) && k.retiredAt !== undefined && now - k.retiredAt >= options.minRetiredSeconds;
  const dropped = current.filter(droppable).map((k) => k.kid);
  const file = { keys: current.filter((k) => !droppable(k)) };
  if (options.write && dropped.length > 0) writeSecretFile(join(options.dir, VAULT_KEK_FILE), file, true);
  return { dropped, file };
}

/**
 * Puts `records` back into the KEK file in `dir` (those whose kid it no longer has), e.g. a KEK
 * that {@link pruneVaultKeks} dropped while an instance was still wrapping rows with it. Returns
 * the kids restored.
 */
export function restoreVaultKeks(options: { dir: string; records: readonly KekRecord[] }): string[] {
  const { current } = readKekSet({ dir: options.dir });
  const have = new Set(current.map((k) => k.kid));
  const missing = options.records.filter((k) => !have.has(k.kid)).map((k): KekRecord => ({ ...k, status: 'retired' }));
  if (missing.length > 0) writeSecretFile(join(options.dir, VAULT_KEK_FILE), { keys: [...current, ...missing] }, true);
  return missing.map((k) => k.kid);
}

function readKekSet(options: { dir: string; json?: string }): { path: string; current: KekRecord[] } {
  const path = options.json === undefined ? join(options.dir, VAULT_KEK_FILE) : 'DEPUTY_VAULT_KEK';
  return { path, current: parseKekFile(options.json ?? readFileOrThrow(path), path).keys };
}

/**
 * Rotates receipt keys in `dir`: the active key retires and a new one becomes active. Unlike
 * token keys, no receipt key is ever dropped: receipts signed years ago must still verify.
 */
export async function rotateReceiptKeys(dir: string, alg: ReceiptAlg, now = epoch()): Promise<string> {
  const path = join(dir, RECEIPT_KEYS_FILE);
  const file = parseReceiptFile(readFileOrThrow(path), path);
  const kept = file.keys.map((k): SigningKeyRecord => (k.status === 'active' ? { ...k, status: 'retired', retiredAt: now } : k));
  const next = await generateSigningKey(alg, now);
  writeSecretFile(path, { keys: [next, ...kept] }, true);
  return next.jwk.kid;
}

async function loadOrCreate<T>(
  options: KeyStoreOptions,
  fromEnv: string | undefined,
  envName: string,
  fileName: string,
  create: () => Promise<T>,
  parse: (text: string, where: string) => T,
): Promise<T> {
  if (fromEnv) return parse(fromEnv, envName);
  const path = join(options.dir, fileName);
  const text = readFileIfExists(path);
  if (text !== undefined) return parse(text, path);
  if (!options.generate) {
    throw new KeyError(`${path} is missing and key generation is off (NODE_ENV=production?): provide it or set ${envName}`);
  }
  mkdirSync(options.dir, { recursive: true, mode: 0o700 });
  const value = await create();
  // Exclusive create: when two instances start at once, one writes and the other reads its file.
  if (!writeSecretFile(path, value, false)) return parse(readFileOrThrow(path), path);
  return value;
}

/**
 * Writes JSON with mode 0600, always complete (see {@link writeCompleteFile}); without `replace`,
 * exclusively, for instances generating keys at the same moment (one wins, the others read its file).
 */
function writeSecretFile(path: string, value: unknown, replace: boolean): boolean {
  return writeCompleteFile(path, `${JSON.stringify(value, null, 2)}\n`, { replace });
}

function readFileIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new KeyError(`${path}: cannot read (${(err as NodeJS.ErrnoException).code})`);
  }
}

function readFileOrThrow(path: string): string {
  const text = readFileIfExists(path);
  if (text === undefined) throw new KeyError(`${path} does not exist`);
  return text;
}

export async function generateSigningKey(alg: SigningAlg, now = epoch()): Promise<SigningKeyRecord> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'RS256' ? { modulusLength: 2048 } : {}) });
  const jwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(jwk);
  return { jwk: { ...jwk, kid, alg, use: 'sig' }, status: 'active', createdAt: now };
}

function generateKek(now = epoch()): KekRecord {
  return { kid: `kek-${now}-${randomBytes(4).toString('hex')}`, k: randomBytes(32).toString('base64url'), status: 'active', createdAt: now };
}

function generateServerSecrets(): ServerSecrets {
  return { dpopNonceSecret: randomBytes(32).toString('base64url'), cookieKeys: [randomBytes(32).toString('base64url')] };
}

function parseJson(text: string, where: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new KeyError(`${where}: not valid JSON`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new KeyError(`${where}: must be a JSON object`);
  return doc as Record<string, unknown>;
}

function parseSigningFile(text: string, where: string): { keys: SigningKeyRecord[] } {
  const doc = parseJson(text, where);
  if (!Array.isArray(doc.keys) || doc.keys.length === 0) throw new KeyError(`${where}: "keys" must be a non-empty array`);
  const keys = doc.keys.map((k: unknown, i: number): SigningKeyRecord => {
    const r = k as Partial<SigningKeyRecord>;
    const at = `${where}: keys[${i}]`;
    if (typeof r.jwk !== 'object' || r.jwk === null) throw new KeyError(`${at}.jwk must be a JWK object`);
    if (typeof r.jwk.kid !== 'string' || !r.jwk.kid) throw new KeyError(`${at}.jwk.kid is required`);
    if (!(SIGNING_ALGS as readonly string[]).includes(r.jwk.alg as string)) throw new KeyError(`${at}.jwk.alg must be ${SIGNING_ALGS.slice(0, -1).join(', ')} or ${SIGNING_ALGS.at(-1)}`);
    if (typeof r.jwk.d !== 'string') throw new KeyError(`${at}.jwk must be a private key (no "d")`);
    if (r.status !== 'active' && r.status !== 'retired') throw new KeyError(`${at}.status must be "active" or "retired"`);
    if (typeof r.createdAt !== 'number') throw new KeyError(`${at}.createdAt must be a number`);
    return r as SigningKeyRecord;
  });
  return { keys };
}

/** A signing-key file whose keys may only be receipt algorithms (ES256, EdDSA). */
function parseReceiptFile(text: string, where: string): { keys: SigningKeyRecord[] } {
  const file = parseSigningFile(text, where);
  file.keys.forEach((k, i) => {
    if (!(RECEIPT_ALGS as readonly string[]).includes(k.jwk.alg)) throw new KeyError(`${where}: keys[${i}].jwk.alg must be ES256 or EdDSA for receipts`);
  });
  assertOneActive(file.keys.map((k) => k.status), `${where}: receipt keys`);
  return file;
}

function parseKekFile(text: string, where: string): { keys: KekRecord[] } {
  const doc = parseJson(text, where);
  if (!Array.isArray(doc.keys) || doc.keys.length === 0) throw new KeyError(`${where}: "keys" must be a non-empty array`);
  const keys = doc.keys.map((k: unknown, i: number): KekRecord => {
    const r = k as Partial<KekRecord>;
    const at = `${where}: keys[${i}]`;
    if (typeof r.kid !== 'string' || !r.kid) throw new KeyError(`${at}.kid is required`);
    if (typeof r.k !== 'string' || Buffer.from(r.k, 'base64url').length !== 32) throw new KeyError(`${at}.k must be 32 bytes, base64url`);
    if (r.status !== 'active' && r.status !== 'retired') throw new KeyError(`${at}.status must be "active" or "retired"`);
    return {
      kid: r.kid, k: r.k, status: r.status, createdAt: typeof r.createdAt === 'number' ? r.createdAt : 0,
      ...(typeof r.retiredAt === 'number' ? { retiredAt: r.retiredAt } : {}),
    };
  });
  return { keys };
}

function parseSecretsFile(text: string, where: string): ServerSecrets {
  const doc = parseJson(text, where);
  const nonce = doc.dpopNonceSecret;
  if (typeof nonce !== 'string' || Buffer.from(nonce, 'base64url').length !== 32) {
    throw new KeyError(`${where}: dpopNonceSecret must be 32 bytes, base64url`);
  }
  const cookieKeys = doc.cookieKeys;
  if (!Array.isArray(cookieKeys) || cookieKeys.length === 0 || !cookieKeys.every((c) => typeof c === 'string' && c.length >= 16)) {
    throw new KeyError(`${where}: cookieKeys must be a non-empty array of strings of at least 16 characters`);
  }
  return { dpopNonceSecret: nonce, cookieKeys };
}

function assertOneActive(statuses: readonly string[], what: string): void {
  const n = statuses.filter((s) => s === 'active').length;
  if (n !== 1) throw new KeyError(`${what}: exactly one must be "active" (found ${n})`);
}

/** Strips private members (RFC 7518 §6) and keeps the metadata verifiers need. */
export function toPublicJwk(jwk: JWK): JWK {
  const { kty, crv, x, y, n, e, kid, alg, use } = jwk;
  return Object.fromEntries(Object.entries({ kty, crv, x, y, n, e, kid, alg, use }).filter(([, v]) => v !== undefined)) as JWK;
}

function epoch(): number {
  return Math.floor(Date.now() / 1000);
}
