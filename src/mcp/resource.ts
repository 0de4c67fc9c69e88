/**
 * The MCP gateway's resource identifiers: `{issuer}/mcp/{server}` is both the endpoint agents
 * connect to and the RFC 8707 resource (token audience); its RFC 9728 metadata is served and
 * named in 401s by src/http/protected-resource-metadata.ts, like every protected resource's.
 *
 * @module
 */
import { MCP_GATEWAY_PREFIX } from '../oauth/deputy-own.js';

/** The MCP gateway's route prefix; `{issuer}/mcp/{server}` is each server's audience. */
export const MCP_PREFIX = MCP_GATEWAY_PREFIX;

/** `{issuer}/mcp/{server}`: the RFC 8707 resource (token audience) and the endpoint URL (the issuer has no trailing slash: configuration strips it). */
export function mcpAudience(issuer: string, server: string): string {
  return `${issuer}${MCP_PREFIX}/${server}`;
}
