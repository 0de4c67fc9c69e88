/**
 * Step `credential`: the connection's credential for this principal, from the vault (and the
 * downstream AS): an API key, a client-credentials token, the user's own grant, an on-behalf-of
 * token (src/vault/connections/credentials.ts).
 *
 * - reads: `connection` ({@link Targeted}), the admission's principal.
 * - adds: {@link Credentialed}.
 * - refuses: 424 `connection_required` with a connect link for a user who has not connected;
 *   502 / 504 when a token endpoint fails.
 *
 * @module
 */
import type { Credential, CredentialSource } from '../../vault/connections/credentials.js';
import type { ActionContext, Targeted } from '../context.js';
import type { Step } from '../pipeline.js';

/** Added by `credential`. */
export interface Credentialed {
  credential: Credential;
}

/** The `credential` step (see the module doc for its contract). */
export function credential(source: CredentialSource): Step<ActionContext & Targeted, Credentialed> {
  return {
    name: 'credential',
    async run({ connection, admission }) {
      return { credential: await source.credential(connection, admission.principal) };
    },
  };
}
