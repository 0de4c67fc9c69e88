/**
 * The one import of `@cedar-policy/cedar-wasm`, with the few types Deputy uses.
 *
 * The Node build (`/nodejs`) loads the WebAssembly module synchronously at import. Policy sets
 * are parsed once into the module's own storage (`preparsePolicySet`) and every decision refers
 * to them by id (`statefulIsAuthorized`): nothing Cedar-textual is parsed per request.
 *
 * @module
 */
import * as wasm from '@cedar-policy/cedar-wasm/nodejs';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { compileFunction } from 'node:vm';

// V8 before 13.x (Node 20, 22) aborts the whole process ("unreachable code" in
// Deoptimizer::DoComputeBuiltinContinuation, SIGTRAP) when an optimized caller of a Wasm export
// returning `externref` is deoptimized during the call: Cedar's `statefulIsAuthorized` is such an
// export and runs JSON work inside it, so any hot PDP could die under load. Not inlining JS-to-Wasm
// calls removes the case; its cost was not measurable per Cedar call. Repro:
// scripts/bench/v8-wasm-deopt-repro.mjs. Node 24 (V8 13.6) is not affected.
if (Number(process.versions.node.split('.')[0]) < 24) setFlagsFromString('--no-turbo-inline-js-wasm-calls');

export type {
  AuthorizationAnswer,
  CedarValueJson,
  DetailedError,
  EntityJson,
  SchemaJson,
  StatefulAuthorizationCall,
} from '@cedar-policy/cedar-wasm/nodejs';

type CedarModule = typeof wasm;

/** The calls Deputy makes, bound to one instance of Cedar's WebAssembly module. */
function bind(module: CedarModule) {
  return {
    version: module.getCedarVersion,
    checkParseSchema: module.checkParseSchema,
    checkParseEntities: module.checkParseEntities,
    schemaToJsonWithResolvedTypes: module.schemaToJsonWithResolvedTypes,
    schemaToText: module.schemaToText,
    policySetTextToParts: module.policySetTextToParts,
    policyToJson: module.policyToJson,
    validate: module.validate,
    preparsePolicySet: module.preparsePolicySet,
    preparseSchema: module.preparseSchema,
    statefulIsAuthorized: module.statefulIsAuthorized,
  } as const;
}

/** One Cedar instance: its own WebAssembly memory, and its own pre-parsed policy sets and schemas. */
export type Cedar = ReturnType<typeof bind>;

/** The instance loaded at import: stateless calls outside a policy set's load (tests, benches). */
export const cedar: Cedar = bind(wasm);

/** `WebAssembly.RuntimeError` (the project's `lib` has no DOM types, which declare it). */
const WasmRuntimeError = (globalThis as unknown as { WebAssembly: { RuntimeError: new () => Error } }).WebAssembly.RuntimeError;

const require = createRequire(import.meta.url);
const gluePath = require.resolve('@cedar-policy/cedar-wasm/nodejs');

/**
 * cedar-wasm's Node glue as a function of its CommonJS bindings, and the bytes of its `.wasm`,
 * both read once, at import: a new instance is made from memory. Re-evaluated through `require`,
 * the glue read both files from node_modules for every instance — a process out of file
 * descriptors (EMFILE), or a node_modules replaced under it, refused every reload and failed the
 * recovery after a crash (the serving set retired for good), and a replaced node_modules could
 * have mixed Cedar builds in one process (issue 16, tenth round red team).
 */
const glue = {
  evaluate: compileFunction(readFileSync(gluePath, 'utf8'), ['exports', 'require', 'module', '__filename', '__dirname'], { filename: gluePath }),
  wasm: readFileSync(join(dirname(gluePath), 'cedar_wasm_bg.wasm')),
};

/** What the glue may `require`: its `fs` reads the `.wasm` bytes {@link glue} holds, and nothing else. */
function glueRequire(id: string): unknown {
  if (id === 'fs' || id === 'node:fs') return { readFileSync: () => glue.wasm };
  throw new Error(`cedar-wasm's glue required "${id}", which Deputy does not provide (a new cedar-wasm version?)`);
}

/**
 * A new Cedar instance, sharing nothing with the others but the compiled code: the Node build's
 * glue instantiates the WebAssembly module when it is evaluated, so it is evaluated again, from
 * the source and bytes read at import ({@link glue}; V8 reuses the compiled module for identical
 * bytes: ~10–20 ms, most of it the first time). Nothing keeps an instance but its callers.
 *
 * Why: Cedar, compiled from Rust, keeps its call stack in its own linear memory without a guard.
 * An input nested past that stack (a long `+` or `if` chain, a deep record; issue 16, tenth round)
 * overflows it, or V8's native stack under it (`RangeError`), and the instance is left corrupt:
 * every later call fails with `RuntimeError: memory access out of bounds` or answers from damaged
 * state. A policy set is therefore loaded into an instance of its own (policy-store.ts), which a
 * crash leaves behind with the refused set; the serving set's instance is never touched.
 */
export function newCedarInstance(): Cedar {
  const module = { exports: {} as CedarModule };
  glue.evaluate.call(module.exports, module.exports, glueRequire, module, gluePath, dirname(gluePath));
  return bind(module.exports);
}

/**
 * Whether `err`, thrown by a Cedar call rather than answered, means the instance may be corrupt:
 * a WebAssembly trap (`RuntimeError`: out-of-bounds access, `unreachable` on a Rust panic) or a
 * stack overflow inside it (`RangeError`). Cedar reports every input problem as an answer, never
 * by throwing, except its JSON parser's recursion limit (a plain `Error`, which leaves it intact).
 */
export function isCedarCrash(err: unknown): boolean {
  return err instanceof WasmRuntimeError || err instanceof RangeError;
}

/** A Cedar entity uid in JSON form. */
export interface EntityUid {
  type: string;
  id: string;
}

/** Cedar diagnostics as one line each (message, then help when Cedar gives one). */
export function describeCedarErrors(errors: ReadonlyArray<{ message: string; help?: string | null }>): string[] {
  return errors.map((e) => (e.help ? `${e.message} (${e.help})` : e.message));
}
