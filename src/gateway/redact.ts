/**
 * Finding an injected credential in what an upstream sends back, in the encodings an echo
 * commonly takes, so the gateway can redact it (./forward.ts).
 *
 * Each credential value (the bare secret and the injected header value, e.g. `Bearer <token>`)
 * becomes a set of needles, built once per response ({@link Redactor}):
 * - the value itself;
 * - its base64 and base64url encodings (RFC 4648 §4, §5), unpadded, plus the characters fully
 *   determined by the value at each of the three byte alignments — so the value is also found
 *   inside a larger base64 blob (a base64-encoded JSON document quoting the header);
 * - its hex encoding (RFC 4648 §8).
 *
 * A value with spaces also gets the form-encoded variant (`+` for space). All needles are
 * matched case-insensitively (upper-case echoes, upper-case hex; for non-ASCII values, their
 * all-upper and all-lower case forms), in two views of the bytes:
 * - the bytes as they are;
 * - the bytes with escapes decoded: percent escapes `%XX` in either case (RFC 3986 §2.1) and
 *   JSON escapes (RFC 8259 §7: `\uXXXX` including surrogate pairs, `\/`, `\"`, `\\`, `\b` …),
 *   each applied to any subset of the characters.
 *
 * Residual limits (documented in the README): inside a larger base64 blob the one or two
 * characters that also encode neighbouring bytes stay; line-wrapped base64 (MIME), mixed-case
 * non-ASCII letters, other encodings (HTML entities, base32, quoted-printable), encodings nested
 * in each other (base64 of a percent-encoded value, percent-encoded `\u` escapes), encrypted,
 * hashed or compressed fragments inside a body, and the derived forms of values shorter than
 * {@link MIN_DERIVED_LENGTH} bytes (they would match ordinary text) are not found.
 * Matching is case-insensitive for base64 too, so text equal to a needle up to case is
 * redacted as well: over-redaction is the safe side.
 *
 * @module
 */

/** Values shorter than this (bytes) are matched as they are only: their encodings are too short to be specific. */
export const MIN_DERIVED_LENGTH = 8;

/** The longest original form of one decoded byte: `\u00XX`. */
const MAX_ESCAPE_EXPANSION = 6;

/**
 * Percent escapes (RFC 3986 §2.1) and JSON escapes (RFC 8259 §7): a surrogate pair, one
 * `\uXXXX`, or a two-character escape. Scanned left to right, so `\\` pairs are consumed first.
 */
const ESCAPE = /%([0-9a-fA-F]{2})|\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|\\u([0-9a-fA-F]{4})|\\(["\\/bfnrt])/g;

const JSON_SHORT_ESCAPES: Readonly<Record<string, string>> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/** A byte range `[start, end)` of the scanned buffer. */
export type Range = readonly [start: number, end: number];

/**
 * The needles of a set of credential values, and the search for them.
 *
 * @param values the secrets and injected header values (UTF-8); empty strings are ignored.
 */
export class Redactor {
  /** Folded needles (UTF-8 bytes, see {@link fold}), longest first. */
  readonly needles: readonly Buffer[];
  /**
   * The longest byte length an occurrence can take in the scanned bytes (every byte escaped
   * as `\u00XX`): a stream must hold back this many bytes minus one to find occurrences across
   * chunk boundaries.
   */
  readonly maxOccurrenceLength: number;
  /**
   * Runs of bytes that can be part of an escaped occurrence (needle bytes in either case and
   * escape syntax), at least as long as the shortest needle: only these are decoded.
   */
  readonly #candidates: RegExp;

  constructor(values: readonly string[]) {
    const needles = new Map<string, Buffer>();
    for (const value of values) {
      for (const form of encodedForms(value)) {
        const needle = fold(Buffer.from(form, 'utf8'));
        needles.set(needle.toString('latin1'), needle);
      }
    }
    this.needles = [...needles.values()].sort((a, b) => b.length - a.length);
    this.maxOccurrenceLength = (this.needles[0]?.length ?? 0) * MAX_ESCAPE_EXPANSION;
    this.#candidates = candidateRuns(this.needles);
  }

  /** True when there is nothing to look for. */
  get empty(): boolean {
    return this.needles.length === 0;
  }

  /** Every occurrence in `buf`, as sorted byte ranges of `buf` (overlapping ones merged). */
  find(buf: Buffer): Range[] {
    if (this.empty || buf.length === 0) return [];
    const ranges: Array<[number, number]> = [];
    const folded = fold(buf);
    for (const n of this.needles) {
      for (let at = folded.indexOf(n); at !== -1; at = folded.indexOf(n, at + 1)) ranges.push([at, at + n.length]);
    }
    if (buf.includes(0x25) || buf.includes(0x5c)) this.#findEscaped(buf, ranges);
    return merge(ranges);
  }

  /** Occurrences with escaped characters (`%`, `\\`), decoded run by candidate run. */
  #findEscaped(buf: Buffer, ranges: Array<[number, number]>): void {
    // Latin-1 keeps one character per byte, so string offsets are byte offsets.
    const text = buf.toString('latin1');
    this.#candidates.lastIndex = 0;
    for (let run = this.#candidates.exec(text); run; run = this.#candidates.exec(text)) {
      const source = run[0];
      if (!source.includes('%') && !source.includes('\\')) continue;
      const decoded = fold(Buffer.from(source.replace(ESCAPE, decodeEscape), 'latin1'));
      for (const n of this.needles) {
        for (let at = decoded.indexOf(n); at !== -1; at = decoded.indexOf(n, at + 1)) {
          const [start, end] = sourceRange(source, at, at + n.length);
          ranges.push([run.index + start, run.index + end]);
        }
      }
    }
  }

  /** `buf` with every occurrence replaced by `replacement`; `buf` itself when there is none. */
  redact(buf: Buffer, replacement: Buffer): Buffer {
    const ranges = this.find(buf);
    if (ranges.length === 0) return buf;
    const out: Buffer[] = [];
    let i = 0;
    for (const [start, end] of ranges) {
      out.push(buf.subarray(i, start), replacement);
      i = end;
    }
    out.push(buf.subarray(i));
    return Buffer.concat(out);
  }
}

/**
 * {@link Redactor}s by the values they look for: a credential's values are the same call after
 * call (an API key, a cached access token), and building the needles (case forms, base64 at
 * three alignments, hex, the candidate regex) costs more than most small bodies' search
 * (issue 16, sixth round). A pure function of its key, so nothing can be stale. Because the
 * needles are the secret in other spellings, a redactor is kept no longer than `maxAgeMs` after
 * it was built (the 2 s decrypted secrets stay in memory, README "What the gateway caches"),
 * dropped by the next use or by a timer that does not keep the process alive; at most `max`
 * value sets, the oldest dropped first.
 */
export class RedactorMemo {
  /** By key, in the order built (so the oldest is first). */
  readonly #byValues = new Map<string, { redactor: Redactor; builtAt: number }>();
  #sweeper: NodeJS.Timeout | undefined;

  /**
   * @param max - value sets kept (at least 1).
   * @param maxAgeMs - how long one is kept after it was built, in milliseconds.
   */
  constructor(
    readonly max = 256,
    readonly maxAgeMs = 2000,
  ) {}

  /** The redactor of `values` (built on first use, then the same object for `maxAgeMs`). */
  get(values: readonly string[], now = performance.now()): Redactor {
    if (values.length === 0) return NO_VALUES;
    this.#sweep(now);
    // JSON, not a join: no two different lists of strings share a key.
    const key = JSON.stringify(values);
    const kept = this.#byValues.get(key);
    if (kept) return kept.redactor;
    const redactor = new Redactor(values);
    if (this.#byValues.size >= Math.max(1, this.max)) this.#byValues.delete(this.#byValues.keys().next().value!);
    this.#byValues.set(key, { redactor, builtAt: now });
    this.#sweepLater();
    return redactor;
  }

  /** Value sets held (tests). */
  get size(): number {
    return this.#byValues.size;
  }

  /** Drops every redactor built `maxAgeMs` or more before `now` (they are first in the map). */
  #sweep(now: number): void {
    for (const [key, kept] of this.#byValues) {
      if (now - kept.builtAt < this.maxAgeMs) break;
      this.#byValues.delete(key);
    }
  }

  /** One unref'd timer while anything is held: nothing outlives its age when calls stop. */
  #sweepLater(): void {
    if (this.#sweeper) return;
    this.#sweeper = setTimeout(() => {
      this.#sweeper = undefined;
      this.#sweep(performance.now());
      if (this.#byValues.size > 0) this.#sweepLater();
    }, this.maxAgeMs);
    this.#sweeper.unref();
  }
}

const NO_VALUES = new Redactor([]);

/** The value and, when long enough, its base64, base64url and hex forms (see the module doc). */
function encodedForms(value: string): string[] {
  if (value.length === 0) return [];
  const bytes = Buffer.from(value, 'utf8');
  // Case is folded when matching; a non-ASCII value's upper- and lower-case forms may differ in length.
  const forms = [value, value.toUpperCase(), value.toLowerCase()];
  if (value.includes(' ')) forms.push(value.replace(/ /g, '+'));
  if (bytes.length < MIN_DERIVED_LENGTH) return forms;
  forms.push(bytes.toString('hex'));
  for (const encoding of ['base64', 'base64url'] as const) {
    forms.push(bytes.toString(encoding).replace(/=+$/, ''));
    for (let align = 0; align < 3; align++) forms.push(alignedCore(bytes, align, encoding));
  }
  return forms;
}

/**
 * The base64 characters that encode only `bytes` when they start at byte offset `align`
 * (mod 3) of a larger encoded buffer: character j covers bits [6j, 6j + 6), so the characters
 * overlapping the `align` bytes before or the unknown bytes after are left out.
 */
function alignedCore(bytes: Buffer, align: number, encoding: 'base64' | 'base64url'): string {
  const text = Buffer.concat([Buffer.alloc(align), bytes]).toString(encoding);
  const first = Math.ceil((8 * align) / 6);
  const end = Math.floor((8 * (align + bytes.length)) / 6);
  return text.slice(first, end);
}

/** See `Redactor.#candidates`. */
function candidateRuns(needles: readonly Buffer[]): RegExp {
  const bytes = new Set<number>(Buffer.from('%\\u0123456789abcdefABCDEF"/bfnrt', 'latin1'));
  for (const n of needles) {
    for (const b of n) {
      bytes.add(b);
      for (const c of Buffer.from(String.fromCharCode(b).toUpperCase(), 'latin1')) bytes.add(c);
    }
  }
  const shortest = needles.at(-1)?.length ?? 1;
  const members = [...bytes].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('');
  // The look-behind starts a match only where a run starts: no rescan from inside a short run.
  return new RegExp(`(?<![${members}])[${members}]{${shortest},}`, 'g');
}

/**
 * Case folding of bytes, byte for byte (native): Latin-1 lower case. It folds ASCII letters, and
 * maps some UTF-8 continuation bytes, the same way in needles and haystack, so matching stays exact
 * up to case.
 */
function fold(buf: Buffer): Buffer {
  return Buffer.from(buf.toString('latin1').toLowerCase(), 'latin1');
}

/** One {@link ESCAPE} match → the bytes it stands for (UTF-8), as Latin-1 characters. */
function decodeEscape(_m: string, pct?: string, high?: string, low?: string, unit?: string, short?: string): string {
  if (pct !== undefined) return String.fromCharCode(parseInt(pct, 16));
  const chars = high !== undefined ? String.fromCharCode(parseInt(high, 16), parseInt(low!, 16)) : unit !== undefined ? String.fromCharCode(parseInt(unit, 16)) : JSON_SHORT_ESCAPES[short!]!;
  return Buffer.from(chars, 'utf8').toString('latin1');
}

/**
 * Maps decoded offsets `[start, end)` back to the source bytes, walking the escapes again
 * (only on a match, which is rare): an escape is covered whole when any byte it produced is.
 */
function sourceRange(text: string, start: number, end: number): [number, number] {
  let source = 0; // source offset of the next byte outside an escape
  let decoded = 0; // its decoded offset
  let from = -1;
  ESCAPE.lastIndex = 0;
  for (let m = ESCAPE.exec(text); ; m = ESCAPE.exec(text)) {
    const at = m ? m.index : text.length;
    // Plain bytes [source, at) map one to one.
    if (from === -1 && start < decoded + (at - source)) from = source + (start - decoded);
    if (end <= decoded + (at - source)) return [from, source + (end - decoded)];
    decoded += at - source;
    const produced = decodeEscape(...(m as unknown as [string, string?, string?, string?, string?, string?])).length;
    if (from === -1 && start < decoded + produced) from = at;
    if (end <= decoded + produced) return [from, at + m![0].length];
    decoded += produced;
    source = at + m![0].length;
  }
}

/** Sorts ranges and merges overlapping ones (adjacent occurrences stay two). */
function merge(ranges: Array<[number, number]>): Range[] {
  ranges.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
  const out: Array<[number, number]> = [];
  for (const r of ranges) {
    const last = out.at(-1);
    if (last && r[0] < last[1]) last[1] = Math.max(last[1], r[1]);
    else out.push([r[0], r[1]]);
  }
  return out;
}
