/**
 * Envelope encryption of secrets at rest: each secret gets its own random 256-bit data key
 * (DEK); the secret is encrypted with AES-256-GCM under the DEK, and the DEK is wrapped with
 * AES-256-GCM under the vault key-encryption key (KEK, `keys/vault-kek.json`). The KEK id is
 * stored with the row so that KEKs can be rotated: old rows stay readable while their KEK is kept.
 *
 * The row's handle and kind are bound as additional authenticated data, so a ciphertext copied
 * into another row (or relabelled as another kind) fails to decrypt.
 *
 * Node's `crypto` does the cryptography; nothing here is hand-rolled beyond choosing parameters
 * (NIST SP 800-38D: 96-bit random IVs, 128-bit tags, one IV per key — every DEK encrypts once).
 *
 * @module
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Queryable } from '../store/index.js';

const ALGORITHM = 'aes-256-gcm';
const IV_BYTES = 12;

/** The KEKs Deputy holds: the active one wraps new data keys, any listed one unwraps. */
export interface KeyEncryptionKeys {
  active: { kid: string; key: Buffer };
  all: ReadonlyMap<string, Buffer>;
}

/** A secret could not be decrypted (unknown KEK, tampered row). Never carries the plaintext. */
export class VaultDecryptError extends Error {
  readonly code = 'ERR_VAULT_DECRYPT';
  constructor(message: string) {
    super(message);
    this.name = 'VaultDecryptError';
  }
}

interface Sealed {
  iv: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

function seal(key: Buffer, plaintext: Buffer, aad: Buffer): Sealed {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv(ALGORITHM, key, iv);
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { iv, ciphertext, tag: cipher.getAuthTag() };
}

function open(key: Buffer, sealed: Sealed, aad: Buffer): Buffer {
  const decipher = createDecipheriv(ALGORITHM, key, sealed.iv);
  decipher.setAAD(aad);
  decipher.setAuthTag(sealed.tag);
  return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]);
}

/** Wrapped DEK layout: iv (12) ‖ tag (16) ‖ encrypted DEK (32). */
function wrapKey(kek: Buffer, dek: Buffer, aad: Buffer): Buffer {
  const { iv, ciphertext, tag } = seal(kek, dek, aad);
  return Buffer.concat([iv, tag, ciphertext]);
}

function unwrapKey(kek: Buffer, wrapped: Buffer, aad: Buffer): Buffer {
  return open(kek, { iv: wrapped.subarray(0, IV_BYTES), tag: wrapped.subarray(IV_BYTES, IV_BYTES + 16), ciphertext: wrapped.subarray(IV_BYTES + 16) }, aad);
}

const aadOf = (handle: string, kind: string) => Buffer.from(`deputy-vault\0${kind}\0${handle}`, 'utf8');

/** An opaque, unguessable handle for a stored secret. */
export function newHandle(prefix: string): string {
  return `${prefix}_${randomBytes(18).toString('base64url')}`;
}

export interface PutSecret {
  handle: string;
  /** What the secret is (`upstream_token`, `credential`, …); bound into the AAD. */
  kind: string;
  plaintext: string;
  /** Seconds since the epoch after which the secret may be purged. */
  expiresAt?: number;
}

/** Encrypts and stores secrets in `vault_secrets`. */
export class EnvelopeVault {
  constructor(readonly keks: KeyEncryptionKeys) {}

  async put(db: Queryable, secret: PutSecret): Promise<void> {
    const aad = aadOf(secret.handle, secret.kind);
    const dek = randomBytes(32);
    try {
      const sealed = seal(dek, Buffer.from(secret.plaintext, 'utf8'), aad);
      const wrapped = wrapKey(this.keks.active.key, dek, aad);
      await db.query(
        `INSERT INTO vault_secrets (handle, kind, kek_id, wrapped_key, iv, ciphertext, tag, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $8::bigint IS NULL THEN NULL ELSE to_timestamp($8::bigint) END)`,
        [secret.handle, secret.kind, this.keks.active.kid, wrapped, sealed.iv, sealed.ciphertext, sealed.tag, secret.expiresAt ?? null],
      );
    } finally {
      dek.fill(0);
    }
  }

  /** Decrypts the secret behind `handle`, or undefined when there is none. */
  async get(db: Queryable, handle: string, kind: string): Promise<string | undefined> {
    const rows = await db.query<{ kek_id: string; wrapped_key: Uint8Array; iv: Uint8Array; ciphertext: Uint8Array; tag: Uint8Array }>(
      'SELECT kek_id, wrapped_key, iv, ciphertext, tag FROM vault_secrets WHERE handle = $1 AND kind = $2',
      [handle, kind],
    );
    const row = rows[0];
    if (!row) return undefined;
    const kek = this.keks.all.get(row.kek_id);
    if (!kek) throw new VaultDecryptError(`the key-encryption key "${row.kek_id}" of this secret is not loaded`);
    const aad = aadOf(handle, kind);
    try {
      const dek = unwrapKey(kek, Buffer.from(row.wrapped_key), aad);
      try {
        return open(dek, { iv: Buffer.from(row.iv), ciphertext: Buffer.from(row.ciphertext), tag: Buffer.from(row.tag) }, aad).toString('utf8');
      } finally {
        dek.fill(0);
      }
    } catch {
      throw new VaultDecryptError('the secret failed authentication (tampered row or wrong key)');
    }
  }
}
