/**
 * What an agent may be registered with, one rule for every entrance: agents in the configuration
 * file and through the admin API (`agentSchema` / `agentPatchSchema` in ./schema.ts, both built
 * from these), and the limits configured for client-metadata-document clients
 * (src/oauth/authorization-code/config.ts). Every issued token, receipt and PDP request carries
 * these values, so they are bounded where they enter, not where they are used.
 *
 * @module
 */
import { z } from 'zod';
import { isResourceIndicator, MAX_RESOURCE_URI } from '../oauth/uri.js';
import { MAX_SCOPE_TOKEN, SCOPE_TOKEN } from '../util/scope.js';

/** One scope: an RFC 6749 §3.3 scope token (printable ASCII, no space, `"` or `\`) of at most {@link MAX_SCOPE_TOKEN} (256) characters. */
export const registeredScope = z
  .string()
  .max(MAX_SCOPE_TOKEN, `must be at most ${MAX_SCOPE_TOKEN} characters`)
  .regex(SCOPE_TOKEN, 'must be a valid scope token (RFC 6749 §3.3: printable ASCII without space, " or \\)');

/** The longest logical-name audience accepted, in characters (as a scope token: a name, not an address). */
export const MAX_LOGICAL_AUDIENCE = 256;

/**
 * An RFC 8693 §2.1 logical name ("the logical name of the target service"), e.g. `calendar-api`:
 * the URI characters that need no escaping anywhere (RFC 3986 unreserved and sub-delims, `@`, `/`),
 * without `:` so a logical name can never be read as a URI with a scheme.
 */
const LOGICAL_AUDIENCE = /^[A-Za-z0-9\-._~!$&'()*+,;=@/]+$/;

/**
 * Whether `value` is an audience an agent may be registered with: an RFC 8707 §2 resource
 * indicator (an absolute URI without a fragment, at most {@link MAX_RESOURCE_URI} characters) or an
 * RFC 8693 §2.1 logical name (at most {@link MAX_LOGICAL_AUDIENCE} characters). The token exchange
 * takes both in its `audience` parameter, so registration must too: refusing logical names here
 * would strand agents registered with them by earlier versions.
 */
export function isRegisteredAudience(value: string): boolean {
  if (value.includes(':')) return isResourceIndicator(value);
  return value.length <= MAX_LOGICAL_AUDIENCE && LOGICAL_AUDIENCE.test(value);
}

/** One audience: see {@link isRegisteredAudience}. */
export const registeredAudience = z
  .string()
  .max(MAX_RESOURCE_URI, `must be at most ${MAX_RESOURCE_URI} characters`)
  .refine(isRegisteredAudience, {
    message: `must be an absolute URI without a fragment (RFC 8707 §2), e.g. https://api.example.com or urn:deputy:agent:agent-b, or a logical name (RFC 8693 §2.1) of at most ${MAX_LOGICAL_AUDIENCE} letters, digits and -._~!$&'()*+,;=@/ without ":", e.g. calendar-api`,
  });
