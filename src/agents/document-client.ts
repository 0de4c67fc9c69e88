/**
 * Clients identified by a Client ID Metadata Document (draft-ietf-oauth-client-id-metadata-document)
 * as agents of the registry. Their `client_id` is an https URL, which the registry, token records,
 * receipts and the PDP cannot use as an agent id; each such client is the agent
 * {@link documentAgentId}(url): a derived, stable id under the reserved prefix `cimd-`, flagged
 * `source: 'client_id_metadata'` with the URL (`clientIdUrl`) and the document's `client_name`.
 *
 * Its limits never come from the document (anyone can publish one): audiences, scopes and
 * maximum delegation depth are the operator's (`oauth.authorizationCode.clientIdMetadataDocuments`).
 *
 * @module
 */
import { createHash } from 'node:crypto';

/** Agent ids starting with this are derived from a metadata-document URL: no operator may register one. */
export const DOCUMENT_AGENT_PREFIX = 'cimd-';

/**
 * The agent id of the client whose `client_id` is the document URL `url`: `cimd-` and the first
 * 32 hex digits (128 bits) of SHA-256 of the URL exactly as sent (no normalisation: the draft
 * compares `client_id`s as strings). 37 characters, a valid agent id; a collision would need a
 * 2^64 birthday search over URLs on allow-listed hosts.
 */
export function documentAgentId(url: string): string {
  return DOCUMENT_AGENT_PREFIX + createHash('sha256').update(url, 'utf8').digest('hex').slice(0, 32);
}

/** Whether `id` is in the reserved `cimd-` namespace. */
export function isDocumentAgentId(id: string): boolean {
  return id.startsWith(DOCUMENT_AGENT_PREFIX);
}

/** What the registry keeps of a metadata-document client (see AgentRegistry.upsertDocumentClient). */
export interface DocumentClient {
  /** The `client_id`: the document's https URL. */
  url: string;
  /** The document's `client_name` (display only), or the URL. */
  name: string;
  /** Operator configuration, never the document's. */
  audiences: readonly string[];
  scopes: readonly string[];
  maxDelegationDepth: number;
}
