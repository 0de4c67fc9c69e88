/**
 * The agent registry: agents as OAuth clients (RFC 7523 §2.2 `private_key_jwt`) with an owner
 * and delegation limits. The rules over those limits are in `src/delegation`.
 *
 * @module
 */
export {
  AgentRegistry,
  AGENT_CACHE_TTL_MS,
  type Agent,
  type AgentChangeListener,
  type AgentDeleteHook,
  type AgentDeletion,
  type AgentDisableHook,
  type AgentPatch,
  type AgentSource,
  type AgentStatus,
} from './registry.js';
export { DOCUMENT_AGENT_PREFIX, documentAgentId, isDocumentAgentId, type DocumentClient } from './document-client.js';
