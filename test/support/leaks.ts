/**
 * An independent oracle for redaction tests: does a text still reveal a secret, in any of the
 * encodings the gateway promises to redact? It decodes the text every way (percent escapes with
 * `+`, JSON escapes, every base64 / base64url / hex run at every offset) and looks for the
 * secret case-insensitively. It shares no code with the gateway's redactor.
 */

/** True when `text`, decoded in any of the ways above, contains `secret` (case-insensitive). */
export function leaks(text: string, secret: string): boolean {
  const textual = new Set<string>([text]);
  const jsonDecoded = text.replace(/\\u([0-9a-fA-F]{4})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))).replace(/\\(["\\/])/g, '$1');
  textual.add(jsonDecoded);
  for (const v of [text, jsonDecoded]) {
    for (const plus of [false, true]) textual.add(percentDecode(plus ? v.replace(/\+/g, ' ') : v));
  }
  const views = new Set(textual);
  for (const t of textual) {
    for (const run of t.match(/[A-Za-z0-9+/_-]{8,}/g) ?? []) {
      for (let offset = 0; offset < 4; offset++) {
        const bytes = Buffer.from(run.slice(offset).replace(/-/g, '+').replace(/_/g, '/'), 'base64');
        views.add(bytes.toString('latin1')).add(bytes.toString('utf8'));
      }
    }
    for (const run of t.match(/[0-9a-fA-F]{8,}/g) ?? []) {
      for (let offset = 0; offset < 2; offset++) views.add(Buffer.from(run.slice(offset), 'hex').toString('utf8'));
    }
  }
  const needle = secret.toLowerCase();
  return [...views].some((v) => v.toLowerCase().includes(needle));
}

/** `%XX` escapes decoded as UTF-8 bytes (invalid sequences as U+FFFD). */
function percentDecode(text: string): string {
  const bytes: number[] = [];
  for (const part of text.split(/(%[0-9a-fA-F]{2})/)) {
    if (/^%[0-9a-fA-F]{2}$/.test(part)) bytes.push(parseInt(part.slice(1), 16));
    else bytes.push(...Buffer.from(part));
  }
  return Buffer.from(bytes).toString('utf8');
}
