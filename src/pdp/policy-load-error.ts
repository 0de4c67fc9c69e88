/**
 * The policy store's refusal of a policy set (policy-store.ts): its own module so that the
 * modules the store compiles a set with (policy-scopes.ts) refuse with it too, without importing
 * the store.
 *
 * @module
 */

/** A policy set that cannot be loaded; `issues` names each problem with its file. */
export class PolicyLoadError extends Error {
  readonly code = 'ERR_PDP_POLICIES';
  constructor(
    readonly dir: string,
    readonly issues: readonly string[],
  ) {
    super(`invalid policy set (${dir}):\n  - ${issues.join('\n  - ')}`);
    this.name = 'PolicyLoadError';
  }
}
