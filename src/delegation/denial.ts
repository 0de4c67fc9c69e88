/**
 * The denial type of the delegation model: a refused delegation, carrying the OAuth error code
 * the token endpoint answers with. The OAuth side renders it; the PDP raises it from Cedar
 * decisions; the registry rules raise it from the agent's limits.
 *
 * @module
 */

/** Which check refused, as an OAuth error code (RFC 6749 §5.2, RFC 8693 §2.2.2). */
export type DenialCode = 'invalid_scope' | 'invalid_target' | 'invalid_grant' | 'unauthorized_client';

/**
 * A refused delegation. `description` names the failed check; it becomes `error_description`
 * and carries no token data. `policies` are the ids of the policies that refused (recorded in
 * the exchange's receipt); empty when a registry rule refused.
 */
export class DelegationDenied extends Error {
  constructor(
    readonly error: DenialCode,
    readonly description: string,
    readonly policies: readonly string[] = [],
  ) {
    super(description);
    this.name = 'DelegationDenied';
  }
}
