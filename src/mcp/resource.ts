/**
 * The MCP gateway's resource identifiers: `{issuer}/mcp/{server}` is both the endpoint agents
 * connect to and the RFC 8707 resource (token audience); RFC 9728 metadata sits beside it.
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

/** RFC 9728 §3.1: the protected resource metadata URL of `{issuer}/mcp/{server}`. */
export function mcpResourceMetadataUrl(issuer: string, server: string): string {
  const base = new URL(mcpAudience(issuer, server));
  return `${base.origin}/.well-known/oauth-protected-resource${base.pathname}`;
}

