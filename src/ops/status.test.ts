import { test } from 'node:test';
import assert from 'node:assert/strict';
import { patchDirHeld } from '../testing/airgap.ts';
import { airgapStatus } from './airgap-status.ts';
import { formatStatus, type ClusterStatus } from './status.ts';

const base: ClusterStatus = {
  cluster: 'lab',
  active: { node: 'app1', epoch: 3, since: '2026-11-25T00:00:00Z', reason: 'failover' },
  maintenance: null,
  observerLeader: { id: 'observer-1', host: 'observer', since: '2026-11-25T00:00:00Z' },
  observerState: { state: 'failing-over', reason: 'failover: app2 has failed its checks for 2.2 s', since: '2026-11-25T00:00:01Z', epoch: 3, by: 'observer-1' },
  machines: [
    { name: 'observer', address: '10.0.0.10', roles: ['etcd', 'proxy', 'observer'], hasAgent: false, agent: null },
    {
      name: 'app1',
      address: '10.0.0.11',
      roles: ['app', 'db'],
      hasAgent: true,
      agent: {
        node: 'app1',
        active: true,
        epoch: 3,
        confirmedAgoMs: 100,
        appHealthy: true,
        ready: true,
        services: [],
        patroni: { role: 'leader', state: 'running', lagBytes: null },
        disk: [{ path: '/var/lib/vigil', freeBytes: 5 * 2 ** 30, totalBytes: 10 * 2 ** 30 }],
      },
    },
    { name: 'app2', address: '10.0.0.12', roles: ['app', 'db'], hasAgent: true, agent: null },
  ],
  events: [{ seq: 7, at: '2026-11-25T00:00:01Z', type: 'failover', message: 'failover: app2 -> app1', node: 'app1', epoch: 3 }],
  airgap: null,
};

test("status names the active node, the leader and each machine's state", () => {
  const out = formatStatus(base);
  assert.match(out, /active app node: app1 at epoch 3/);
  assert.match(out, /maintenance: +off/);
  assert.match(out, /observer state: +failing-over since 2026-11-25T00:00:01Z \(epoch 3\): failover: app2 has failed/);
  assert.match(out, /app1 .* ACTIVE .* leader running .* 5\.0 GiB/);
  assert.match(out, /app2 .* UNREACHABLE .* unknown/);
  assert.match(out, /failover +failover: app2 -> app1/);
});

test("status shows each app machine's services: where they run and whether they run", () => {
  const app1 = base.machines[1]!;
  const agent = {
    ...app1.agent!,
    services: [
      { name: 'nginx', running: true, runsOn: 'active' as const },
      { name: 'app', running: true, runsOn: 'every' as const },
    ],
  };
  const out = formatStatus({ ...base, machines: [base.machines[0]!, { ...app1, agent }, base.machines[2]!] });
  assert.match(out, /application services \(runs on: active machine only, or every app machine\)\n {2}app1 +nginx \(active\) running, app \(every\) running/);
});

test('status tells a warm service still starting from a ready one', () => {
  const app2 = base.machines[2]!;
  const agent = {
    ...base.machines[1]!.agent!,
    node: 'app2',
    active: false,
    services: [
      { name: 'nginx', running: false, runsOn: 'active' as const },
      { name: 'app', running: true, runsOn: 'every' as const, ready: false },
    ],
  };
  const out = formatStatus({ ...base, machines: [base.machines[0]!, base.machines[1]!, { ...app2, agent }] });
  assert.match(out, /app2 +nginx \(active\) stopped, app \(every\) running, starting/);
  agent.services[1]!.ready = true;
  assert.match(formatStatus({ ...base, machines: [base.machines[0]!, base.machines[1]!, { ...app2, agent }] }), /app \(every\) running, ready/);
});

test('status says loudly when nobody acts or maintenance is on', () => {
  const out = formatStatus({ ...base, observerLeader: null, maintenance: { since: 'x', by: 'root@vm', reason: 'upgrade' } });
  assert.match(out, /observer leader: NONE/);
  assert.doesNotMatch(out, /observer state/);
  assert.match(out, /maintenance: +ON since x by root@vm: upgrade/);
});

test('status shows file sync: backlog, lag and errors per standby, and any quarantine', () => {
  const app1 = base.machines[1]!;
  const sync = {
    role: 'pushing' as const,
    dirs: ['/var/lib/vigil/app/attachments'],
    watch: { dirs: 3, degraded: null },
    peers: [
      {
        node: 'app2',
        backlog: 12,
        lagMs: 4100,
        reconciling: false,
        lastSyncAt: null,
        lastReconcileAt: null,
        error: { kind: 'disk-full' as const, message: 'app2 has no space left for /var/lib/vigil/app/attachments', since: 'T' },
      },
    ],
    recentLagMs: { p50: 210, p99: 480, samples: 100 },
    quarantine: { path: '/var/lib/vigil/sync/quarantine', files: 0, bytes: 0, sessions: [] },
  };
  const out = formatStatus({
    ...base,
    machines: [
      base.machines[0]!,
      { ...app1, agent: { ...app1.agent!, sync } },
      {
        name: 'app2',
        address: '10.0.0.12',
        roles: ['app', 'db'],
        hasAgent: true,
        agent: {
          ...app1.agent!,
          node: 'app2',
          active: false,
          sync: { ...sync, role: 'receiving', peers: [], quarantine: { ...sync.quarantine, files: 3, bytes: 10, sessions: ['s'] } },
        },
      },
    ],
  });
  assert.match(out, /app1 pushes \/var\/lib\/vigil\/app\/attachments, recent lag p50 210 ms, p99 480 ms/);
  assert.match(out, /-> app2 +backlog 12, oldest change 4100 ms, last push never, .*FAILING since T: app2 has no space left/);
  assert.match(out, /app2 QUARANTINE: 3 file\(s\) that never reached the active machine kept in \/var\/lib\/vigil\/sync\/quarantine/);
});

test("status shows each db machine's stale-primary fence: Patroni's version, the Patroni gate, the fences", () => {
  const s = structuredClone(base);
  s.machines[1]!.agent!.dbFence = {
    patroniVersion: '3.0.2',
    patroniGate: true,
    fences: 1,
    lastReason: 'PostgreSQL runs as primary here while app2 holds the leader key',
  };
  const out = formatStatus(s);
  assert.match(
    out,
    /stale-primary fence\n {2}app1 +Patroni 3\.0\.2, Patroni gate on \(this Patroni can overwrite a newer leader's key after a pause\); fenced 1 time\(s\), last: PostgreSQL runs as primary here while app2 holds the leader key/,
  );
  assert.doesNotMatch(formatStatus(base), /stale-primary fence/);
});

test('status says when an activated machine waits for the old one to stop (the handover)', () => {
  const app1 = base.machines[1]!;
  const waiting = { ...app1.agent!, active: false, waitingFor: ['app2'] };
  const out = formatStatus({ ...base, machines: [base.machines[0]!, { ...app1, agent: waiting }, base.machines[2]!] });
  assert.match(out, /app1 .* STARTING, waits for app2 to stop/);
});

test("status shows the air gap: the cluster's last import and what each app machine holds", () => {
  const sha = 'a'.repeat(64);
  const last = {
    sequence: 2,
    bundleId: 'b'.repeat(32),
    manifestSha256: sha,
    node: 'app1',
    importedAt: '2026-12-07T12:00:00Z',
    backup: { machine: 'db1', path: '/var/backups/vigil/airgap/x.dump' },
  };
  const agents = new Map([
    ['app1', { airgap: patchDirHeld(2) } as never],
    ['app2', { airgap: patchDirHeld(1, { matches: false, different: ['kb.msu'], counts: { missing: 0, extra: 0, different: 1 } }) } as never],
  ]);
  const cluster = {
    application: { patchDir: '/var/lib/vigil/app/patches' },
    machines: [
      { name: 'app1', roles: ['app'] },
      { name: 'app2', roles: ['app'] },
    ],
  } as never;
  const airgap = airgapStatus(cluster, last, agents);
  assert.equal(airgap.converged, false);
  assert.deepEqual(
    airgap.machines.map((m) => [m.name, m.current]),
    [
      ['app1', true],
      ['app2', false],
    ],
  );
  const out = formatStatus({ ...base, airgap });
  assert.match(
    out,
    /air gap\n {2}patch directory \/var\/lib\/vigil\/app\/patches; the cluster's last import: sequence 2 .* backup db1:\/var\/backups\/vigil\/airgap\/x\.dump/,
  );
  assert.match(out, / {4}app1 +sequence 2, 2 file\(s\), matches its manifest\n/);
  assert.match(out, / {4}app2 +sequence 1, DIFFERS from its manifest: 1 different \(kb\.msu\) BEHIND: the cluster is at 2/);
  assert.match(out, /NOT every app machine holds the last bundle/);
});
