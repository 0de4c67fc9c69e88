/**
 * Proof (DESIGN capability 4): signed receipts in per-agent hash chains, and their verifier.
 *
 * @module
 */
export {
  genesisHash,
  looksLikeToken,
  receiptHash,
  receiptText,
  ReceiptSigner,
  RECEIPT_ALGORITHMS,
  RECEIPT_EVENTS,
  RECEIPT_TYP,
  type ReceiptAlgorithm,
  type ReceiptClaims,
  type ReceiptDecision,
  type ReceiptEvent,
  type ReceiptInput,
  type ReceiptSigningKey,
  type McpReceiptDetail,
  type SignedReceipt,
} from './receipt.js';
export { canonicalJson, requestDigest, type DigestValue } from './digest.js';
export { AlreadyRecorded, ReceiptService, type AppendedReceipt, type ReceiptAppender, type ReceiptServiceOptions } from './receipts.js';
export type { ChainHead } from './chain.js';
export { formatLine, JSONL_MEDIA_TYPE, parseJsonLines, toReceiptLine, type ReceiptLine } from './jsonl.js';
export {
  verifyReceipts,
  type ChainSummary,
  type ReceiptProblem,
  type ReceiptProblemCode,
  type VerificationReport,
  type VerifyOptions,
} from './verify.js';
