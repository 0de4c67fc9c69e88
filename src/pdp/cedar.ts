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
import { setFlagsFromString } from 'node:v8';

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

export const cedar = {
  version: wasm.getCedarVersion,
  checkParseSchema: wasm.checkParseSchema,
  checkParseEntities: wasm.checkParseEntities,
  schemaToJsonWithResolvedTypes: wasm.schemaToJsonWithResolvedTypes,
  schemaToText: wasm.schemaToText,
  policySetTextToParts: wasm.policySetTextToParts,
  policyToJson: wasm.policyToJson,
  validate: wasm.validate,
  preparsePolicySet: wasm.preparsePolicySet,
  preparseSchema: wasm.preparseSchema,
  statefulIsAuthorized: wasm.statefulIsAuthorized,
} as const;

/** A Cedar entity uid in JSON form. */
export interface EntityUid {
  type: string;
  id: string;
}

/** Cedar diagnostics as one line each (message, then help when Cedar gives one). */
export function describeCedarErrors(errors: ReadonlyArray<{ message: string; help?: string | null }>): string[] {
  return errors.map((e) => (e.help ? `${e.message} (${e.help})` : e.message));
}
