import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { patchDirHeld } from '../testing/airgap.ts';
import { clusterFixture, secretsFixture } from '../testing/clusters.ts';
import type { Cluster, Secrets } from '../config/schema.ts';
import { issueCertificate } from '../pki/ca.ts';
import { buildReport, evaluate, exitStatus } from './evaluate.ts';
import { fixtureContext, fixturePki, healthyFacts, renderedOf, type FixturePki } from '../testing/doctor-facts.ts';
import { failed, got, type Facts, type Finding, type MachineFacts } from './types.ts';
import { NO_SHELL } from './doctor.ts';

let cluster: Cluster;
let pair: Cluster;
let secrets: Secrets;
let pki: FixturePki;
let pairPki: FixturePki;

before(async () => {
  const application = {
    passwordFiles: [{ path: '/etc/vigil/refapp/application.properties', format: 'properties' as const, key: 'spring.datasource.password' }],
  };
  cluster = clusterFixture('distributed', { application });
  pair = clusterFixture('pair', { application });
  secrets = secretsFixture();
  pki = await fixturePki(cluster);
  pairPki = await fixturePki(pair);
});

const facts = (c = cluster, p = pki): Facts => structuredClone(healthyFacts(c, renderedOf(c, secrets), p));
const machine = (f: Facts, name: string): MachineFacts => f.machines.find((m) => m.name === name)!;

/** Findings with a real cluster's fixes (systemdFixes); the lab's wording is tested in src/lab/fixes.test.ts. */
function findings(f: Facts, c = cluster): Finding[] {
  return evaluate(fixtureContext(c, secrets, f)).findings;
}

/** The one finding of a check (fails the test if there are more or none). */
function only(list: Finding[], check: Finding['check']): Finding {
  const of = list.filter((x) => x.check === check);
  assert.equal(of.length, 1, `one ${check} finding, got: ${JSON.stringify(list, null, 1)}`);
  return of[0]!;
}

describe('a healthy cluster', () => {
  test('distributed: no finding, every machine checked, exit status 0', () => {
    const ctx = fixtureContext(cluster, secrets, facts());
    const report = buildReport(ctx, evaluate(ctx), { startedAt: new Date(), durationMs: 1 });
    assert.deepEqual(report.findings, []);
    assert.equal(report.exitStatus, 0);
    for (const m of report.machines) {
      assert.ok(
        m.checks.every((c) => c.status === 'ok'),
        `${m.name}: ${JSON.stringify(m.checks)}`,
      );
      for (const c of ['reachable', 'ports', 'ownership', 'certificates', 'clock', 'disk'])
        assert.ok(
          m.checks.some((x) => x.check === c),
          `${m.name} ran ${c}`,
        );
    }
    const app2 = report.machines.find((m) => m.name === 'app2')!.checks.map((c) => c.check);
    for (const c of ['services', 'passwords', 'app-version', 'agent']) assert.ok(app2.includes(c as never), `app2 ran ${c}`);
    assert.deepEqual(report.clusterChecks.map((c) => c.check).sort(), ['cluster-state', 'etcd', 'patroni']);
  });

  test('pair: no finding either', () => {
    assert.deepEqual(findings(facts(pair, pairPki), pair), []);
    assert.deepEqual(findings(facts(cluster, pki)), []);
  });
});

describe('the faults of the seed and the issue', () => {
  test('nginx running on the standby names the machine, the process and how to stop it', () => {
    const f = facts();
    const app2 = machine(f, 'app2');
    (app2.listeners as { value: { address: string; port: number; processes: { name: string; pid: number }[] }[] }).value.push({
      address: '0.0.0.0',
      port: 80,
      processes: [{ name: 'nginx', pid: 4242 }],
    });
    const x = only(findings(f), 'services');
    assert.equal(x.severity, 'fail');
    assert.equal(x.machine, 'app2');
    assert.match(x.what, /nginx \(pid 4242\) listens on port 80 on app2, a standby/);
    assert.equal(x.fix, 'on app2: kill 4242 (nginx, started outside systemd)');
    // On a real machine the fix follows the unit that runs it.
    const s = facts(cluster, pki);
    const s2 = machine(s, 'app2');
    (s2.listeners as { value: unknown[] }).value.push({ address: '*', port: 80, processes: [{ name: 'nginx', pid: 77 }] });
    s2.processUnits = { 77: 'nginx.service' };
    assert.equal(only(findings(s), 'services').fix, 'on app2: systemctl disable --now nginx.service');
  });

  test('an application service the agent runs on a standby, and a unit enabled at boot', () => {
    const f = facts(cluster, pki);
    f.cluster.agents.find((a) => a.machine === 'app2')!.status!.services = [{ name: 'app', running: true }];
    machine(f, 'app2').systemd = { ntpSynchronized: got(true), firewall: got('none'), enabledUnits: got([{ unit: 'nginx.service', state: 'enabled' }]) };
    const list = findings(f).filter((x) => x.check === 'services');
    assert.equal(list.length, 2);
    assert.match(list.find((x) => x.severity === 'fail')!.fix, /systemctl stop vigil-refapp\.service/);
    assert.equal(list.find((x) => x.severity === 'warn')!.fix, 'on app2: systemctl disable nginx.service');
  });

  test('a warm service on a standby: stopped, still starting (its own health check fails), ready', () => {
    const warm = clusterFixture('distributed', {
      application: {
        services: [
          { name: 'nginx', unit: 'vigil-nginx.service', runsOn: 'active' },
          { name: 'app', unit: 'vigil-refapp.service', runsOn: 'every', healthUrl: 'http://127.0.0.1:8080/health' },
        ],
        activation: { url: 'http://127.0.0.1:8081/vigil/activation' },
      },
    });
    const warmFindings = (app: { running: boolean; ready?: boolean }) => {
      const f = facts(warm, pki);
      f.cluster.agents.find((a) => a.machine === 'app2')!.status!.services = [
        { name: 'nginx', running: false, runsOn: 'active' },
        { name: 'app', runsOn: 'every', ...app },
      ];
      return findings(f, warm).filter((x) => x.check === 'services');
    };
    assert.match(only(warmFindings({ running: false }), 'services').what, /warm service app \(runsOn: every\) is not running on app2/);
    const starting = only(warmFindings({ running: true, ready: false }), 'services');
    assert.equal(starting.severity, 'warn');
    assert.match(
      starting.what,
      /warm service app \(runsOn: every\) runs on app2, a standby, but does not pass its own health check \(http:\/\/127\.0\.0\.1:8080\/health\): still starting/,
    );
    assert.match(starting.fix, /journalctl -u vigil-refapp\.service/);
    assert.deepEqual(warmFindings({ running: true, ready: true }), []);
    assert.deepEqual(warmFindings({ running: true }), [], 'without a health check of its own, running is all that is known');
  });

  test('an `active` service with a health check of its own (analytics) on the active machine: a warning when it does not pass it', () => {
    const withAnalytics = clusterFixture('distributed', {
      application: {
        services: [
          { name: 'nginx', unit: 'vigil-nginx.service', runsOn: 'active' },
          { name: 'app', unit: 'vigil-refapp.service', runsOn: 'active' },
          { name: 'analytics', unit: 'vigil-refapp-analytics.service', runsOn: 'active', healthUrl: 'http://127.0.0.1:8082/health' },
        ],
      },
    });
    const activeFindings = (analytics: { running: boolean; ready?: boolean }) => {
      const f = facts(withAnalytics, pki);
      f.cluster.agents.find((a) => a.machine === 'app1')!.status!.services = [
        { name: 'nginx', running: true, runsOn: 'active' },
        { name: 'app', running: true, runsOn: 'active' },
        { name: 'analytics', runsOn: 'active', ...analytics },
      ];
      return findings(f, withAnalytics).filter((x) => x.check === 'services');
    };
    const failing = only(activeFindings({ running: true, ready: false }), 'services');
    assert.equal(failing.severity, 'warn');
    assert.match(
      failing.what,
      /service analytics runs on app1, the active machine, but does not pass its own health check \(http:\/\/127\.0\.0\.1:8082\/health\)/,
    );
    assert.match(failing.fix, /journalctl -u vigil-refapp-analytics\.service/);
    assert.deepEqual(activeFindings({ running: true, ready: true }), []);
    assert.equal(only(activeFindings({ running: false }), 'services').severity, 'fail', 'not running on the active machine');
  });

  test('a dead-man switch that does not run on an app machine is a failure with its fix', () => {
    const f = facts(cluster, pki);
    machine(f, 'app1').systemd = { ntpSynchronized: got(true), firewall: got('none'), enabledUnits: got([]), deadman: got('inactive') };
    machine(f, 'app2').systemd = { ntpSynchronized: got(true), firewall: got('none'), enabledUnits: got([]), deadman: got('active') };
    const list = findings(f).filter((x) => x.check === 'services' && /dead-man/.test(x.what));
    assert.equal(list.length, 1);
    assert.equal(list[0]!.machine, 'app1');
    assert.equal(list[0]!.severity, 'fail');
    assert.equal(list[0]!.fix, 'on app1: systemctl enable --now vigil-deadman.service');
  });

  test('a different database password in one file says so without the value', () => {
    const f = facts();
    machine(f, 'app2').passwords = [{ path: '/etc/vigil/refapp/application.properties', key: 'spring.datasource.password', status: 'differs', line: 7 }];
    const x = only(findings(f), 'passwords');
    assert.equal(x.machine, 'app2');
    assert.match(x.what, /application\.properties:7 on app2 differs from the secrets file/);
    assert.ok(!JSON.stringify(x).includes(secrets.appDbPassword));
  });

  test('a password file that is a symbolic link fails, one wider than 0640 warns (H3)', () => {
    const f = facts();
    const file = '/etc/servicedesk/db.properties';
    machine(f, 'app1').passwords = [{ path: file, key: 'db.password', status: 'unreadable', detail: 'a symbolic link', symlinkTo: '/etc/shadow' }];
    machine(f, 'app2').passwords = [{ path: file, key: 'db.password', status: 'same', mode: 0o644 }];
    const list = findings(f).filter((x) => x.check === 'passwords');
    assert.equal(list.length, 2, JSON.stringify(list, null, 1));
    const link = list.find((x) => x.machine === 'app1')!;
    assert.equal(link.severity, 'fail');
    assert.match(link.what, /db\.properties on app1 is a symbolic link \(to \/etc\/shadow\): `vigil apply` refuses to write the password through it/);
    assert.match(link.fix, /^on app1: find out who made the link \(ls -l \/etc\/servicedesk\/db\.properties\); put the application's own file in its place/);
    const wide = list.find((x) => x.machine === 'app2')!;
    assert.equal(wide.severity, 'warn');
    assert.match(wide.what, /has mode 0644, wider than 0640: every account on the machine may read/);
    assert.equal(wide.fix, `on app2: chmod 0640 ${file}`);
    machine(f, 'app1').passwords = [{ path: file, key: 'db.password', status: 'same', mode: 0o640 }];
    machine(f, 'app2').passwords = [{ path: file, key: 'db.password', status: 'same', mode: 0o600 }];
    assert.deepEqual(
      findings(f).filter((x) => x.check === 'passwords'),
      [],
    );
  });

  test('wrong ownership of a directory gives the chown, a readable key the chmod', () => {
    const f = facts();
    const paths = (machine(f, 'db1').paths as { value: { path: string; user: string; group: string; mode: number }[] }).value;
    Object.assign(
      paths.find((p) => p.path === '/var/lib/vigil/postgresql/data')!,
      { user: 'root', group: 'root' },
    );
    Object.assign(
      paths.find((p) => p.path === '/etc/vigil/pki/db1.key')!,
      { mode: 0o644 },
    );
    const list = findings(f).filter((x) => x.check === 'ownership');
    assert.equal(list.length, 2);
    const owner = list.find((x) => /owned by/.test(x.what))!;
    assert.match(owner.what, /\/var\/lib\/vigil\/postgresql\/data on db1 is owned by root:root; it must be postgres:postgres/);
    assert.equal(owner.fix, 'on db1: chown -R postgres:postgres /var/lib/vigil/postgresql/data');
    const mode = list.find((x) => /mode/.test(x.what))!;
    assert.match(mode.what, /db1\.key on db1 has mode 0644: its group and others may read it/);
    assert.equal(mode.fix, 'on db1: chmod 0600 /etc/vigil/pki/db1.key');
  });

  test("etcd's TLS key owned by root, and Patroni's etcd key readable by its group: the chown and the chmod (issue 16)", () => {
    const f = facts();
    const pathsOf = (name: string) => (machine(f, name).paths as { value: { path: string; user: string; group: string; mode: number }[] }).value;
    Object.assign(
      pathsOf('observer').find((p) => p.path === '/etc/vigil/tls/etcd.key')!,
      { user: 'root', group: 'root' },
    );
    Object.assign(
      pathsOf('db1').find((p) => p.path === '/etc/vigil/tls/patroni-etcd.key')!,
      { mode: 0o640 },
    );
    const list = findings(f).filter((x) => x.check === 'ownership');
    assert.deepEqual(list.map((x) => x.fix).sort(), [
      'on db1: chmod 0600 /etc/vigil/tls/patroni-etcd.key',
      'on observer: chown etcd:etcd /etc/vigil/tls/etcd.key',
    ]);
  });

  test("Patroni's REST key, and nginx's and the reference application's HTTPS keys, readable by others: the chmod (issue 16)", () => {
    const c = clusterFixture('distributed', {
      application: {
        backendTls: { ca: 'cluster' },
        tlsEndpoints: [
          {
            service: 'app',
            port: 8443,
            settingsFile: '/etc/vigil/refapp/appsettings.json',
            certificatePathKey: 'Https.CertificateFilePath',
            keyPathKey: 'Https.KeyFilePath',
          },
        ],
      },
    });
    const f = facts(c);
    const pathsOf = (name: string) => (machine(f, name).paths as { value: { path: string; user: string; group: string; mode: number }[] }).value;
    for (const [name, path] of [
      ['db1', '/etc/vigil/tls/patroni-rest.key'],
      ['app1', '/etc/vigil/tls/nginx.key'],
      ['app2', '/etc/vigil/refapp/tls/refapp.key'],
    ] as const) {
      const p = pathsOf(name).find((x) => x.path === path);
      assert.ok(p, `${path} is among ${name}'s expected paths`);
      Object.assign(p, { mode: 0o644 });
    }
    assert.deepEqual(
      findings(f, c)
        .filter((x) => x.check === 'ownership')
        .map((x) => x.fix)
        .sort(),
      [
        'on app1: chmod 0600 /etc/vigil/tls/nginx.key',
        'on app2: chmod 0600 /etc/vigil/refapp/tls/refapp.key',
        'on db1: chmod 0600 /etc/vigil/tls/patroni-rest.key',
      ],
    );
    // Without backendTls and an HTTPS endpoint, neither key is expected.
    const plain = facts();
    assert.ok(!(machine(plain, 'app1').paths as { value: { path: string }[] }).value.some((x) => /nginx\.key|refapp\.key/.test(x.path)));
  });

  test('missing files are one finding per machine', () => {
    const f = facts();
    const p = machine(f, 'app1').paths as { value: { path: string }[] };
    p.value = p.value.filter((x) => !x.path.startsWith('/etc/vigil/'));
    const x = only(findings(f), 'ownership');
    assert.match(x.what, /of Vigil's files and directories are missing on app1: .*\/etc\/vigil\/nginx\.conf/);
  });

  test('a stopped etcd: the member, the lost quorum, and the command that starts it', () => {
    const f = facts();
    f.cluster.etcd[0]!.health = failed('connect ECONNREFUSED 10.0.0.10:2379');
    f.cluster.state = failed('etcd does not answer');
    const l = machine(f, 'observer').listeners as { value: { port: number }[] };
    l.value = l.value.filter((x) => x.port !== 2379);
    const list = findings(f);
    const member = list.find((x) => x.check === 'etcd' && x.machine === 'observer')!;
    assert.equal(member.fix, 'on observer: systemctl start vigil-etcd.service (`journalctl -u vigil-etcd.service -n 50` says why it stopped)');
    assert.ok(list.some((x) => x.check === 'etcd' && x.machine === null && /no quorum: 0 of 1/.test(x.what)));
    assert.ok(list.some((x) => x.check === 'ports' && x.machine === 'observer' && /nothing listens on TCP port 2379/.test(x.what)));
    assert.ok(list.some((x) => x.check === 'cluster-state'));
    // What needs the active machine is skipped, not guessed.
    const ctx = fixtureContext(cluster, secrets, f);
    const statuses = evaluate(ctx).statuses('app1');
    assert.equal(statuses.find((c) => c.check === 'services')?.status, 'skipped');
  });

  test('a closed port names the machine, the sources cut off and the firewall rule', () => {
    const f = facts(cluster, pki);
    for (const src of ['db1', 'observer']) machine(f, src).ports!.find((p) => p.to === 'db2' && p.port === 5432)!.outcome = 'timeout';
    machine(f, 'db2').systemd = { ntpSynchronized: got(true), firewall: got('ufw'), enabledUnits: got([]) };
    const x = only(findings(f), 'ports');
    assert.equal(x.machine, 'db2');
    assert.match(x.what, /TCP port 5432 \(PostgreSQL\) on db2 is not reachable from db1, observer: connections time out: a firewall drops them/);
    assert.equal(x.fix, 'on db2: ufw allow from 10.0.0.21 to any port 5432 proto tcp && ufw allow from 10.0.0.10 to any port 5432 proto tcp');
  });

  test('an unreachable machine is a failure of its own, and its other checks do not run', () => {
    const f = facts();
    const i = f.machines.findIndex((m) => m.name === 'app2');
    f.machines[i] = { name: 'app2', address: '10.0.0.12', roles: ['app'], reachable: failed('no connection within 30000 ms') };
    f.cluster.agents.find((a) => a.machine === 'app2')!.status = null;
    const list = findings(f);
    assert.match(only(list, 'reachable').fix, /^bring app2 up and check that it answers SSH from here: ssh -p 22 \S+@10\.0\.0\.12 true$/);
    assert.equal(only(list, 'agent').machine, 'app2');
    assert.equal(exitStatus(list), 1);
  });
});

describe('database, proxy and application state', () => {
  test('no synchronous standby, a paused Patroni, asynchronous where the file says synchronous', () => {
    const f = facts();
    const p = f.cluster.patroni as { value: { members: { role: string }[]; paused: boolean; synchronousMode: boolean | null } };
    p.value.members[1]!.role = 'replica';
    p.value.paused = true;
    let list = findings(f).filter((x) => x.check === 'patroni');
    assert.ok(list.some((x) => x.severity === 'fail' && /no synchronous standby/.test(x.what)));
    assert.ok(list.some((x) => x.severity === 'warn' && /paused/.test(x.what) && /patronictl -c \/etc\/vigil\/patroni\.yml resume/.test(x.fix)));
    p.value.synchronousMode = false;
    list = findings(f).filter((x) => x.check === 'patroni');
    assert.ok(list.some((x) => /runs asynchronous/.test(x.what) && /edit-config --set synchronous_mode=true --force/.test(x.fix)));
  });

  test("Patroni's failsafe mode off: a warning with the edit-config fix; unread: nothing", () => {
    const f = facts();
    const p = f.cluster.patroni as { value: { failsafeMode: boolean | null } };
    assert.ok(!findings(f).some((x) => /failsafe/.test(x.what)));
    p.value.failsafeMode = false;
    const hit = findings(f).filter((x) => /failsafe mode is off/.test(x.what));
    assert.equal(hit.length, 1);
    assert.equal(hit[0]!.severity, 'warn');
    assert.match(hit[0]!.fix, /patronictl -c \/etc\/vigil\/patroni\.yml edit-config --set failsafe_mode=true --force/);
    p.value.failsafeMode = null;
    assert.ok(!findings(f).some((x) => /failsafe/.test(x.what)));
    // Off on purpose where a member runs Patroni 3.0.0 to 3.0.2 (the observer keeps it so).
    p.value.failsafeMode = false;
    machine(f, 'db1').dbSafety = { patroniVersion: got('patroni 3.0.2'), watchdogDevice: got(true) };
    assert.ok(!findings(f).some((x) => /failsafe mode is off/.test(x.what)));
  });

  test('no primary, and a db machine missing from Patroni', () => {
    const f = facts();
    const p = f.cluster.patroni as { value: { members: { name: string; role: string }[] } };
    p.value.members = [{ ...p.value.members[1]!, role: 'replica' }];
    const list = findings(f).filter((x) => x.check === 'patroni');
    assert.ok(list.some((x) => x.machine === null && x.what === 'Patroni has no primary'));
    assert.ok(list.some((x) => x.machine === 'db1' && /not a member/.test(x.what) && x.fix.startsWith('on db1: systemctl start vigil-patroni.service ')));
  });

  test('replication lag: beyond maximumLagOnFailoverBytes a failure, beyond half a warning', () => {
    const f = facts();
    const m = (f.cluster.patroni as { value: { members: { lagBytes: number | null }[] } }).value.members[1]!;
    m.lagBytes = 2 * 1048576;
    assert.equal(only(findings(f), 'replication').severity, 'fail');
    m.lagBytes = 600_000;
    assert.equal(only(findings(f), 'replication').severity, 'warn');
  });

  test('HAProxy: a standby UP, the active in MAINT, the primary DOWN behind :5000, a config that does not pass', () => {
    const f = facts();
    const servers = (f.cluster.haproxy[0]!.servers as { value: { backend: string; server: string; admin: string; op: string }[] }).value;
    Object.assign(
      servers.find((s) => s.server === 'app1')!,
      { admin: 'maint', op: 'down' },
    );
    Object.assign(
      servers.find((s) => s.server === 'app2')!,
      { admin: 'ready', op: 'up' },
    );
    Object.assign(
      servers.find((s) => s.server === 'db1')!,
      { op: 'down' },
    );
    machine(f, 'observer').haproxyConfig = got({ valid: false, output: '[ALERT] unable to load certificate' });
    const list = findings(f).filter((x) => x.check === 'haproxy');
    assert.equal(list.length, 4);
    assert.ok(list.some((x) => /sends application traffic to app2, which is not the active machine \(app1\)/.test(x.what)));
    assert.ok(list.some((x) => /the active machine app1 is MAINT/.test(x.what) && x.fix === "vigil failover --to app1 -c '<generated>'"));
    assert.ok(list.some((x) => /the Patroni primary db1 is DOWN/.test(x.what)));
    assert.ok(list.some((x) => /does not pass `haproxy -c`:\n\[ALERT\]/.test(x.what)));
  });

  test('HAProxy: a paused health check of an app server is found, with the way to resume it', () => {
    const f = facts();
    const servers = (f.cluster.haproxy[0]!.servers as { value: { server: string; checks: string }[] }).value;
    servers.find((s) => s.server === 'app1')!.checks = 'none'; // the stats page says "no check"
    const list = findings(f).filter((x) => x.check === 'haproxy');
    assert.equal(list.length, 1);
    assert.match(list[0]!.what, /HAProxy's health check of app1 is paused on observer \(its status is "no check": `disable health app\/app1`\)/);
    assert.match(list[0]!.fix, /enable health app\/app1/);
  });

  test('certificates: expiring soon, a key that does not match, another CA, another name', async () => {
    const f = facts();
    const soon = await issueCertificate(pki.ca, { commonName: 'app1', ipAddresses: ['10.0.0.11'], usage: 'both', days: 10 });
    const id = (name: string) => (machine(f, name).pki as { value: { identities: { certPem: unknown; keyPublicPem: unknown }[] } }).value.identities[0]!;
    id('app1').certPem = got(soon.certPem);
    id('app1').keyPublicPem = got((await import('node:crypto')).createPublicKey(soon.keyPem).export({ type: 'spki', format: 'pem' }).toString());
    id('app2').keyPublicPem = id('db1').keyPublicPem;
    const other = await fixturePki(cluster);
    (machine(f, 'db2').pki as { value: { caPem: string } }).value.caPem = other.ca.certPem;
    id('observer').certPem = got(pki.certs.get('db1')!.certPem);
    const list = findings(f).filter((x) => x.check === 'certificates');
    assert.ok(list.some((x) => x.machine === 'app1' && x.severity === 'warn' && /expires in 9 day/.test(x.what)));
    assert.ok(list.some((x) => x.machine === 'app2' && /does not belong to the certificate/.test(x.what)));
    assert.ok(list.some((x) => x.machine === 'db2' && /not this cluster's CA/.test(x.what)));
    assert.ok(list.some((x) => x.machine === 'observer' && /issued to "db1", not to observer/.test(x.what)));
  });

  test('clocks: the machine that is off, not the others', () => {
    const f = facts();
    machine(f, 'db2').clock = got({ offsetMs: 2500, uncertaintyMs: 20 });
    const x = only(findings(f), 'clock');
    assert.equal(x.machine, 'db2');
    assert.equal(x.severity, 'fail');
    assert.match(x.what, /2\.50 s ahead of the other machines/);
    machine(f, 'db2').clock = got({ offsetMs: 500, uncertaintyMs: 20 });
    assert.equal(only(findings(f), 'clock').severity, 'warn');
  });

  test('disk: below 5 % free a failure, below 15 % a warning', () => {
    const f = facts();
    machine(f, 'db1').disk = got([{ path: '/var/lib/vigil', mount: '/', totalBytes: 100 * 2 ** 30, freeBytes: 3 * 2 ** 30 }]);
    machine(f, 'app1').disk = got([{ path: '/var/lib/vigil', mount: '/srv', totalBytes: 100 * 2 ** 30, freeBytes: 10 * 2 ** 30 }]);
    const list = findings(f).filter((x) => x.check === 'disk');
    assert.equal(list.find((x) => x.machine === 'db1')?.severity, 'fail');
    assert.equal(list.find((x) => x.machine === 'app1')?.severity, 'warn');
    assert.match(list[0]!.fix, /du -xh --max-depth=2/);
  });

  test("another application version on the standby, against the active machine's", () => {
    const f = facts();
    (machine(f, 'app2').appVersion as { value: { sha256: string | null }[] }).value[1]!.sha256 = 'c'.repeat(64);
    const x = only(findings(f), 'app-version');
    assert.equal(x.machine, 'app2');
    assert.match(x.what, /app on app2 is not the version on app1: \/opt\/vigil\/vigil\.mjs has SHA-256 cccccccccccc…, app1's bbbbbbbbbbbb…/);
  });

  test('files quarantined by file sync: where they are and what to do', () => {
    const f = facts();
    f.cluster.agents.find((a) => a.machine === 'app2')!.status!.sync = {
      role: 'receiving',
      dirs: ['/var/lib/vigil/app/attachments'],
      watch: null,
      peers: [],
      recentLagMs: null,
      quarantine: { path: '/var/lib/vigil/sync/quarantine', files: 3, bytes: 4096, sessions: ['2026-11-25T01-00-00Z'] },
    };
    const x = only(findings(f), 'file-sync');
    assert.equal(x.severity, 'warn');
    assert.match(x.what, /3 file\(s\) \(4\.0 KiB\) on app2 were moved aside into \/var\/lib\/vigil\/sync\/quarantine/);
    assert.match(x.fix, /ls -lR \/var\/lib\/vigil\/sync\/quarantine.*on app1/);
  });

  test("air gap: a standby behind the cluster's record, and an active machine whose files differ, each fail with what to do", () => {
    const c = clusterFixture('distributed', {
      application: { syncDirs: ['/var/lib/vigil/app/attachments', '/var/lib/vigil/app/patches'], patchDir: '/var/lib/vigil/app/patches' },
    });
    const f = structuredClone(healthyFacts(c, renderedOf(c, secrets), pki));
    const sha = 'a'.repeat(64);
    const st = f.cluster.state as { ok: true; value: { airgap?: unknown } };
    st.value.airgap = { sequence: 2, bundleId: 'b'.repeat(32), manifestSha256: sha, node: 'app1', importedAt: '2026-12-07T12:00:00Z', backup: null };
    f.cluster.agents.find((a) => a.machine === 'app1')!.status!.airgap = patchDirHeld(2);
    f.cluster.agents.find((a) => a.machine === 'app2')!.status!.airgap = patchDirHeld(1);
    let x = findings(f, c).filter((y) => y.check === 'airgap');
    assert.deepEqual(
      x.map((y) => `${y.machine} ${y.severity}`),
      ['app2 fail'],
    );
    assert.match(x[0]!.what, /app2 holds bundle sequence 1 in \/var\/lib\/vigil\/app\/patches; the cluster imported sequence 2 on app1/);
    assert.match(x[0]!.fix, /file sync carries it from the active machine/);
    f.cluster.agents.find((a) => a.machine === 'app2')!.status!.airgap = patchDirHeld(2);
    f.cluster.agents.find((a) => a.machine === 'app1')!.status!.airgap = patchDirHeld(2, {
      matches: false,
      different: ['kb.msu'],
      counts: { missing: 0, extra: 0, different: 1 },
    });
    x = findings(f, c).filter((y) => y.check === 'airgap');
    assert.deepEqual(
      x.map((y) => `${y.machine} ${y.severity}`),
      ['app1 fail'],
    );
    assert.match(x[0]!.what, /differs from the manifest of bundle sequence 2: 1 different \(kb\.msu\)/);
    assert.match(x[0]!.why, /patches nobody signed/);
    // Without application.patchDir there is nothing to check.
    assert.deepEqual(
      findings(facts()).filter((y) => y.check === 'airgap'),
      [],
    );
  });

  test('stale primary: Patroni 3.0.2 and a missing watchdog device warn; required without a device fails; an unused device warns', () => {
    const f = facts();
    machine(f, 'db1').dbSafety = { patroniVersion: got('patroni 3.0.2'), watchdogDevice: got(false) };
    machine(f, 'db2').dbSafety = { patroniVersion: got('patroni 4.0.7'), watchdogDevice: got(true) };
    let list = findings(f).filter((x) => x.check === 'stale-primary');
    assert.deepEqual(list.map((x) => `${x.machine} ${x.severity}`).sort(), ['db1 warn', 'db1 warn', 'db2 warn', 'db2 warn']);
    assert.ok(
      list.some(
        (x) =>
          x.machine === 'db2' &&
          /timers\.ttlSeconds: Patroni 4\.0\.7 silently raises ttl below 20 to 20\b.*\(Patroni 4\.0\.7 on db2\)/.test(x.what) &&
          /set ttlSeconds to 20 or more/.test(x.fix),
      ),
      'ttl 7 on Patroni 4: the cluster file says 7, Patroni runs 20',
    );
    assert.ok(
      list.some(
        (x) =>
          x.machine === 'db1' &&
          /Patroni 3\.0\.2 on db1 renews its leader key in etcd with a plain write/.test(x.what) &&
          /Patroni 3\.0\.3 or newer/.test(x.fix),
      ),
    );
    assert.ok(
      list.some(
        (x) =>
          x.machine === 'db1' &&
          /db1 has no watchdog device \(\/dev\/watchdog\)/.test(x.what) &&
          /modprobe softdog/.test(x.fix) &&
          /database\.watchdog: required/.test(x.fix),
      ),
    );
    assert.ok(list.some((x) => x.machine === 'db2' && /has a watchdog device .* but database\.watchdog is off/.test(x.what)));

    const required = clusterFixture('distributed', { database: { watchdog: 'required' } });
    list = findings(f, required).filter((x) => x.check === 'stale-primary');
    const fail = list.find((x) => x.severity === 'fail')!;
    assert.equal(fail.machine, 'db1');
    assert.match(fail.what, /database\.watchdog is required, but db1 has no watchdog device/);
    assert.match(fail.fix, /or set database\.watchdog: off/);
    assert.ok(!list.some((x) => x.machine === 'db2' && !/ttlSeconds/.test(x.what)), 'db2 runs 4.0.7 with its device in use');
    const ttl20 = clusterFixture('distributed', { timers: { ttlSeconds: 20 } });
    assert.ok(!findings(f, ttl20).some((x) => x.machine === 'db2' && /ttlSeconds/.test(x.what)), 'ttl 20 on Patroni 4: nothing to say about the timers');

    machine(f, 'db1').dbSafety = { patroniVersion: failed('`/usr/bin/patroni --version` exited with 1: boom'), watchdogDevice: got(true) };
    list = findings(f).filter((x) => x.check === 'stale-primary' && x.machine === 'db1');
    assert.ok(list.some((x) => /could not read Patroni's version on db1/.test(x.what)));
  });

  test('agents: one that does not answer, a standby that is not ready', () => {
    const f = facts();
    f.cluster.agents.find((a) => a.machine === 'db1')!.status = null;
    f.cluster.agents.find((a) => a.machine === 'app2')!.status!.ready = false;
    const list = findings(f).filter((x) => x.check === 'agent');
    assert.equal(list.length, 2);
    assert.ok(list.some((x) => x.machine === 'db1' && x.fix.startsWith('on db1: systemctl start vigil-agent.service ')));
    assert.ok(list.some((x) => x.machine === 'app2' && /not ready to take over/.test(x.what)));
  });

  test('no observer leading is a failure, maintenance a warning; warnings alone exit 0 unless strict', () => {
    const f = facts();
    const s = f.cluster.state as { value: { observerLeader: unknown; maintenance: unknown } };
    s.value.maintenance = { since: 'x', by: 'root', reason: 'upgrade' };
    let list = findings(f);
    assert.equal(only(list, 'cluster-state').severity, 'warn');
    assert.equal(exitStatus(list), 0);
    assert.equal(exitStatus(list, true), 1);
    s.value.observerLeader = null;
    list = findings(f);
    assert.ok(list.some((x) => x.severity === 'fail' && /no observer holds the leadership/.test(x.what)));
    assert.equal(exitStatus(list), 1);
  });
});

describe("without a shell on the machines (the dashboard's run on an observer)", () => {
  const shellLess = (f: Facts): Facts => ({
    ...f,
    machines: f.machines.map((m) => ({ name: m.name, address: m.address, roles: m.roles, reachable: failed(NO_SHELL), gathered: false as const })),
  });

  test("a healthy cluster: no finding; each machine's own checks are 'not run' with why, never 'ok' and never a failure; scope cluster", () => {
    const ctx = fixtureContext(cluster, secrets, shellLess(facts()));
    const report = buildReport(ctx, evaluate(ctx), { startedAt: new Date(), durationMs: 1 });
    assert.deepEqual(report.findings, []);
    assert.equal(report.scope, 'cluster');
    for (const m of report.machines) {
      const reach = m.checks.find((c) => c.check === 'reachable');
      assert.deepEqual(reach, { check: 'reachable', status: 'skipped', note: NO_SHELL }, m.name);
      for (const c of ['ports', 'ownership', 'certificates', 'clock', 'disk', 'passwords'])
        assert.ok(!m.checks.some((x) => x.check === c && x.status === 'ok'), `${m.name}: ${c} is not reported ok`);
    }
    assert.deepEqual(report.clusterChecks.map((c) => [c.check, c.status]).sort(), [
      ['cluster-state', 'ok'],
      ['etcd', 'ok'],
      ['patroni', 'ok'],
    ]);
    assert.equal(
      buildReport(fixtureContext(cluster, secrets, facts()), evaluate(fixtureContext(cluster, secrets, facts())), { startedAt: new Date(), durationMs: 1 })
        .scope,
      'machines',
    );
  });

  test('what it sees from there is still checked: an etcd member down fails', () => {
    const f = shellLess(facts());
    f.cluster.etcd[0]!.health = failed('connection refused');
    const list = findings(f);
    assert.ok(
      list.some((x) => x.check === 'etcd' && x.severity === 'fail'),
      JSON.stringify(list),
    );
    assert.ok(!list.some((x) => x.check === 'reachable'));
  });
});
