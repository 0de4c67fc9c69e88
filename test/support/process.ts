/**
 * Deputy and its operator scripts as separate processes, exactly as an operator runs them
 * (`npm start` = `node --import tsx src/main.ts`; scripts through tsx), with output captured.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';

/**
 * Node flags for every process a test starts (`spawnNode`, and the files that run `node` with
 * `execFile`). `--liftoff-only`: V8 compiles WebAssembly — PGlite's Postgres, Cedar — with its
 * baseline compiler only, without the optimising tier's background recompilation of hot
 * functions, which a process living a few seconds never pays back (BENCHMARKS "Issue 16, sixth
 * round: the default `npm test` — spawned processes": a server start ~30 % less CPU, a
 * process's `initdb` ~35 %). The tier changes how fast a module runs, never what it does; what
 * these tests assert about a process (locks, signals, exit codes, output) is the same, and the
 * in-process tests run the optimising tier as a server does.
 */
export const TEST_NODE_FLAGS: readonly string[] = ['--liftoff-only'];

export interface Spawned {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first match of `re` on stdout; rejects if the process exits first. */
  waitFor(re: RegExp): Promise<RegExpMatchArray>;
  /** Resolves once `predicate(stdout)` holds (checked on every output); rejects if the process exits first. */
  until(predicate: (stdout: string) => boolean, what: string): Promise<void>;
}

const running = new Set<ChildProcess>();

/** Kills (SIGKILL, whole process group) every process started here that is still running. */
export function killAll(): void {
  for (const child of running) if (child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  running.clear();
}

/** Runs `args` with node (after {@link TEST_NODE_FLAGS}), with exactly `env` plus PATH / HOME, in its own process group. */
export function spawnNode(args: string[], env: Record<string, string>): Spawned {
  const child = spawn(process.execPath, [...TEST_NODE_FLAGS, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  running.add(child);
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of waiters) w();
  };
  child.stdout!.setEncoding('utf8').on('data', (s: string) => {
    out += s;
    notify();
  });
  child.stderr!.setEncoding('utf8').on('data', (s: string) => {
    err += s;
    notify();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const until = (predicate: (s: string) => boolean, what: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (predicate(out)) {
          waiters.delete(check);
          resolve();
        }
      };
      waiters.add(check);
      check();
      void exited.then(({ code, signal }) => {
        check();
        reject(new Error(`process exited (code ${code}, signal ${signal}) before ${what}\nstdout:\n${out.slice(-4000)}\nstderr:\n${err.slice(-4000)}`));
      });
    });
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    until,
    async waitFor(re) {
      await until((s) => re.test(s), `printing ${re}`);
      return re.exec(out)!;
    },
  };
}

/** `npm start`. */
export function startDeputyProcess(env: Record<string, string>): Spawned {
  return spawnNode(['--import', 'tsx', 'src/main.ts'], env);
}

/** An operator script (`scripts/<name>.ts`) through tsx. */
export function runScript(name: string, args: string[], env: Record<string, string>): Spawned {
  return spawnNode(['--import', 'tsx', `scripts/${name}.ts`, ...args], env);
}

export const LISTENING = /Deputy is listening on http:\/\/localhost:(\d+) \(store: (\w+)[^)]*\)\n/;

export function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** JSON log lines a process printed. */
export function logLines(stdout: string): Array<Record<string, unknown> & { msg: string }> {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown> & { msg: string });
}
