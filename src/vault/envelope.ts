/**
 * Envelope encryption of secrets at rest: each secret gets its own random 256-bit data key
 * (DEK); the secret is encrypted with AES-256-GCM under the DEK, and the DEK is wrapped by a
 * key-encryption key (KEK) through a {@link KeyWrapper} — the local KEK file
 * (`keys/vault-kek.json`) by default, an external KMS if a deployment plugs one in. The KEK id
 * is stored with the row, so KEKs rotate without downtime: {@link EnvelopeVault.rewrap} re-wraps
 * the data keys (the secrets themselves are never re-encrypted), and rows not yet re-wrapped
 * stay readable while their KEK is kept.
 *
 * The row's handle and kind are bound as additional authenticated data to both the secret and
 * its wrapped data key, so a ciphertext copied into another row (or relabelled as another kind)
 * fails to decrypt.
 *
 * Node's `crypto` does the cryptography; nothing here is hand-rolled beyond choosing parameters
 * (NIST SP 800-38D: 96-bit random IVs, 128-bit tags, one IV per key — every DEK encrypts once).
 *
 * @module
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { metrics } from '../observability/metrics.js';
import type { Queryable, StatementCondition, StatementPart } from '../store/index.js';
import { OPERATOR_WORDED } from '../util/operator-worded.js';
import { toKeyWrapper, UnknownKeyEncryptionKey, type KeyEncryptionKeys, type KeyWrapper } from './key-wrapper.js';

export type { KeyEncryptionKeys, KeyWrapper } from './key-wrapper.js';

const ALGORITHM = 'aes-256-gcm';
const IV_BYTES = 12;

/** A secret could not be decrypted (unknown KEK, tampered row). Never carries the plaintext. */
export class VaultDecryptError extends Error {
  readonly code = 'ERR_VAULT_DECRYPT';
  /** Its messages are fixed text and a KEK id: logged as they are (which KEK is what an operator acts on). */
  readonly [OPERATOR_WORDED] = true;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
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

const aadOf = (handle: string, kind: string) => Buffer.from(`deputy-vault\0${kind}\0${handle}`, 'utf8');

/** An opaque, unguessable handle for a stored secret. */
export function newHandle(prefix: string): string {
  return `${prefix}_${randomBytes(18).toString('base64url')}`;
}

/** A secret to store: its handle, kind (both bound as additional authenticated data), plaintext and optional expiry. */
export interface PutSecret {
  handle: string;
  /** What the secret is (`upstream_subject_token`, `connection_secret`, …); bound into the AAD. */
  kind: string;
  plaintext: string;
  /** Seconds since the epoch after which the secret may be purged. */
  expiresAt?: number;
}

/** What one {@link EnvelopeVault.rewrap} pass did. Handles only: never a secret. */
export interface RewrapResult {
  /** The KEK every re-wrapped data key is now under. */
  kid: string;
  rewrapped: number;
  /** Rows changed or deleted by someone else between read and update (left as they are). */
  raced: number;
  /** Rows whose data key could not be unwrapped (unknown KEK, tampered): they need attention. */
  failed: Array<{ handle: string; kid: string; reason: string }>;
}

interface Row {
  handle: string;
  kind: string;
  kek_id: string;
  wrapped_key: Uint8Array;
  iv: Uint8Array;
  ciphertext: Uint8Array;
  tag: Uint8Array;
}

/** The insert of one secret, its eight parameters numbered from `$first`. */
function insertFrom(first: number): string {
  const [h, k, kek, w, iv, c, t, exp] = Array.from({ length: 8 }, (_, i) => `$${first + i}`);
  return `INSERT INTO vault_secrets (handle, kind, kek_id, wrapped_key, iv, ciphertext, tag, expires_at)
  VALUES (${h}, ${k}, ${kek}, ${w}, ${iv}, ${c}, ${t}, CASE WHEN ${exp}::bigint IS NULL THEN NULL ELSE to_timestamp(${exp}::bigint) END)`;
}
const INSERT = insertFrom(1);

/**
 * The insert of every secret of `rows` (`PartRow`: `v.c0`… in {@link insertFrom}'s order), the
 * binary columns given as hex text: an array of text is written and read the same way by
 * PostgreSQL's driver and PGlite's.
 */
function insertRows(rows: string): string {
  return `INSERT INTO vault_secrets (handle, kind, kek_id, wrapped_key, iv, ciphertext, tag, expires_at)
  SELECT v.c0, v.c1, v.c2, decode(v.c3, 'hex'), decode(v.c4, 'hex'), decode(v.c5, 'hex'), decode(v.c6, 'hex'), CASE WHEN v.c7 IS NULL THEN NULL ELSE to_timestamp(v.c7) END FROM ${rows}`;
}
const ROW_TYPES: readonly string[] = ['text', 'text', 'text', 'text', 'text', 'text', 'text', 'bigint'];

/** {@link insertFrom}'s parameters as {@link insertRows}'s columns: the binary ones as hex. */
function rowValues(params: readonly unknown[]): unknown[] {
  return params.map((v, i) => (i >= 3 && i <= 6 ? Buffer.from(v as Uint8Array).toString('hex') : v));
}

/** Encrypts and stores secrets in `vault_secrets`. */
export class EnvelopeVault {
  readonly wrapper: KeyWrapper;

  /** `keys`: the local KEK set (as `KeyStore.vaultKeks()` returns it) or any {@link KeyWrapper}. */
  constructor(keys: KeyEncryptionKeys | KeyWrapper) {
    this.wrapper = toKeyWrapper(keys);
  }

  /** Stores a new secret; fails if `handle` exists. */
  async put(db: Queryable, secret: PutSecret): Promise<void> {
    await db.query(INSERT, await this.#encrypt(secret));
  }

  /**
   * {@link put} as a {@link StatementPart}: the same encrypted row, written by the caller's own
   * statement (the token exchange writes it with the token record: one round trip).
   */
  async putPart(secret: PutSecret, options: { ifAbsent?: boolean } = {}): Promise<StatementPart> {
    const params = await this.#encrypt(secret);
    // `ifAbsent`: a row that holds `handle` already is kept as it is (the same secret written
    // again) — and locked until the caller's transaction ends (`DO UPDATE … WHERE false` locks the
    // row it leaves unchanged; `DO NOTHING` would not), so {@link purgeExpired} skips it as it
    // skips a row held by {@link exists}: the caller is writing a reference to it.
    if (options.ifAbsent) return { sql: (first) => `${insertFrom(first)} ON CONFLICT (handle) DO UPDATE SET kind = vault_secrets.kind WHERE false`, params };
    return { sql: insertFrom, params, row: { kind: 'vault_secrets', types: ROW_TYPES, values: () => rowValues(params), sql: insertRows } };
  }

  /**
   * True in a statement's `WHERE` while a secret is stored under `handle`: what a write that
   * references an existing secret, without writing it, depends on. The row is locked `FOR KEY
   * SHARE` until the statement's transaction ends, so the check and the write cannot straddle a
   * delete on another connection, and {@link purgeExpired} skips a row so locked (a referenced row
   * is never purged under its reference). A row being deleted (or purged) is not waited for: it
   * fails the check (`SKIP LOCKED`), and the caller decides on its locked path. Waiting would hold
   * what the statement locked before (the exchange's group statement: the agent's chain head)
   * against a deletion that takes the row first and the head next — a deadlock (red team, issue 16
   * eighth round: an agent deleted while exchanging). One index lookup and a row lock, no extra
   * round trip.
   */
  exists(handle: string): StatementCondition {
    const sql = (expr: string) => `EXISTS (SELECT 1 FROM vault_secrets WHERE handle = ${expr} FOR KEY SHARE SKIP LOCKED)`;
    return { sql: (first) => sql(`$${first}::text`), params: [handle], column: { type: 'text', value: handle, sql } };
  }

  /** Stores a secret, replacing whatever `handle` held (a new data key every time). */
  async replace(db: Queryable, secret: PutSecret): Promise<void> {
    await db.query(
      `${INSERT} ON CONFLICT (handle) DO UPDATE SET kind = EXCLUDED.kind, kek_id = EXCLUDED.kek_id, wrapped_key = EXCLUDED.wrapped_key,
         iv = EXCLUDED.iv, ciphertext = EXCLUDED.ciphertext, tag = EXCLUDED.tag, expires_at = EXCLUDED.expires_at`,
      await this.#encrypt(secret),
    );
  }

  /** Deletes secrets; returns how many existed. */
  async delete(db: Queryable, ...handles: string[]): Promise<number> {
    if (handles.length === 0) return 0;
    const rows = await db.query<{ handle: string }>('DELETE FROM vault_secrets WHERE handle = ANY($1::text[]) RETURNING handle', [handles]);
    return rows.length;
  }

  /**
   * Deletes the secrets of `kind` whose expiry (`PutSecret.expiresAt`) passed more than
   * `graceSeconds` ago by the store's clock; returns how many. Rows without an expiry are never
   * candidates. At most `batchSize` rows per statement (each its own commit), so the first purge
   * of a table that grew for months holds no long lock and no huge transaction. Only `kind`: what
   * may be deleted at expiry is the owner's decision (src/oauth/token-exchange.ts
   * `purgeExpiredUpstream`), never a guess over every kind. Rows a statement holds by
   * {@link exists} are skipped (`SKIP LOCKED`), not waited for and then deleted: that statement
   * is writing a reference to the row (a later purge finds it unlocked).
   */
  async purgeExpired(db: Queryable, kind: string, graceSeconds: number, batchSize = 1000): Promise<number> {
    let total = 0;
    for (;;) {
      const rows = await db.query<{ n: number }>(
        `WITH d AS (DELETE FROM vault_secrets WHERE handle IN (
           SELECT handle FROM vault_secrets WHERE kind = $1 AND expires_at < now() - make_interval(secs => $2::int) LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING 1) SELECT count(*)::int AS n FROM d`,
        [kind, graceSeconds, batchSize],
      );
      const n = rows[0]?.n ?? 0;
      total += n;
      if (n < batchSize) return total;
    }
  }

  /** Decrypts the secret behind `handle`, or undefined when there is none. */
  async get(db: Queryable, handle: string, kind: string): Promise<string | undefined> {
    const rows = await db.query<Row>(
      'SELECT handle, kind, kek_id, wrapped_key, iv, ciphertext, tag FROM vault_secrets WHERE handle = $1 AND kind = $2',
      [handle, kind],
    );
    const row = rows[0];
    if (!row) return undefined;
    const aad = aadOf(handle, kind);
    const dek = await this.#unwrap(row, aad);
    try {
      return open(dek, { iv: Buffer.from(row.iv), ciphertext: Buffer.from(row.ciphertext), tag: Buffer.from(row.tag) }, aad).toString('utf8');
    } catch (cause) {
      throw new VaultDecryptError('the secret failed authentication (tampered row or wrong key)', { cause });
    } finally {
      dek.fill(0);
    }
  }

  /**
   * Re-wraps every data key that is not under the active KEK (KEK rotation). Only the wrapped
   * keys change; the secrets' ciphertexts stay as they are. Each row is updated only if it is
   * still what was read (same KEK id and wrapped key), so a concurrent write or delete wins and
   * the pass never needs a lock: instances keep serving while it runs.
   */
  async rewrap(db: Queryable, options: { batchSize?: number } = {}): Promise<RewrapResult> {
    const batchSize = options.batchSize ?? 200;
    const kid = this.wrapper.activeKeyId();
    const result: RewrapResult = { kid, rewrapped: 0, raced: 0, failed: [] };
    let after = '';
    for (;;) {
      const rows = await db.query<Row>(
        `SELECT handle, kind, kek_id, wrapped_key, iv, ciphertext, tag FROM vault_secrets
         WHERE kek_id <> $1 AND handle > $2 ORDER BY handle LIMIT $3`,
        [kid, after, batchSize],
      );
      for (const row of rows) {
        const aad = aadOf(row.handle, row.kind);
        let dek: Buffer;
        try {
          dek = await this.#unwrap(row, aad);
        } catch (err) {
          result.failed.push({ handle: row.handle, kid: row.kek_id, reason: err instanceof Error ? err.message : 'unwrap failed' });
          continue;
        }
        try {
          const next = await this.wrapper.wrap(dek, aad);
          const updated = await db.query(
            'UPDATE vault_secrets SET kek_id = $1, wrapped_key = $2 WHERE handle = $3 AND kek_id = $4 AND wrapped_key = $5 RETURNING handle',
            [next.kid, next.wrapped, row.handle, row.kek_id, Buffer.from(row.wrapped_key)],
          );
          if (updated.length === 1) result.rewrapped += 1;
          else result.raced += 1;
        } finally {
          dek.fill(0);
        }
      }
      if (rows.length < batchSize) return result;
      after = rows.at(-1)!.handle;
    }
  }

  async #encrypt(secret: PutSecret): Promise<unknown[]> {
    const aad = aadOf(secret.handle, secret.kind);
    const dek = randomBytes(32);
    try {
      const sealed = seal(dek, Buffer.from(secret.plaintext, 'utf8'), aad);
      const wrapped = await this.wrapper.wrap(dek, aad);
      return [secret.handle, secret.kind, wrapped.kid, wrapped.wrapped, sealed.iv, sealed.ciphertext, sealed.tag, secret.expiresAt ?? null];
    } finally {
      dek.fill(0);
    }
  }

  async #unwrap(row: Row, aad: Buffer): Promise<Buffer> {
    try {
      return await this.wrapper.unwrap({ kid: row.kek_id, wrapped: Buffer.from(row.wrapped_key) }, aad);
    } catch (cause) {
      metrics.vaultUnwrapFailures.inc();
      if (cause instanceof UnknownKeyEncryptionKey) throw new VaultDecryptError(`the key-encryption key "${row.kek_id}" of this secret is not loaded`, { cause });
      throw new VaultDecryptError('the secret failed authentication (tampered row or wrong key)', { cause });
    }
  }
}

/**
 * The key-encryption keys that stored rows reference, read from the store now (not from any
 * process's memory): what `vault:rotate --prune` must keep. `among` limits the check to those ids.
 */
export async function kekIdsInUse(db: Queryable, among?: readonly string[]): Promise<Set<string>> {
  const rows = among
    ? await db.query<{ kek_id: string }>('SELECT DISTINCT kek_id FROM vault_secrets WHERE kek_id = ANY($1::text[])', [among])
    : await db.query<{ kek_id: string }>('SELECT DISTINCT kek_id FROM vault_secrets');
  return new Set(rows.map((r) => r.kek_id));
}
