/**
 * A reload that fails with an error Cedar threw rather than answered (here a flat chain of 3,000
 * `&&`, which no bracket count catches: Cedar's parser recurses once per operand and overflows the
 * stack) is logged. SIGHUP and file changes ignore the reload's rejection, and the store logged
 * only a refused set (`PolicyLoadError`): such a failure left no line at all, while Cedar, corrupt
 * after the overflow, failed every later decision. Its own file: the overflow corrupts this
 * worker's Cedar module (issue 16, ninth round red team).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { PolicyLoadError, PolicyStore } from '../../src/pdp/policy-store.js';

const dir = mkdtempSync(join(tmpdir(), 'deputy-pdp-unexpected-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a reload failing with an unexpected error', () => {
  it('is logged by name and frames, with the trigger and the generation serving', async () => {
    writeFileSync(join(dir, 'schema.cedarschema'), 'entity User; entity Doc; action read appliesTo { principal: [User], resource: [Doc] };');
    writeFileSync(join(dir, 'p.cedar'), '@id("a") permit (principal, action, resource);');
    const lines: Array<Record<string, unknown>> = [];
    const store = new PolicyStore({ dir, logger: createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) }) });
    await store.load();
    writeFileSync(join(dir, 'p.cedar'), `@id("flat") permit (principal, action, resource) when { ${Array(3000).fill('true').join(' && ')} };`);
    const err = await store.reload('signal').then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(PolicyLoadError);
    const failed = lines.filter((l) => l.level === 'error' && l.trigger === 'signal');
    expect(failed).toMatchObject([{ msg: expect.stringMatching(/^policy set could not be loaded/), serving: 1, err: { cause: expect.stringMatching(/^(RangeError|RuntimeError)/) } }]);
  });
});
