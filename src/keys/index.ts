/**
 * Deputy's key material (token-signing JWKS, receipt-signing JWKS, vault KEKs, server secrets):
 * loading, generation in development, and rotation (RFC 7517 key sets). See `keystore.ts`.
 *
 * @module
 */
export {
  KeyError,
  KeyStore,
  loadKeyStore,
  rotateSigningKeys,
  rotateReceiptKeys,
  rotateVaultKek,
  pruneVaultKeks,
  restoreVaultKeks,
  kekSet,
  toPublicJwk,
  ROLLOUT_GRACE_SECONDS,
  type KekRecord,
  type KeyStoreOptions,
  type ServerSecrets,
  type SigningKeyRecord,
  type VaultKekRotation,
} from './keystore.js';
