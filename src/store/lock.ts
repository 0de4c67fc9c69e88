/**
 * Exclusive ownership of an embedded database folder (DESIGN: "one process owns the embedded
 * database folder").
 *
 * PGlite is PostgreSQL inside one process: it has no postmaster, no `postmaster.pid` and no
 * lock of its own (checked in @electric-sql/pglite 0.5), so two processes opening one folder
 * each run their own copy of the database over the same files and silently overwrite each
 * other's writes. Deputy therefore locks the folder itself:
 *
 * - The lock is `deputy.lock` inside the folder, created complete and exclusively (written to
 *   a temporary file, then hard-linked into place: `link(2)` fails with `EEXIST` atomically, so
 *   a reader never sees a half-written lock). It names the holder: pid, start time, command,
 *   host, and the kernel's start time of that pid (Linux `/proc/<pid>/stat`), so a recycled pid
 *   is not mistaken for the holder.
 * - A lock whose holder is gone (`kill(pid, 0)` says `ESRCH`, or the pid now belongs to another
 *   process) is stale and is taken over, under a short-lived takeover lock so that two
 *   processes finding the same stale lock cannot both win.
 * - A lock held on another host (a folder on shared storage) is never taken over: it cannot be
 *   checked from here.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, statSync, unlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { writeCompleteFile } from '../util/complete-file.js';

/** The lock file's name inside the data folder. */
export const LOCK_FILE = 'deputy.lock';

/** Who holds a data folder (the lock file's content). */
export interface LockHolder {
  pid: number;
  /** ISO 8601 time the holder took the lock. */
  startedAt: string;
  /** The holder's command line (`process.argv`), shortened. */
  command: string;
  host: string;
  /** The kernel's start time of `pid` (clock ticks since boot, Linux), to detect pid reuse. */
  procStart?: string;
  /** Random: identifies this lock instance (release and takeover compare it). */
  token: string;
}

/** The folder is locked by a live process; `holder` says which. */
export class DataDirLocked extends Error {
  readonly code = 'ERR_DATA_DIR_LOCKED';
  constructor(
    readonly dir: string,
    readonly holder: LockHolder,
  ) {
    super(
      `the data folder ${dir} is in use by another Deputy process (pid ${holder.pid}, started ${holder.startedAt}, ` +
        `command "${holder.command}"${holder.host === hostname() ? '' : `, on host ${holder.host}`}). ` +
        'Embedded PGlite serves one process: stop that process first, or use PostgreSQL (DATABASE_URL) to run several.',
    );
    this.name = 'DataDirLocked';
  }
}

/** A held data-folder lock ({@link lockDataDir}): its file, and how to give it back. */
export interface DataDirLock {
  /** Path of the lock file. */
  readonly path: string;
  /** Removes the lock if it is still this one. Idempotent. */
  release(): void;
}

const TAKEOVER_SUFFIX = '.takeover';
/** A takeover lock older than this is abandoned (its holder died mid-takeover, which takes milliseconds). */
const TAKEOVER_STALE_MS = 10_000;
const MAX_ATTEMPTS = 20;

/**
 * Locks `dir` (which must exist) for this process.
 *
 * @throws {DataDirLocked} when a live process holds it.
 */
export function lockDataDir(dir: string): DataDirLock {
  const path = join(dir, LOCK_FILE);
  const me: LockHolder = {
    pid: process.pid,
    startedAt: new Date().toISOString(),
    command: process.argv.map((a) => a.replace(/^.*\/node_modules\//, '')).join(' ').slice(0, 200),
    host: hostname(),
    ...optional('procStart', processStart(process.pid)),
    token: randomUUID(),
  };
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt += 1) {
    if (createExclusive(path, me)) return held(path, me.token);
    const holder = readHolder(path);
    if (holder === 'missing') continue; // released between our attempt and the read: try again
    if (holder !== 'unreadable' && isAlive(holder)) throw new DataDirLocked(dir, holder);
    takeOver(path, holder === 'unreadable' ? undefined : holder.token);
  }
  throw new Error(`could not lock the data folder ${dir}: it keeps changing hands`);
}

function held(path: string, token: string): DataDirLock {
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.off('exit', release);
    const holder = readHolder(path);
    if (typeof holder === 'object' && holder.token === token) unlinkQuietly(path);
  };
  // process.exit() skips close(): drop the lock anyway (a SIGKILL leaves it stale, taken over later).
  process.on('exit', release);
  return { path, release };
}

/** Creates `path` with `content`, complete, only if it does not exist. */
function createExclusive(path: string, content: object): boolean {
  return writeCompleteFile(path, `${JSON.stringify(content)}\n`, { replace: false });
}

function readHolder(path: string): LockHolder | 'missing' | 'unreadable' {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw err;
  }
  try {
    const h = JSON.parse(text) as Partial<LockHolder>;
    if (typeof h.pid === 'number' && typeof h.token === 'string') {
      return { pid: h.pid, startedAt: String(h.startedAt), command: String(h.command ?? ''), host: String(h.host ?? ''), ...optional('procStart', h.procStart), token: h.token };
    }
  } catch {
    // fall through: not a lock Deputy wrote completely (files are linked complete, so: foreign or damaged)
  }
  return 'unreadable';
}

/** Whether the holder still runs. A lock from another host counts as alive (not checkable here). */
export function isAlive(holder: Pick<LockHolder, 'pid' | 'host' | 'procStart'>): boolean {
  if (holder.host && holder.host !== hostname()) return true;
  try {
    process.kill(holder.pid, 0);
  } catch (err) {
    // EPERM: the pid exists but belongs to another user: alive as far as we can tell.
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  if (holder.procStart !== undefined) {
    const now = processStart(holder.pid);
    if (now !== undefined && now !== holder.procStart) return false; // the pid was recycled
  }
  return true;
}

/**
 * Removes the stale lock whose token is `staleToken` (undefined: an unreadable file), under a
 * takeover lock: whoever holds the takeover lock re-reads the lock file and removes it only if
 * it is still the stale one, so a lock freshly created by another process is never removed.
 */
function takeOver(path: string, staleToken: string | undefined): void {
  const guard = `${path}${TAKEOVER_SUFFIX}`;
  const mine = { pid: process.pid, token: randomUUID(), at: Date.now() };
  if (!createExclusive(guard, mine)) {
    abandonStaleTakeover(guard);
    return; // someone else is taking over: the caller's next attempt sees the outcome
  }
  try {
    const current = readHolder(path);
    const stillStale = current === 'unreadable' ? staleToken === undefined : current !== 'missing' && current.token === staleToken;
    if (stillStale) unlinkQuietly(path);
  } finally {
    unlinkQuietly(guard);
  }
}

function abandonStaleTakeover(guard: string): void {
  try {
    const g = JSON.parse(readFileSync(guard, 'utf8')) as { pid?: number; at?: number };
    const dead = typeof g.pid === 'number' && !isAlive({ pid: g.pid, host: '' });
    const old = typeof g.at === 'number' && Date.now() - g.at > TAKEOVER_STALE_MS;
    if (dead || old) unlinkQuietly(guard);
  } catch {
    // Gone or unreadable: if unreadable and old, remove it by age.
    try {
      if (Date.now() - statSync(guard).mtimeMs > TAKEOVER_STALE_MS) unlinkQuietly(guard);
    } catch {
      /* gone */
    }
  }
  sleepSync(20);
}

/** Start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`); undefined off Linux. */
function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    /* already gone */
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
