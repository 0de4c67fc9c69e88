/**
 * Errors whose message Deputy words for the operator from names and fixed text only — a file or
 * variable and the problem with it, a key id — never from a request, a token, key material or a
 * library's message. A log line keeps such a message where it leaves every other error's out
 * (src/log.ts `unexpectedError`, `operatorCause`): an unexpected 500 caused by an instance that
 * lacks the vault KEK a row names logged only `VaultDecryptError (ERR_VAULT_DECRYPT)`, not which
 * KEK (issue 16, ninth round red team).
 *
 * @module
 */

/** The member an error class sets to `true` to declare its messages operator-worded. */
export const OPERATOR_WORDED: unique symbol = Symbol('deputy.operatorWorded');

/** Whether `err` is an `Error` of a class that declares {@link OPERATOR_WORDED}. */
export function isOperatorWorded(err: unknown): boolean {
  return err instanceof Error && (err as { [OPERATOR_WORDED]?: unknown })[OPERATOR_WORDED] === true;
}
