/**
 * What ships in monitoring/, checked by Prometheus's own tool (`promtool`, Debian's `prometheus`
 * package): the alert rules load, and on made-up series the failover rule fires while the
 * split-brain rule stays silent on a normal failover and fires on two active agents
 * (monitoring/vigil-alerts.test.yml). The Grafana dashboard's queries parse, and every metric the
 * rules and the dashboard name is one the daemons export and docs/metrics.md documents.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { AgentMetrics } from '../agent/metrics.ts';
import { ObserverMetrics } from '../observer/metrics.ts';
import { parseExposition, runPromtool } from '../testing/metrics.ts';
import { certificateExpiry } from './registry.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RULES = join(ROOT, 'monitoring/vigil-alerts.yml');
const RULES_TEST = join(ROOT, 'monitoring/vigil-alerts.test.yml');
const DASHBOARD = join(ROOT, 'monitoring/grafana-dashboard.json');

/** Every metric name Vigil's daemons export (with the _bucket/_sum/_count of histograms). */
async function exported(): Promise<Set<string>> {
  const o = new ObserverMetrics();
  certificateExpiry(o.m, [{ certificate: 'ca', pem: () => null }]);
  const a = new AgentMetrics({
    role: () => 'active',
    epoch: () => 1,
    leaseExpiryMs: () => null,
    lastConfirmMs: () => null,
    sync: () => ({
      role: 'pushing',
      dirs: [],
      watch: null,
      peers: [{ node: 'b', backlog: 0, lagMs: 0, reconciling: false, lastSyncAt: null, lastReconcileAt: null, error: null }],
      recentLagMs: null,
      quarantine: { path: '/q', files: 0, bytes: 0, sessions: [] },
    }),
    replication: async () => ({ member: 'b', lagBytes: 1, lagSeconds: 1 }),
  });
  a.fromLog('sync-failed', { peer: 'b', kind: 'failed' });
  const names = new Set<string>();
  for (const r of [o.m.registry, a.m.registry]) {
    for (const s of parseExposition(await r.metrics())) names.add(s.name);
    for (const m of await r.getMetricsAsJSON()) names.add(m.name); // also those with no sample yet
  }
  names.add('vigil_certificate_expiry_timestamp_seconds');
  return names;
}

const vigilNames = (expr: string) => [...expr.matchAll(/\b(vigil_[a-z_]+)\b/g)].map((m) => m[1]!);

test('promtool check rules: the alert rules load', async () => {
  const r = await runPromtool(['check', 'rules', RULES]);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /SUCCESS: \d+ rules found/);
});

test('promtool test rules: a failover fires VigilFailover, split brain stays silent on a normal series and fires on two active agents', async () => {
  const r = await runPromtool(['test', 'rules', RULES_TEST]);
  assert.equal(r.code, 0, r.out);
  const tests = await readFile(RULES_TEST, 'utf8');
  for (const name of ['VigilFailover', 'VigilSplitBrain', 'VigilStaleEpoch', 'VigilCertificateExpiry'])
    assert.match(tests, new RegExp(`alertname: ${name}\\n`));
});

test('every metric the rules and the dashboard name is exported by a daemon, and docs/metrics.md documents every metric', async () => {
  const names = await exported();
  const known = (n: string) => names.has(n) || ['_bucket', '_sum', '_count'].some((x) => n.endsWith(x) && names.has(n.slice(0, -x.length)));
  const rules = await readFile(RULES, 'utf8');
  const dashboard = await readFile(DASHBOARD, 'utf8');
  for (const n of [...vigilNames(rules), ...vigilNames(dashboard)]) assert.ok(known(n), `${n} is named in monitoring/ but no daemon exports it`);
  const doc = await readFile(join(ROOT, 'docs/metrics.md'), 'utf8');
  for (const n of names) {
    if (!n.startsWith('vigil_') || /_(bucket|sum|count)$/.test(n)) continue;
    assert.match(doc, new RegExp(`\`${n}\``), `docs/metrics.md does not document ${n}`);
  }
});

test('the Grafana dashboard is JSON whose every query parses (promtool, as recording rules)', async () => {
  const d = JSON.parse(await readFile(DASHBOARD, 'utf8')) as {
    uid: string;
    panels: { title: string; type: string; targets?: { expr: string }[] }[];
    annotations: { list: { expr?: string }[] };
  };
  assert.equal(d.uid, 'vigil-cluster');
  const exprs = [
    ...d.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr }))),
    ...d.annotations.list.flatMap((a) => (a.expr ? [{ title: 'annotation', expr: a.expr }] : [])),
  ];
  assert.ok(exprs.length >= 15, `${exprs.length} queries`);
  // Grafana's variables as Grafana would fill them in.
  const concrete = (e: string) => e.replaceAll('$cluster', '.*').replaceAll('$__rate_interval', '1m').replaceAll('$__range', '1h');
  const dir = await mkdtemp(join(tmpdir(), 'vigil-dashboard-'));
  try {
    const file = join(dir, 'queries.yml');
    await writeFile(
      file,
      stringify({ groups: [{ name: 'dashboard', rules: exprs.map((e, i) => ({ record: `dashboard:query_${i}`, expr: concrete(e.expr) })) }] }),
    );
    const r = await runPromtool(['check', 'rules', file]);
    assert.equal(r.code, 0, `${r.out}\nqueries:\n${exprs.map((e, i) => `${i} ${e.title}: ${e.expr}`).join('\n')}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
