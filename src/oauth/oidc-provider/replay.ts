/**
 * Replay detection oidc-provider uses for DPoP proofs and client assertions, made strict.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import type Provider from 'oidc-provider';
import type { Store } from '../../store/index.js';
import { recordOnce } from '../adapter.js';

/**
 * Replaces `ReplayDetection.unique` (find-then-upsert) with one insert-or-fail statement, so a
 * DPoP proof or client assertion `jti` is accepted exactly once even when two requests race on
 * two instances.
 */
export function useStrictReplayDetection(provider: Provider, store: Store): void {
  const unique = async (iss: string, jti: string, exp: number): Promise<boolean> => {
    const key = createHash('sha256').update(`${iss}\0${jti}`).digest('base64url');
    return recordOnce(store, 'ReplayDetection', key, exp - Math.floor(Date.now() / 1000));
  };
  Object.defineProperty(provider.ReplayDetection, 'unique', { value: unique, configurable: true });
}
