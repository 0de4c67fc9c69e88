/**
 * Key wrapping for the vault: the key-encryption key (KEK) behind a small interface, so that
 * the local KEK file (`keys/vault-kek.json`, {@link LocalKeyWrapper}) and an external KMS
 * (AWS KMS `Encrypt`/`Decrypt` with an encryption context, GCP Cloud KMS, Azure Key Vault
 * `wrapKey`/`unwrapKey`, HashiCorp Vault transit) are interchangeable.
 *
 * A wrapper only ever sees 32-byte data keys and their associated data, never a secret: the
 * secret is encrypted under the data key by {@link EnvelopeVault} (./envelope.ts).
 *
 * @module
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { setBounded } from '../util/bounded-map.js';

/** A data key wrapped by a KEK, with the id of that KEK (stored beside the row). */
export interface WrappedKey {
  kid: string;
  wrapped: Buffer;
}

/**
 * What the vault needs from a key-encryption key, local or remote.
 *
 * Implementations must authenticate `aad` (an AEAD, or a KMS encryption context) so that a
 * wrapped key moved to another row fails to unwrap, and must throw on any failure: a wrapper
 * never returns a wrong key.
 */
export interface KeyWrapper {
  /** The id of the KEK new data keys are wrapped under. Rows under any other id get re-wrapped on rotation. */
  activeKeyId(): string;
  wrap(dataKey: Buffer, aad: Buffer): Promise<WrappedKey>;
  /** Throws {@link UnknownKeyEncryptionKey} when `kid` is not available, anything else when unwrapping fails. */
  unwrap(key: WrappedKey, aad: Buffer): Promise<Buffer>;
}

/** The KEKs Deputy holds: the active one wraps new data keys, any listed one unwraps. */
export interface KeyEncryptionKeys {
  active: { kid: string; key: Buffer };
  all: ReadonlyMap<string, Buffer>;
}

/** A row names a KEK this instance does not have (not even after reloading its source). */
export class UnknownKeyEncryptionKey extends Error {
  readonly code = 'ERR_VAULT_UNKNOWN_KEK';
  constructor(readonly kid: string) {
    super(`the key-encryption key "${kid}" is not loaded`);
    this.name = 'UnknownKeyEncryptionKey';
  }
}

const ALGORITHM = 'aes-256-gcm';
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** Reloading of the local KEK set: the reload function, refresh period and unknown-`kid` cooldown (ms), an error hook, the clock. */
export interface LocalKeyWrapperOptions {
  /**
   * Re-reads the KEK source (file or environment). Called when a row names an unknown KEK
   * (another instance or `vault:rotate` introduced it) and, before wrapping, when the loaded
   * KEKs are older than `refreshMs` — so a rotated KEK becomes active here without a restart.
   */
  reload?: () => KeyEncryptionKeys;
  /** How long loaded KEKs are used for wrapping before the source is re-read. Default 60 s. */
  refreshMs?: number;
  /** An unknown `kid` triggers at most one reload per this interval. Default 5 s. */
  unknownKidCooldownMs?: number;
  /** Told when a reload fails; the loaded KEKs stay in use. */
  onReloadError?: (err: unknown) => void;
  /** Clock (tests). */
  now?: () => number;
}

/**
 * KEKs held in memory (from `keys/vault-kek.json` or `DEPUTY_VAULT_KEK`), wrapping with
 * AES-256-GCM (NIST SP 800-38D: random 96-bit IV, 128-bit tag; one IV per wrap under a KEK that
 * wraps at most ~2^32 keys in its lifetime, far above any realistic secret count).
 *
 * Wrapped layout: iv (12) ‖ tag (16) ‖ encrypted data key (32) — the format the vault has
 * always stored, so existing rows stay readable.
 */
export class LocalKeyWrapper implements KeyWrapper {
  #keys: KeyEncryptionKeys;
  #loadedAt: number;
  readonly #reload: (() => KeyEncryptionKeys) | undefined;
  readonly #refreshMs: number;
  readonly #cooldownMs: number;
  readonly #now: () => number;
  readonly #onReloadError: (err: unknown) => void;
  readonly #lastUnknownReload = new Map<string, number>();

  constructor(keys: KeyEncryptionKeys, options: LocalKeyWrapperOptions = {}) {
    this.#keys = keys;
    this.#reload = options.reload;
    this.#refreshMs = options.refreshMs ?? 60_000;
    this.#cooldownMs = options.unknownKidCooldownMs ?? 5_000;
    this.#now = options.now ?? Date.now;
    this.#onReloadError = options.onReloadError ?? (() => {});
    this.#loadedAt = this.#now();
  }

  activeKeyId(): string {
    this.#refreshIfStale();
    return this.#keys.active.kid;
  }

  async wrap(dataKey: Buffer, aad: Buffer): Promise<WrappedKey> {
    this.#refreshIfStale();
    const { kid, key } = this.#keys.active;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv(ALGORITHM, key, iv);
    cipher.setAAD(aad);
    const ciphertext = Buffer.concat([cipher.update(dataKey), cipher.final()]);
    return { kid, wrapped: Buffer.concat([iv, cipher.getAuthTag(), ciphertext]) };
  }

  async unwrap({ kid, wrapped }: WrappedKey, aad: Buffer): Promise<Buffer> {
    const kek = this.#keys.all.get(kid) ?? this.#reloadForUnknown(kid);
    if (wrapped.length !== IV_BYTES + TAG_BYTES + 32) throw new Error('wrapped data key has the wrong length');
    const decipher = createDecipheriv(ALGORITHM, kek, wrapped.subarray(0, IV_BYTES));
    decipher.setAAD(aad);
    decipher.setAuthTag(wrapped.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    return Buffer.concat([decipher.update(wrapped.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
  }

  /**
   * A row under a KEK this instance has not loaded: `vault:rotate` (or another instance) wrote
   * it after this instance started. Re-read the source once per cooldown per kid — a bogus kid
   * in a tampered row must not turn every read into a file read.
   */
  #reloadForUnknown(kid: string): Buffer {
    const now = this.#now();
    const last = this.#lastUnknownReload.get(kid);
    if (this.#reload && (last === undefined || now - last >= this.#cooldownMs)) {
      setBounded(this.#lastUnknownReload, kid, now, 1000);
      this.#tryReload();
    }
    const kek = this.#keys.all.get(kid);
    if (!kek) throw new UnknownKeyEncryptionKey(kid);
    return kek;
  }

  #refreshIfStale(): void {
    if (this.#now() - this.#loadedAt >= this.#refreshMs) this.#tryReload();
  }

  /** A source that cannot be read right now (being replaced, broken) keeps the loaded KEKs. */
  #tryReload(): void {
    if (!this.#reload) return;
    try {
      this.#keys = this.#reload();
    } catch (err) {
      this.#onReloadError(err);
    }
    this.#loadedAt = this.#now();
  }
}

/** Accepts the KEK set the vault was always given, or any {@link KeyWrapper}. */
export function toKeyWrapper(keys: KeyEncryptionKeys | KeyWrapper): KeyWrapper {
  return 'wrap' in keys ? keys : new LocalKeyWrapper(keys);
}
