/**
 * Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP authorization
 * 2025-11-25 §"Client ID Metadata Documents"): a `client_id` that is an https URL names a JSON
 * document describing the client. Deputy's policy over that mechanism:
 *
 * - **Hosts**: only documents on `oauth.authorizationCode.clientIdMetadataDocuments.allowedHosts`
 *   are fetched (an operator allow-list; empty: none). {@link isAllowedDocumentUrl}.
 * - **Fetch** (by oidc-provider, 9.13.3, `features.clientIdMetadataDocument`): https only, no
 *   redirects (any non-200 is refused), 2.5 s timeout, at most `maxBytes`;
 *   cached by HTTP caching rules (`Cache-Control: max-age`, `Expires`, clamped) in a bounded LRU.
 *   Deputy's fetch ({@link documentFetch}) refuses special-use addresses (private, loopback,
 *   link-local, …) when resolving the host, before connecting, and requires `application/json`.
 * - **Document** (oidc-provider checks `client_id` equals the URL, no shared-secret auth and no
 *   `client_secret`, https URIs): Deputy also requires `redirect_uris`, the code flow only
 *   (`authorization_code` / `refresh_token`, `response_types: ["code"]`), and authentication
 *   `none` (a public client: DPoP then required) or `private_key_jwt` with a `jwks_uri`
 *   ({@link documentProblem}).
 *
 * @module
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { readFileSync } from 'node:fs';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { Agent, fetch as undiciFetch } from 'undici';
import type { Logger } from '../log.js';

/** The options of `oauth.authorizationCode.clientIdMetadataDocuments` this module reads. */
export interface DocumentPolicy {
  allowedHosts: readonly string[];
  allowPrivateAddresses: boolean;
  caFile?: string | undefined;
}

/** A `client_id` that names a metadata document: an https URL (draft §3). */
export function isDocumentClientId(clientId: string): boolean {
  return clientId.startsWith('https://');
}

/**
 * Whether a document may be fetched from `clientId`: an https URL (no credentials, no fragment)
 * whose host (with its port, if not 443) is allow-listed.
 */
export function isAllowedDocumentUrl(clientId: string, policy: Pick<DocumentPolicy, 'allowedHosts'>): boolean {
  const url = URL.parse(clientId);
  if (!url || url.protocol !== 'https:' || url.username || url.password || url.hash) return false;
  const hosts = new Set(policy.allowedHosts.map((h) => h.toLowerCase()));
  return hosts.has(url.host.toLowerCase());
}

/** The client metadata members Deputy checks (RFC 7591 §2 names). */
export interface DocumentMetadata {
  client_id?: unknown;
  redirect_uris?: unknown;
  grant_types?: unknown;
  response_types?: unknown;
  token_endpoint_auth_method?: unknown;
  jwks_uri?: unknown;
  jwks?: unknown;
}

const CODE_FLOW_GRANTS = new Set(['authorization_code', 'refresh_token']);

/** Why Deputy refuses a (fetched, parsed) client metadata document; `undefined` when it is fine. */
export function documentProblem(doc: DocumentMetadata): string | undefined {
  if (!Array.isArray(doc.redirect_uris) || doc.redirect_uris.length === 0 || !doc.redirect_uris.every((u) => typeof u === 'string')) {
    return 'redirect_uris must list at least one redirect URI';
  }
  const grants = doc.grant_types ?? ['authorization_code'];
  if (!Array.isArray(grants) || !grants.includes('authorization_code') || !grants.every((g) => CODE_FLOW_GRANTS.has(g as string))) {
    return 'grant_types may only list authorization_code and refresh_token';
  }
  const responses = doc.response_types ?? ['code'];
  if (!Array.isArray(responses) || responses.length !== 1 || responses[0] !== 'code') return 'response_types must be ["code"]';
  const method = doc.token_endpoint_auth_method;
  if (method === 'none') return undefined;
  if (method === 'private_key_jwt') return typeof doc.jwks_uri === 'string' && doc.jwks === undefined ? undefined : 'private_key_jwt clients must publish their keys at jwks_uri';
  return 'token_endpoint_auth_method must be "none" or "private_key_jwt"';
}

/** `application/json` or a `+json` media type (RFC 6839 §3.1), parameters ignored. */
export function isJsonMediaType(contentType: string | null): boolean {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  return type === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(type);
}

type FetchOptions = RequestInit & { dispatcher?: unknown };

/**
 * Special-use address blocks (RFC 6890 registries, IANA IPv4/IPv6 Special-Purpose Address
 * Registries) a metadata document is never fetched from: this network, private, shared (CGN),
 * loopback, link-local, documentation, benchmarking, multicast and reserved ranges; IPv6
 * unspecified, loopback, IPv4-mapped/translated, ULA, link-local, documentation, multicast.
 */
const SPECIAL_USE = (() => {
  const list = new BlockList();
  for (const [net, prefix] of [
    ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.0.0.0', 24],
    ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 3],
  ] as const) list.addSubnet(net, prefix, 'ipv4');
  for (const [net, prefix] of [
    // IPv4-mapped (::ffff:0:0/96) is left out: BlockList checks IPv4 addresses against IPv6 rules as
    // mapped addresses, so that rule would match every IPv4 address; mapped ones are checked as IPv4 below.
    ['::', 127], ['64:ff9b::', 96], ['64:ff9b:1::', 48], ['100::', 64], ['2001::', 23], ['2001:db8::', 32], ['2002::', 16],
    ['fc00::', 7], ['fe80::', 10], ['ff00::', 8],
  ] as const) list.addSubnet(net, prefix, 'ipv6');
  return list;
})();

/** Whether `address` (an IP literal) is in a special-use block (for IPv4-mapped IPv6, its IPv4 address too). */
export function isSpecialUseAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  if (family === 4) return SPECIAL_USE.check(address, 'ipv4');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return SPECIAL_USE.check(address, 'ipv6') || (mapped !== null && SPECIAL_USE.check(mapped[1]!, 'ipv4'));
}

/**
 * A DNS lookup that refuses special-use addresses: the check is made on the addresses the
 * connection will use (no second resolution between check and connect, so no DNS rebinding).
 */
const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
    if (err) return callback(err, '', 0);
    const usable = addresses.filter((a) => !isSpecialUseAddress(a.address));
    if (usable.length === 0) return callback(Object.assign(new Error(`${hostname} resolves to a special-use (private, loopback, link-local…) address`), { code: 'ERR_SPECIAL_USE_ADDRESS' }), '', 0);
    if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, usable);
    return callback(null, usable[0]!.address, usable[0]!.family);
  });
};

/**
 * oidc-provider's `fetch` (every outgoing request it makes: metadata documents, client JWKS)
 * with Deputy's additions: JSON responses only for JSON requests; and, only when the operator
 * allowed private addresses (tests), a dispatcher without the SSRF check that trusts `caFile`.
 */
export function documentFetch(policy: DocumentPolicy, logger: Logger): (url: URL | string, options: FetchOptions) => Promise<Response> {
  // Deputy's own dispatcher: addresses checked at resolution (before any connection), and the extra CA.
  const agent = new Agent({
    connect: { ...(policy.caFile ? { ca: readFileSync(policy.caFile, 'utf8') } : {}), ...(policy.allowPrivateAddresses ? {} : { lookup: publicOnlyLookup }) },
  });
  return async (url, options) => {
    let res: Response;
    try {
      // undici's (the package's) fetch, with its Agent; oidc-provider's own dispatcher is replaced.
      res = (await undiciFetch(url, { ...(options as Parameters<typeof undiciFetch>[1]), dispatcher: agent })) as unknown as Response;
    } catch (err) {
      const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : String(err);
      logger.info({ url: String(url).slice(0, 300), cause }, 'outgoing fetch of oidc-provider failed (client metadata document or JWKS)');
      throw err;
    }
    const accept = new Headers(options.headers).get('accept') ?? '';
    if (res.status === 200 && accept.includes('json') && !isJsonMediaType(res.headers.get('content-type'))) {
      await res.body?.cancel();
      throw new TypeError('the response is not JSON (Content-Type)');
    }
    return res;
  };
}
