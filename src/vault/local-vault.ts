/**
 * The process's one vault over the local KEK file: every part of Deputy that stores secrets
 * (token exchange, connections, user grants) shares it, so a rotated KEK (`vault:rotate`) is
 * picked up once, for all of them.
 *
 * @module
 */
import type { KeyStore } from '../keys/index.js';
import { operatorCause, type Logger } from '../log.js';
import { EnvelopeVault } from './envelope.js';
import { LocalKeyWrapper } from './key-wrapper.js';

/**
 * The vault re-reads the KEK file when a row names a KEK it has not loaded (`vault:rotate` ran)
 * and every 60 s before wrapping, so a rotated KEK needs no restart.
 */
export function localVault(keys: KeyStore, logger: Logger): EnvelopeVault {
  return new EnvelopeVault(
    new LocalKeyWrapper(keys.vaultKeks(), {
      reload: () => keys.reloadVaultKeks(),
      onReloadError: (err) => logger.warn({ err: { cause: operatorCause(err) } }, 'vault KEK file could not be re-read; keeping the loaded keys'),
    }),
  );
}
