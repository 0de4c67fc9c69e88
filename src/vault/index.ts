/**
 * The credential vault: envelope encryption of secrets at rest (AES-256-GCM data keys wrapped by
 * a key-encryption key, NIST SP 800-38D) and the local KEK wrapper. Connections, credential
 * sources and the connect flow are in `./connections/` (its own `index.ts`).
 *
 * @module
 */
export {
  EnvelopeVault,
  VaultDecryptError,
  kekIdsInUse,
  newHandle,
  type KeyEncryptionKeys,
  type KeyWrapper,
  type PutSecret,
  type RewrapResult,
} from './envelope.js';
export { LocalKeyWrapper, UnknownKeyEncryptionKey, toKeyWrapper, type LocalKeyWrapperOptions, type WrappedKey } from './key-wrapper.js';
export { localVault } from './local-vault.js';
