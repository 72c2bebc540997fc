import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseExposition, promtoolCheckMetrics, sampleValue } from '../testing/metrics.ts';
import type { SyncStatus } from '../model/ha.ts';
import { AgentMetrics, type AgentRole } from './metrics.ts';

const sync = (peers: SyncStatus['peers']): SyncStatus => ({
  role: 'pushing',
  dirs: ['/srv/files'],
  watch: null,
  peers,
  recentLagMs: null,
  quarantine: { path: '/var/lib/vigil/quarantine', files: 2, bytes: 10, sessions: [] },
});

test("the agent's registry reads its memory when scraped, counts its fences from its log, and promtool finds nothing wrong", async () => {
  let role: AgentRole = 'standby';
  let epoch: number | null = null;
  let replicationCalls = 0;
  const m = new AgentMetrics({
    role: () => role,
    epoch: () => epoch,
    leaseExpiryMs: () => (role === 'active' ? 1_800_000_000_000 : null),
    lastConfirmMs: () => 1_799_999_997_000,
    sync: () =>
      sync([
        {
          node: 'app2',
          backlog: 3,
          lagMs: 1500,
          reconciling: false,
          lastSyncAt: '2026-12-07T12:00:00.000Z',
          lastReconcileAt: null,
          error: { kind: 'disk-full', message: 'no space left', since: '2026-12-07T12:00:01.000Z' },
        },
      ]),
    replication: async () => {
      replicationCalls++;
      return { member: 'app2', lagBytes: 4096, lagSeconds: 1.5 };
    },
  });
  let s = parseExposition(await m.m.registry.metrics());
  assert.equal(sampleValue(s, 'vigil_agent_role', { state: 'standby' }), 1);
  assert.equal(sampleValue(s, 'vigil_agent_role', { state: 'active' }), 0);
  assert.equal(sampleValue(s, 'vigil_agent_epoch'), 0, 'no epoch before the agent read a record');
  assert.equal(sampleValue(s, 'vigil_agent_lease_expiry_timestamp_seconds'), 0);
  assert.equal(sampleValue(s, 'vigil_agent_self_fence_total', { reason: 'lease_ended' }), 0);
  assert.equal(replicationCalls, 1, 'one read of Patroni for both lag gauges');

  role = 'active';
  epoch = 7;
  m.fromLog('self-fence', { reason: 'no confirmation of the active record within the lease (3000 ms)' });
  m.fromLog('self-fence', { reason: 'could not confirm', error: 'etcd timeout' });
  m.fromLog('fenced', { epoch: 8 });
  m.fromLog('db-fenced', { reason: 'stale', killed: [] });
  m.fromLog('sync-failed', { peer: 'app2', kind: 'disk-full', message: 'x', code: 11 });
  m.fromLog('tick-failed', { error: 'x' });
  const text = await m.m.registry.metrics();
  s = parseExposition(text);
  assert.equal(sampleValue(s, 'vigil_agent_role', { state: 'active' }), 1);
  assert.equal(sampleValue(s, 'vigil_agent_epoch'), 7);
  assert.equal(sampleValue(s, 'vigil_agent_lease_expiry_timestamp_seconds'), 1_800_000_000);
  assert.equal(sampleValue(s, 'vigil_agent_last_confirm_timestamp_seconds'), 1_799_999_997);
  assert.equal(sampleValue(s, 'vigil_agent_self_fence_total', { reason: 'lease_ended' }), 1);
  assert.equal(sampleValue(s, 'vigil_agent_self_fence_total', { reason: 'confirm_failed' }), 1);
  assert.equal(sampleValue(s, 'vigil_agent_fenced_total'), 1);
  assert.equal(sampleValue(s, 'vigil_agent_db_fences_total'), 1);
  assert.equal(sampleValue(s, 'vigil_filesync_errors_total', { peer: 'app2', kind: 'disk-full' }), 1);
  assert.equal(sampleValue(s, 'vigil_filesync_lag_seconds', { peer: 'app2' }), 1.5);
  assert.equal(sampleValue(s, 'vigil_filesync_backlog_files', { peer: 'app2' }), 3);
  assert.equal(sampleValue(s, 'vigil_filesync_out_of_sync', { peer: 'app2' }), 1);
  assert.equal(sampleValue(s, 'vigil_filesync_peer_error', { peer: 'app2', kind: 'disk-full' }), 1);
  assert.equal(sampleValue(s, 'vigil_filesync_peer_error', { peer: 'app2', kind: 'refused' }), 0);
  assert.equal(sampleValue(s, 'vigil_filesync_last_success_timestamp_seconds', { peer: 'app2' }), Date.parse('2026-12-07T12:00:00.000Z') / 1000);
  assert.equal(sampleValue(s, 'vigil_filesync_quarantined_files'), 2);
  assert.equal(sampleValue(s, 'vigil_pg_replication_lag_bytes', { member: 'app2' }), 4096);
  assert.equal(sampleValue(s, 'vigil_pg_replication_replay_lag_seconds', { member: 'app2' }), 1.5);
  assert.deepEqual(await promtoolCheckMetrics(text), []);
});

test('a db-only machine has no role and no file sync; a primary (no lag) leaves the lag gauges empty; a failed Patroni read too', async () => {
  let answer: () => Promise<{ member: string; lagBytes: number | null; lagSeconds: number | null } | null> = async () => null;
  const m = new AgentMetrics({ epoch: () => 3, leaseExpiryMs: () => null, lastConfirmMs: () => null, replication: () => answer() });
  let s = parseExposition(await m.m.registry.metrics());
  assert.ok(!s.some((x) => x.name === 'vigil_agent_role' || x.name.startsWith('vigil_filesync_lag')));
  assert.ok(!s.some((x) => x.name.startsWith('vigil_pg_replication')));
  answer = () => Promise.reject(new Error('Patroni REST API unreachable'));
  await new Promise((r) => setTimeout(r, 1100)); // past the shared read's second
  s = parseExposition(await m.m.registry.metrics());
  assert.ok(!s.some((x) => x.name.startsWith('vigil_pg_replication')));
  assert.equal(sampleValue(s, 'vigil_agent_epoch'), 3);
});
