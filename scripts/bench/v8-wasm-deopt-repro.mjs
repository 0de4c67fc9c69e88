/**
 * `node scripts/bench/v8-wasm-deopt-repro.mjs` — the V8 abort that killed the bench's scale
 * curves ("Fatal error in , line 0 / unreachable code" in
 * `Deoptimizer::DoComputeBuiltinContinuation`, SIGTRAP, exit 133), reduced to 20 lines and no
 * dependency. Exits 133 on Node 20.20 (V8 11.3) and 22.23 (V8 12.4); prints "survived" on
 * Node 24.22 (V8 13.6) and with `node --no-turbo-inline-js-wasm-calls`.
 *
 * Trigger: a JS function optimized by TurboFan with the JS-to-Wasm wrapper inlined calls a Wasm
 * export that returns `externref`, and the function's optimized code is invalidated while that
 * call runs (here by an imported JS function the Wasm calls; in Deputy, Cedar's binding runs
 * JSON.stringify / JSON.parse inside `statefulIsAuthorized`, and anything that deoptimizes the
 * caller meanwhile — a changed field, a GC's pretenuring decision — does it). On return, the
 * deoptimizer rebuilds the inlined call's continuation frame with the Wasm result and has no case
 * for reference kinds (`TranslatedValueForWasmReturnKind`: i32/i64/f32/f64 only, else
 * UNREACHABLE). Cedar's `statefulIsAuthorized` returns `externref` (wasm-bindgen).
 */
const bytes = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x06, 0x01, 0x60, 0x01, 0x6f, 0x01, 0x6f, // type 0: (externref) -> externref
  0x02, 0x07, 0x01, 0x01, 0x6d, 0x01, 0x66, 0x00, 0x00, // import m.f: type 0
  0x03, 0x02, 0x01, 0x00, // func 1: type 0
  0x07, 0x05, 0x01, 0x01, 0x67, 0x00, 0x01, // export "g" = func 1
  0x0a, 0x08, 0x01, 0x06, 0x00, 0x20, 0x00, 0x10, 0x00, 0x0b, // g(x) = f(x)
]);
const config = { factor: 1 };
let invalidate = false;
const { exports } = new WebAssembly.Instance(new WebAssembly.Module(bytes), {
  m: {
    f: (x) => {
      if (invalidate) config.factor = { not: 'a number' }; // the optimized caller depended on it
      return x;
    },
  },
});
const hot = (i) => exports.g(i) * config.factor;
let sum = 0;
for (let i = 0; i < 200_000; i++) sum += hot(i);
invalidate = true;
sum += hot(1);
console.log(`survived (${process.version})`, typeof sum);
