/**
 * The Prometheus text exposition parsed by `parse-prometheus-text-format` (an independent
 * parser: a scrape that does not parse fails the test), with lookups by name and labels.
 */
import { createRequire } from 'node:module';

/** A sample of a counter, gauge or untyped family. */
export interface Sample {
  value: string;
  labels?: Record<string, string>;
}

export interface Family {
  name: string;
  help: string;
  type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
  metrics: Sample[];
}

// The package ships CommonJS without types.
const parse = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => Family[];

/**
 * Families by name. The parser folds a histogram's labelled series into one (it keeps buckets
 * but drops their labels), so each histogram's `_count` series are also returned as a counter
 * family `{name}_count`, parsed by the same parser from the scrape's own lines.
 */
export function parsePrometheus(text: string): Map<string, Family> {
  const families = new Map(parse(text).map((f) => [f.name, f]));
  for (const family of [...families.values()].filter((f) => f.type === 'HISTOGRAM')) {
    const counts = text.split('\n').filter((line) => line.startsWith(`${family.name}_count`));
    const [parsed] = parse(`# TYPE ${family.name}_count counter\n${counts.join('\n')}\n`);
    if (parsed) families.set(parsed.name, parsed);
  }
  return families;
}

function matches(labels: Record<string, string> | undefined, wanted: Record<string, string>): boolean {
  return Object.entries(wanted).every(([k, v]) => labels?.[k] === v);
}

/** The value of the first sample of `name` whose labels include `labels`; 0 when none. */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const sample = families.get(name)?.metrics.find((m) => matches(m.labels, labels)) as Sample | undefined;
  return sample ? Number(sample.value) : 0;
}

/** The observation count of the histogram series of `name` whose labels include `labels`; 0 when none. */
export function histogramCount(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  return sampleValue(families, `${name}_count`, labels);
}
