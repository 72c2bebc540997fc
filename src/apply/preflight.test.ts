import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterFixture } from '../render/fixtures.ts';
import { evaluatePreflight, formatPreflight, parseOsRelease, type PreflightFacts } from './preflight.ts';

const cluster = clusterFixture('pair');
const healthy = (machine: string): PreflightFacts => ({
  machine,
  reachable: { ok: true, value: true },
  os: { id: 'debian', versionId: '12', pretty: 'Debian GNU/Linux 12 (bookworm)' },
  root: { uid: 0, sudo: false },
  packageManager: 'apt',
  busy: [],
  ports: [{ from: machine, to: 'observer', port: 2379, outcome: 'refused' }],
  clock: { ok: true, value: { offsetMs: 3, uncertaintyMs: 1 } },
  freeBytes: 50 * 2 ** 30,
});

test('os-release is read as the distribution and its version', () => {
  assert.deepEqual(parseOsRelease('PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nVERSION_ID="24.04"\n'), { id: 'ubuntu', versionId: '24.04', pretty: 'Ubuntu 24.04.1 LTS' });
});

test('machines ready for the cluster give no finding; a refused port is an open path', () => {
  const facts = cluster.machines.map((m) => healthy(m.name));
  assert.deepEqual(evaluatePreflight(facts, cluster), []);
  assert.match(formatPreflight(facts, []), /every machine can take the cluster/);
});

test('each problem is a finding with the machine and the fix', () => {
  const facts: PreflightFacts[] = [
    { ...healthy('app1'), os: { id: 'centos', versionId: '7', pretty: 'CentOS Linux 7' } },
    { ...healthy('app2'), root: { uid: 1000, sudo: false }, busy: [{ port: 5432, what: 'PostgreSQL' }], ports: [{ from: 'app2', to: 'observer', port: 5000, outcome: 'timeout' }] },
    { ...healthy('observer'), clock: { ok: true, value: { offsetMs: 2400, uncertaintyMs: 5 } }, freeBytes: 2 ** 30, packageManager: null },
  ];
  const f = evaluatePreflight(facts, cluster);
  const by = (machine: string, check: string) => f.find((x) => x.machine === machine && x.check === check);
  assert.match(by('app1', 'os')!.what, /CentOS Linux 7 is not supported/);
  assert.match(by('app2', 'sudo')!.fix, /NOPASSWD/);
  assert.match(f.filter((x) => x.machine === 'app2' && x.check === 'ports').map((x) => x.what).join('\n'), /port 5432 \(PostgreSQL\) is already in use[\s\S]*app2 cannot reach observer:5000 \(PostgreSQL primary through HAProxy\): no answer/);
  assert.match(f.find((x) => x.machine === 'app2' && /cannot reach/.test(x.what))!.fix, /ufw allow from 10\.\d+\.\d+\.\d+ to any port 5000/);
  assert.equal(by('observer', 'clock')!.severity, 'fail');
  assert.equal(by('observer', 'disk')!.severity, 'warn');
  assert.equal(by('observer', 'packages')!.severity, 'fail');
  const unreachable = evaluatePreflight([{ machine: 'app1', reachable: { ok: false, error: 'connection refused' } }], cluster);
  assert.equal(unreachable[0]!.check, 'reachable');
  assert.match(formatPreflight(facts, f), /preflight: \d+ problem\(s\) to fix before installing/);
});
