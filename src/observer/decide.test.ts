import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { ActiveRecord, OperatorRequest } from '../ha/model.ts';
import {
  DEFAULT_DECIDE_CONFIG,
  decide,
  initialMemory,
  type Action,
  type DecideConfig,
  type Decision,
  type Memory,
  type NodeObservation,
  type Observation,
  type State,
} from './decide.ts';

// ---- a small world: app1 serves at epoch 4, app2 is a healthy standby in MAINT ----------------

/** A healthy standby, fenced (MAINT), its agent idle at epoch 4. */
const standby = (name: string, over: Partial<NodeObservation> = {}): NodeObservation => ({
  name,
  deepOk: true,
  agentReachable: true,
  agentActive: false,
  agentEpoch: 4,
  appHealthy: true,
  dbPrimary: false,
  proxyState: 'maint',
  ...over,
});
/** Active and serving at `epoch`. */
const serving = (name: string, epoch: number, over: Partial<NodeObservation> = {}): NodeObservation =>
  standby(name, { agentActive: true, agentEpoch: epoch, proxyState: 'ready', ...over });
/** The machine is gone: nothing answers, HAProxy's check fails. */
const dead = (name: string, over: Partial<NodeObservation> = {}): NodeObservation =>
  standby(name, { deepOk: false, agentReachable: false, appHealthy: false, agentEpoch: null, proxyState: 'down', ...over });
/** Reachable, but the app fails its checks. */
const sick = (name: string, over: Partial<NodeObservation> = {}): NodeObservation =>
  standby(name, { deepOk: false, appHealthy: false, ...over });

const rec = (node: string, epoch: number, reason = 'bootstrap'): ActiveRecord => ({ node, epoch, since: '2025-01-01T00:00:00Z', reason });

const obs = (nowMs: number, over: Partial<Observation> = {}): Observation => ({
  nowMs,
  isLeader: true,
  maintenance: false,
  active: rec('app1', 4),
  request: null,
  followDb: false,
  nodes: [serving('app1', 4), standby('app2')],
  ...over,
});

const switchover = (to?: string): OperatorRequest => ({ kind: 'switchover', id: 'r1', at: '2025-01-01T00:00:00Z', ...(to ? { to } : {}) });
const failover = (to: string): OperatorRequest => ({ kind: 'failover', to, id: 'r2', at: '2025-01-01T00:00:00Z' });

const cfgOf = (over: Partial<DecideConfig> = {}): DecideConfig => ({ ...DEFAULT_DECIDE_CONFIG, ...over });

function run(steps: Observation[], memory: Memory = initialMemory(), cfg = cfgOf()): Decision[] {
  const out: Decision[] = [];
  for (const o of steps) {
    const d = decide(memory, o, cfg);
    memory = d.memory;
    out.push(d);
  }
  return out;
}
const last = (ds: Decision[]): Decision => {
  const d = ds.at(-1);
  assert.ok(d);
  return d;
};
/** Memory of a leader that has watched the serving world for a while. */
const steady = (): Memory => last(run([obs(0)])).memory;

const kinds = (d: Decision): string[] => d.actions.map((a) => (a.kind === 'event' ? `event:${a.event.type}` : a.kind));
const ofKind = <K extends Action['kind']>(d: Decision, kind: K): Extract<Action, { kind: K }>[] =>
  d.actions.filter((a): a is Extract<Action, { kind: K }> => a.kind === kind);

// ---- the state table, tick by tick -------------------------------------------------------------

interface Step {
  obs: Observation;
  state: State;
  /** Exact action list (kinds, events as event:<type>); omitted: not checked. */
  actions?: string[];
  /** The last transition's reason must match. */
  reason?: RegExp;
  /** How many transitions this tick made; omitted: not checked. */
  transitions?: number;
}
interface Scenario {
  name: string;
  cfg?: Partial<DecideConfig>;
  memory?: () => Memory;
  steps: Step[];
}

const failedOver = [serving('app2', 5), dead('app1', { proxyState: 'maint' })];
const FAILOVER_ACTIONS = ['activate', 'fence', 'unfence', 'event:failover', 'event:fence'];

const scenarios: Scenario[] = [
  {
    name: 'follower: not the leader, never acts',
    memory: steady,
    steps: [
      { obs: obs(0, { isLeader: false, nodes: [dead('app1'), standby('app2')] }), state: 'follower', actions: [], reason: /does not hold the leadership/ },
      { obs: obs(9000, { isLeader: false, nodes: [dead('app1'), standby('app2')], request: failover('app2') }), state: 'follower', actions: [] },
    ],
  },
  {
    name: 'follower -> healthy: the new leader finds a serving cluster',
    steps: [{ obs: obs(0), state: 'healthy', actions: [], reason: /app1 is active at epoch 4 and serves/ }],
  },
  {
    name: 'bootstrap: waits for a healthy machine, then activates it',
    steps: [
      { obs: obs(0, { active: null, nodes: [sick('app1', { proxyState: 'down' }), sick('app2', { proxyState: 'down' })] }), state: 'bootstrap', actions: [], reason: /no active record/ },
      { obs: obs(1000, { active: null, nodes: [sick('app1', { proxyState: 'down' }), standby('app2', { proxyState: 'down' })] }), state: 'failing-over', actions: ['activate', 'fence', 'event:bootstrap', 'event:fence'], reason: /bootstrap: app2 is healthy/ },
      { obs: obs(1500, { active: rec('app2', 5), nodes: [sick('app1'), serving('app2', 5)] }), state: 'healthy', actions: ['event:activate'], reason: /app2 serves at epoch 5, 500 ms after its activation/ },
    ],
  },
  {
    name: 'healthy -> suspect -> healthy: flapping shorter than failAfterMs never fails over',
    memory: steady,
    steps: [
      { obs: obs(1000, { nodes: [sick('app1', { agentActive: true, proxyState: 'ready' }), standby('app2')] }), state: 'suspect', actions: [], reason: /app1 fails its checks \(deep check fails, agent reports the app unhealthy\)/ },
      { obs: obs(2900, { nodes: [sick('app1', { agentActive: true, proxyState: 'ready' }), standby('app2')] }), state: 'suspect', actions: [] },
      { obs: obs(2950), state: 'healthy', actions: [], reason: /passes its checks again after failing for 1950 ms/ },
      { obs: obs(3000, { nodes: [dead('app1', { proxyState: 'ready' }), standby('app2')] }), state: 'suspect', actions: [] },
      { obs: obs(4999, { nodes: [dead('app1', { proxyState: 'ready' }), standby('app2')] }), state: 'suspect', actions: [] },
      { obs: obs(5000), state: 'healthy', actions: [] },
    ],
  },
  {
    name: 'suspect -> failing-over -> healthy; fence and unfence re-issued until seen; no fail-back',
    memory: steady,
    steps: [
      { obs: obs(1000, { nodes: [dead('app1', { proxyState: 'ready' }), standby('app2')] }), state: 'suspect', actions: [] },
      { obs: obs(3000, { nodes: [dead('app1', { proxyState: 'ready' }), standby('app2')] }), state: 'failing-over', actions: ['activate', 'fence', 'unfence', 'event:node-lost', 'event:failover', 'event:fence'], reason: /^failover: app1 has failed its checks for 2000 ms \(deep check fails, agent unreachable\); app2 is healthy$/ },
      // The HAProxy write was lost and app2's agent has not confirmed yet: both re-issued.
      { obs: obs(3500, { active: rec('app2', 5), nodes: [dead('app1', { proxyState: 'down' }), standby('app2')] }), state: 'failing-over', actions: ['fence', 'unfence'] },
      { obs: obs(4000, { active: rec('app2', 5), nodes: failedOver }), state: 'healthy', actions: ['event:activate'], reason: /app2 serves at epoch 5/ },
      // app1 comes back healthy: it stays a standby.
      { obs: obs(5000, { active: rec('app2', 5), nodes: [serving('app2', 5), standby('app1')] }), state: 'healthy', actions: [] },
      { obs: obs(60_000, { active: rec('app2', 5), nodes: [serving('app2', 5), standby('app1')] }), state: 'healthy', actions: ['event:node-back'] },
      { obs: obs(600_000, { active: rec('app2', 5), nodes: [serving('app2', 5), standby('app1')] }), state: 'healthy', actions: [] },
    ],
  },
  {
    name: 'failAfterMs 0: fails over on the first failing tick',
    cfg: { failAfterMs: 0 },
    memory: steady,
    steps: [{ obs: obs(1000, { nodes: [dead('app1'), standby('app2')] }), state: 'failing-over', actions: FAILOVER_ACTIONS }],
  },
  {
    name: 'suspect -> no-candidate: one event, keeps checking, fails over once a standby is healthy',
    memory: steady,
    steps: [
      { obs: obs(1000, { nodes: [dead('app1'), sick('app2')] }), state: 'suspect', actions: [] },
      { obs: obs(3000, { nodes: [dead('app1', { proxyState: 'maint' }), sick('app2')] }), state: 'no-candidate', actions: ['unfence', 'event:node-lost', 'event:failover'], reason: /no standby is healthy/ },
      { obs: obs(4000, { nodes: [dead('app1'), sick('app2')] }), state: 'no-candidate', actions: [], transitions: 0 },
      { obs: obs(9000, { nodes: [dead('app1'), sick('app2')] }), state: 'no-candidate', actions: [] },
      { obs: obs(9500, { nodes: [dead('app1'), standby('app2')] }), state: 'failing-over', actions: FAILOVER_ACTIONS },
    ],
  },
  {
    name: 'no-candidate -> healthy when the active node recovers',
    memory: steady,
    steps: [
      { obs: obs(1000, { nodes: [sick('app1', { agentActive: true, proxyState: 'ready' }), sick('app2')] }), state: 'suspect' },
      { obs: obs(3000, { nodes: [sick('app1', { agentActive: true, proxyState: 'ready' }), sick('app2')] }), state: 'no-candidate' },
      { obs: obs(4000), state: 'healthy', actions: [], reason: /app1 passes its checks again after failing for 3000 ms/ },
    ],
  },
  {
    name: 'failing-over -> suspect -> no-candidate: the new node does not serve within activateTimeoutMs',
    memory: steady,
    steps: [
      { obs: obs(1000, { nodes: [dead('app1'), standby('app2')] }), state: 'suspect' },
      { obs: obs(3000, { nodes: [dead('app1'), standby('app2')] }), state: 'failing-over' },
      { obs: obs(12_999, { active: rec('app2', 5), nodes: [dead('app1', { proxyState: 'maint' }), sick('app2', { proxyState: 'ready' })] }), state: 'failing-over', actions: [] },
      { obs: obs(13_000, { active: rec('app2', 5), nodes: [dead('app1', { proxyState: 'maint' }), sick('app2', { proxyState: 'ready' })] }), state: 'no-candidate', actions: ['event:failover'] },
    ],
  },
  {
    name: 'failing-over -> suspect -> failing-over: the new node does not serve, another standby is healthy',
    memory: steady,
    steps: [
      { obs: obs(1000, { nodes: [dead('app1'), standby('app2'), standby('app3')] }), state: 'suspect' },
      { obs: obs(3000, { nodes: [dead('app1'), standby('app2'), standby('app3')] }), state: 'failing-over' },
      { obs: obs(13_000, { active: rec('app2', 5), nodes: [dead('app1', { proxyState: 'maint' }), sick('app2', { proxyState: 'ready' }), standby('app3')] }), state: 'failing-over', actions: ['activate', 'fence', 'unfence', 'event:failover', 'event:fence'], reason: /^failover: app2 has failed its checks for 10000 ms/ },
    ],
  },
  {
    name: 'maintenance: a new leader that finds it already on records no maintenance-on',
    steps: [{ obs: obs(0, { maintenance: true }), state: 'maintenance', actions: [] }],
  },
  {
    name: 'maintenance: only maintenance-on/off, requests refused, timers restart afterwards',
    memory: steady,
    steps: [
      { obs: obs(1000, { maintenance: true, nodes: [dead('app1'), standby('app2', { proxyState: 'ready' })] }), state: 'maintenance', actions: ['event:maintenance-on'], reason: /maintenance flag/ },
      { obs: obs(60_000, { maintenance: true, nodes: [dead('app1'), standby('app2', { proxyState: 'ready' })] }), state: 'maintenance', actions: [] },
      { obs: obs(61_000, { maintenance: true, request: failover('app2'), nodes: [dead('app1'), standby('app2')] }), state: 'maintenance', actions: ['event:request-failed', 'complete-request'] },
      // app1 has been dead for a minute, but the failure timer starts when maintenance ends.
      { obs: obs(62_000, { nodes: [dead('app1', { proxyState: 'maint' }), standby('app2')] }), state: 'suspect', actions: ['unfence', 'event:maintenance-off'] },
      { obs: obs(63_999, { nodes: [dead('app1', { proxyState: 'maint' }), standby('app2')] }), state: 'suspect', actions: ['unfence'] },
      { obs: obs(64_000, { nodes: [dead('app1', { proxyState: 'maint' }), standby('app2')] }), state: 'failing-over', actions: ['activate', 'unfence', 'event:node-lost', 'event:failover'] },
    ],
  },
  {
    name: 'follow-db (pair): the app moves to the machine that now holds the primary, once it is healthy',
    memory: steady,
    steps: [
      { obs: obs(1000, { followDb: true, nodes: [serving('app1', 4), sick('app2', { dbPrimary: true })] }), state: 'healthy', actions: [] },
      { obs: obs(2000, { followDb: true, nodes: [serving('app1', 4), standby('app2', { dbPrimary: true })] }), state: 'failing-over', actions: ['activate', 'fence', 'unfence', 'event:switchover', 'event:fence'], reason: /^follow-db: the database primary is on app2 and the app on app1; app2 is healthy$/ },
    ],
  },
  {
    name: 'switching-db (pair): Patroni moves the primary first, then the app follows',
    memory: steady,
    steps: [
      { obs: obs(1000, { followDb: true, request: switchover(), nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] }), state: 'switching-db', actions: ['db-switchover'], reason: /asking Patroni to move the database primary from app1 first/ },
      { obs: obs(2000, { followDb: true, request: switchover(), nodes: [serving('app1', 4), standby('app2')] }), state: 'switching-db', actions: [] },
      { obs: obs(3000, { followDb: true, request: switchover(), nodes: [serving('app1', 4), standby('app2', { dbPrimary: true })] }), state: 'failing-over', actions: ['activate', 'fence', 'unfence', 'event:switchover', 'event:fence', 'complete-request'], reason: /switchover to app2 requested by the operator \(request r1\)/ },
    ],
  },
  {
    name: 'switching-db -> healthy: Patroni does not move the primary in time',
    memory: steady,
    steps: [
      { obs: obs(1000, { followDb: true, request: switchover('app2'), nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] }), state: 'switching-db' },
      { obs: obs(30_999, { followDb: true, request: switchover('app2'), nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] }), state: 'switching-db', actions: [] },
      { obs: obs(31_000, { followDb: true, request: switchover('app2'), nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] }), state: 'healthy', actions: ['event:request-failed', 'complete-request'], reason: /switchover request r1 failed/ },
    ],
  },
  {
    name: 'switching-db -> healthy: the request is withdrawn',
    memory: steady,
    steps: [
      { obs: obs(1000, { followDb: true, request: switchover('app2'), nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] }), state: 'switching-db' },
      { obs: obs(2000, { followDb: true, nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] }), state: 'healthy', actions: [], reason: /withdrawn/ },
    ],
  },
  {
    name: 'healthy -> failing-over: switchover (no pair) moves at once to the first healthy standby',
    memory: steady,
    steps: [
      { obs: obs(1000, { request: switchover(), nodes: [serving('app1', 4), sick('app2'), standby('app3')] }), state: 'failing-over', actions: ['activate', 'fence', 'unfence', 'event:switchover', 'event:fence', 'complete-request'] },
    ],
  },
  {
    name: 'healthy -> failing-over: failover --to a healthy node',
    memory: steady,
    steps: [{ obs: obs(1000, { request: failover('app2') }), state: 'failing-over', actions: ['activate', 'fence', 'unfence', 'event:failover', 'event:fence', 'complete-request'] }],
  },
];

describe('decide: the state table', () => {
  for (const s of scenarios) {
    it(s.name, () => {
      let memory = s.memory?.() ?? initialMemory();
      s.steps.forEach((step, i) => {
        const d = decide(memory, step.obs, cfgOf(s.cfg));
        const at = `step ${i} (t=${step.obs.nowMs})`;
        assert.equal(d.memory.state, step.state, `${at}: state; transitions ${JSON.stringify(d.transitions)}`);
        if (step.actions) assert.deepEqual(kinds(d), step.actions, `${at}: actions ${JSON.stringify(d.actions)}`);
        if (step.transitions !== undefined) assert.equal(d.transitions.length, step.transitions, `${at}: ${JSON.stringify(d.transitions)}`);
        if (step.reason) assert.match(d.transitions.at(-1)?.reason ?? '', step.reason, at);
        // Transitions chain from the previous state; only an activation may re-enter a state.
        let from = memory.state;
        for (const tr of d.transitions) {
          assert.equal(tr.from, from, `${at}: transitions chain`);
          assert.ok(tr.from !== tr.to || tr.to === 'failing-over', `${at}: no empty transition`);
          assert.ok(tr.reason.length > 10, `${at}: every transition has a reason`);
          from = tr.to;
        }
        assert.equal(from, d.memory.state, `${at}: the last transition ends in the state`);
        assert.deepEqual(JSON.parse(JSON.stringify(d.memory)), d.memory, `${at}: memory is plain JSON`);
        memory = d.memory;
      });
    });
  }
});

// ---- values: epochs, compare-and-swap, fencing -------------------------------------------------

describe('decide: epochs and fencing', () => {
  it('failover: CAS on the current epoch, epoch + 1, every fence carries the new epoch', () => {
    const [, d] = run([obs(1000, { nodes: [dead('app1', { proxyState: 'ready' }), standby('app2')] }), obs(3000, { nodes: [dead('app1', { proxyState: 'ready' }), standby('app2')] })], steady());
    assert.ok(d);
    assert.deepEqual(ofKind(d, 'activate').map(({ node, epoch, expectEpoch }) => ({ node, epoch, expectEpoch })), [{ node: 'app2', epoch: 5, expectEpoch: 4 }]);
    assert.deepEqual(ofKind(d, 'fence').map(({ node, epoch }) => ({ node, epoch })), [{ node: 'app1', epoch: 5 }]);
    assert.deepEqual(ofKind(d, 'unfence'), [{ kind: 'unfence', node: 'app2' }]);
    const [ev] = ofKind(d, 'event').filter((a) => a.event.type === 'failover');
    assert.deepEqual({ node: ev?.event.node, epoch: ev?.event.epoch, details: ev?.event.details }, { node: 'app2', epoch: 5, details: { from: 'app1' } });
  });

  it('bootstrap: no record to compare against, epoch above every epoch an agent still knows', () => {
    const d = decide(initialMemory(), obs(0, { active: null, nodes: [standby('app1', { agentEpoch: 7, proxyState: 'down' }), standby('app2', { agentEpoch: null, proxyState: 'down' })] }), cfgOf());
    assert.deepEqual(ofKind(d, 'activate').map(({ node, epoch, expectEpoch }) => ({ node, epoch, expectEpoch })), [{ node: 'app1', epoch: 8, expectEpoch: null }]);
    assert.deepEqual(ofKind(d, 'fence').map(({ node, epoch }) => ({ node, epoch })), [{ node: 'app2', epoch: 8 }]);
  });

  it('bootstrap (pair): the machine with the database primary, and only once it is healthy', () => {
    const nodes = (healthy: boolean) => [standby('app1'), healthy ? standby('app2', { dbPrimary: true }) : sick('app2', { dbPrimary: true })];
    const [wait, go] = run([obs(0, { active: null, followDb: true, nodes: nodes(false) }), obs(1000, { active: null, followDb: true, nodes: nodes(true) })]);
    assert.deepEqual(wait?.actions, []);
    assert.deepEqual(ofKind(go as Decision, 'activate').map((a) => a.node), ['app2']);
    assert.match(ofKind(go as Decision, 'activate')[0]?.reason ?? '', /app2 holds the database primary and is healthy/);
  });

  it('a standby that is not in MAINT, or whose agent still claims to serve, is fenced; the active one is unfenced', () => {
    const d = decide(steady(), obs(1000, { nodes: [serving('app1', 4, { proxyState: 'maint' }), standby('app2', { proxyState: 'ready' }), standby('app3', { agentActive: true, agentEpoch: 3 }), standby('app4', { proxyState: 'unknown' })] }), cfgOf());
    assert.deepEqual(d.actions, [
      { kind: 'fence', node: 'app2', epoch: 4, reason: 'app2 is not the active node (app1 is, at epoch 4)' },
      { kind: 'fence', node: 'app3', epoch: 4, reason: 'app3 is not the active node (app1 is, at epoch 4)' },
      { kind: 'unfence', node: 'app1' },
    ]);
  });

  it('a healthy standby that is unreachable directly counts when its agent reports the app healthy', () => {
    const nodes = [dead('app1'), standby('app2', { deepOk: false, appHealthy: true })];
    const [, d] = run([obs(1000, { nodes }), obs(3000, { nodes })], steady());
    assert.deepEqual(ofKind(d as Decision, 'activate').map((a) => a.node), ['app2']);
    // ... but not when the agent is unreachable too, whatever it last said.
    const gone = [dead('app1'), standby('app2', { deepOk: false, agentReachable: false, appHealthy: true })];
    const [, e] = run([obs(1000, { nodes: gone }), obs(3000, { nodes: gone })], steady());
    assert.deepEqual(ofKind(e as Decision, 'activate'), []);
  });

  it('the observer alone losing its deep check does not fail over while the agent reports the app healthy', () => {
    const nodes = [serving('app1', 4, { deepOk: false }), standby('app2')];
    const ds = run([obs(1000, { nodes }), obs(5000, { nodes })], steady());
    assert.deepEqual(ds.flatMap((d) => d.actions), []);
    assert.equal(last(ds).memory.state, 'healthy');
  });

  it('failover (pair): to the machine with the database primary, not the first healthy one, at once', () => {
    const d = decide(steady(), obs(1000, { followDb: true, nodes: [dead('app1'), standby('app2'), standby('app3', { dbPrimary: true })] }), cfgOf());
    assert.deepEqual(ofKind(d, 'activate').map((a) => a.node), ['app3']);
    assert.match(d.transitions.at(-1)?.reason ?? '', /^follow-db: the database primary is on app3 and the app on app1, which fails its checks \(deep check fails, agent unreachable\); app3 is healthy$/);
    assert.deepEqual(ofKind(d, 'event').map((e) => e.event.type), ['failover', 'fence']);
  });

  it('failover (pair): the app dies but the database primary stays: first healthy standby, and back once the app is healthy there', () => {
    // The pair rule (the app runs where the primary runs) wins over "no fail-back": see the doc.
    const nodes = [sick('app1', { dbPrimary: true, agentActive: true, proxyState: 'ready' }), standby('app2'), standby('app3')];
    const [, d] = run([obs(1000, { followDb: true, nodes }), obs(3000, { followDb: true, nodes })], steady());
    assert.deepEqual(ofKind(d as Decision, 'activate').map((a) => a.node), ['app2']);
    const after = [standby('app1', { dbPrimary: true }), serving('app2', 5), standby('app3')];
    const [, back] = run([obs(4000, { followDb: true, active: rec('app2', 5), nodes: after }), obs(5000, { followDb: true, active: rec('app2', 5), nodes: after })], d?.memory);
    assert.deepEqual(ofKind(back as Decision, 'activate').map((a) => [a.node, a.epoch]), [['app1', 6]]);
    assert.match(back?.transitions.at(-1)?.reason ?? '', /^follow-db: /);
  });

  it('follow-db: does not follow while two machines claim the primary', () => {
    const d = decide(steady(), obs(1000, { followDb: true, nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2', { dbPrimary: true })] }), cfgOf());
    assert.deepEqual(d.actions, []);
  });

  it('standbyHealthyForMs: a standby healthy for less is no candidate yet', () => {
    const cfg = cfgOf({ standbyHealthyForMs: 5000 });
    const nodes = (t: number) => [dead('app1'), t >= 1000 ? standby('app2') : sick('app2')];
    const ds = run([0, 1000, 3000, 5999, 6000].map((t) => obs(t, { nodes: nodes(t) })), steady(), cfg);
    assert.deepEqual(ds.map((d) => d.memory.state), ['suspect', 'suspect', 'no-candidate', 'no-candidate', 'failing-over']);
  });
});

// ---- a restarted observer converges ------------------------------------------------------------

describe('decide: idempotent and resumable', () => {
  // Mid-failover: the record already names app2 at epoch 5; app1 is not yet in MAINT, app2 still is.
  const mid = obs(3500, { active: rec('app2', 5, 'failover: app1 has failed'), nodes: [dead('app1', { proxyState: 'down' }), standby('app2')] });

  it('fresh memory mid-failover issues the same fence and unfence, and no second epoch bump', () => {
    const failing = [dead('app1', { proxyState: 'ready' }), standby('app2')];
    const before = run([obs(1000, { nodes: failing }), obs(3000, { nodes: failing })], steady());
    const warm = decide(last(before).memory, mid, cfgOf());
    const fresh = decide(initialMemory(), mid, cfgOf());
    assert.deepEqual(fresh.actions, warm.actions);
    assert.deepEqual(kinds(fresh), ['fence', 'unfence']);
    assert.deepEqual(ofKind(fresh, 'fence')[0]?.epoch, 5);
    assert.equal(fresh.memory.state, 'failing-over');
    assert.equal(warm.memory.state, 'failing-over');
  });

  it('fresh memory then converges: healthy once app2 serves, never an activate', () => {
    const ds = run([mid, obs(4000, { active: rec('app2', 5), nodes: failedOver }), obs(9000, { active: rec('app2', 5), nodes: failedOver })]);
    assert.equal(last(ds).memory.state, 'healthy');
    assert.deepEqual(ds.flatMap((d) => ofKind(d, 'activate')), []);
  });

  it('an activate whose CAS never happened (record still app1 at 4) is decided again from scratch', () => {
    const failing = [dead('app1', { proxyState: 'ready' }), standby('app2')];
    const ds = run([obs(5000, { nodes: failing }), obs(7000, { nodes: failing })]);
    assert.deepEqual(ds.map((d) => d.memory.state), ['suspect', 'failing-over']);
    assert.deepEqual(ofKind(last(ds), 'activate').map((a) => [a.epoch, a.expectEpoch]), [[5, 4]]);
  });

  it('a record changed by another writer restarts the timers from the observation', () => {
    const failing = [dead('app1', { proxyState: 'ready' }), standby('app2')];
    const [, d] = run([obs(1000, { nodes: failing }), obs(2500, { active: rec('app2', 5), nodes: [dead('app1', { proxyState: 'maint' }), serving('app2', 5)] })], steady());
    assert.equal(d?.memory.state, 'healthy');
    assert.deepEqual(d?.actions, []);
  });

  it('a new leader that finds the active node confirmed at its epoch but failing starts the failure timer', () => {
    const nodes = [sick('app1', { agentActive: true, agentEpoch: 4, proxyState: 'ready' }), standby('app2')];
    const ds = run([obs(1000, { nodes }), obs(3000, { nodes })]);
    assert.deepEqual(ds.map((d) => d.memory.state), ['suspect', 'failing-over']);
    assert.match(ds[0]?.transitions[0]?.reason ?? '', /^app1 is active at epoch 4 but fails its checks/);
  });

  it('leading again: memory reset, the follower acts on nothing it remembered', () => {
    const failing = [dead('app1'), standby('app2')];
    const ds = run([obs(1000, { nodes: failing }), obs(2000, { isLeader: false, nodes: failing }), obs(3500, { nodes: failing })], steady());
    assert.deepEqual(ds.map((d) => d.memory.state), ['suspect', 'follower', 'suspect']);
    assert.deepEqual(ds[1]?.memory, initialMemory());
    assert.deepEqual(ofKind(last(ds), 'activate'), []);
  });
});

// ---- operator requests -------------------------------------------------------------------------

describe('decide: operator requests', () => {
  const answer = (d: Decision) => {
    const [c] = ofKind(d, 'complete-request');
    assert.ok(c, 'request answered');
    return { ok: c.ok, message: c.message, moved: ofKind(d, 'activate').map((a) => a.node) };
  };
  const table: { name: string; o: Observation; ok: boolean; message: RegExp; moved?: string[] }[] = [
    { name: 'failover --to a healthy node', o: obs(1, { request: failover('app2') }), ok: true, message: /app2 is active at epoch 5/, moved: ['app2'] },
    { name: 'failover --to an unhealthy node', o: obs(1, { request: failover('app2'), nodes: [serving('app1', 4), sick('app2')] }), ok: false, message: /^app2 is not healthy \(deep check fails, agent reports the app unhealthy\); app1 stays active$/ },
    { name: 'failover --to an unknown node', o: obs(1, { request: failover('app9') }), ok: false, message: /no app machine is named app9 \(app machines: app1, app2\)/ },
    { name: 'failover --to the active node', o: obs(1, { request: failover('app1') }), ok: true, message: /app1 is already active at epoch 4/ },
    { name: 'failover --to away from a healthy DB primary (pair)', o: obs(1, { followDb: true, request: failover('app2'), nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] }), ok: false, message: /follow the database straight back/ },
    { name: 'failover --to when the DB primary machine is down (pair)', o: obs(1, { followDb: true, request: failover('app2'), nodes: [dead('app1', { dbPrimary: true }), standby('app2')] }), ok: true, message: /app2 is active/, moved: ['app2'] },
    { name: 'failover --to without an active record', o: obs(1, { active: null, request: failover('app2') }), ok: true, message: /app2 is active at epoch 5/, moved: ['app2'] },
    { name: 'switchover --to a given node', o: obs(1, { request: switchover('app3'), nodes: [serving('app1', 4), standby('app2'), standby('app3')] }), ok: true, message: /app3 is active/, moved: ['app3'] },
    { name: 'switchover with no healthy standby', o: obs(1, { request: switchover(), nodes: [serving('app1', 4), sick('app2')] }), ok: false, message: /no standby is healthy; app1 stays active/ },
    { name: 'switchover --to an unhealthy node', o: obs(1, { request: switchover('app2'), nodes: [serving('app1', 4), dead('app2')] }), ok: false, message: /app2 is not healthy \(deep check fails, agent unreachable\)/ },
    { name: 'switchover --to an unknown node', o: obs(1, { request: switchover('nope') }), ok: false, message: /no app machine is named nope/ },
    { name: 'switchover without an active record', o: obs(1, { active: null, request: switchover() }), ok: false, message: /no active node yet/, moved: ['app1'] },
    { name: 'switchover already carried out (record names the request)', o: obs(1, { active: rec('app2', 5, 'switchover to app2 requested by the operator (request r1)'), request: switchover(), nodes: [standby('app1'), serving('app2', 5)] }), ok: true, message: /already carried out: app2 is active at epoch 5/ },
    { name: 'any request during maintenance', o: obs(1, { maintenance: true, request: switchover('app2') }), ok: false, message: /the cluster is in maintenance/ },
  ];
  for (const c of table) {
    it(c.name, () => {
      const d = decide(steady(), c.o, cfgOf());
      const a = answer(d);
      assert.equal(a.ok, c.ok, a.message);
      assert.match(a.message, c.message);
      assert.deepEqual(a.moved, c.moved ?? []);
      assert.equal(ofKind(d, 'event').some((e) => e.event.type === 'request-failed'), !c.ok, 'a refusal is recorded');
    });
  }

  it('switchover (pair) resumed with fresh memory after Patroni moved the primary: activates once', () => {
    const o = obs(5000, { followDb: true, request: switchover(), nodes: [serving('app1', 4), standby('app2', { dbPrimary: true })] });
    const d = decide(initialMemory(), o, cfgOf());
    assert.deepEqual(ofKind(d, 'activate').map((a) => [a.node, a.epoch, a.expectEpoch]), [['app2', 5, 4]]);
    assert.deepEqual(ofKind(d, 'db-switchover'), []);
    assert.match(ofKind(d, 'activate')[0]?.reason ?? '', /request r1/);
  });

  it('switchover (pair): db-switchover names the machines, issued once while waiting', () => {
    const nodes = [serving('app1', 4, { dbPrimary: true }), standby('app2')];
    const ds = run([1000, 2000, 3000].map((t) => obs(t, { followDb: true, request: switchover(), nodes })), steady());
    assert.deepEqual(ds.flatMap((d) => ofKind(d, 'db-switchover')), [{ kind: 'db-switchover', from: 'app1', to: 'app2' }]);
  });
});

// ---- node-lost / node-back ---------------------------------------------------------------------

describe('decide: node-lost and node-back', () => {
  it('reported once the change has lasted lostAfterMs, not for a blip', () => {
    const at = (t: number, app2: NodeObservation) => obs(t, { nodes: [serving('app1', 4), app2] });
    const ds = run([at(1000, dead('app2', { proxyState: 'maint' })), at(1500, standby('app2')), at(2000, dead('app2', { proxyState: 'maint' })), at(3999, dead('app2', { proxyState: 'maint' })), at(4000, dead('app2', { proxyState: 'maint' })), at(5000, standby('app2')), at(7000, standby('app2'))], steady());
    const events = ds.map((d) => ofKind(d, 'event').map((e) => `${e.event.type} ${e.event.node}`));
    assert.deepEqual(events, [[], [], [], [], ['node-lost app2'], [], ['node-back app2']]);
  });

  it('a machine only the agent can reach is not lost', () => {
    const ds = run([1000, 5000].map((t) => obs(t, { nodes: [serving('app1', 4), standby('app2', { deepOk: false })] })), steady());
    assert.deepEqual(ds.flatMap((d) => d.actions), []);
  });
});

// ---- the documentation -------------------------------------------------------------------------

describe('docs/observer-states.md', () => {
  it('has a row for every state', () => {
    const doc = readFileSync(new URL('../../docs/observer-states.md', import.meta.url), 'utf8');
    const states: State[] = ['follower', 'bootstrap', 'healthy', 'suspect', 'failing-over', 'switching-db', 'no-candidate', 'maintenance'];
    for (const s of states) assert.match(doc, new RegExp(`^\\| \`${s}\` \\|`, 'm'), `state ${s} documented`);
  });
});
