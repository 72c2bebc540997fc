import { test } from 'node:test';
import assert from 'node:assert/strict';
import { commandLine, shellQuote, systemdFixes } from './fixes.ts';
import { formatReport } from './format.ts';
import type { DoctorReport } from './types.ts';
import { clusterFixture } from '../testing/clusters.ts';

const report: DoctorReport = {
  cluster: { name: 'prod', source: '/srv/vigil/vigil.yaml' },
  platform: 'systemd',
  startedAt: '2026-11-25T00:00:00.000Z',
  durationMs: 2340,
  machines: [
    {
      name: 'observer',
      address: '10.0.0.10',
      roles: ['etcd', 'proxy', 'observer'],
      reachable: true,
      checks: [
        { check: 'ports', status: 'ok' },
        { check: 'etcd', status: 'ok' },
      ],
    },
    {
      name: 'app2',
      address: '10.0.0.12',
      roles: ['app'],
      reachable: true,
      checks: [
        { check: 'ports', status: 'ok' },
        { check: 'services', status: 'fail' },
        { check: 'file-sync', status: 'skipped', note: 'the agent reports no file sync' },
      ],
    },
    { name: 'db2', address: '10.0.0.22', roles: ['db'], reachable: false, checks: [{ check: 'reachable', status: 'fail' }] },
  ],
  clusterChecks: [{ check: 'cluster-state', status: 'warn' }],
  findings: [
    {
      check: 'services',
      severity: 'fail',
      machine: 'app2',
      what: 'nginx (pid 4242) listens on port 80 on app2, a standby',
      why: 'two masters',
      fix: 'on app2: systemctl disable --now nginx.service',
    },
    {
      check: 'reachable',
      severity: 'fail',
      machine: 'db2',
      what: 'doctor cannot run commands on db2 (timed out)',
      why: 'its checks could not run',
      fix: 'ssh -p 22 root@10.0.0.22 true',
    },
    {
      check: 'cluster-state',
      severity: 'warn',
      machine: null,
      what: 'maintenance is on',
      why: 'no failover',
      fix: 'vigil maintenance off -c /srv/vigil/vigil.yaml',
    },
  ],
  summary: { failures: 2, warnings: 1 },
  exitStatus: 1,
};

test('the human report groups by machine: ok checks on one line, each finding with why and fix, skipped with why', () => {
  const out = formatReport(report);
  assert.match(out, /^vigil doctor: cluster prod \(\/srv\/vigil\/vigil\.yaml\), 3 machines, checked in 2\.3 s/);
  assert.match(out, /observer {2}10\.0\.0\.10 {2}etcd,proxy,observer\n {2}ok +ports, etcd\n/);
  assert.match(
    out,
    /app2 .*\n {2}ok +ports\n {2}FAIL +services: nginx \(pid 4242\) listens on port 80 on app2, a standby\n +why: two masters\n +fix: on app2: systemctl disable --now nginx\.service\n {2}skipped +file-sync: the agent reports no file sync/,
  );
  assert.match(out, /db2 {2}10\.0\.0\.22 {2}db {2}UNREACHABLE/);
  assert.match(out, /cluster\n {2}WARN +cluster-state: maintenance is on/);
  assert.match(out, /2 failures, 1 warning$/);
});

test('a healthy report says so', () => {
  const out = formatReport({
    ...report,
    machines: [report.machines[0]!],
    clusterChecks: [],
    findings: [],
    summary: { failures: 0, warnings: 0 },
    exitStatus: 0,
  });
  assert.match(out, /healthy: every check passed$/);
});

test('fix commands quote what a shell would split', () => {
  assert.equal(shellQuote('/etc/vigil'), '/etc/vigil');
  assert.equal(shellQuote("it's"), `'it'\\''s'`);
  assert.equal(commandLine(['ss', '-ltnp', 'sport = :80']), "ss -ltnp 'sport = :80'");
  const real = systemdFixes(clusterFixture('distributed'));
  assert.equal(real.start('db1', 'patroni'), 'on db1: systemctl start vigil-patroni.service (`journalctl -u vigil-patroni.service -n 50` says why it stopped)');
  assert.match(
    real.openPort('db2', 5432, ['10.0.0.21'], 'firewalld'),
    /^on db2: firewall-cmd --permanent --add-rich-rule='rule family=ipv4 source address=10\.0\.0\.21 port port=5432 protocol=tcp accept' && firewall-cmd --reload$/,
  );
});
