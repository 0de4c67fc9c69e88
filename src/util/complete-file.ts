/**
 * Files written whole or not at all, for secrets and locks that several processes may create at
 * the same moment (workers generating keys, two servers opening one data folder).
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';

/**
 * Writes `text` to `path` with mode 0600, never visible half-written: the content goes to a
 * temporary file beside it (created exclusively, synced to disk), which then becomes `path`.
 *
 * - `replace: false` (exclusive): the temporary file is hard-linked to `path`, which fails if
 *   `path` exists — atomic and exclusive, so of several processes creating `path` at once exactly
 *   one wins. Returns `false` when `path` already existed (nothing was written).
 * - `replace: true`: renamed over `path` (atomic on POSIX file systems). Returns `true`.
 *
 * @throws the file system's error for anything but an existing `path` in exclusive mode.
 */
export function writeCompleteFile(path: string, text: string, options: { replace: boolean }): boolean {
  const tmp = `${path}.${process.pid}.${randomUUID()}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  if (options.replace) {
    renameSync(tmp, path);
    return true;
  }
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
  }
}
