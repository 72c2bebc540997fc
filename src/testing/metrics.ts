/**
 * Reading Prometheus's text format back, for the tests and the lab: samples by name and labels,
 * and `promtool check metrics` (Debian's `prometheus` package) on a scrape.
 */
import { spawn } from 'node:child_process';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** The samples of a scrape; comments and blank lines skipped. Throws on a line that is neither. */
export function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) throw new Error(`line ${i + 1} is not a sample: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the one sample with this name whose labels include `labels`; undefined when none. */
export function sampleValue(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

/**
 * prom-client's default metrics that promtool's lint complains about by their names (gauges
 * ending `_total`): kept as prom-client names them, so stock Node.js dashboards work.
 */
const DEFAULT_METRIC_LINT = /^nodejs_active_(handles|requests|resources)_total non-counter metrics should not have "_total" suffix$/;

/**
 * `promtool check metrics` on a scrape: resolves to the problems it found other than
 * prom-client's own names (empty: it parses and lints clean). Rejects when promtool is missing.
 */
export async function promtoolCheckMetrics(text: string): Promise<string[]> {
  const { code, out } = await runPromtool(['check', 'metrics'], text);
  const problems = out
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !DEFAULT_METRIC_LINT.test(l));
  // 0: clean; 3: lint findings only (filtered above); anything else: it did not parse.
  if (code !== 0 && code !== 3) return problems.length ? problems : [`promtool exited with ${code}`];
  return problems;
}

export function runPromtool(args: string[], stdin = ''): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('promtool', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? new Error("promtool is not installed: run `bash scripts/setup.sh` (Debian's prometheus package)") : err),
    );
    p.on('close', (code) => resolve({ code: code ?? -1, out }));
    p.stdin.end(stdin);
  });
}
