import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatStatus, type ClusterStatus } from '../ops/status.ts';
import { nowView } from './view.ts';

const agent = (node: string, o: { active: boolean; role: string; state: string; lag: number | null }) => ({
  node,
  active: o.active,
  epoch: 3,
  confirmedAgoMs: 100,
  appHealthy: true,
  ready: true,
  services: [],
  patroni: { role: o.role, state: o.state, lagBytes: o.lag },
  disk: [{ path: '/var/lib/vigil', freeBytes: 5 * 2 ** 30, totalBytes: 10 * 2 ** 30 }],
});

const base: ClusterStatus = {
  cluster: 'lab',
  active: { node: 'app1', epoch: 3, since: '2026-11-25T00:00:00Z', reason: 'failover' },
  maintenance: null,
  observerLeader: { id: 'observer-1', host: 'observer', since: '2026-11-25T00:00:00Z' },
  observerState: { state: 'healthy', reason: 'all checks pass', since: '2026-11-25T00:00:01Z', epoch: 3, by: 'observer-1' },
  machines: [
    { name: 'observer', address: '10.0.0.10', roles: ['etcd', 'proxy', 'observer'], hasAgent: false, agent: null },
    {
      name: 'app1',
      address: '10.0.0.11',
      roles: ['app', 'db'],
      hasAgent: true,
      agent: agent('app1', { active: true, role: 'leader', state: 'running', lag: null }),
    },
    {
      name: 'app2',
      address: '10.0.0.12',
      roles: ['app', 'db'],
      hasAgent: true,
      agent: agent('app2', { active: false, role: 'replica', state: 'streaming', lag: 0 }),
    },
  ],
  events: [],
  airgap: null,
};

const tile = (s: ClusterStatus, id: string) => nowView(s).tiles.find((t) => t.id === id)!;

test("the machine table has vigil status's columns and words, row for row", () => {
  const v = nowView(base);
  const text = formatStatus(base);
  for (const m of v.machines) {
    assert.match(text, new RegExp(`${m.machine} +${m.address.replaceAll('.', '\\.')} +${m.roles} +${m.app} +${m.database} +${m.diskFree.replace('.', '\\.')}`));
  }
  assert.deepEqual(
    v.machines.map((m) => [m.machine, m.app, m.database]),
    [
      ['observer', '-', '-'],
      ['app1', 'ACTIVE', 'leader running'],
      ['app2', 'standby', 'replica streaming'],
    ],
  );
});

test('tiles: the active machine and epoch, the database primary and its replicas lag, the observer, maintenance', () => {
  assert.deepEqual(
    nowView(base).tiles.map((t) => [t.id, t.value, t.level]),
    [
      ['active', 'app1 at epoch 3', 'ok'],
      ['database', 'app1', 'ok'],
      ['observer', 'observer: healthy', 'ok'],
      ['maintenance', 'off', 'ok'],
      ['filesync', 'not reported', 'ok'],
    ],
  );
  assert.match(tile(base, 'database').detail, /app2 streaming, lag 0 B/);
});

test('tiles turn bad or warn: no active agent, no primary, no observer leader, maintenance on, file sync failing', () => {
  const broken: ClusterStatus = {
    ...base,
    observerLeader: null,
    maintenance: { since: '2026-11-25T00:00:02Z', by: 'admin', reason: 'upgrade' },
    machines: [
      base.machines[0]!,
      { ...base.machines[1]!, agent: null },
      {
        ...base.machines[2]!,
        agent: {
          ...base.machines[2]!.agent!,
          sync: {
            role: 'pushing',
            dirs: ['/srv/files'],
            watch: null,
            peers: [
              {
                node: 'app1',
                backlog: 4,
                lagMs: 9000,
                reconciling: false,
                lastSyncAt: null,
                lastReconcileAt: null,
                error: { kind: 'unreachable', message: 'no route to host', since: '2026-11-25T00:00:03Z' },
              },
            ],
            recentLagMs: null,
            quarantine: { path: '/q', files: 0, bytes: 0, sessions: [] },
          },
        },
      },
    ],
  };
  assert.deepEqual(
    nowView(broken).tiles.map((t) => [t.id, t.value, t.level]),
    [
      ['active', 'app1 at epoch 3', 'bad'],
      ['database', 'none', 'bad'],
      ['observer', 'no leader', 'bad'],
      ['maintenance', 'ON', 'warn'],
      ['filesync', 'failing to app1', 'bad'],
    ],
  );
  assert.match(tile(broken, 'filesync').detail, /app1: FAILING since .*: no route to host/);
});
