/**
 * `oauth.authorizationCode`: Deputy's authorization endpoint (RFC 6749 §4.1 with PKCE S256,
 * RFC 7636) for agents and MCP clients acting for a user signed in at the enterprise IdP
 * (src/signin/), and Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document).
 *
 * ```yaml
 * oauth:
 *   authorizationCode:
 *     enabled: true
 *     clients:                         # registered agents allowed to use the code flow
 *       - clientId: research-agent
 *         redirectUris: [https://agent.example.com/callback]
 *         preApproved: false           # true: no consent page (the operator consented for users)
 *     clientIdMetadataDocuments:
 *       enabled: true
 *       allowedHosts: [claude.ai, vscode.dev]
 *       scopes: [deputy.read]          # what such a client may ask for
 *       audiences: [https://deputy.example.com/gw/drive]
 *       maxDelegationDepth: 1          # default: acts directly for the user only
 *       hosts:                         # optional: other limits for one allow-listed host
 *         - host: vscode.dev
 *           scopes: [deputy.read, deputy.write]
 *           audiences: [https://deputy.example.com/gw/github]
 * ```
 *
 * @module
 */
import { z } from 'zod';
import { registeredAudience, registeredScope } from '../../config/agent-limits.js';

/** A redirect URI: https, or http on a loopback host (RFC 8252 §7.3); no fragment (RFC 6749 §3.1.2). */
const redirectUri = z.string().refine(
  (value) => {
    const url = URL.parse(value);
    if (!url || url.hash !== '' || value.includes('#')) return false;
    if (url.protocol === 'https:') return true;
    return url.protocol === 'http:' && ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname);
  },
  { message: 'redirect URIs must be https (or http on a loopback host) without a fragment' },
);

/** A host name (optionally with a port) an operator allows Client ID Metadata Documents from. */
const host = z.string().regex(/^[a-z0-9.-]+(?::\d{1,5})?$/i, 'allowedHosts lists host names (with an optional :port)');

export const authorizationCodeSchema = z
  .strictObject({
    /** Serve the authorization endpoint (`/auth`). Off by default: tokens only at `/token`. */
    enabled: z.boolean().default(false),
    /** Registered agents (`agents[].id`) that may use the code flow, with their redirect URIs. */
    clients: z
      .array(
        z.strictObject({
          clientId: z.string().min(1).max(128),
          redirectUris: z.array(redirectUri).min(1).max(20),
          /** Skip the consent page for this client: the operator approved it for every user. */
          preApproved: z.boolean().default(false),
        }),
      )
      .default([]),
    clientIdMetadataDocuments: z
      .strictObject({
        /** Accept `client_id`s that are https URLs of a client metadata document. */
        enabled: z.boolean().default(false),
        /** Hosts documents may be fetched from; empty refuses every document (fail closed). */
        allowedHosts: z.array(host).max(1000).default([]),
        /**
         * DANGEROUS, tests only: fetch documents from private, loopback and link-local addresses
         * (SSRF protection off), trusting the extra CA `caFile`.
         */
        allowPrivateAddresses: z.boolean().default(false),
        /** A PEM CA bundle trusted in addition to the system's when fetching documents (private CAs, tests). */
        caFile: z.string().min(1).optional(),
        /** Largest document accepted, bytes. */
        maxBytes: z.number().int().min(256).max(65_536).default(5120),
        /** Scopes such a client may be granted (with the user's consent); the PDP still decides each call. */
        scopes: z.array(registeredScope).max(100).default([]),
        /** Resources (RFC 8707; e.g. `<issuer>/gw/{connection}`) such a client may obtain tokens for. */
        audiences: z.array(registeredAudience).max(100).default([]),
        /**
         * Longest delegation chain such a client may appear at the end of (agents counted, itself
         * included): 1, acting directly for the user only. It cannot authenticate to exchange tokens.
         */
        maxDelegationDepth: z.number().int().min(1).max(10).default(1),
        /** Per allow-listed host, limits replacing the three above for documents on that host. */
        hosts: z
          .array(
            z.strictObject({
              host,
              scopes: z.array(registeredScope).max(100).default([]),
              audiences: z.array(registeredAudience).max(100).default([]),
              maxDelegationDepth: z.number().int().min(1).max(10).default(1),
            }),
          )
          .max(1000)
          .default([]),
      })
      .refine((d) => d.hosts.every((h) => d.allowedHosts.some((a) => a.toLowerCase() === h.host.toLowerCase())), {
        message: 'every hosts[].host must also be in allowedHosts',
        path: ['hosts'],
      })
      .prefault({}),
  })
  .prefault({});

export type AuthorizationCodeConfig = z.infer<typeof authorizationCodeSchema>;

/** The limits a metadata-document client gets: those of its host's `hosts` entry, else the defaults. */
export interface DocumentClientLimits {
  scopes: readonly string[];
  audiences: readonly string[];
  maxDelegationDepth: number;
}

/**
 * The operator's limits for the metadata-document client `url` (never the document's): its host's
 * entry in `clientIdMetadataDocuments.hosts` (host with its port, if not 443; case-insensitive),
 * else the section's own `scopes`, `audiences` and `maxDelegationDepth`.
 */
export function documentClientLimits(documents: AuthorizationCodeConfig['clientIdMetadataDocuments'], url: string): DocumentClientLimits {
  const host = URL.parse(url)?.host.toLowerCase();
  const entry = documents.hosts.find((h) => h.host.toLowerCase() === host);
  const { scopes, audiences, maxDelegationDepth } = entry ?? documents;
  return { scopes, audiences, maxDelegationDepth };
}
