import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { describe, it } from 'node:test';
import { Command } from 'commander';
import { registerDaemons } from '../cli/agent.ts';
import { PATHS } from '../layout/paths.ts';
import { clusterFixture, runTool, secretsFixture, tempDir } from '../testing/clusters.ts';
import { renderAll } from './index.ts';
import { COMMANDS, daemonCommand, nginxUnit, refappUnit, renderUnits } from './systemd.ts';
import { UNITS, VIGIL_INSTALL } from '../layout/units.ts';

const unitsOf = (topology: 'pair' | 'distributed') =>
  renderAll(clusterFixture(topology), secretsFixture()).filter((f) => f.path.startsWith('/etc/systemd/system/'));
/** The content of one machine's unit. */
const unitOf = (topology: 'pair' | 'distributed', machine: string, name: string) => {
  const f = unitsOf(topology).find((x) => x.machine === machine && basename(x.path) === name);
  assert.ok(f, `${topology}: ${machine} has no ${name}`);
  return f.content;
};
/** The machines that get a unit, in cluster order. */
const machinesWith = (topology: 'pair' | 'distributed', name: string) =>
  unitsOf(topology)
    .filter((f) => basename(f.path) === name)
    .map((f) => f.machine);

describe('systemd units', () => {
  it('gives each machine the units of its roles', () => {
    const c = clusterFixture('pair');
    const names = (m: string) =>
      renderUnits(
        c,
        c.machines.find((x) => x.name === m)!,
      ).map((f) => basename(f.path));
    assert.deepEqual(names('observer'), ['vigil-etcd.service', 'vigil-haproxy.service', 'vigil-observer.service']);
    for (const app of ['app1', 'app2'])
      assert.deepEqual(names(app), [
        'vigil-patroni.service',
        'vigil-nginx.service',
        'vigil-refapp.service',
        'vigil-agent.service',
        'vigil-deadman.service',
        'deadman.sh',
      ]);
    const d = clusterFixture('distributed');
    const dNames = (m: string) =>
      renderUnits(
        d,
        d.machines.find((x) => x.name === m)!,
      ).map((f) => basename(f.path));
    assert.deepEqual(dNames('observer'), ['vigil-etcd.service', 'vigil-haproxy.service', 'vigil-observer.service']);
    assert.deepEqual(dNames('app1'), ['vigil-nginx.service', 'vigil-refapp.service', 'vigil-agent.service', 'vigil-deadman.service', 'deadman.sh']);
    assert.deepEqual(dNames('db1'), ['vigil-patroni.service', 'vigil-agent.service']);
  });

  it('runs an agent on exactly the app and db machines, an observer on exactly the observer machines', () => {
    assert.deepEqual(machinesWith('pair', UNITS.agent), ['app1', 'app2']);
    assert.deepEqual(machinesWith('pair', UNITS.observer), ['observer']);
    assert.deepEqual(machinesWith('distributed', UNITS.agent), ['app1', 'app2', 'db1', 'db2']);
    assert.deepEqual(machinesWith('distributed', UNITS.observer), ['observer']);
  });

  it("runs each daemon from the installed bundle with the machine's name and the cluster file", () => {
    assert.deepEqual(VIGIL_INSTALL, {
      dir: '/opt/vigil',
      node: '/opt/vigil/bin/node',
      entry: '/opt/vigil/lib/vigil.mjs',
      receiver: '/opt/vigil/lib/vigil-sync-receive.mjs',
      refapp: '/opt/vigil/lib/vigil-refapp.mjs',
    });
    assert.equal(PATHS.clusterFile, '/etc/vigil/vigil.yaml');
    for (const topology of ['pair', 'distributed'] as const) {
      for (const m of machinesWith(topology, UNITS.agent)) {
        const execs = unitOf(topology, m, UNITS.agent)
          .split('\n')
          .filter((l) => l.startsWith('ExecStart'));
        assert.deepEqual(execs, [
          `ExecStart=/opt/vigil/bin/node --max-semi-space-size=1 /opt/vigil/lib/vigil.mjs agent --node ${m} --cluster /etc/vigil/vigil.yaml`,
        ]);
      }
      const execs = unitOf(topology, 'observer', UNITS.observer)
        .split('\n')
        .filter((l) => l.startsWith('ExecStart'));
      assert.deepEqual(execs, [
        'ExecStart=/opt/vigil/bin/node --max-semi-space-size=1 /opt/vigil/lib/vigil.mjs observer --node observer --cluster /etc/vigil/vigil.yaml',
      ]);
    }
    assert.deepEqual(daemonCommand('agent', 'db2'), [
      '/opt/vigil/bin/node',
      '--max-semi-space-size=1',
      '/opt/vigil/lib/vigil.mjs',
      'agent',
      '--node',
      'db2',
      '--cluster',
      '/etc/vigil/vigil.yaml',
    ]);
  });

  it('runs the reference application from its own bundle, not the CLI', () => {
    const execs = unitOf('distributed', 'app1', UNITS.refapp)
      .split('\n')
      .filter((l) => l.startsWith('ExecStart'));
    assert.deepEqual(execs, ['ExecStart=/opt/vigil/bin/node /opt/vigil/lib/vigil-refapp.mjs --config /etc/vigil/refapp/application.properties']);
  });

  it('passes only options the CLI knows', () => {
    const program = new Command();
    registerDaemons(program);
    for (const daemon of ['agent', 'observer'] as const) {
      const cmd = program.commands.find((c) => c.name() === daemon);
      assert.ok(cmd, daemon);
      const known = cmd.options.map((o) => o.long);
      const argv = daemonCommand(daemon, 'app1');
      const passed = argv.slice(argv.indexOf(daemon) + 1).filter((a) => a.startsWith('--'));
      assert.deepEqual(passed, ['--node', '--cluster']);
      for (const opt of passed) assert.ok(known.includes(opt), `${daemon} ${opt}`);
    }
  });

  it('starts the agent after Patroni on db machines only, without depending on it', () => {
    for (const [topology, machine, db] of [
      ['pair', 'app1', true],
      ['distributed', 'app1', false],
      ['distributed', 'db1', true],
    ] as const) {
      const agent = unitOf(topology, machine, UNITS.agent);
      assert.equal(/^After=vigil-patroni\.service$/m.test(agent), db, `${topology} ${machine}`);
      assert.doesNotMatch(agent, /^(Requires|Requisite|BindsTo|PartOf)=/m);
      assert.match(agent, /^Wants=network-online\.target$/m);
      assert.match(agent, /^After=network-online\.target$/m);
    }
  });

  it('keeps the application running when the agent stops, and restarts both daemons always', () => {
    const agent = unitOf('pair', 'app1', UNITS.agent);
    const observer = unitOf('pair', 'observer', UNITS.observer);
    assert.match(agent, /^KillMode=process$/m);
    assert.doesNotMatch(observer, /^KillMode=/m);
    for (const u of [agent, observer]) {
      for (const line of [
        'Type=exec',
        'Restart=always',
        'RestartSec=1s',
        'StartLimitIntervalSec=0',
        'NoNewPrivileges=yes',
        'StandardOutput=journal',
        'TimeoutStopSec=10',
        'Environment=NODE_ENV=production',
        'Environment=MALLOC_ARENA_MAX=2',
        'WantedBy=multi-user.target',
      ]) {
        assert.ok(u.split('\n').includes(line), `${line} in\n${u}`);
      }
      // root for now: no User= (the agent runs systemctl).
      assert.doesNotMatch(u, /^User=/m);
    }
    assert.match(observer, /^LogsDirectory=vigil$/m);
  });

  it('runs Patroni as postgres, stopping only Patroni itself', () => {
    const patroni = unitsOf('distributed').find((f) => f.path.endsWith('vigil-patroni.service'))!.content;
    assert.match(patroni, /^User=postgres$/m);
    assert.match(patroni, /^KillMode=process$/m);
    // PostgreSQL outlives a dead Patroni: its socket directory must outlive it too.
    assert.match(patroni, /^RuntimeDirectoryPreserve=yes$/m);
    assert.match(patroni, /^TimeoutSec=60$/m);
    assert.match(patroni, /^ExecStart=\/usr\/bin\/patroni \/etc\/vigil\/patroni\.yml$/m);
  });

  it('runs HAProxy in master-worker mode with sd_notify and a checked reload', () => {
    const haproxy = unitsOf('distributed').find((f) => f.path.endsWith('vigil-haproxy.service'))!.content;
    assert.match(haproxy, /^Type=notify$/m);
    assert.match(haproxy, /^ExecStart=\/usr\/sbin\/haproxy -Ws -f \/etc\/vigil\/haproxy\.cfg$/m);
    assert.match(haproxy, /^ExecReload=\/usr\/sbin\/haproxy -c -q -f \/etc\/vigil\/haproxy\.cfg$/m);
  });

  it('never starts nginx at boot (the agent decides) and quotes its -g argument', () => {
    const nginx = unitsOf('distributed').find((f) => f.path.endsWith('vigil-nginx.service'))!.content;
    assert.doesNotMatch(nginx, /\[Install\]/);
    assert.match(nginx, /-g "daemon off;"$/m);
    assert.deepEqual(COMMANDS.nginx.slice(-2), ['-g', 'daemon off;']);
  });

  it('holds no secret', () => {
    const all = [...unitsOf('pair'), ...unitsOf('distributed')];
    assert.equal(all.filter((f) => f.path.endsWith(UNITS.agent) || f.path.endsWith(UNITS.observer)).length, 2 + 1 + 4 + 1);
    for (const f of all) {
      for (const s of Object.values(secretsFixture()).filter((v) => typeof v === 'string')) assert.ok(!f.content.includes(s), f.path);
    }
  });

  it(
    'with database.watchdog: required, gives Patroni (postgres) the watchdog device before it starts, as root, and passes verify',
    { timeout: 60_000 },
    async () => {
      const plain = unitOf('distributed', 'db1', UNITS.patroni);
      assert.doesNotMatch(plain, /watchdog/);
      const cluster = clusterFixture('distributed', { database: { watchdog: 'required' } });
      const unit = renderUnits(
        cluster,
        cluster.machines.find((m) => m.name === 'db1')!,
      ).find((f) => f.path.endsWith(UNITS.patroni))!.content;
      assert.match(unit, /^ExecStartPre=-\+\/bin\/chown postgres:postgres \/dev\/watchdog$/m);
      const dir = await tempDir('vigil-units-');
      try {
        const file = join(dir, UNITS.patroni);
        await writeFile(file, unit);
        const r = await runTool('systemd-analyze', ['verify', '--man=no', file], { cwd: dir });
        assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
        assert.deepEqual(
          (r.stdout + r.stderr).split('\n').filter((l) => l.includes('vigil-')),
          [],
        );
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  it('passes systemd-analyze verify', { timeout: 120_000 }, async () => {
    const dir = await tempDir('vigil-units-');
    try {
      // verify checks that each ExecStart binary exists. Keep the real node path when this
      // machine has it; otherwise point the daemons at the node running this test.
      const node = existsSync(VIGIL_INSTALL.node) ? VIGIL_INSTALL.node : process.execPath;
      // Each machine's units together (the agent unit differs by machine), in both presets;
      // `distributed` with a floating entry address, so keepalived's unit is verified too.
      const seen = new Set<string>();
      const withVip = () =>
        renderAll(clusterFixture('distributed', { proxy: { virtualAddress: '10.0.0.100' } }), { ...secretsFixture(), vrrpPassword: 'vrrp-pass-1' }).filter(
          (f) => f.path.startsWith('/etc/systemd/system/'),
        );
      // `pair` with the reference application's analytics service, so its unit is verified too.
      const withAnalytics = () =>
        renderAll(
          clusterFixture('pair', {
            application: {
              services: [
                { name: 'nginx', unit: UNITS.nginx },
                { name: 'app', unit: UNITS.refapp },
                { name: 'analytics', unit: UNITS.refappAnalytics },
              ],
            },
          }),
          secretsFixture(),
        ).filter((f) => f.path.startsWith('/etc/systemd/system/'));
      for (const topology of ['pair', 'distributed'] as const) {
        const byMachine = new Map<string, Map<string, string>>();
        for (const f of topology === 'pair' ? withAnalytics() : withVip()) {
          const units = byMachine.get(f.machine) ?? new Map<string, string>();
          units.set(basename(f.path), f.content.replaceAll(`ExecStart=${VIGIL_INSTALL.node} `, `ExecStart=${node} `));
          byMachine.set(f.machine, units);
        }
        for (const [machine, units] of byMachine) {
          const sub = join(dir, `${topology}-${machine}`);
          await mkdir(sub);
          const files: string[] = [];
          for (const [name, content] of units) {
            const file = join(sub, name);
            await writeFile(file, content);
            files.push(file);
            seen.add(name);
          }
          const r = await runTool('systemd-analyze', ['verify', '--man=no', ...files], { cwd: sub });
          assert.equal(r.code, 0, `${topology} ${machine}: ${r.stdout}${r.stderr}`);
          // verify only warns about unknown settings and bad values; any output about our units is a defect.
          const ours = (r.stdout + r.stderr).split('\n').filter((l) => l.includes('vigil-'));
          assert.deepEqual(ours, [], `${topology} ${machine}`);
        }
      }
      assert.deepEqual([...seen].sort(), Object.values(UNITS).sort());
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the application services the agent manages', () => {
  it('are neither started at boot nor restarted in place (a crash fails over instead)', () => {
    for (const text of [nginxUnit(), refappUnit()]) {
      assert.ok(text.includes('Restart=no'));
      assert.ok(!text.includes('[Install]'));
    }
    assert.match(refappUnit(), /ExecStart=\/opt\/vigil\/bin\/node \/opt\/vigil\/lib\/vigil-refapp\.mjs --config \/etc\/vigil\/refapp\/application\.properties/);
  });

  it("the reference application's start keeps its attachments directory at 0750, the mode apply and file sync give it (systemd's default would put 0755 back)", () => {
    assert.match(refappUnit(), /^StateDirectory=vigil\/app\/attachments\nStateDirectoryMode=0750$/m);
  });
});
