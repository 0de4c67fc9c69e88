/**
 * Token counting with a well-kept tokenizer library (`gpt-tokenizer`, the `o200k_base`
 * encoding of current OpenAI models). Deputy counts tokens to reserve a prompt's worst case
 * before the call and to meter a stream whose provider reports no usage; the provider's own
 * `usage` settles the call whenever it has one.
 *
 * Counts of other providers' models (Anthropic) are estimates with the same encoding; the
 * per-message overhead below keeps the estimate on the high side.
 *
 * @module
 */
import { decode, encode } from 'gpt-tokenizer';

/** Special-token text in a prompt is counted as plain text, never refused or interpreted. */
const PLAIN = { disallowedSpecial: new Set<string>() } as const;

/** Tokens of `text`. */
export function countTokens(text: string): number {
  return text ? encode(text, PLAIN).length : 0;
}

/** The longest prefix of `text` that is at most `max` tokens. */
export function truncateToTokens(text: string, max: number): string {
  if (max <= 0) return '';
  const tokens = encode(text, PLAIN);
  return tokens.length <= max ? text : decode(tokens.slice(0, max));
}

/** Tokens every chat message adds beside its content (role, separators), rounded up. */
export const MESSAGE_OVERHEAD_TOKENS = 4;
/** Tokens a request adds beside its messages (the reply's priming). */
export const REQUEST_OVERHEAD_TOKENS = 3;
