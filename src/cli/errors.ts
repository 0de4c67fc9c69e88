/**
 * How the `deputy` CLI fails: every failure is one of these, carrying its documented exit code,
 * and is printed as one `deputy <command>: message` line on stderr (never a stack trace, a token
 * or key material).
 *
 * | code | meaning |
 * | --- | --- |
 * | 0 | done |
 * | 1 | failure: unreadable or missing file, server unreachable, key or store problem, problems found (`receipts verify`) |
 * | 2 | usage: unknown command or option, missing or invalid argument, invalid configuration |
 * | 3 | the server refused: an OAuth or admin API error answer (the protocol code is printed) |
 *
 * `vault rotate` also exits 3 when some rows could not be re-wrapped (see its help).
 *
 * @module
 */

export const EXIT = { ok: 0, failure: 1, usage: 2, refused: 3 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A failure with its exit code; the message is safe to print as it is. */
export class CliError extends Error {
  readonly exitCode: ExitCode;
  constructor(message: string, exitCode: ExitCode = EXIT.failure) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** Exit 2: the command line is wrong (a value out of range, a missing file argument). */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT.usage);
    this.name = 'UsageError';
  }
}

/**
 * Exit 3: Deputy answered with an error (RFC 6749 §5.2 `error` / `error_description`, or the
 * admin API's same shape). `status` is the HTTP status.
 */
export class ServerRefused extends CliError {
  readonly status: number;
  readonly error: string;
  constructor(status: number, error: string, description?: string) {
    super(`${status} ${error}${description ? `: ${description}` : ''}`, EXIT.refused);
    this.name = 'ServerRefused';
    this.status = status;
    this.error = error;
  }
}
