import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterFixture } from '../testing/clusters.ts';
import { distroPostgres, parseAptPolicy, upstreamVersion, versionAtLeast } from './packages.ts';
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
  // Debian 12's own packages, with Patroni from PGDG (Debian 12's own 3.0.2 gets a warning, below).
  versions: [
    { pkg: 'etcd-server', installed: null, candidate: '3.4.23-4+b4' },
    { pkg: `postgresql-${cluster.database.postgresVersion}`, installed: null, candidate: '15.20-0+deb12u1' },
    { pkg: 'patroni', installed: null, candidate: '4.0.4-1.pgdg120+1' },
    { pkg: 'haproxy', installed: '2.6.12-1+deb12u4', candidate: '2.6.12-1+deb12u4' },
  ],
});

test('os-release is read as the distribution and its version', () => {
  assert.deepEqual(parseOsRelease('PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nVERSION_ID="24.04"\n'), {
    id: 'ubuntu',
    versionId: '24.04',
    pretty: 'Ubuntu 24.04.1 LTS',
  });
});

test('machines ready for the cluster give no finding; a refused port is an open path', () => {
  const facts = cluster.machines.map((m) => healthy(m.name));
  assert.deepEqual(evaluatePreflight(facts, cluster), []);
  assert.match(formatPreflight(facts, []), /every machine can take the cluster/);
});

test('each problem is a finding with the machine and the fix', () => {
  const facts: PreflightFacts[] = [
    { ...healthy('app1'), os: { id: 'centos', versionId: '7', pretty: 'CentOS Linux 7' } },
    {
      ...healthy('app2'),
      root: { uid: 1000, sudo: false },
      busy: [{ port: 5432, what: 'PostgreSQL' }],
      ports: [{ from: 'app2', to: 'observer', port: 5000, outcome: 'timeout' }],
    },
    { ...healthy('observer'), clock: { ok: true, value: { offsetMs: 2400, uncertaintyMs: 5 } }, freeBytes: 2 ** 30, packageManager: null },
  ];
  const f = evaluatePreflight(facts, cluster);
  const by = (machine: string, check: string) => f.find((x) => x.machine === machine && x.check === check);
  assert.match(by('app1', 'os')!.what, /CentOS Linux 7 is not supported/);
  assert.match(by('app2', 'sudo')!.fix, /NOPASSWD/);
  assert.match(
    f
      .filter((x) => x.machine === 'app2' && x.check === 'ports')
      .map((x) => x.what)
      .join('\n'),
    /port 5432 \(PostgreSQL\) is already in use[\s\S]*app2 cannot reach observer:5000 \(PostgreSQL primary through HAProxy\): no answer/,
  );
  assert.match(f.find((x) => x.machine === 'app2' && /cannot reach/.test(x.what))!.fix, /ufw allow from 10\.\d+\.\d+\.\d+ to any port 5000/);
  assert.equal(by('observer', 'clock')!.severity, 'fail');
  assert.equal(by('observer', 'disk')!.severity, 'warn');
  assert.equal(by('observer', 'packages')!.severity, 'fail');
  const unreachable = evaluatePreflight([{ machine: 'app1', reachable: { ok: false, error: 'connection refused' } }], cluster);
  assert.equal(unreachable[0]!.check, 'reachable');
  assert.match(formatPreflight(facts, f), /preflight: \d+ problem\(s\) to fix before installing/);
});

test('apt-cache policy is read as installed and candidate versions; a package the lists do not know has neither', () => {
  const text = [
    'etcd-server:',
    '  Installed: (none)',
    '  Candidate: 3.3.25+dfsg-7ubuntu0.22.04.1',
    '  Version table:',
    '     3.3.25+dfsg-7ubuntu0.22.04.1 500',
    '        500 http://archive.ubuntu.com/ubuntu jammy-updates/universe amd64 Packages',
    'haproxy:',
    '  Installed: 2.6.12-1+deb12u4',
    '  Candidate: 2.6.12-1+deb12u4',
  ].join('\n');
  assert.deepEqual(parseAptPolicy(text), [
    { pkg: 'etcd-server', installed: null, candidate: '3.3.25+dfsg-7ubuntu0.22.04.1' },
    { pkg: 'haproxy', installed: '2.6.12-1+deb12u4', candidate: '2.6.12-1+deb12u4' },
  ]);
  assert.deepEqual(upstreamVersion('1:3.4.23-4+b4'), [3, 4, 23]);
  assert.equal(versionAtLeast(upstreamVersion('3.10.1'), upstreamVersion('3.4')), true);
  assert.equal(versionAtLeast(upstreamVersion('2.1.2-1'), upstreamVersion('3.0')), false);
  assert.equal(versionAtLeast(upstreamVersion('3.0'), upstreamVersion('3.0')), true);
});

test('components older than Vigil needs stop preflight with where newer ones come from; a package missing from the lists is a warning', () => {
  // Ubuntu 22.04's own packages: etcd 3.3, Patroni 2.1, HAProxy 2.4.
  const jammy = (machine: string): PreflightFacts => ({
    ...healthy(machine),
    os: { id: 'ubuntu', versionId: '22.04', pretty: 'Ubuntu 22.04.5 LTS' },
    versions: [
      { pkg: 'etcd-server', installed: null, candidate: '3.3.25+dfsg-7ubuntu0.22.04.1' },
      { pkg: 'haproxy', installed: '2.4.24-0ubuntu0.22.04.1', candidate: '2.4.24-0ubuntu0.22.04.1' },
      { pkg: 'patroni', installed: null, candidate: '2.1.2-1' },
      { pkg: `postgresql-${cluster.database.postgresVersion}`, installed: null, candidate: null },
    ],
  });
  const f = evaluatePreflight(
    cluster.machines.map((m) => jammy(m.name)),
    cluster,
  ).filter((x) => x.check === 'versions');
  const on = (machine: string) => f.filter((x) => x.machine === machine).map((x) => `${x.severity} ${x.what} | ${x.why} | ${x.fix}`);
  assert.deepEqual(on('observer'), [
    "fail the package lists offer etcd-server 3.3.25+dfsg-7ubuntu0.22.04.1 | Vigil needs etcd 3.4 or newer | add the distribution's backports or an etcd release repository (or a local mirror of it) on observer, run `apt-get update`, then run `vigil apply` again",
    "fail haproxy 2.4.24-0ubuntu0.22.04.1 is installed | Vigil needs HAProxy 2.6 or newer | add haproxy.debian.net (or Ubuntu's vbernat/haproxy PPA) (or a local mirror of it) on observer, run `apt-get update`, then run `vigil apply` again",
  ]);
  const app1 = on('app1');
  assert.match(
    app1[0]!,
    /^warn postgresql-15 is neither installed nor in the machine's package lists .*Ubuntu 22\.04\.5 LTS ships PostgreSQL 14;.*set database\.postgresVersion: 14 in vigil\.yaml .*or add the PGDG repository \(apt\.postgresql\.org\) \(or a local mirror of it\) on app1 for PostgreSQL 15/,
  );
  assert.match(app1[1]!, /^fail the package lists offer patroni 2\.1\.2-1 \| Vigil needs Patroni 3\.0 or newer/);
  assert.match(
    formatPreflight([jammy('observer')], f),
    /observer: Ubuntu 22\.04\.5 LTS, apt, etcd-server 3\.3\.25\S* \(to install\), haproxy 2\.4\.24\S*, patroni 2\.1\.2-1 \(to install\), postgresql-\d+ unavailable/,
  );
});

test('a PostgreSQL version the distribution does not ship: preflight names the one it ships and both ways out', () => {
  const trixie = (machine: string, postgres: number): PreflightFacts => ({
    ...healthy(machine),
    os: { id: 'debian', versionId: '13', pretty: 'Debian GNU/Linux 13 (trixie)' },
    versions: healthy(machine).versions!.map((v) =>
      v.pkg.startsWith('postgresql-') ? { pkg: `postgresql-${postgres}`, installed: null, candidate: null } : v,
    ),
  });
  const pg = (c: typeof cluster) =>
    evaluatePreflight(
      c.machines.map((m) => trixie(m.name, c.database.postgresVersion)),
      c,
    ).filter((x) => x.check === 'versions' && /postgresql-/.test(x.what));
  const [f] = pg(cluster); // postgresVersion 15 on Debian 13, which ships 17
  assert.equal(cluster.database.postgresVersion, 15);
  assert.match(f!.why, /Debian GNU\/Linux 13 \(trixie\) ships PostgreSQL 17/);
  assert.match(
    f!.fix,
    /set database\.postgresVersion: 17 in vigil\.yaml to use Debian GNU\/Linux 13 \(trixie\)'s own PostgreSQL, or add the PGDG repository \(apt\.postgresql\.org\)/,
  );
  assert.deepEqual(distroPostgres({ id: 'debian', versionId: '12' }), 15);
  assert.deepEqual(distroPostgres({ id: 'ubuntu', versionId: '24.04' }), 16);
  assert.equal(distroPostgres({ id: 'rhel', versionId: '9.4' }), undefined);
});

test("Debian 12's own Patroni 3.0.2 is a warning naming 3.0.3; the watchdog device is checked against database.watchdog", () => {
  const bookworm = (machine: string): PreflightFacts => ({
    ...healthy(machine),
    versions: healthy(machine).versions!.map((v) => (v.pkg === 'patroni' ? { ...v, candidate: '3.0.2-1' } : v)),
    ...(machine === 'observer' ? {} : { watchdogDevice: machine === 'app2' }),
  });
  const f = evaluatePreflight(
    cluster.machines.map((m) => bookworm(m.name)),
    cluster,
  );
  const patroni = f.filter((x) => /Patroni 3\.0\.2/.test(x.what));
  assert.deepEqual(patroni.map((x) => `${x.machine} ${x.severity} ${x.check}`).sort(), ['app1 warn versions', 'app2 warn versions']);
  assert.match(patroni[0]!.what, /renews its leader key in etcd with a plain write/);
  assert.match(patroni[0]!.fix, /install Patroni 3\.0\.3 or newer/);
  const unused = f.filter((x) => x.check === 'watchdog');
  assert.deepEqual(
    unused.map((x) => `${x.machine} ${x.severity}`),
    ['app2 warn'],
    'a device left unused; no device is no finding while the setting is off',
  );
  assert.match(unused[0]!.fix, /database\.watchdog: required/);

  const required = clusterFixture('pair', { database: { watchdog: 'required' } });
  const g = evaluatePreflight(
    required.machines.map((m) => bookworm(m.name)),
    required,
  ).filter((x) => x.check === 'watchdog');
  assert.deepEqual(
    g.map((x) => `${x.machine} ${x.severity}`),
    ['app1 fail'],
  );
  assert.match(g[0]!.what, /database\.watchdog is required, but app1 has no watchdog device \(\/dev\/watchdog\)/);
});
