/**
 * The active Cedar policy set: loaded from a folder, validated against its schema, pre-parsed
 * into Cedar's storage, and swapped atomically on reload.
 *
 * A folder holds one schema (`*.cedarschema`, or `*.cedarschema.json` in Cedar's JSON schema
 * format), policies (`*.cedar`, in name order; a policy's id is its `@id("…")` annotation, or
 * `file.cedar#n`), and optionally `entities.json` (Cedar entity JSON the PDP holds as its own
 * data) and `aliases.json` (`{ "<type>": { "<alias id>": "<id>" } }`).
 *
 * Loading is all-or-nothing: the schema must parse, every policy must parse and validate in
 * strict mode and nest no deeper than {@link MAX_POLICY_DEPTH}, the entities must conform to the
 * schema. All of it runs in a Cedar instance of the set's own (cedar.ts `newCedarInstance`), where
 * the set is then pre-parsed and made current in one assignment: an input that crashes Cedar
 * (issue 16, tenth round) crashes only that instance, and is refused naming its file. Decisions read
 * {@link PolicyStore.current} synchronously, right before their Cedar calls, so a decision never
 * mixes two policy sets, and a refused reload leaves the previous set serving untouched.
 *
 * @module
 */
import { createHash, randomBytes } from 'node:crypto';
import { watch as watchFolder, type FSWatcher } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { unexpectedError, type Logger } from '../log.js';
import { describeCedarErrors, isCedarCrash, newCedarInstance, type Cedar, type EntityJson, type SchemaJson } from './cedar.js';
import { checkEntities } from './entity-check.js';
import { EntityData } from './entity-data.js';
import { policyReads, type PolicyReads } from './entity-slice.js';
import { MAX_NESTING, MAX_POLICY_DEPTH, nestingDepth } from './nesting.js';
import { iJsonProblem } from '../util/i-json.js';
import { PolicyLoadError } from './policy-load-error.js';
import { preparseScopedSets, type ScopedPolicySet } from './policy-scopes.js';
import { isObject, ProjectionError, SchemaInfo } from './schema.js';

/** One policy of a set: its id (`@id`, else `file#n`), effect, file and `@reason`. */
export interface PolicyInfo {
  id: string;
  effect: 'permit' | 'forbid';
  file: string;
  /** The `@reason("…")` annotation: text that may be shown to the end user (AuthZEN `reason_user`). */
  reason?: string;
}

/** One loaded, validated, pre-parsed policy set. Immutable. */
export interface PolicySnapshot {
  /** Increases by one with every successful load. */
  readonly generation: number;
  /** Where Cedar holds this set (`statefulIsAuthorized`'s `preparsedPolicySetId`). */
  readonly policySetId: string;
  /**
   * Where Cedar holds the policies a call with this principal type, action and resource type can
   * match (policy-scopes.ts): an exact subset of this set, or {@link policySetId} itself.
   */
  readonly scopedPolicySetId: ScopedPolicySet;
  readonly schema: SchemaInfo;
  readonly policies: ReadonlyMap<string, PolicyInfo>;
  readonly data: EntityData;
  /** What the policies read of entities (attribute names, entity literals): each Cedar call gets only that (entity-slice.ts). */
  readonly reads: PolicyReads;
  /** SHA-256 over the files that made this set. */
  readonly digest: string;
  readonly loadedAt: string;
  /** Validator warnings (the set loaded anyway). */
  readonly warnings: readonly string[];
  /** The Cedar instance holding this set's pre-parsed policies: its own (cedar.ts `newCedarInstance`). */
  readonly cedar: Cedar;
  /** False once a call into {@link cedar} crashed: decisions against this set then fail closed (engine.ts). */
  readonly usable: () => boolean;
  /**
   * Reports that a call into {@link cedar} threw a crash (cedar.ts `isCedarCrash`): the instance is
   * retired at once ({@link usable} turns false) and the store loads the same files into a fresh
   * instance as the next generation (trigger `recover`), logged at `error`.
   */
  readonly crashed: (err: unknown) => void;
}

export { PolicyLoadError } from './policy-load-error.js';

/** What a reload did: whether the set changed, and the set now serving. */
export interface ReloadResult {
  changed: boolean;
  generation: number;
  policies: number;
  entities: number;
  digest: string;
  warnings: readonly string[];
}

/** The wait before a second recovery in a row (PolicyStore `#recoverLater`); it doubles with each further one. */
export const RECOVERY_FIRST_DELAY_MS = 1_000;
/** The longest wait between recoveries in a row. */
export const RECOVERY_MAX_DELAY_MS = 60_000;

/** What asked for a (re)load: start, the file watch, SIGHUP, the admin API, or a crash of the serving set's Cedar instance. */
export type ReloadTrigger = 'start' | 'file' | 'signal' | 'admin' | 'recover';

interface Files {
  schema: { file: string; text: string };
  policies: Array<{ file: string; text: string }>;
  entities: { file: string; text: string } | undefined;
  aliases: { file: string; text: string } | undefined;
  digest: string;
}

const MAX_FILE_BYTES = 16 * 1024 * 1024;
let instances = 0;

/**
 * The policy folder (Cedar schema, policies, entity data, aliases), loaded and validated as one
 * immutable {@link PolicySnapshot}; reloads swap the snapshot atomically or keep the old one.
 */
export class PolicyStore {
  readonly dir: string;
  readonly #logger: Logger;
  readonly #slotPrefix: string;
  readonly #newCedar: () => Cedar;
  #current: PolicySnapshot | undefined;
  /** The files {@link #current} was made from: a recovery loads them again. */
  #files: Files | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  /** Recoveries in a row without a set serving long enough in between ({@link #recoverLater}). */
  #recoveries = 0;
  #recoveryTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set by {@link close}: no recovery is scheduled or run, no folder watched, no reload loads. */
  #closed = false;
  /** Stops the folder watches {@link watch} started ({@link close} stops them all). */
  readonly #unwatchers = new Set<() => void>();
  readonly #listeners: Array<(s: PolicySnapshot) => void> = [];

  /** @param options.newCedar - makes each set's Cedar instance (default cedar.ts `newCedarInstance`; tests inject failures). */
  constructor(options: { dir: string; logger: Logger; newCedar?: () => Cedar }) {
    this.dir = resolve(options.dir);
    this.#logger = options.logger;
    this.#newCedar = options.newCedar ?? newCedarInstance;
    // Cedar's storage is per process: several stores (tests run several servers) need their own ids.
    this.#slotPrefix = `deputy-${++instances}-${randomBytes(4).toString('hex')}`;
  }

  /** The policy set decisions use now. Read it synchronously, right before evaluating. */
  get current(): PolicySnapshot {
    if (!this.#current) throw new Error('PolicyStore.load() has not completed');
    return this.#current;
  }

  /** Called after every successful swap (caches keyed on the old set are dropped there). */
  onReload(listener: (s: PolicySnapshot) => void): void {
    this.#listeners.push(listener);
  }

  /** First load (start): throws {@link PolicyLoadError}. */
  async load(): Promise<PolicySnapshot> {
    await this.reload('start');
    return this.current;
  }

  /**
   * Loads the folder again and swaps when it is valid and different. Throws
   * {@link PolicyLoadError} (the previous set stays current). Reloads run one at a time.
   */
  reload(trigger: ReloadTrigger): Promise<ReloadResult> {
    const run = this.#queue.then(() => (this.#closed ? this.#unchanged() : this.#reload(trigger)));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Stops the store for good (the server's shutdown): cancels a pending recovery (a crashed set's
   * reload, {@link #recoverLater}) and the folder watches; a reload asked afterwards — a recovery
   * queued behind a running load, a watch's or SIGHUP's late trigger — loads nothing and answers
   * the set that served (`changed: false`). Decisions still read {@link current}. Idempotent.
   */
  close(): void {
    this.#closed = true;
    this.#cancelRecovery();
    for (const stop of this.#unwatchers) stop();
    this.#unwatchers.clear();
  }

  /** What a reload that loads nothing answers: the serving set, unchanged. */
  #unchanged(): ReloadResult {
    if (!this.#current) throw new Error('PolicyStore is closed');
    return { changed: false, ...summary(this.#current) };
  }

  #cancelRecovery(): void {
    clearTimeout(this.#recoveryTimer);
    this.#recoveryTimer = undefined;
  }

  async #reload(trigger: ReloadTrigger): Promise<ReloadResult> {
    const previous = this.#current;
    // A recovery loads the serving set's own files again, and only while that set is unusable.
    if (trigger === 'recover' && (!previous || previous.usable() || !this.#files)) return { changed: false, ...summary(this.current) };
    let files: Files;
    try {
      files = trigger === 'recover' ? this.#files! : await readPolicyFiles(this.dir);
    } catch (err) {
      this.#logRefused(trigger, err);
      throw err;
    }
    if (previous && previous.digest === files.digest && previous.usable()) {
      return { changed: false, ...summary(previous) };
    }
    const generation = (previous?.generation ?? 0) + 1;
    const slot = `${this.#slotPrefix}-${generation % 2 === 0 ? 'b' : 'a'}`;
    let snapshot: PolicySnapshot;
    try {
      snapshot = this.#compile(files, generation, slot);
    } catch (err) {
      this.#logRefused(trigger, err);
      if (trigger === 'recover') this.#recoverLater();
      throw err;
    }
    if (trigger !== 'recover') this.#recoveries = 0;
    // A usable set serves now: a recovery still waiting for its delay would compile once more
    // (a retired set's files, or the same set again) — whatever triggered this load.
    this.#cancelRecovery();
    this.#current = snapshot;
    this.#files = files;
    for (const l of this.#listeners) l(snapshot);
    this.#logger.info(
      { trigger, generation, policies: snapshot.policies.size, entities: snapshot.data.size, digest: snapshot.digest.slice(0, 16), warnings: snapshot.warnings.length },
      'policy set loaded',
    );
    for (const w of snapshot.warnings) this.#logger.warn({ warning: w }, 'policy validation warning');
    return { changed: true, ...summary(snapshot) };
  }

  /**
   * {@link compile} into a new Cedar instance; a crash there is a {@link PolicyLoadError} naming the
   * files that crash Cedar ({@link crashRefusal}). The snapshot reports its own instance's crashes.
   */
  #compile(files: Files, generation: number, slot: string): PolicySnapshot {
    let compiled: Omit<PolicySnapshot, 'usable' | 'crashed'>;
    try {
      compiled = compile(this.dir, files, generation, slot, this.#newCedar());
    } catch (err) {
      throw isCedarCrash(err) ? crashRefusal(this.dir, files, err) : err;
    }
    let usable = true;
    const snapshot: PolicySnapshot = {
      ...compiled,
      usable: () => usable,
      crashed: (err) => {
        if (!usable) return;
        usable = false;
        if (Date.now() - Date.parse(snapshot.loadedAt) > RECOVERY_MAX_DELAY_MS) this.#recoveries = 0;
        const inMs = this.#current === snapshot ? this.#recoverLater() : undefined;
        this.#logger.error({ generation, recoverInMs: inMs, err: unexpectedError(err) }, 'Cedar crashed evaluating a decision; its instance is retired and the policy set loaded again');
      },
    };
    return snapshot;
  }

  /**
   * Loads the retired set again (trigger `recover`): at once the first time, then after
   * {@link RECOVERY_FIRST_DELAY_MS}, doubling up to {@link RECOVERY_MAX_DELAY_MS}, while recovered
   * sets crash again (or their load is refused) — a set that crashes Cedar on every decision would
   * otherwise be compiled again after each one, synchronously, holding the event loop (issue 16,
   * tenth round red team). Decisions are denied meanwhile. A load not from recovery, or a set that
   * served longer than the longest delay before crashing, starts the count again.
   * Nothing once {@link close}d.
   * @returns the delay before the recovery, ms (undefined: none, the store is closed).
   */
  #recoverLater(): number | undefined {
    if (this.#closed) return undefined;
    const n = this.#recoveries++;
    const delay = n === 0 ? 0 : Math.min(RECOVERY_FIRST_DELAY_MS * 2 ** (n - 1), RECOVERY_MAX_DELAY_MS);
    const recover = () => void this.reload('recover').catch(() => undefined); // refusals are logged in #reload
    if (delay === 0) recover();
    else if (this.#recoveryTimer === undefined) {
      this.#recoveryTimer = setTimeout(() => {
        this.#recoveryTimer = undefined;
        recover();
      }, delay);
      this.#recoveryTimer.unref?.();
    }
    return delay;
  }

  /**
   * Logs a reload's failure: a refused set with its issues; any other error (Cedar threw rather
   * than answered) by name, code and frames — SIGHUP and file changes ignore the rejection, so
   * before, such a failure left no line at all (issue 16, ninth round red team).
   */
  #logRefused(trigger: ReloadTrigger, err: unknown): void {
    if (trigger === 'start') return; // start failures are reported by the caller, which stops
    const serving = this.#current?.generation;
    // A retired set (its Cedar instance crashed) serves nothing: every decision is denied.
    const what = this.#current?.usable() === false ? 'the serving set is retired (Cedar crashed): decisions are denied until a load succeeds' : 'the previous set keeps serving';
    if (err instanceof PolicyLoadError) this.#logger.error({ trigger, issues: err.issues.slice(0, 20), serving }, `policy set refused; ${what}`);
    else this.#logger.error({ trigger, err: unexpectedError(err), serving }, 'policy set could not be loaded (an unexpected error; if Cedar failed, restart Deputy)');
  }

  /**
   * Reloads when a file in the folder changes, after `debounceMs` of quiet (editors write in
   * several steps). Returns a function that stops watching.
   */
  watch(debounceMs = 250): () => void {
    if (this.#closed) return () => {};
    let timer: NodeJS.Timeout | undefined;
    let watcher: FSWatcher;
    try {
      watcher = watchFolder(this.dir, { persistent: false }, () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          this.reload('file').catch(() => undefined); // refusals are logged in #reload
        }, debounceMs);
        timer.unref();
      });
    } catch (err) {
      this.#logger.warn({ dir: this.dir, err: String(err) }, 'cannot watch the policy folder; reload with SIGHUP or the admin API');
      return () => {};
    }
    watcher.on('error', (err) => this.#logger.warn({ err: String(err) }, 'policy folder watch failed'));
    const stop = (): void => {
      clearTimeout(timer);
      watcher.close();
      this.#unwatchers.delete(stop);
    };
    this.#unwatchers.add(stop);
    return stop;
  }
}

function summary(s: PolicySnapshot): Omit<ReloadResult, 'changed'> {
  return { generation: s.generation, policies: s.policies.size, entities: s.data.size, digest: s.digest, warnings: s.warnings };
}

/**
 * The names of the folder's files, sorted: its regular files and its symbolic links to files — a
 * Kubernetes ConfigMap or Secret volume holds nothing but links (`default.cedar` →
 * `..data/default.cedar`), and `Dirent.isFile()` is false for a link, so such a folder loaded as
 * "no policy files" (issue 16, ninth round red team). A link that leads nowhere is kept: reading
 * it refuses the set, naming it, rather than leaving a policy silently out.
 */
async function fileNames(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const kept = await Promise.all(entries.map(async (d) => d.isFile() || (d.isSymbolicLink() && (await stat(join(dir, d.name)).then((s) => s.isFile(), () => true)))));
  return entries.filter((_, i) => kept[i]).map((d) => d.name).sort();
}

async function readPolicyFiles(dir: string): Promise<Files> {
  let names: string[];
  try {
    names = await fileNames(dir);
  } catch (err) {
    throw new PolicyLoadError(dir, [`cannot read the policy folder: ${(err as NodeJS.ErrnoException).code ?? 'unknown error'}`]);
  }
  const schemaFiles = names.filter((n) => n.endsWith('.cedarschema') || n.endsWith('.cedarschema.json'));
  const issues: string[] = [];
  if (schemaFiles.length !== 1) issues.push(`expected exactly one schema file (*.cedarschema or *.cedarschema.json), found ${schemaFiles.length}`);
  const policyFiles = names.filter((n) => n.endsWith('.cedar'));
  if (policyFiles.length === 0) issues.push('no policy files (*.cedar)');
  if (issues.length) throw new PolicyLoadError(dir, issues);
  const read = (file: string) => readPolicyFile(dir, file);
  const schema = await read(schemaFiles[0]!);
  const policies = await Promise.all(policyFiles.map(read));
  const entities = names.includes('entities.json') ? await read('entities.json') : undefined;
  const aliases = names.includes('aliases.json') ? await read('aliases.json') : undefined;
  const hash = createHash('sha256');
  for (const f of [schema, ...policies, entities, aliases]) if (f) hash.update(`${f.file}\0${f.text}\0`);
  return { schema, policies, entities, aliases, digest: hash.digest('hex') };
}

/**
 * One file of the folder as text: its size checked before it is read (a file past the bound is
 * never read into memory), and a failure to read it — gone since the folder was listed (an
 * editor's save by rename), unreadable, too large for Node to read at all — a
 * {@link PolicyLoadError} naming the file and the error's code, like the folder's own. Before, such
 * a failure was no PolicyLoadError: a reload on SIGHUP or a file change swallowed it unlogged, and
 * the admin API answered 500 (issue 16, ninth round red team).
 */
async function readPolicyFile(dir: string, file: string): Promise<{ file: string; text: string }> {
  let text: string;
  try {
    if ((await stat(join(dir, file))).size > MAX_FILE_BYTES) throw new PolicyLoadError(dir, [`${file}: larger than ${MAX_FILE_BYTES} bytes`]);
    text = await readFile(join(dir, file), 'utf8');
  } catch (err) {
    if (err instanceof PolicyLoadError) throw err;
    throw new PolicyLoadError(dir, [`${file}: cannot read the file: ${(err as NodeJS.ErrnoException).code ?? 'unknown error'}`]);
  }
  // Checked again: the file may have grown between the two calls.
  if (text.length > MAX_FILE_BYTES) throw new PolicyLoadError(dir, [`${file}: larger than ${MAX_FILE_BYTES} bytes`]);
  return { file, text };
}

/** Refuses the set when a policy file or a Cedar-syntax schema nests deeper than {@link MAX_NESTING} brackets (./nesting.ts: Cedar's parser would overflow the stack). */
function refuseDeepNesting(dir: string, files: Files): void {
  const texts = [...files.policies.map((f) => ({ ...f, angles: false })), ...(files.schema.file.endsWith('.json') ? [] : [{ ...files.schema, angles: true }])];
  const issues = texts
    .filter((f) => nestingDepth(f.text, f.angles) > MAX_NESTING)
    .map((f) => `${f.file}: brackets nested deeper than ${MAX_NESTING} levels (Cedar's parser would overflow the stack)`);
  if (issues.length) throw new PolicyLoadError(dir, issues);
}

/**
 * Parses, validates and pre-parses in `cedar`; throws {@link PolicyLoadError} with every problem
 * found, and what Cedar throws when it crashes (cedar.ts `isCedarCrash`: `cedar` is then corrupt).
 */
function compile(dir: string, files: Files, generation: number, slot: string, cedar: Cedar): Omit<PolicySnapshot, 'usable' | 'crashed'> {
  refuseDeepNesting(dir, files);
  const schemaText = schemaAsText(dir, files.schema, cedar);
  const resolved = cedar.schemaToJsonWithResolvedTypes(schemaText);
  if (resolved.type === 'failure') throw new PolicyLoadError(dir, describeCedarErrors(resolved.errors).map((m) => `${files.schema.file}: ${m}`));
  const schema = new SchemaInfo(resolved.json as SchemaJson<string>);

  const { texts, infos, ests, issues } = splitPolicies(files.policies, cedar);
  if (issues.length) throw new PolicyLoadError(dir, issues);

  const validation = cedar.validate({ schema: schemaText, policies: { staticPolicies: texts }, validationSettings: { mode: 'strict' } });
  if (validation.type === 'failure') throw new PolicyLoadError(dir, describeCedarErrors(validation.errors));
  const located = (policyId: string, message: string) => `${infos.get(policyId)?.file ?? '?'} policy "${policyId}": ${message}`;
  if (validation.validationErrors.length > 0) {
    throw new PolicyLoadError(dir, validation.validationErrors.map((e) => located(e.policyId, describeCedarErrors([e.error])[0]!)));
  }
  const warnings = [
    ...validation.validationWarnings.map((w) => located(w.policyId, describeCedarErrors([w.error])[0]!)),
    ...describeCedarErrors(validation.otherWarnings),
  ];

  const entities = files.entities ? explicitForms(dir, files.entities.file, parseEntities(dir, files.entities, schemaText, cedar), schema) : [];
  const aliases = files.aliases ? parseAliases(dir, files.aliases, schema) : new Map<string, Map<string, string>>();

  const setAnswer = cedar.preparsePolicySet(slot, { staticPolicies: texts });
  if (setAnswer.type === 'failure') throw new PolicyLoadError(dir, describeCedarErrors(setAnswer.errors));
  const scopedPolicySetId = preparseScopedSets(slot, { ids: [...infos.keys()], texts, ests }, schema.actions, dir, cedar);

  return {
    generation,
    policySetId: slot,
    scopedPolicySetId,
    schema,
    policies: infos,
    data: new EntityData(entities, aliases),
    reads: policyReads(ests, (path) => schema.contextMemberType(path)),
    digest: files.digest,
    loadedAt: new Date().toISOString(),
    warnings,
    cedar,
  };
}

/**
 * The refusal of a set whose load crashed Cedar (`err`): each file is read alone — the schema,
 * then each policy file parsed, validated and pre-parsed against it, then `entities.json` — in an
 * instance replaced after every crash, and the files that crash it alone are named; when none
 * does, the set as a whole is.
 */
function crashRefusal(dir: string, files: Files, err: unknown): PolicyLoadError {
  let cedar = newCedarInstance();
  const crashes = (run: (c: Cedar) => unknown): boolean => {
    try {
      run(cedar);
      return false;
    } catch (e) {
      if (!isCedarCrash(e)) return false;
      cedar = newCedarInstance();
      return true;
    }
  };
  const named: string[] = [];
  let schemaText: string | undefined;
  if (crashes((c) => (schemaText = schemaAsText(dir, files.schema, c)) && c.schemaToJsonWithResolvedTypes(schemaText))) named.push(files.schema.file);
  for (const f of files.policies) {
    const alone = (c: Cedar) => {
      const { texts } = splitPolicies([f], c);
      if (schemaText !== undefined) c.validate({ schema: schemaText, policies: { staticPolicies: texts }, validationSettings: { mode: 'strict' } });
      c.preparsePolicySet('deputy-crash-probe', { staticPolicies: texts });
    };
    if (crashes(alone)) named.push(f.file);
  }
  if (files.entities && schemaText !== undefined && crashes((c) => parseEntities(dir, files.entities!, schemaText!, c))) named.push(files.entities.file);
  const why = `Cedar crashed reading it (${err instanceof Error ? err.message : String(err)}): too deeply nested for Cedar's stack?`;
  return new PolicyLoadError(dir, named.length ? named.map((file) => `${file}: ${why}`) : [`the policy set as a whole: ${why}`]);
}

function schemaAsText(dir: string, f: { file: string; text: string }, cedar: Cedar): string {
  if (!f.file.endsWith('.json')) {
    const parsed = cedar.checkParseSchema(f.text);
    if (parsed.type === 'failure') throw new PolicyLoadError(dir, describeCedarErrors(parsed.errors).map((m) => `${f.file}: ${m}`));
    return f.text;
  }
  let json: unknown;
  try {
    json = JSON.parse(f.text);
  } catch {
    throw new PolicyLoadError(dir, [`${f.file}: not valid JSON`]);
  }
  const text = cedarSchemaText(dir, f.file, json, cedar);
  if (text.type === 'failure') throw new PolicyLoadError(dir, describeCedarErrors(text.errors).map((m) => `${f.file}: ${m}`));
  return text.text;
}

/**
 * Cedar's text of a JSON schema; what Cedar throws rather than answers (JSON nested past its
 * parser's recursion limit, 128 levels) a {@link PolicyLoadError} naming the file, as for
 * `entities.json` (issue 16, ninth round red team).
 */
function cedarSchemaText(dir: string, file: string, json: unknown, cedar: Cedar): ReturnType<Cedar['schemaToText']> {
  try {
    return cedar.schemaToText(json as SchemaJson<string>);
  } catch (err) {
    if (isCedarCrash(err)) throw err;
    throw new PolicyLoadError(dir, [`${file}: Cedar could not read it: ${err instanceof Error ? err.message : String(err)}`]);
  }
}

/**
 * Splits each file into policies and gives each its id (`@id`, or `file#n`); a policy nested
 * deeper than {@link MAX_POLICY_DEPTH} (its JSON form) is an issue.
 */
function splitPolicies(files: ReadonlyArray<{ file: string; text: string }>, cedar: Cedar): { texts: Record<string, string>; infos: Map<string, PolicyInfo>; ests: unknown[]; issues: string[] } {
  // No prototype: a policy id is any string, and `texts["__proto__"] = …` on a plain object sets
  // nothing: that policy would be neither validated nor pre-parsed (a forbid silently dropped).
  const texts: Record<string, string> = Object.create(null) as Record<string, string>;
  const ests: unknown[] = [];
  const infos = new Map<string, PolicyInfo>();
  const issues: string[] = [];
  for (const { file, text } of files) {
    const parts = cedar.policySetTextToParts(text);
    if (parts.type === 'failure') {
      issues.push(...describeCedarErrors(parts.errors).map((m) => `${file}: ${m}`));
      continue;
    }
    if (parts.policy_templates.length > 0) issues.push(`${file}: policy templates are not supported`);
    parts.policies.forEach((policy, i) => {
      const json = cedar.policyToJson(policy);
      if (json.type === 'failure') {
        issues.push(...describeCedarErrors(json.errors).map((m) => `${file}: ${m}`));
        return;
      }
      const annotations = json.json.annotations ?? {};
      const id = annotations.id ?? `${file}#${i + 1}`;
      if (iJsonProblem(json.json, 'policy', { maxDepth: MAX_POLICY_DEPTH, depthOnly: true }) !== undefined) {
        issues.push(`${file}: policy "${id}" nests its expressions deeper than ${MAX_POLICY_DEPTH} levels of its JSON form (Cedar's evaluation would overflow its stack; a long list of alternatives reads better as a set: ["a", "b"].contains(resource.id))`);
        return;
      }
      if (infos.has(id)) {
        issues.push(`${file}: policy id "${id}" is also used in ${infos.get(id)!.file}`);
        return;
      }
      texts[id] = policy;
      ests.push(json.json);
      infos.set(id, { id, effect: json.json.effect, file, ...(annotations.reason ? { reason: annotations.reason } : {}) });
    });
  }
  return { texts, infos, ests, issues };
}

/**
 * Cedar's check of the entities, in closed chunks rather than one call (Cedar's memory stays
 * bounded by the chunk: entity-check.ts). What Cedar throws rather than answers — JSON nested past
 * its parser's recursion limit (128 levels: `recursion limit exceeded at line 1 column 199`) — is a
 * {@link PolicyLoadError} naming the file: it was an untyped error, which a reload on SIGHUP or a
 * file change swallowed unlogged, and the admin API answered 500 (issue 16, ninth round red team).
 */
function checkedEntities(dir: string, file: string, json: unknown[], schemaText: string, cedar: Cedar): ReturnType<typeof checkEntities> {
  try {
    return checkEntities(json, schemaText, undefined, cedar);
  } catch (err) {
    if (isCedarCrash(err)) throw err;
    throw new PolicyLoadError(dir, [`${file}: Cedar could not read it: ${err instanceof Error ? err.message : String(err)}`]);
  }
}

function parseEntities(dir: string, f: { file: string; text: string }, schemaText: string, cedar: Cedar): EntityJson[] {
  let json: unknown;
  try {
    json = JSON.parse(f.text);
  } catch {
    throw new PolicyLoadError(dir, [`${f.file}: not valid JSON`]);
  }
  if (!Array.isArray(json)) throw new PolicyLoadError(dir, [`${f.file}: must be a JSON array of Cedar entities`]);
  const checked = checkedEntities(dir, f.file, json, schemaText, cedar);
  if (checked.type === 'failure') throw new PolicyLoadError(dir, describeCedarErrors(checked.errors).map((m) => `${f.file}: ${m}`));
  return json as EntityJson[];
}

/**
 * `entities.json` in the explicit JSON forms Cedar reads without a schema. The load check (with
 * the schema) accepts the implicit ones, `{"type", "id"}` for an entity and a string for an
 * extension value, but decisions run without the schema (engine.ts), where those are a record and
 * a string: an ancestor's `head == principal` would read false and a `forbid` on it be silent.
 * Each entity's attributes (and tags) are projected onto its type as request data is (schema.ts); a value
 * projection refuses (an extension written `{"fn", "arg"}`) refuses the file.
 *
 * @throws PolicyLoadError naming the entity and the attribute.
 */
function explicitForms(dir: string, file: string, entities: EntityJson[], schema: SchemaInfo): EntityJson[] {
  const issues: string[] = [];
  const out = entities.map((e) => {
    const uid = '__entity' in e.uid ? e.uid.__entity : e.uid;
    const type = schema.entityType(uid.type);
    if (type?.name !== uid.type) return e;
    try {
      const path = `${uid.type}::${JSON.stringify(uid.id)}`;
      const attrs = schema.projectAttributes(e.attrs ?? {}, type, path);
      if (!e.tags || !type.tags) return { ...e, attrs };
      const tags = Object.fromEntries(Object.entries(e.tags).map(([k, v]) => [k, schema.project(v, type.tags!, `${path} tag ${JSON.stringify(k)}`)]));
      return { ...e, attrs, tags };
    } catch (err) {
      if (!(err instanceof ProjectionError)) throw err;
      issues.push(`${file}: ${err.message}`);
      return e;
    }
  });
  if (issues.length) throw new PolicyLoadError(dir, issues);
  return out;
}

function parseAliases(dir: string, f: { file: string; text: string }, schema: SchemaInfo): Map<string, Map<string, string>> {
  let json: unknown;
  try {
    json = JSON.parse(f.text);
  } catch {
    throw new PolicyLoadError(dir, [`${f.file}: not valid JSON`]);
  }
  const issues: string[] = [];
  const out = new Map<string, Map<string, string>>();
  if (!isObject(json)) throw new PolicyLoadError(dir, [`${f.file}: must be an object { "<type>": { "<alias>": "<id>" } }`]);
  for (const [type, map] of Object.entries(json)) {
    const t = schema.entityType(type);
    if (!t) issues.push(`${f.file}: "${type}" is not an entity type of the schema`);
    else if (!isObject(map) || !Object.values(map).every((v) => typeof v === 'string')) issues.push(`${f.file}: "${type}" must map alias ids to ids (strings)`);
    else out.set(t.name, new Map(Object.entries(map as Record<string, string>)));
  }
  if (issues.length) throw new PolicyLoadError(dir, issues);
  return out;
}
