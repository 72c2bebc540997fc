import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DoctorRun } from '../model/ha.ts';
import { doctorRunMessage, doctorView } from './doctor.ts';

const report = (o: { failures?: number; warnings?: number; scope?: 'machines' | 'cluster' } = {}) => ({
  startedAt: '2026-12-07T20:00:00.000Z',
  durationMs: 2100,
  ...(o.scope ? { scope: o.scope } : {}),
  machines: [
    { name: 'app1', roles: ['app'], reachable: true, checks: [{ check: 'disk', status: o.failures ? 'fail' : 'ok' }] },
    { name: 'db1', roles: ['db', 'etcd'], reachable: true, checks: [{ check: 'disk', status: 'ok' }] },
  ],
  clusterChecks: [{ check: 'etcd', status: o.warnings ? 'warn' : 'ok' }],
  findings: [
    ...(o.failures ? [{ check: 'disk', severity: 'fail', machine: 'app1', what: 'full', why: 'stops', fix: 'free space' }] : []),
    ...(o.warnings ? [{ check: 'etcd', severity: 'warn', machine: null, what: 'slow', why: 'leases', fix: 'look' }] : []),
  ],
  summary: { failures: o.failures ?? 0, warnings: o.warnings ?? 0 },
});
const run = (source: DoctorRun['source'], r: Record<string, unknown>): DoctorRun => ({ source, by: 'someone', at: '2026-12-07T20:00:03.000Z', report: r });

describe('the Doctor page view', () => {
  it("the CLI's report first, then the page's; each part (the cluster, then every machine) with its checks, findings and level", () => {
    const v = doctorView('lab', [run('dashboard', report({ warnings: 1, scope: 'cluster' })), run('cli', report({ failures: 1 }))]);
    assert.deepEqual(
      v.reports.map((r) => [r.source, r.level, r.summary.failures, r.summary.warnings]),
      [
        ['cli', 'bad', 1, 0],
        ['dashboard', 'warn', 0, 1],
      ],
    );
    const cli = v.reports[0]!;
    assert.deepEqual(
      cli.parts.map((p) => [p.name, p.roles, p.level, p.findings.map((f) => f.what)]),
      [
        [null, '', 'ok', []],
        ['app1', 'app', 'bad', ['full']],
        ['db1', 'db, etcd', 'ok', []],
      ],
    );
    assert.match(cli.scope, /every machine's own checks/);
    assert.match(v.reports[1]!.scope, /need a shell on them: run `vigil doctor`/);
    assert.equal(v.reports[1]!.parts[0]!.level, 'warn');
    assert.equal(v.running, null);
  });

  it('a stored report without the fields the page reads is shown as unreadable, with why, and nothing of it drawn', () => {
    const v = doctorView('lab', [run('cli', { summary: { failures: 'many' } })]);
    const r = v.reports[0]!;
    assert.equal(r.level, 'bad');
    assert.match(r.unreadable ?? '', /summary\.failures: .*run doctor again/);
    assert.deepEqual(r.parts, []);
  });

  it("the doctor-run event's sentence", () => {
    assert.equal(
      doctorRunMessage('ann (dashboard on obs1)', { failures: 1, warnings: 2 }, 3400),
      'doctor run from the dashboard by ann (dashboard on obs1): 1 failure, 2 warnings in 3.4 s (the cluster as the observer sees it)',
    );
  });
});
