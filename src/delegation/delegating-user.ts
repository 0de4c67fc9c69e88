/**
 * The delegating user: the human on whose behalf a delegation chain acts, as the trusted
 * issuer's subject token described them at the first exchange (RFC 8693 §2.1 `subject_token`).
 *
 * @module
 */

/** The user on whose behalf the chain acts. Attributes are those of the first exchange. */
export interface DelegatingUser {
  /** Stable id (`entra:{tid}:{oid}`, `okta:{host}:{uid}`, `{iss}#{sub}`). */
  id: string;
  /** The trusted issuer (config id) that authenticated the user. */
  issuerId: string;
  email?: string;
  tenant?: string;
  groups: readonly string[];
  roles: readonly string[];
}
