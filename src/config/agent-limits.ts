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

/** One audience: an RFC 8707 §2 resource indicator, an absolute URI without a fragment of at most {@link MAX_RESOURCE_URI} (2048) characters. */
export const registeredAudience = z
  .string()
  .max(MAX_RESOURCE_URI, `must be at most ${MAX_RESOURCE_URI} characters`)
  .refine(isResourceIndicator, { message: 'must be an absolute URI without a fragment (RFC 8707 §2), e.g. https://api.example.com or urn:deputy:agent:agent-b' });
