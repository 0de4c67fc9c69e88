/**
 * OAuth 2.0 Token Exchange (RFC 8693) at `/token`.
 *
 * @module
 */
import { errors } from 'oidc-provider';
import type { GrantRegistration } from './provider.js';
import { TOKEN_EXCHANGE_GRANT } from './provider.js';

/** RFC 8693 §2.1 request parameters (plus RFC 8707 `resource`). */
export const TOKEN_EXCHANGE_PARAMETERS = [
  'subject_token',
  'subject_token_type',
  'actor_token',
  'actor_token_type',
  'requested_token_type',
  'resource',
  'audience',
  'scope',
] as const;

export function tokenExchangeGrant(): GrantRegistration {
  return {
    grantType: TOKEN_EXCHANGE_GRANT,
    parameters: TOKEN_EXCHANGE_PARAMETERS,
    allowedDuplicateParameters: ['resource', 'audience'],
    handler: async () => {
      throw new errors.UnsupportedGrantType();
    },
  };
}
