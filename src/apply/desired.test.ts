import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PATHS } from '../layout/paths.ts';
import { clusterFixture, secretsFixture } from '../testing/clusters.ts';
import { UNITS, VIGIL_INSTALL } from '../layout/units.ts';
import type { Artifact } from './artifact.ts';
import { desiredDirs, desiredFiles, sha256 } from './desired.ts';
import { packagesFor } from './packages.ts';

const artifact: Artifact = {
  version: '0.1.0+test',
  arch: 'x86_64',
  files: [
    { target: VIGIL_INSTALL.node, set: 'vigil', source: '/usr/bin/node', mode: 0o755, size: 1, sha256: 'a'.repeat(64) },
    { target: VIGIL_INSTALL.refapp, set: 'refapp', source: '/tmp/vigil-refapp.mjs', mode: 0o644, size: 1, sha256: 'b'.repeat(64) },
  ],
  bundles: [],
};

describe('what apply puts on each machine', () => {
  const cluster = clusterFixture('distributed');
  const secrets = secretsFixture();
  const input = { cluster, secrets, clusterText: 'cluster: {}\n', secretsText: JSON.stringify(secrets), artifact };
  const of = (name: string) =>
    desiredFiles(
      input,
      cluster.machines.find((m) => m.name === name)!,
    );

  it('gives the secrets file to observer machines only, and marks every file holding a secret', () => {
    const secretsPath = '/etc/vigil/vigil.secrets.yaml';
    assert.equal(of('observer').find((f) => f.path === secretsPath)?.mode, 0o600);
    for (const m of ['app1', 'db1']) assert.ok(!of(m).some((f) => f.path === secretsPath), m);
    for (const m of cluster.machines) {
      for (const f of desiredFiles(input, m)) {
        const text = typeof f.content === 'string' ? f.content : '';
        const holds = Object.values(secrets).some((v) => typeof v === 'string' && text.includes(v));
        assert.equal(f.secret, holds, `${m.name} ${f.path}`);
        if (holds) assert.equal(f.mode & 0o077, 0, `${f.path} holds a secret and is readable by others`);
      }
    }
  });

  it('ties each file to the service that reads it', () => {
    const patroni = of('db1').find((f) => f.path === PATHS.patroniConfig)!;
    assert.deepEqual(patroni.affects, [{ unit: UNITS.patroni, action: 'reload' }]);
    assert.equal(patroni.owner, 'postgres:postgres');
    const node = of('app1').find((f) => f.path === VIGIL_INSTALL.node)!;
    assert.deepEqual(node.affects, [{ unit: UNITS.agent, action: 'restart' }]);
    assert.deepEqual(of('app1').find((f) => f.path.endsWith(UNITS.refapp))!.affects, [{ unit: UNITS.refapp, action: 'try-restart' }]);
    assert.equal(of('observer').find((f) => f.path === PATHS.clusterFile)!.sha256, sha256('cluster: {}\n'));
    assert.ok(!of('observer').some((f) => f.path.endsWith(UNITS.agent)), 'no agent on the observer machine');
  });

  it("installs the reference application's bundle only on the app machines that run it", () => {
    for (const m of ['app1', 'app2'])
      assert.deepEqual(of(m).find((f) => f.path === VIGIL_INSTALL.refapp)?.affects, [{ unit: UNITS.refapp, action: 'try-restart' }], m);
    for (const m of ['db1', 'observer']) assert.ok(!of(m).some((f) => f.path === VIGIL_INSTALL.refapp), m);
    assert.ok(of('db1').some((f) => f.path === VIGIL_INSTALL.node));
    // An application of its own instead of the reference one: no bundle for it.
    const own = clusterFixture('distributed', {
      application: {
        services: [
          { name: 'nginx', unit: UNITS.nginx },
          { name: 'app', unit: 'servicedesk.service' },
        ],
      },
    });
    const app1 = own.machines.find((m) => m.name === 'app1')!;
    const files = desiredFiles({ ...input, cluster: own }, app1).map((f) => f.path);
    assert.ok(!files.includes(VIGIL_INSTALL.refapp), 'no bundle');
    // Nor its unit or its properties file: nothing on the machine would point at a missing bundle.
    assert.ok(!files.some((p) => p.endsWith(UNITS.refapp)), 'no unit');
    assert.ok(!files.includes(PATHS.refappConfig), 'no properties file');
    assert.ok(
      files.some((p) => p.endsWith(UNITS.nginx)),
      'nginx still',
    );
  });

  it("the reference application's analytics service, where listed: its unit (with --analytics), restarted only where it runs, with the application's bundle and properties", () => {
    const withAnalytics = clusterFixture('distributed', {
      application: {
        services: [
          { name: 'nginx', unit: UNITS.nginx },
          { name: 'app', unit: UNITS.refapp },
          { name: 'analytics', unit: UNITS.refappAnalytics, healthUrl: 'http://127.0.0.1:8082/health' },
        ],
      },
    });
    const app1 = withAnalytics.machines.find((m) => m.name === 'app1')!;
    const files = desiredFiles({ ...input, cluster: withAnalytics }, app1);
    const unit = files.find((f) => f.path.endsWith(`/${UNITS.refappAnalytics}`))!;
    assert.match(String(unit.content), /^ExecStart=\/opt\/vigil\/bin\/node \/opt\/vigil\/lib\/vigil-refapp\.mjs --config \S+ --analytics$/m);
    assert.deepEqual(unit.affects, [{ unit: UNITS.refappAnalytics, action: 'try-restart' }], 'the agent starts it: apply never does');
    const both = [
      { unit: UNITS.refapp, action: 'try-restart' },
      { unit: UNITS.refappAnalytics, action: 'try-restart' },
    ];
    assert.deepEqual(files.find((f) => f.path === VIGIL_INSTALL.refapp)!.affects, both);
    assert.deepEqual(files.find((f) => f.path === PATHS.refappConfig)!.affects, both);
    // Not listed (the default): no unit.
    assert.ok(!of('app1').some((f) => f.path.endsWith(`/${UNITS.refappAnalytics}`)));
    assert.ok(!of('db1').some((f) => f.path.endsWith(`/${UNITS.refappAnalytics}`)));
  });

  it('creates the PostgreSQL state directory for postgres and the synced directories on app machines', () => {
    const db = desiredDirs(
      cluster,
      cluster.machines.find((m) => m.name === 'db1')!,
    );
    assert.ok(db.some((d) => d.owner === 'postgres:postgres' && d.mode === 0o700));
    const app = desiredDirs(
      cluster,
      cluster.machines.find((m) => m.name === 'app1')!,
    );
    for (const d of cluster.application.syncDirs) assert.ok(app.some((x) => x.path === d));
  });

  it('names the packages of each role for apt and dnf', () => {
    const db = cluster.machines.find((m) => m.name === 'db1')!;
    assert.deepEqual(
      packagesFor(cluster, db, 'apt'),
      ['ca-certificates', 'nftables', 'openssl', 'patroni', `postgresql-${cluster.database.postgresVersion}`, 'python3-etcd'].sort(),
    );
    assert.ok(packagesFor(cluster, db, 'dnf').includes(`postgresql${cluster.database.postgresVersion}-server`));
    const observer = cluster.machines.find((m) => m.name === 'observer')!;
    assert.deepEqual(packagesFor(cluster, observer, 'apt'), ['ca-certificates', 'etcd-client', 'etcd-server', 'haproxy', 'openssl', 'socat']);
  });
});
