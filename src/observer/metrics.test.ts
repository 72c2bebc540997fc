import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseExposition, promtoolCheckMetrics, sampleValue } from '../testing/metrics.ts';
import { initialMemory, type Decision, type Memory, type NodeObservation, type Observation, type Transition } from './decide.ts';
import { failoverDoneEvent, FailoverClock, ObserverMetrics, PROXY_WAIT_MS } from './metrics.ts';
import type { State } from '../model/ha.ts';

const node = (name: string, proxyStates: NodeObservation['proxyStates'] = ['ready']): NodeObservation => ({
  name,
  deepOk: true,
  agentReachable: true,
  agentActive: false,
  agentEpoch: null,
  appHealthy: true,
  dbPrimary: false,
  proxyStates,
});

const obs = (nowMs: number, active: { node: string; epoch: number }, nodes: NodeObservation[]): Observation => ({
  nowMs,
  isLeader: true,
  maintenance: false,
  active: { ...active, since: '', reason: '' },
  request: null,
  followDb: false,
  nodes,
});

const decision = (state: State, ...transitions: [State, State][]): Decision => ({
  memory: { ...initialMemory(), state },
  actions: [],
  transitions: transitions.map(([from, to]): Transition => ({ from, to, reason: 'test' })),
});

const failingSince = (ms: number): Memory => ({ ...initialMemory(), state: 'suspect', failingSinceMs: ms });

test('a failover is timed from the first failed check to the new node routed by every proxy, phase by phase', () => {
  const clock = new FailoverClock();
  assert.deepEqual(clock.moved('failover', 'app2', 8, failingSince(1000), 3200, 150), []);
  // The same tick's observation, read before the move: the old record, which ends nothing.
  assert.deepEqual(
    clock.tick(decision('failing-over', ['suspect', 'failing-over']), obs(3200, { node: 'app1', epoch: 7 }, [node('app1'), node('app2', ['maint'])])),
    [],
  );
  // Activated, not serving yet: nothing ends.
  assert.deepEqual(clock.tick(decision('failing-over'), obs(3500, { node: 'app2', epoch: 8 }, [node('app1', ['maint']), node('app2', ['maint'])])), []);
  // It serves; the proxy still has it in MAINT.
  assert.deepEqual(clock.tick(decision('healthy', ['failing-over', 'healthy']), obs(4000, { node: 'app2', epoch: 8 }, [node('app2', ['maint'])])), []);
  const [done, ...rest] = clock.tick(decision('healthy'), obs(4400, { node: 'app2', epoch: 8 }, [node('app2', ['ready', 'unknown'])]));
  assert.equal(rest.length, 0);
  assert.deepEqual(done, {
    kind: 'failover',
    result: 'success',
    node: 'app2',
    epoch: 8,
    totalMs: 3400,
    phasesMs: { detect: 2200, fence: 150, app_start: 800, proxy_switch: 400 },
  });
  assert.deepEqual(clock.tick(decision('healthy'), obs(5000, { node: 'app2', epoch: 8 }, [node('app2')])), [], 'counted once');
});

test('a switchover in pair is timed from its wait for the database; no detect phase', () => {
  const clock = new FailoverClock();
  const before: Memory = { ...initialMemory(), state: 'switching-db', switchover: { requestId: 'r1', from: 'app1', to: 'app2', sinceMs: 100 } };
  clock.moved('switchover', 'app2', 4, before, 2100, 30);
  clock.tick(decision('healthy', ['failing-over', 'healthy']), obs(2600, { node: 'app2', epoch: 4 }, [node('app2')]));
  // Served and routed in the same tick: the proxy switch took no time after it.
  const moved = new FailoverClock();
  moved.moved('switchover', 'app2', 4, before, 2100, 30);
  const [done] = moved.tick(decision('healthy', ['failing-over', 'healthy']), obs(2600, { node: 'app2', epoch: 4 }, [node('app2')]));
  assert.deepEqual(done!.phasesMs, { db_switchover: 2000, fence: 30, app_start: 500, proxy_switch: 0 });
  assert.equal(done!.totalMs, 2500);
});

test('a new node that does not serve in time fails; a record replaced meanwhile aborts; a lost lead forgets', () => {
  const failed = new FailoverClock();
  failed.moved('failover', 'app2', 8, failingSince(0), 2000, 0);
  const [f] = failed.tick(decision('suspect', ['failing-over', 'suspect']), obs(12_000, { node: 'app2', epoch: 8 }, [node('app2', ['down'])]));
  assert.equal(f!.result, 'failed');
  assert.equal(f!.phasesMs.app_start, 10_000);

  const aborted = new FailoverClock();
  aborted.moved('failover', 'app2', 8, failingSince(0), 2000, 0);
  const [a] = aborted.tick(decision('healthy'), obs(2500, { node: 'app1', epoch: 9 }, [node('app1')]));
  assert.equal(a!.result, 'aborted');
  // A second move before the first ended ends the first as aborted.
  const twice = new FailoverClock();
  twice.moved('failover', 'app2', 8, failingSince(0), 2000, 0);
  assert.equal(twice.moved('failover', 'app1', 9, failingSince(2500), 4000, 0)[0]!.result, 'aborted');

  const lost = new FailoverClock();
  lost.moved('failover', 'app2', 8, failingSince(0), 2000, 0);
  assert.deepEqual(lost.tick(decision('follower', ['failing-over', 'follower']), obs(2500, { node: 'app2', epoch: 8 }, [node('app2')])), []);
  assert.deepEqual(lost.tick(decision('healthy', ['failing-over', 'healthy']), obs(3000, { node: 'app2', epoch: 8 }, [node('app2')])), []);
});

test('a node that serves but no proxy routes to it counts as done after PROXY_WAIT_MS, without a proxy_switch phase', () => {
  const clock = new FailoverClock();
  clock.moved('failover', 'app2', 8, failingSince(0), 2000, 0);
  assert.deepEqual(clock.tick(decision('healthy', ['failing-over', 'healthy']), obs(3000, { node: 'app2', epoch: 8 }, [node('app2', ['down'])])), []);
  const [done] = clock.tick(decision('healthy'), obs(3000 + PROXY_WAIT_MS, { node: 'app2', epoch: 8 }, [node('app2', ['down'])]));
  assert.equal(done!.result, 'success');
  assert.equal(done!.phasesMs.proxy_switch, undefined);
});

test("the observer's registry: counters from zero, the failover counted and timed, state sets, and promtool finds nothing wrong", async () => {
  const m = new ObserverMetrics();
  const first = parseExposition(await m.m.registry.metrics());
  assert.equal(
    sampleValue(first, 'vigil_failovers_total', { kind: 'failover', result: 'success' }),
    0,
    'present before the first failover, so increase() sees it',
  );
  assert.equal(sampleValue(first, 'vigil_build_info', { component: 'observer' }), 1);

  const o = obs(4000, { node: 'app2', epoch: 8 }, [node('app1', ['maint']), node('app2')]);
  o.nodes[0]!.agentReachable = false;
  // As the daemon does: the clock times the failover, the registry records its end.
  const clock = new FailoverClock();
  m.moved('failover');
  clock.moved('failover', 'app2', 8, failingSince(1000), 3000, 100).forEach((f) => m.record(f));
  const loop = (ob: Observation, d: Decision) => {
    m.loopDone(ob, d, 0.02, true);
    clock.tick(d, ob).forEach((f) => m.record(f));
  };
  loop(obs(3000, { node: 'app1', epoch: 7 }, [node('app1'), node('app2', ['maint'])]), decision('failing-over', ['suspect', 'failing-over']));
  loop(o, decision('healthy', ['failing-over', 'healthy']));
  const text = await m.m.registry.metrics();
  const s = parseExposition(text);
  assert.equal(sampleValue(s, 'vigil_failovers_total', { kind: 'failover', result: 'success' }), 1);
  assert.equal(sampleValue(s, 'vigil_failover_duration_seconds_count', { kind: 'failover' }), 1);
  assert.equal(sampleValue(s, 'vigil_failover_duration_seconds_sum', { kind: 'failover' }), 3);
  assert.equal(sampleValue(s, 'vigil_failover_phase_duration_seconds_sum', { kind: 'failover', phase: 'detect' }), 2);
  assert.equal(sampleValue(s, 'vigil_cluster_epoch'), 8);
  assert.equal(sampleValue(s, 'vigil_observer_is_leader'), 1);
  assert.equal(sampleValue(s, 'vigil_observer_state', { state: 'healthy' }), 1);
  assert.equal(sampleValue(s, 'vigil_observer_state', { state: 'follower' }), 0);
  assert.equal(sampleValue(s, 'vigil_node_role', { node: 'app2', state: 'active' }), 1);
  assert.equal(sampleValue(s, 'vigil_node_role', { node: 'app1', state: 'unreachable' }), 1);
  assert.equal(sampleValue(s, 'vigil_node_role', { node: 'app1', state: 'standby' }), 0);
  assert.equal(sampleValue(s, 'vigil_observer_loop_duration_seconds_count'), 2);
  assert.deepEqual(await promtoolCheckMetrics(text), []);
});

test('failover-done: one sentence with the result and each phase, the figures in details', () => {
  const ok = failoverDoneEvent({
    kind: 'failover',
    result: 'success',
    node: 'app2',
    epoch: 8,
    totalMs: 4210.4,
    phasesMs: { detect: 2000, fence: 150.6, app_start: 1500, proxy_switch: 560 },
  });
  assert.equal(ok.type, 'failover-done');
  assert.equal(ok.message, 'failover to app2 at epoch 8 done in 4.2 s (detect 2.0 s, fence 0.2 s, app start 1.5 s, proxy switch 0.6 s)');
  assert.deepEqual(ok.details, {
    kind: 'failover',
    result: 'success',
    totalMs: 4210,
    phasesMs: { detect: 2000, fence: 151, app_start: 1500, proxy_switch: 560 },
  });
  const failed = failoverDoneEvent({
    kind: 'switchover',
    result: 'failed',
    node: 'app1',
    epoch: 3,
    totalMs: 61000,
    phasesMs: { db_switchover: 1000, app_start: 60000 },
  });
  assert.equal(failed.message, 'switchover to app1 at epoch 3 failed after 61.0 s: app1 did not serve in time (database switchover 1.0 s, app start 60.0 s)');
  const aborted = failoverDoneEvent({ kind: 'failover', result: 'aborted', node: 'app2', epoch: 8, totalMs: 900, phasesMs: {} });
  assert.equal(aborted.message, 'failover to app2 at epoch 8 abandoned after 0.9 s: a newer active record replaced it');
});
