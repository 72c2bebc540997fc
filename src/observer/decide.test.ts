import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { STATES, type ActiveRecord, type OperatorRequest, type State } from '../model/ha.ts';
import {
  DEFAULT_DECIDE_CONFIG,
  decide,
  duration,
  initialMemory,
  type Action,
  type DecideConfig,
  type Decision,
  type Memory,
  type NodeObservation,
  type Observation,
  TRANSITIONS,
  transition,
} from './decide.ts';

// ---- a small world: app1 serves at epoch 4, app2 is a healthy standby in MAINT ----------------

/**
 * A ready standby, fenced (MAINT), its agent idle at epoch 4. It runs neither nginx nor the app, so
 * the deep check fails; observe.ts passes the agent's readiness (confirmed in etcd) as appHealthy.
 */
const standby = (name: string, over: Partial<NodeObservation> = {}): NodeObservation => ({
  name,
  deepOk: false,
  agentReachable: true,
  agentActive: false,
  agentEpoch: 4,
  appHealthy: true,
  dbPrimary: false,
  proxyStates: ['maint'],
  ...over,
});
/** Active and serving at `epoch`. */
const serving = (name: string, epoch: number, over: Partial<NodeObservation> = {}): NodeObservation =>
  standby(name, { deepOk: true, agentActive: true, agentEpoch: epoch, proxyStates: ['ready'], ...over });
/** The machine is gone: nothing answers, HAProxy's check fails. */
const dead = (name: string, over: Partial<NodeObservation> = {}): NodeObservation =>
  standby(name, { deepOk: false, agentReachable: false, appHealthy: false, agentEpoch: null, proxyStates: ['down'], ...over });
/** Reachable, but the app fails its checks (a standby: its agent is not ready). */
const sick = (name: string, over: Partial<NodeObservation> = {}): NodeObservation => standby(name, { deepOk: false, appHealthy: false, ...over });

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
/** pair: the same, with the database primary on app1 next to the app. */
const pairSteady = (): Memory => last(run([obs(0, { followDb: true, nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] })])).memory;

/** Every reason and message: durations rounded (never `2498.3984530000016 ms`). */
function assertTidy(d: Decision, at = ''): void {
  const texts = [
    ...d.transitions.map((t) => t.reason),
    ...d.actions.flatMap((a) =>
      a.kind === 'event' ? [a.event.message] : a.kind === 'activate' || a.kind === 'fence' ? [a.reason] : a.kind === 'complete-request' ? [a.message] : [],
    ),
  ];
  for (const text of texts) assert.doesNotMatch(text, /\d\.\d{2,}|\.\d+ ms/, `${at}: untidy number in ${JSON.stringify(text)}`);
}

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

const failedOver = [serving('app2', 5), dead('app1', { proxyStates: ['maint'] })];
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
      {
        obs: obs(0, { active: null, nodes: [sick('app1', { proxyStates: ['down'] }), sick('app2', { proxyStates: ['down'] })] }),
        state: 'bootstrap',
        actions: [],
        reason: /no active record/,
      },
      {
        obs: obs(1000, { active: null, nodes: [sick('app1', { proxyStates: ['down'] }), standby('app2', { proxyStates: ['down'] })] }),
        state: 'failing-over',
        actions: ['activate', 'fence', 'event:bootstrap', 'event:fence'],
        reason: /^bootstrap: app2 is ready \(agent reachable, confirmed in etcd\)$/,
      },
      {
        obs: obs(1500, { active: rec('app2', 5), nodes: [sick('app1'), serving('app2', 5)] }),
        state: 'healthy',
        actions: ['event:activate'],
        reason: /app2 serves at epoch 5, 500 ms after its activation/,
      },
    ],
  },
  {
    name: 'healthy -> suspect -> healthy: flapping shorter than failAfterMs never fails over',
    memory: steady,
    steps: [
      {
        obs: obs(1000, { nodes: [sick('app1', { agentActive: true, proxyStates: ['ready'] }), standby('app2')] }),
        state: 'suspect',
        actions: [],
        reason: /app1 fails its checks \(deep check fails, agent reports the app unhealthy\)/,
      },
      { obs: obs(2900, { nodes: [sick('app1', { agentActive: true, proxyStates: ['ready'] }), standby('app2')] }), state: 'suspect', actions: [] },
      { obs: obs(2950), state: 'healthy', actions: [], reason: /passes its checks again after failing for 1950 ms/ },
      { obs: obs(3000, { nodes: [dead('app1', { proxyStates: ['ready'] }), standby('app2')] }), state: 'suspect', actions: [] },
      { obs: obs(4999, { nodes: [dead('app1', { proxyStates: ['ready'] }), standby('app2')] }), state: 'suspect', actions: [] },
      { obs: obs(5000), state: 'healthy', actions: [] },
    ],
  },
  {
    name: 'suspect -> failing-over -> healthy; fence and unfence re-issued until seen; no fail-back',
    memory: steady,
    steps: [
      { obs: obs(1000, { nodes: [dead('app1', { proxyStates: ['ready'] }), standby('app2')] }), state: 'suspect', actions: [] },
      {
        obs: obs(3000, { nodes: [dead('app1', { proxyStates: ['ready'] }), standby('app2')] }),
        state: 'failing-over',
        actions: ['activate', 'fence', 'unfence', 'event:node-lost', 'event:failover', 'event:fence'],
        reason:
          /^failover: app1 has failed its checks for 2000 ms \(deep check fails, agent unreachable\); app2 is ready \(agent reachable, confirmed in etcd\)$/,
      },
      // The HAProxy write was lost and app2's agent has not confirmed yet: both re-issued.
      {
        obs: obs(3500, { active: rec('app2', 5), nodes: [dead('app1', { proxyStates: ['down'] }), standby('app2')] }),
        state: 'failing-over',
        actions: ['fence', 'unfence'],
      },
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
      {
        obs: obs(3000, { nodes: [dead('app1', { proxyStates: ['maint'] }), sick('app2')] }),
        state: 'no-candidate',
        actions: ['unfence', 'event:node-lost', 'event:failover'],
        reason: /no standby is healthy/,
      },
      { obs: obs(4000, { nodes: [dead('app1'), sick('app2')] }), state: 'no-candidate', actions: [], transitions: 0 },
      { obs: obs(9000, { nodes: [dead('app1'), sick('app2')] }), state: 'no-candidate', actions: [] },
      { obs: obs(9500, { nodes: [dead('app1'), standby('app2')] }), state: 'failing-over', actions: FAILOVER_ACTIONS },
    ],
  },
  {
    name: 'no-candidate -> healthy when the active node recovers',
    memory: steady,
    steps: [
      { obs: obs(1000, { nodes: [sick('app1', { agentActive: true, proxyStates: ['ready'] }), sick('app2')] }), state: 'suspect' },
      { obs: obs(3000, { nodes: [sick('app1', { agentActive: true, proxyStates: ['ready'] }), sick('app2')] }), state: 'no-candidate' },
      { obs: obs(4000), state: 'healthy', actions: [], reason: /app1 passes its checks again after failing for 3000 ms/ },
    ],
  },
  {
    name: 'failing-over -> suspect -> no-candidate: the new node does not serve within activateTimeoutMs',
    memory: steady,
    steps: [
      { obs: obs(1000, { nodes: [dead('app1'), standby('app2')] }), state: 'suspect' },
      { obs: obs(3000, { nodes: [dead('app1'), standby('app2')] }), state: 'failing-over' },
      {
        obs: obs(12_999, { active: rec('app2', 5), nodes: [dead('app1', { proxyStates: ['maint'] }), sick('app2', { proxyStates: ['ready'] })] }),
        state: 'failing-over',
        actions: [],
      },
      {
        obs: obs(13_000, { active: rec('app2', 5), nodes: [dead('app1', { proxyStates: ['maint'] }), sick('app2', { proxyStates: ['ready'] })] }),
        state: 'no-candidate',
        actions: ['event:failover'],
      },
    ],
  },
  {
    name: 'failing-over -> suspect -> failing-over: the new node does not serve, another standby is healthy',
    memory: steady,
    steps: [
      { obs: obs(1000, { nodes: [dead('app1'), standby('app2'), standby('app3')] }), state: 'suspect' },
      { obs: obs(3000, { nodes: [dead('app1'), standby('app2'), standby('app3')] }), state: 'failing-over' },
      {
        obs: obs(13_000, {
          active: rec('app2', 5),
          nodes: [dead('app1', { proxyStates: ['maint'] }), sick('app2', { proxyStates: ['ready'] }), standby('app3')],
        }),
        state: 'failing-over',
        actions: ['activate', 'fence', 'unfence', 'event:failover', 'event:fence'],
        reason: /^failover: app2 has failed its checks for 10 s \(deep check fails, agent reachable, not confirmed in etcd within its lease\); app3 is ready/,
      },
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
      {
        obs: obs(1000, { maintenance: true, nodes: [dead('app1'), standby('app2', { proxyStates: ['ready'] })] }),
        state: 'maintenance',
        actions: ['event:maintenance-on'],
        reason: /maintenance flag/,
      },
      { obs: obs(60_000, { maintenance: true, nodes: [dead('app1'), standby('app2', { proxyStates: ['ready'] })] }), state: 'maintenance', actions: [] },
      {
        obs: obs(61_000, { maintenance: true, request: failover('app2'), nodes: [dead('app1'), standby('app2')] }),
        state: 'maintenance',
        actions: ['event:request-failed', 'complete-request'],
      },
      // app1 has been dead for a minute, but the failure timer starts when maintenance ends.
      {
        obs: obs(62_000, { nodes: [dead('app1', { proxyStates: ['maint'] }), standby('app2')] }),
        state: 'suspect',
        actions: ['unfence', 'event:maintenance-off'],
      },
      { obs: obs(63_999, { nodes: [dead('app1', { proxyStates: ['maint'] }), standby('app2')] }), state: 'suspect', actions: ['unfence'] },
      {
        obs: obs(64_000, { nodes: [dead('app1', { proxyStates: ['maint'] }), standby('app2')] }),
        state: 'failing-over',
        actions: ['activate', 'unfence', 'event:node-lost', 'event:failover'],
      },
    ],
  },
  {
    name: 'follow-db (pair): Patroni moved the primary by itself; the app follows once that machine is ready',
    memory: pairSteady,
    steps: [
      { obs: obs(1000, { followDb: true, nodes: [serving('app1', 4), sick('app2', { dbPrimary: true })] }), state: 'healthy', actions: [] },
      {
        obs: obs(2000, { followDb: true, nodes: [serving('app1', 4), standby('app2', { dbPrimary: true })] }),
        state: 'failing-over',
        actions: ['activate', 'fence', 'unfence', 'event:switchover', 'event:fence'],
        reason: /^follow-db: the database primary moved from app1 to app2 and the app runs on app1; app2 is ready \(agent reachable, confirmed in etcd\)$/,
      },
      {
        obs: obs(2500, { followDb: true, active: rec('app2', 5), nodes: [standby('app1'), serving('app2', 5, { dbPrimary: true })] }),
        state: 'healthy',
        actions: ['event:activate'],
      },
      {
        obs: obs(60_000, { followDb: true, active: rec('app2', 5), nodes: [standby('app1'), serving('app2', 5, { dbPrimary: true })] }),
        state: 'healthy',
        actions: [],
      },
    ],
  },
  {
    name: 'failover (pair): the app dies next to the primary; only the app moves, nothing moves back, the app follows only a primary that moves by itself',
    memory: pairSteady,
    steps: [
      {
        obs: obs(1000, { followDb: true, nodes: [sick('app1', { dbPrimary: true, agentActive: true, proxyStates: ['ready'] }), standby('app2')] }),
        state: 'suspect',
        actions: [],
      },
      {
        obs: obs(3000, { followDb: true, nodes: [sick('app1', { dbPrimary: true, agentActive: true, proxyStates: ['ready'] }), standby('app2')] }),
        state: 'failing-over',
        actions: ['activate', 'fence', 'unfence', 'event:failover', 'event:fence'],
        reason:
          /^failover: app1 has failed its checks for 2000 ms \(deep check fails, agent reports the app unhealthy\); app2 is ready \(agent reachable, confirmed in etcd\)$/,
      },
      // app1 is fenced and ready, the primary still on it: the app on app2 reaches it through :5000; nothing moves.
      {
        obs: obs(3500, { followDb: true, active: rec('app2', 5), nodes: [standby('app1', { dbPrimary: true }), serving('app2', 5)] }),
        state: 'healthy',
        actions: ['event:activate'],
      },
      {
        obs: obs(5000, { followDb: true, active: rec('app2', 5), nodes: [standby('app1', { dbPrimary: true }), serving('app2', 5)] }),
        state: 'healthy',
        actions: [],
      },
      {
        obs: obs(600_000, { followDb: true, active: rec('app2', 5), nodes: [standby('app1', { dbPrimary: true }), serving('app2', 5)] }),
        state: 'healthy',
        actions: [],
      },
      // Patroni moves the primary to app2 by itself: the app is already there.
      {
        obs: obs(601_000, { followDb: true, active: rec('app2', 5), nodes: [standby('app1'), serving('app2', 5, { dbPrimary: true })] }),
        state: 'healthy',
        actions: [],
      },
      {
        obs: obs(900_000, { followDb: true, active: rec('app2', 5), nodes: [standby('app1'), serving('app2', 5, { dbPrimary: true })] }),
        state: 'healthy',
        actions: [],
      },
      // Later it moves by itself to app1, where the app is not: the app follows.
      {
        obs: obs(901_000, { followDb: true, active: rec('app2', 5), nodes: [standby('app1', { dbPrimary: true }), serving('app2', 5)] }),
        state: 'failing-over',
        actions: ['activate', 'fence', 'unfence', 'event:switchover', 'event:fence'],
        reason: /^follow-db: the database primary moved from app2 to app1 and the app runs on app2; app1 is ready/,
      },
    ],
  },
  {
    name: 'switching-db (pair): Patroni moves the primary first, then the app follows',
    memory: steady,
    steps: [
      {
        obs: obs(1000, { followDb: true, request: switchover(), nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] }),
        state: 'switching-db',
        actions: ['db-switchover'],
        reason: /asking Patroni to move the database primary from app1 first/,
      },
      { obs: obs(2000, { followDb: true, request: switchover(), nodes: [serving('app1', 4), standby('app2')] }), state: 'switching-db', actions: [] },
      {
        obs: obs(3000, { followDb: true, request: switchover(), nodes: [serving('app1', 4), standby('app2', { dbPrimary: true })] }),
        state: 'failing-over',
        actions: ['activate', 'fence', 'unfence', 'event:switchover', 'event:fence', 'complete-request'],
        reason: /switchover to app2 requested by the operator \(request r1\)/,
      },
    ],
  },
  {
    name: "switching-db (pair): the app moves when the old primary's Patroni is stopping, and the request is answered once the primary is on the new machine",
    memory: pairSteady,
    steps: [
      {
        obs: obs(1000, { followDb: true, request: switchover(), nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] }),
        state: 'switching-db',
        actions: ['db-switchover'],
      },
      // Patroni's demote: checkpoint done, fast shutdown under way; its /primary still answers 200.
      {
        obs: obs(1500, { followDb: true, request: switchover(), nodes: [serving('app1', 4, { dbPrimary: true, dbStopping: true }), standby('app2')] }),
        state: 'failing-over',
        actions: ['activate', 'fence', 'unfence', 'event:switchover', 'event:fence'],
        reason: /the database primary on app1 is stopping for it, so the app moves now/,
      },
      // The app serves on app2 while app1's /primary still answers: no move back (follow-db), no answer yet.
      {
        obs: obs(2000, {
          followDb: true,
          request: switchover(),
          active: rec('app2', 5),
          nodes: [standby('app1', { dbPrimary: true, dbStopping: true, agentEpoch: 5 }), serving('app2', 5)],
        }),
        state: 'healthy',
        actions: ['event:activate'],
      },
      {
        obs: obs(2500, { followDb: true, request: switchover(), active: rec('app2', 5), nodes: [standby('app1', { agentEpoch: 5 }), serving('app2', 5)] }),
        state: 'healthy',
        actions: [],
      },
      {
        obs: obs(3000, {
          followDb: true,
          request: switchover(),
          active: rec('app2', 5),
          nodes: [standby('app1', { agentEpoch: 5 }), serving('app2', 5, { dbPrimary: true })],
        }),
        state: 'healthy',
        actions: ['complete-request'],
      },
    ],
  },
  {
    name: "switching-db (pair): the app moved at the old primary's stop, but the primary does not follow in time: the request is refused, the app stays",
    memory: pairSteady,
    steps: [
      { obs: obs(1000, { followDb: true, request: switchover(), nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] }), state: 'switching-db' },
      {
        obs: obs(1500, { followDb: true, request: switchover(), nodes: [serving('app1', 4, { dbPrimary: true, dbStopping: true }), standby('app2')] }),
        state: 'failing-over',
      },
      {
        obs: obs(2000, {
          followDb: true,
          request: switchover(),
          active: rec('app2', 5),
          nodes: [standby('app1', { dbPrimary: true, agentEpoch: 5 }), serving('app2', 5)],
        }),
        state: 'healthy',
      },
      {
        obs: obs(31_000, {
          followDb: true,
          request: switchover(),
          active: rec('app2', 5),
          nodes: [standby('app1', { dbPrimary: true, agentEpoch: 5 }), serving('app2', 5)],
        }),
        state: 'healthy',
        actions: ['event:request-failed', 'complete-request'],
      },
    ],
  },
  {
    name: 'switching-db -> healthy: Patroni does not move the primary in time',
    memory: steady,
    steps: [
      {
        obs: obs(1000, { followDb: true, request: switchover('app2'), nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] }),
        state: 'switching-db',
      },
      {
        obs: obs(30_999, { followDb: true, request: switchover('app2'), nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] }),
        state: 'switching-db',
        actions: [],
      },
      {
        obs: obs(31_000, { followDb: true, request: switchover('app2'), nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] }),
        state: 'healthy',
        actions: ['event:request-failed', 'complete-request'],
        reason: /switchover request r1 failed/,
      },
    ],
  },
  {
    name: 'switching-db -> healthy: the request is withdrawn',
    memory: steady,
    steps: [
      {
        obs: obs(1000, { followDb: true, request: switchover('app2'), nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] }),
        state: 'switching-db',
      },
      {
        obs: obs(2000, { followDb: true, nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] }),
        state: 'healthy',
        actions: [],
        reason: /withdrawn/,
      },
    ],
  },
  {
    name: 'switching-db -> healthy: the target is no longer an app machine; the request is refused and the wait ends',
    memory: steady,
    steps: [
      {
        obs: obs(1000, { followDb: true, request: switchover('app2'), nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] }),
        state: 'switching-db',
      },
      {
        obs: obs(2000, { followDb: true, request: switchover('app2'), nodes: [serving('app1', 4, { dbPrimary: true }), standby('app3')] }),
        state: 'healthy',
        actions: ['event:request-failed', 'complete-request'],
        reason: /^the switchover request was answered; app1 is active at epoch 4 and serves$/,
      },
    ],
  },
  {
    name: 'healthy -> failing-over: switchover (no pair) moves at once to the first healthy standby',
    memory: steady,
    steps: [
      {
        obs: obs(1000, { request: switchover(), nodes: [serving('app1', 4), sick('app2'), standby('app3')] }),
        state: 'failing-over',
        actions: ['activate', 'fence', 'unfence', 'event:switchover', 'event:fence', 'complete-request'],
      },
    ],
  },
  {
    name: 'healthy -> failing-over: failover --to a healthy node',
    memory: steady,
    steps: [
      {
        obs: obs(1000, { request: failover('app2') }),
        state: 'failing-over',
        actions: ['activate', 'fence', 'unfence', 'event:failover', 'event:fence', 'complete-request'],
      },
    ],
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
        assertTidy(d, at);
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
    const [, d] = run(
      [
        obs(1000, { nodes: [dead('app1', { proxyStates: ['ready'] }), standby('app2')] }),
        obs(3000, { nodes: [dead('app1', { proxyStates: ['ready'] }), standby('app2')] }),
      ],
      steady(),
    );
    assert.ok(d);
    assert.deepEqual(
      ofKind(d, 'activate').map(({ node, epoch, expectEpoch }) => ({ node, epoch, expectEpoch })),
      [{ node: 'app2', epoch: 5, expectEpoch: 4 }],
    );
    assert.deepEqual(
      ofKind(d, 'fence').map(({ node, epoch }) => ({ node, epoch })),
      [{ node: 'app1', epoch: 5 }],
    );
    assert.deepEqual(ofKind(d, 'unfence'), [{ kind: 'unfence', node: 'app2', epoch: 5 }]);
    const [ev] = ofKind(d, 'event').filter((a) => a.event.type === 'failover');
    assert.deepEqual({ node: ev?.event.node, epoch: ev?.event.epoch, details: ev?.event.details }, { node: 'app2', epoch: 5, details: { from: 'app1' } });
  });

  it('bootstrap: no record to compare against, epoch above every epoch an agent still knows', () => {
    const d = decide(
      initialMemory(),
      obs(0, {
        active: null,
        nodes: [standby('app1', { agentEpoch: 7, proxyStates: ['down'] }), standby('app2', { agentEpoch: null, proxyStates: ['down'] })],
      }),
      cfgOf(),
    );
    assert.match(ofKind(d, 'activate')[0]?.reason ?? '', /^bootstrap: app1 is ready \(agent reachable, confirmed in etcd\)$/);
    assert.deepEqual(
      ofKind(d, 'activate').map(({ node, epoch, expectEpoch }) => ({ node, epoch, expectEpoch })),
      [{ node: 'app1', epoch: 8, expectEpoch: null }],
    );
    assert.deepEqual(
      ofKind(d, 'fence').map(({ node, epoch }) => ({ node, epoch })),
      [{ node: 'app2', epoch: 8 }],
    );
  });

  it('bootstrap after etcd lost its data: the epoch starts above the highest any agent kept on disk (L10)', () => {
    // The agents confirmed the empty etcd: no record, so no epoch in memory; only what they kept.
    const nodes = [standby('app1', { agentEpoch: null, highestEpoch: 12 }), standby('app2', { agentEpoch: null, highestEpoch: 9 })];
    const d = decide(initialMemory(), obs(0, { active: null, nodes }), cfgOf());
    assert.deepEqual(
      ofKind(d, 'activate').map(({ epoch }) => epoch),
      [13],
    );
  });

  it('bootstrap (pair): the machine with the database primary, and only once it is healthy', () => {
    const nodes = (healthy: boolean) => [standby('app1'), healthy ? standby('app2', { dbPrimary: true }) : sick('app2', { dbPrimary: true })];
    const [wait, go] = run([obs(0, { active: null, followDb: true, nodes: nodes(false) }), obs(1000, { active: null, followDb: true, nodes: nodes(true) })]);
    assert.deepEqual(wait?.actions, []);
    assert.deepEqual(
      ofKind(go as Decision, 'activate').map((a) => a.node),
      ['app2'],
    );
    assert.equal(ofKind(go as Decision, 'activate')[0]?.reason, 'bootstrap: app2 is ready (agent reachable, confirmed in etcd) and holds the database primary');
    assert.deepEqual(ofKind(go as Decision, 'db-switchover'), []);
  });

  it('a standby that is not in MAINT, or whose agent still claims to serve, is fenced; the active one is unfenced', () => {
    const d = decide(
      steady(),
      obs(1000, {
        nodes: [
          serving('app1', 4, { proxyStates: ['maint'] }),
          standby('app2', { proxyStates: ['ready'] }),
          standby('app3', { agentActive: true, agentEpoch: 3 }),
          standby('app4', { proxyStates: ['unknown'] }),
        ],
      }),
      cfgOf(),
    );
    assert.deepEqual(d.actions, [
      { kind: 'fence', node: 'app2', epoch: 4, reason: 'app2 is not the active node (app1 is, at epoch 4)' },
      { kind: 'fence', node: 'app3', epoch: 4, reason: 'app3 is not the active node (app1 is, at epoch 4)' },
      { kind: 'unfence', node: 'app1', epoch: 4 },
    ]);
  });

  it('a hung agent on the active node: the deep check passes, but HAProxy (which routes on the agent) marks it down, so it fails over', () => {
    const hung = serving('app1', 4, { agentReachable: false, agentActive: false, agentEpoch: null, appHealthy: false, proxyStates: ['down'] });
    const [first, d] = run([obs(1000, { nodes: [hung, standby('app2')] }), obs(3000, { nodes: [hung, standby('app2')] })], steady());
    assert.equal(first!.memory.state, 'suspect');
    assert.match(first!.transitions[0]!.reason, /agent unreachable and HAProxy marks it down/);
    assert.deepEqual(
      ofKind(d as Decision, 'activate').map((a) => a.node),
      ['app2'],
    );
    // Without the proxy's view (no HAProxy on the observer's machine) or with HAProxy still routing to it, the deep check stands.
    for (const proxyState of ['unknown', 'ready'] as const) {
      const nodes = [{ ...hung, proxyStates: [proxyState] }, standby('app2')];
      const [, e] = run([obs(1000, { nodes }), obs(3000, { nodes })], steady());
      assert.deepEqual(ofKind(e as Decision, 'activate'), [], `proxy ${proxyState}`);
      assert.equal((e as Decision).memory.state, 'healthy');
    }
    // An agent that answers and reports the app healthy is not overruled by HAProxy: moving would not mend HAProxy's check.
    const checkBroken = serving('app1', 4, { proxyStates: ['down'] });
    const [, f] = run([obs(1000, { nodes: [checkBroken, standby('app2')] }), obs(3000, { nodes: [checkBroken, standby('app2')] })], steady());
    assert.deepEqual(ofKind(f as Decision, 'activate'), []);
  });

  it('several proxies: a machine is fenced while any proxy routes to it, and readied where any has it in MAINT; an unreadable proxy alone asks nothing', () => {
    const fences = (nodes: NodeObservation[]) => ofKind(last(run([obs(1000, { nodes })], steady())), 'fence').map((a) => a.node);
    const unfences = (nodes: NodeObservation[]) => ofKind(last(run([obs(1000, { nodes })], steady())), 'unfence').map((a) => a.node);
    const active = serving('app1', 4, { proxyStates: ['ready', 'ready'] });
    assert.deepEqual(fences([active, standby('app2', { proxyStates: ['maint', 'ready'] })]), ['app2'], 'the second proxy still has app2 READY');
    assert.deepEqual(fences([active, standby('app2', { proxyStates: ['maint', 'down'] })]), ['app2'], 'DOWN but not MAINT: a check could bring it back');
    assert.deepEqual(fences([active, standby('app2', { proxyStates: ['maint', 'unknown'] })]), [], 'nothing to send the unreadable proxy now');
    assert.deepEqual(fences([active, standby('app2', { proxyStates: ['maint', 'maint'] })]), []);
    assert.deepEqual(unfences([serving('app1', 4, { proxyStates: ['ready', 'maint'] }), standby('app2', { proxyStates: ['maint', 'maint'] })]), ['app1']);
    assert.deepEqual(unfences([active, standby('app2', { proxyStates: ['maint', 'maint'] })]), []);
  });

  it('the new active machine UP at once (mark-up) once seen serving at its epoch with every other machine fenced; once per epoch', () => {
    // app2 activated at epoch 5; its server left MAINT as down until HAProxy's next check.
    const moved = obs(1000, { active: rec('app2', 5, 'switchover'), nodes: [standby('app1'), serving('app2', 5, { proxyStates: ['down'] })] });
    const d = decide(steady(), moved, cfgOf());
    assert.deepEqual(ofKind(d, 'mark-up'), [{ kind: 'mark-up', node: 'app2', epoch: 5 }]);
    assert.equal(d.memory.markedUp, 5);
    // Once: HAProxy's own checks decide after it (a proxy that cannot reach the agent is not told UP every tick).
    assert.deepEqual(ofKind(decide(d.memory, { ...moved, nowMs: 1250 }, cfgOf()), 'mark-up'), []);
    // Already UP, or still in MAINT (then unfenced first): nothing to mark.
    for (const proxyStates of [['ready'], ['maint']] as const) {
      const e = decide(steady(), { ...moved, nodes: [standby('app1'), serving('app2', 5, { proxyStates: [...proxyStates] })] }, cfgOf());
      assert.deepEqual(ofKind(e, 'mark-up'), [], proxyStates[0]);
    }
  });

  it('no mark-up while another machine may still take traffic, or before the observer sees the new one serve at its epoch', () => {
    const markUps = (nodes: NodeObservation[]) => ofKind(decide(steady(), obs(1000, { active: rec('app2', 5, 'switchover'), nodes }), cfgOf()), 'mark-up');
    const up = serving('app2', 5, { proxyStates: ['down'] });
    assert.deepEqual(markUps([standby('app1', { proxyStates: ['ready'] }), up]), [], 'app1 still READY in HAProxy: fenced first');
    assert.deepEqual(markUps([standby('app1', { proxyStates: ['down'] }), up]), [], 'app1 down but not in MAINT: a check could bring it back');
    assert.deepEqual(markUps([standby('app1', { agentActive: true, agentEpoch: 4 }), up]), [], "app1's agent still serves");
    assert.deepEqual(markUps([standby('app1'), serving('app2', 5, { proxyStates: ['down'], deepOk: false })]), [], 'the deep check fails');
    assert.deepEqual(
      markUps([standby('app1'), serving('app2', 5, { proxyStates: ['down'], appHealthy: false })]),
      [{ kind: 'mark-up', node: 'app2', epoch: 5 }],
      "the agent's own health from its last cycle is not waited for: the deep check is fresher",
    );
    assert.deepEqual(markUps([standby('app1'), serving('app2', 4, { proxyStates: ['down'] })]), [], 'its agent serves at an older epoch');
    assert.deepEqual(markUps([standby('app1'), serving('app2', 5, { proxyStates: ['down'], agentReachable: false })]), [], 'its agent does not answer');
    assert.deepEqual(
      markUps([standby('app1'), { ...standby('app2', { proxyStates: ['down'] }), waitingFor: ['app1'] }]),
      [],
      'activated, still in the handover',
    );
    assert.deepEqual(markUps([standby('app1', { proxyStates: ['maint', 'maint'] }), serving('app2', 5, { proxyStates: ['ready', 'down'] })]), [
      { kind: 'mark-up', node: 'app2', epoch: 5 },
    ]);
    // The tick that moves the app: the new machine has not started yet.
    const d = decide(steady(), obs(1000, { request: switchover('app2'), nodes: [serving('app1', 4), standby('app2', { proxyStates: ['down'] })] }), cfgOf());
    assert.deepEqual(
      ofKind(d, 'activate').map((a) => a.node),
      ['app2'],
    );
    assert.deepEqual(ofKind(d, 'mark-up'), []);
  });

  it('a healthy standby that is unreachable directly counts when its agent reports the app healthy', () => {
    const nodes = [dead('app1'), standby('app2', { deepOk: false, appHealthy: true })];
    const [, d] = run([obs(1000, { nodes }), obs(3000, { nodes })], steady());
    assert.deepEqual(
      ofKind(d as Decision, 'activate').map((a) => a.node),
      ['app2'],
    );
    // ... but not when the agent is unreachable too, whatever it last said.
    const gone = [dead('app1'), standby('app2', { deepOk: false, agentReachable: false, appHealthy: true })];
    const [, e] = run([obs(1000, { nodes: gone }), obs(3000, { nodes: gone })], steady());
    assert.deepEqual(ofKind(e as Decision, 'activate'), []);
  });

  it('the observer alone losing its deep check does not fail over while the agent reports the app healthy', () => {
    const nodes = [serving('app1', 4, { deepOk: false }), standby('app2')];
    const ds = run([obs(1000, { nodes }), obs(5000, { nodes })], steady());
    assert.deepEqual(
      ds.flatMap((d) => d.actions),
      [],
    );
    assert.equal(last(ds).memory.state, 'healthy');
  });

  it('failover (pair): Patroni moved the primary by itself and the app died: follows it at once, no db-switchover', () => {
    const d = decide(pairSteady(), obs(1000, { followDb: true, nodes: [dead('app1'), standby('app2'), standby('app3', { dbPrimary: true })] }), cfgOf());
    assert.deepEqual(
      ofKind(d, 'activate').map((a) => a.node),
      ['app3'],
    );
    assert.equal(
      d.transitions.at(-1)?.reason,
      'follow-db: the database primary moved from app1 to app3 and the app runs on app1, which fails its checks (deep check fails, agent unreachable); app3 is ready (agent reachable, confirmed in etcd)',
    );
    assert.deepEqual(
      ofKind(d, 'event').map((e) => e.event.type),
      ['failover', 'fence'],
    );
    assert.deepEqual(ofKind(d, 'db-switchover'), []);
  });

  it('failover (pair): a new leader that first sees the primary elsewhere takes it as it is: plain failover to it', () => {
    const nodes = [dead('app1'), standby('app2'), standby('app3', { dbPrimary: true })];
    const ds = run([obs(1000, { followDb: true, nodes }), obs(3000, { followDb: true, nodes })]);
    assert.deepEqual(
      ds.map((d) => d.memory.state),
      ['suspect', 'failing-over'],
    );
    assert.deepEqual(
      ofKind(last(ds), 'activate').map((a) => a.node),
      ['app3'],
    );
    assert.match(
      ofKind(last(ds), 'activate')[0]?.reason ?? '',
      /^failover: .*; app3 is ready \(agent reachable, confirmed in etcd\) and holds the database primary$/,
    );
    assert.deepEqual(ofKind(last(ds), 'db-switchover'), []);
  });

  it('follow-db: does not follow while two machines claim the primary', () => {
    const d = decide(steady(), obs(1000, { followDb: true, nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2', { dbPrimary: true })] }), cfgOf());
    assert.deepEqual(d.actions, []);
  });

  it('standbyHealthyForMs: a standby healthy for less is no candidate yet', () => {
    const cfg = cfgOf({ standbyHealthyForMs: 5000 });
    const nodes = (t: number) => [dead('app1'), t >= 1000 ? standby('app2') : sick('app2')];
    const ds = run(
      [0, 1000, 3000, 5999, 6000].map((t) => obs(t, { nodes: nodes(t) })),
      steady(),
      cfg,
    );
    assert.deepEqual(
      ds.map((d) => d.memory.state),
      ['suspect', 'suspect', 'no-candidate', 'no-candidate', 'failing-over'],
    );
  });
});

// ---- a restarted observer converges ------------------------------------------------------------

describe('decide: idempotent and resumable', () => {
  // Mid-failover: the record already names app2 at epoch 5; app1 is not yet in MAINT, app2 still is.
  const mid = obs(3500, { active: rec('app2', 5, 'failover: app1 has failed'), nodes: [dead('app1', { proxyStates: ['down'] }), standby('app2')] });

  it('fresh memory mid-failover issues the same fence and unfence, and no second epoch bump', () => {
    const failing = [dead('app1', { proxyStates: ['ready'] }), standby('app2')];
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
    assert.deepEqual(
      ds.flatMap((d) => ofKind(d, 'activate')),
      [],
    );
  });

  it('an activate whose CAS never happened (record still app1 at 4) is decided again from scratch', () => {
    const failing = [dead('app1', { proxyStates: ['ready'] }), standby('app2')];
    const ds = run([obs(5000, { nodes: failing }), obs(7000, { nodes: failing })]);
    assert.deepEqual(
      ds.map((d) => d.memory.state),
      ['suspect', 'failing-over'],
    );
    assert.deepEqual(
      ofKind(last(ds), 'activate').map((a) => [a.epoch, a.expectEpoch]),
      [[5, 4]],
    );
  });

  it('a record changed by another writer restarts the timers from the observation', () => {
    const failing = [dead('app1', { proxyStates: ['ready'] }), standby('app2')];
    const [, d] = run(
      [obs(1000, { nodes: failing }), obs(2500, { active: rec('app2', 5), nodes: [dead('app1', { proxyStates: ['maint'] }), serving('app2', 5)] })],
      steady(),
    );
    assert.equal(d?.memory.state, 'healthy');
    assert.deepEqual(d?.actions, []);
  });

  it('a new leader that finds the active node confirmed at its epoch but failing starts the failure timer', () => {
    const nodes = [sick('app1', { agentActive: true, agentEpoch: 4, proxyStates: ['ready'] }), standby('app2')];
    const ds = run([obs(1000, { nodes }), obs(3000, { nodes })]);
    assert.deepEqual(
      ds.map((d) => d.memory.state),
      ['suspect', 'failing-over'],
    );
    assert.match(ds[0]?.transitions[0]?.reason ?? '', /^app1 is active at epoch 4 but fails its checks/);
  });

  it('leading again: memory reset, the follower acts on nothing it remembered', () => {
    const failing = [dead('app1'), standby('app2')];
    const ds = run([obs(1000, { nodes: failing }), obs(2000, { isLeader: false, nodes: failing }), obs(3500, { nodes: failing })], steady());
    assert.deepEqual(
      ds.map((d) => d.memory.state),
      ['suspect', 'follower', 'suspect'],
    );
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
    {
      name: 'failover --to a standby that is not ready',
      o: obs(1, { request: failover('app2'), nodes: [serving('app1', 4), sick('app2')] }),
      ok: false,
      message: /^app2 is not ready \(agent reachable, not confirmed in etcd within its lease\); app1 stays active$/,
    },
    {
      name: 'failover decided at the current epoch (the dashboard) is carried out',
      o: obs(1, { request: { ...failover('app2'), epoch: 4, by: 'ann (dashboard)' } }),
      ok: true,
      message: /app2 is active at epoch 5/,
      moved: ['app2'],
    },
    {
      name: 'failover decided at an older epoch is refused: the cluster moved',
      o: obs(1, { request: { ...failover('app2'), epoch: 3 } }),
      ok: false,
      message: /^it was decided at epoch 3 and the cluster has moved since: app1 is active at epoch 4; look again and decide anew$/,
    },
    {
      name: 'switchover decided at an epoch, with no active record any more, is refused',
      o: obs(1, { active: null, request: { ...switchover('app2'), epoch: 4 } }),
      ok: false,
      message: /decided at epoch 4 .*there is no active record/,
      moved: ['app1'], // the bootstrap goes on as without a request
    },
    {
      name: 'failover --to an unknown node',
      o: obs(1, { request: failover('app9') }),
      ok: false,
      message: /no app machine is named app9 \(app machines: app1, app2\)/,
    },
    { name: 'failover --to the active node', o: obs(1, { request: failover('app1') }), ok: true, message: /app1 is already active at epoch 4/ },
    {
      name: 'failover --to away from a healthy DB primary (pair): only the app moves',
      o: obs(1, { followDb: true, request: failover('app2'), nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] }),
      ok: true,
      message: /^app2 is active at epoch 5; the database primary stays on app1$/,
      moved: ['app2'],
    },
    {
      name: 'failover --to when the DB primary machine is down (pair)',
      o: obs(1, { followDb: true, request: failover('app2'), nodes: [dead('app1', { dbPrimary: true }), standby('app2')] }),
      ok: true,
      message: /app2 is active/,
      moved: ['app2'],
    },
    {
      name: 'failover --to without an active record',
      o: obs(1, { active: null, request: failover('app2') }),
      ok: true,
      message: /app2 is active at epoch 5/,
      moved: ['app2'],
    },
    {
      name: 'switchover --to a given node',
      o: obs(1, { request: switchover('app3'), nodes: [serving('app1', 4), standby('app2'), standby('app3')] }),
      ok: true,
      message: /app3 is active/,
      moved: ['app3'],
    },
    {
      name: 'switchover with no healthy standby',
      o: obs(1, { request: switchover(), nodes: [serving('app1', 4), sick('app2')] }),
      ok: false,
      message: /no standby is healthy; app1 stays active/,
    },
    {
      name: 'switchover --to an unreachable node',
      o: obs(1, { request: switchover('app2'), nodes: [serving('app1', 4), dead('app2')] }),
      ok: false,
      message: /^app2 is not healthy \(agent unreachable\); app1 stays active$/,
    },
    { name: 'switchover --to an unknown node', o: obs(1, { request: switchover('nope') }), ok: false, message: /no app machine is named nope/ },
    {
      name: 'switchover without an active record',
      o: obs(1, { active: null, request: switchover() }),
      ok: false,
      message: /no active node yet/,
      moved: ['app1'],
    },
    {
      name: 'switchover already carried out (the record names the request)',
      o: obs(1, { active: { ...rec('app2', 5), requestId: 'r1' }, request: switchover(), nodes: [standby('app1'), serving('app2', 5)] }),
      ok: true,
      message: /already carried out: app2 is active at epoch 5/,
    },
    // The id, not the text: a reason that mentions the request is no answer (its switchover runs).
    {
      name: 'a record whose reason alone mentions the request',
      o: obs(1, {
        active: rec('app2', 5, 'switchover to app2 requested by the operator (request r1)'),
        request: switchover(),
        nodes: [standby('app1'), serving('app2', 5)],
      }),
      ok: true,
      message: /^app1 is active at epoch 6$/,
      moved: ['app1'],
    },
    {
      name: 'any request during maintenance',
      o: obs(1, { maintenance: true, request: switchover('app2') }),
      ok: false,
      message: /the cluster is in maintenance/,
    },
  ];
  for (const c of table) {
    it(c.name, () => {
      const d = decide(steady(), c.o, cfgOf());
      const a = answer(d);
      assert.equal(a.ok, c.ok, a.message);
      assert.match(a.message, c.message);
      assert.deepEqual(a.moved, c.moved ?? []);
      assert.equal(
        ofKind(d, 'event').some((e) => e.event.type === 'request-failed'),
        !c.ok,
        'a refusal is recorded',
      );
    });
  }

  it('switchover (pair) resumed with fresh memory after Patroni moved the primary: activates once', () => {
    const o = obs(5000, { followDb: true, request: switchover(), nodes: [serving('app1', 4), standby('app2', { dbPrimary: true })] });
    const d = decide(initialMemory(), o, cfgOf());
    assert.deepEqual(
      ofKind(d, 'activate').map((a) => [a.node, a.epoch, a.expectEpoch]),
      [['app2', 5, 4]],
    );
    assert.deepEqual(ofKind(d, 'db-switchover'), []);
    assert.match(ofKind(d, 'activate')[0]?.reason ?? '', /request r1/);
    assert.equal(ofKind(d, 'activate')[0]?.requestId, 'r1', 'the record will name the request');
  });

  it('only a move an operator request makes names a request', () => {
    const [failedOver] = run(
      [obs(3000, { nodes: [dead('app1'), standby('app2')] })],
      last(run([obs(1000, { nodes: [dead('app1'), standby('app2')] })], steady())).memory,
    );
    assert.deepEqual(
      ofKind(failedOver as Decision, 'activate').map((a) => a.requestId),
      [undefined],
    );
    assert.deepEqual(
      ofKind(decide(steady(), obs(1, { request: failover('app2') }), cfgOf()), 'activate').map((a) => a.requestId),
      ['r2'],
    );
  });

  it('switchover (pair): db-switchover names the machines, issued once while waiting', () => {
    const nodes = [serving('app1', 4, { dbPrimary: true }), standby('app2')];
    const ds = run(
      [1000, 2000, 3000].map((t) => obs(t, { followDb: true, request: switchover(), nodes })),
      steady(),
    );
    assert.deepEqual(
      ds.flatMap((d) => ofKind(d, 'db-switchover')),
      [{ kind: 'db-switchover', from: 'app1', to: 'app2' }],
    );
  });
});

// ---- node-lost / node-back ---------------------------------------------------------------------

describe('decide: node-lost and node-back', () => {
  it('reported once the change has lasted lostAfterMs, not for a blip', () => {
    const at = (t: number, app2: NodeObservation) => obs(t, { nodes: [serving('app1', 4), app2] });
    const ds = run(
      [
        at(1000, dead('app2', { proxyStates: ['maint'] })),
        at(1500, standby('app2')),
        at(2000, dead('app2', { proxyStates: ['maint'] })),
        at(3999, dead('app2', { proxyStates: ['maint'] })),
        at(4000, dead('app2', { proxyStates: ['maint'] })),
        at(5000, standby('app2')),
        at(7000, standby('app2')),
      ],
      steady(),
    );
    const events = ds.map((d) => ofKind(d, 'event').map((e) => `${e.event.type} ${e.event.node}`));
    assert.deepEqual(events, [[], [], [], [], ['node-lost app2'], [], ['node-back app2']]);
  });

  it('a fresh leader that first sees a machine down records no node-back when it comes up (start-up)', () => {
    const at = (t: number, app2: NodeObservation) => obs(t, { nodes: [serving('app1', 4), app2] });
    const ds = run([
      at(0, dead('app2', { proxyStates: ['maint'] })),
      at(1000, dead('app2', { proxyStates: ['maint'] })),
      ...[2000, 3000, 5000, 60_000].map((t) => at(t, standby('app2'))),
    ]);
    assert.deepEqual(
      ds.flatMap((d) => ofKind(d, 'event')),
      [],
    );
    // A real loss afterwards is reported, and so is the return, with its message.
    const later = run(
      [6e4 + 1000, 6e4 + 3000, 6e4 + 4000, 6e4 + 6000].map((t, i) => at(t, i < 2 ? dead('app2', { proxyStates: ['maint'] }) : standby('app2'))),
      last(ds).memory,
    );
    assert.deepEqual(
      later.flatMap((d) => ofKind(d, 'event').map((e) => [e.event.type, e.event.message])),
      [
        ['node-lost', 'app2 has not answered for 2000 ms: neither the deep check nor its agent'],
        ['node-back', 'app2 answers again (for 2000 ms)'],
      ],
    );
  });

  it('a machine only the agent can reach is not lost', () => {
    const ds = run(
      [1000, 5000].map((t) => obs(t, { nodes: [serving('app1', 4), standby('app2', { deepOk: false })] })),
      steady(),
    );
    assert.deepEqual(
      ds.flatMap((d) => d.actions),
      [],
    );
  });
});

// ---- pair: a failover moves only the app; the app follows a primary that moved by itself ---------

describe('decide: pair, only the app fails over, never fail back', () => {
  const pair = (nowMs: number, over: Partial<Observation> = {}): Observation => obs(nowMs, { followDb: true, ...over });
  /** The app process on app1 has died; its machine, agent and Patroni (still primary) are fine. */
  const appDiedOnApp1 = [sick('app1', { dbPrimary: true, agentActive: true, proxyStates: ['ready'] }), standby('app2')];
  /** Ticks every 500 ms from `from` to `to` (exclusive). */
  const ticks = (from: number, to: number): number[] => Array.from({ length: Math.ceil((to - from) / 500) }, (_, i) => from + i * 500);
  /** The failover tick's decision and the memory after it. */
  const failedOverToApp2 = (): Decision => last(run([pair(1000, { nodes: appDiedOnApp1 }), pair(3000, { nodes: appDiedOnApp1 })], pairSteady()));
  const active = rec('app2', 5, 'failover: ...');
  /** After the failover: app2 serves, app1 fully recovered (ready standby), `primary` holds the primary. */
  const after = (t: number, primary: 'app1' | 'app2' | 'app3' | null) =>
    pair(t, {
      active,
      nodes: [
        standby('app1', { dbPrimary: primary === 'app1' }),
        serving('app2', 5, { dbPrimary: primary === 'app2' }),
        standby('app3', { dbPrimary: primary === 'app3' }),
      ],
    });
  /** Memory after many ticks with app1 recovered and the primary still on it. */
  const settled = (): Memory =>
    last(
      run(
        ticks(3500, 100_000).map((t) => after(t, 'app1')),
        failedOverToApp2().memory,
      ),
    ).memory;

  it('the app dies on the primary machine: failover to app2, no db-switchover, the primary stays the accepted one', () => {
    const d = failedOverToApp2();
    assert.deepEqual(kinds(d), ['activate', 'fence', 'unfence', 'event:failover', 'event:fence']);
    assert.deepEqual(
      ofKind(d, 'activate').map(({ node, epoch, expectEpoch }) => ({ node, epoch, expectEpoch })),
      [{ node: 'app2', epoch: 5, expectEpoch: 4 }],
    );
    const [ev] = ofKind(d, 'event').filter((a) => a.event.type === 'failover');
    assert.deepEqual(ev?.event.details, { from: 'app1' });
    assert.doesNotMatch(ev?.event.message ?? '', /Patroni|database primary follows/);
    assert.deepEqual(d.memory.db, { primary: 'app1' });
  });

  it('app1 recovers fully with the primary still on it: across many ticks nothing moves', () => {
    const steps = [
      ...ticks(3500, 8000).map((t) => after(t, 'app1')),
      // Patroni blips between states on the way: no primary, then two claims.
      pair(8000, { active, nodes: [standby('app1'), serving('app2', 5), standby('app3')] }),
      pair(8500, { active, nodes: [standby('app1', { dbPrimary: true }), serving('app2', 5, { dbPrimary: true }), standby('app3')] }),
      ...ticks(9000, 1_000_000).map((t) => after(t, 'app1')),
    ];
    const ds = run(steps, failedOverToApp2().memory);
    assert.deepEqual(
      ds.flatMap((d) => ofKind(d, 'activate')),
      [],
      'never an activate',
    );
    assert.deepEqual(
      ds.flatMap((d) => ofKind(d, 'db-switchover')),
      [],
      'never a db-switchover',
    );
    assert.deepEqual(
      ds.flatMap((d) => ofKind(d, 'event').map((e) => e.event.type)),
      ['activate'],
    );
    assert.ok(ds.every((d) => d.memory.state === 'healthy'));
    assert.deepEqual(last(ds).memory.db, { primary: 'app1' });
  });

  it('the primary then moves to app2 by itself: nothing moves, the app is already there', () => {
    const ds = run(
      ticks(100_000, 400_000).map((t) => after(t, 'app2')),
      settled(),
    );
    assert.deepEqual(
      ds.flatMap((d) => d.actions),
      [],
    );
    assert.ok(ds.every((d) => d.memory.state === 'healthy'));
    assert.deepEqual(last(ds).memory.db, { primary: 'app2' });
  });

  it('the primary then moves by itself to a machine the app is not on: the app follows', () => {
    // Straight from app1 to app3 (a Patroni failover).
    const d = decide(settled(), after(100_000, 'app3'), cfgOf());
    assert.deepEqual(
      ofKind(d, 'activate').map((a) => [a.node, a.epoch]),
      [['app3', 6]],
    );
    assert.deepEqual(ofKind(d, 'db-switchover'), []);
    assert.match(d.transitions.at(-1)?.reason ?? '', /^follow-db: the database primary moved from app1 to app3 and the app runs on app2; app3 is ready/);
    // Via app2 (accepted there) and later back to app1 by itself: then app1 is no machine the app just left.
    const together = run(
      ticks(100_000, 110_000).map((t) => after(t, 'app2')),
      settled(),
    );
    const e = decide(last(together).memory, after(110_000, 'app1'), cfgOf());
    assert.deepEqual(
      ofKind(e, 'activate').map((a) => [a.node, a.epoch]),
      [['app1', 6]],
    );
    assert.match(e.transitions.at(-1)?.reason ?? '', /^follow-db: the database primary moved from app2 to app1 and the app runs on app2; app1 is ready/);
  });

  it('the app then fails on app2: an ordinary failover to app1, where the primary is, and the tiers are together', () => {
    const failing = (t: number) =>
      pair(t, { active, nodes: [standby('app1', { dbPrimary: true }), sick('app2', { agentActive: true, agentEpoch: 5, proxyStates: ['ready'] })] });
    const ds = run([failing(100_000), failing(102_000)], settled());
    assert.deepEqual(
      ofKind(last(ds), 'activate').map((a) => a.node),
      ['app1'],
    );
    assert.match(
      ofKind(last(ds), 'activate')[0]?.reason ?? '',
      /^failover: app2 has failed its checks for 2000 ms .*; app1 is ready \(agent reachable, confirmed in etcd\) and holds the database primary$/,
    );
    assert.deepEqual(ofKind(last(ds), 'db-switchover'), []);
  });

  it('failover --to (pair) away from the primary: only the app moves, and it does not follow back', () => {
    const d = decide(pairSteady(), pair(1000, { request: failover('app2'), nodes: [serving('app1', 4, { dbPrimary: true }), standby('app2')] }), cfgOf());
    assert.deepEqual(kinds(d), ['activate', 'fence', 'unfence', 'event:failover', 'event:fence', 'complete-request']);
    const later = run(
      ticks(1500, 120_000).map((t) =>
        pair(t, {
          active: rec('app2', 5, 'failover to app2 requested by the operator (request r2)'),
          nodes: [standby('app1', { dbPrimary: true }), serving('app2', 5)],
        }),
      ),
      d.memory,
    );
    assert.deepEqual(
      later.flatMap((x) => ofKind(x, 'activate')),
      [],
    );
    assert.deepEqual(
      later.flatMap((x) => ofKind(x, 'db-switchover')),
      [],
    );
  });

  it('a new leader that finds the tiers apart moves nothing: neither the app nor the database', () => {
    const ds = run(ticks(0, 120_000).map((t) => pair(t, { active, nodes: [standby('app1', { dbPrimary: true }), serving('app2', 5)] })));
    assert.deepEqual(
      ds.flatMap((d) => d.actions),
      [],
    );
    assert.deepEqual(last(ds).memory.db, { primary: 'app1' });
  });

  it('the failover happened while no primary was seen (app1 cut off); app1 comes back with its primary: nothing moves', () => {
    const gone = [dead('app1', { proxyStates: ['ready'] }), standby('app2')];
    const failed = run([pair(1000, { nodes: gone }), pair(3000, { nodes: gone })], pairSteady());
    assert.deepEqual(
      ofKind(last(failed), 'activate').map((a) => a.node),
      ['app2'],
    );
    const back = run(
      ticks(3500, 60_000).map((t) => pair(t, { active: rec('app2', 5), nodes: [standby('app1', { dbPrimary: true }), serving('app2', 5)] })),
      last(failed).memory,
    );
    assert.deepEqual(
      back.flatMap((d) => ofKind(d, 'activate')),
      [],
    );
    assert.deepEqual(
      back.flatMap((d) => ofKind(d, 'db-switchover')),
      [],
    );
  });

  it('two machines claiming the primary: the failover goes to the first candidate and asks Patroni for nothing', () => {
    const nodes = [sick('app1', { dbPrimary: true, agentActive: true, proxyStates: ['ready'] }), standby('app2', { dbPrimary: true })];
    const ds = run([pair(1000, { nodes }), pair(3000, { nodes })], pairSteady());
    assert.deepEqual(
      ofKind(last(ds), 'activate').map((a) => a.node),
      ['app2'],
    );
    assert.deepEqual(
      ds.flatMap((d) => ofKind(d, 'db-switchover')),
      [],
    );
  });

  it('a primary moved during maintenance counts as moved by itself afterwards: the app follows', () => {
    const moved = [serving('app1', 4), standby('app2', { dbPrimary: true })];
    const ds = run(
      [pair(1000, { maintenance: true, nodes: moved }), pair(2000, { maintenance: true, nodes: moved }), pair(3000, { nodes: moved })],
      pairSteady(),
    );
    assert.deepEqual(
      ds.slice(0, 2).flatMap((d) => ofKind(d, 'activate')),
      [],
    );
    assert.deepEqual(
      ofKind(last(ds), 'activate').map((a) => a.node),
      ['app2'],
    );
    assert.match(last(ds).transitions.at(-1)?.reason ?? '', /^follow-db: the database primary moved from app1 to app2/);
  });

  it('no db-switchover outside pair', () => {
    const nodes = [sick('app1', { dbPrimary: true, agentActive: true, proxyStates: ['ready'] }), standby('app2')];
    const plain = run([obs(1000, { nodes }), obs(3000, { nodes })], steady());
    assert.deepEqual(
      ofKind(last(plain), 'activate').map((a) => a.node),
      ['app2'],
    );
    assert.deepEqual(
      plain.flatMap((d) => ofKind(d, 'db-switchover')),
      [],
    );
  });
});

// ---- texts: standbys, durations ---------------------------------------------------------------

describe('decide: reason and event texts', () => {
  it('duration: whole milliseconds below 10 s, then seconds, then minutes', () => {
    assert.equal(duration(2498.3984530000016), '2498 ms');
    assert.equal(duration(0.4), '0 ms');
    assert.equal(duration(9999.6), '10 s');
    assert.equal(duration(10_000), '10 s');
    assert.equal(duration(12_345.678), '12.3 s');
    assert.equal(duration(600_000), '10 min');
    assert.equal(duration(5_430_000), '90.5 min');
  });

  it('fractional clock readings (performance.now()) give rounded texts everywhere', () => {
    const t0 = 12_345.678_901_234;
    const failing = [dead('app1', { proxyStates: ['ready'] }), standby('app2')];
    const ds = run(
      [
        obs(t0, { nodes: failing }),
        obs(t0 + 2498.398_453_000_001_6, { nodes: failing }),
        obs(t0 + 2700.5, { active: rec('app2', 5), nodes: failedOver }),
        obs(t0 + 60_000.987_654, { active: rec('app2', 5), nodes: [standby('app1'), serving('app2', 5)] }),
        obs(t0 + 62_500.987_654, { active: rec('app2', 5), nodes: [standby('app1'), serving('app2', 5)] }),
      ],
      steady(),
    );
    ds.forEach((d, i) => assertTidy(d, `tick ${i}`));
    const texts = ds.flatMap((d) => [...d.transitions.map((t) => t.reason), ...ofKind(d, 'event').map((e) => e.event.message)]);
    assert.ok(texts.includes('app1 has not answered for 2498 ms: neither the deep check nor its agent'), texts.join('\n'));
    assert.ok(
      texts.some((x) => /^failover: app1 has failed its checks for 2498 ms /.test(x)),
      texts.join('\n'),
    );
    assert.ok(texts.includes('app2 serves at epoch 5, 202 ms after its activation'), texts.join('\n'));
    assert.ok(texts.includes('app1 answers again (for 2500 ms)'), texts.join('\n'));
  });

  it('standbys: "ready (agent reachable, confirmed in etcd)", never "deep check fails"', () => {
    const nodes = [dead('app1'), sick('app2'), dead('app3', { proxyStates: ['maint'] })];
    const [, d] = run([obs(1000, { nodes }), obs(3000, { nodes })], steady());
    const [ev] = ofKind(d as Decision, 'event').filter((e) => e.event.type === 'failover');
    assert.equal(ev?.event.details?.outcome, 'no-candidate');
    assert.equal(
      ev?.event.message,
      'no failover: app1 has failed its checks for 2000 ms (deep check fails, agent unreachable) and no standby is healthy (app2: agent reachable, not confirmed in etcd within its lease; app3: agent unreachable); the observer keeps checking',
    );
  });
});

// ---- the declared edges ------------------------------------------------------------------------

describe('decide: TRANSITIONS', () => {
  const edge = (from: State, to: State): string => `${from} -> ${to}`;
  const declared = new Set(TRANSITIONS.map((e) => edge(e.from, e.to)));

  it('transition() refuses an undeclared edge', () => {
    assert.throws(() => transition('follower', 'no-candidate', 'test'), /undeclared transition follower -> no-candidate/);
    assert.throws(() => transition('healthy', 'healthy', 'test'), /undeclared transition healthy -> healthy/);
    assert.deepEqual(transition('suspect', 'failing-over', 'test'), { from: 'suspect', to: 'failing-over', reason: 'test' });
  });

  it('every row has a rule, and no row is there twice', () => {
    const rows = TRANSITIONS.map((e) => `${edge(e.from, e.to)}: ${e.rule}`);
    assert.equal(new Set(rows).size, rows.length);
    for (const e of TRANSITIONS) assert.ok(e.rule.length > 10, edge(e.from, e.to));
  });

  /**
   * Every declared edge is taken: from a memory in each state, decide one tick on each of a set of
   * observations (the worlds below). An edge no world reaches is either dead or needs a world here.
   */
  it('every declared edge is taken by some tick', () => {
    const pairNodes = (primary: string, over: Partial<NodeObservation> = {}): NodeObservation[] => [
      serving('app1', 4, { dbPrimary: primary === 'app1', ...over }),
      standby('app2', { dbPrimary: primary === 'app2' }),
    ];
    const memories: [string, () => Memory][] = [
      ['follower', initialMemory],
      ['bootstrap', () => last(run([obs(0, { active: null, nodes: [sick('app1'), sick('app2')] })])).memory],
      ['healthy', steady],
      ['suspect', () => last(run([obs(1000, { nodes: [dead('app1'), standby('app2')] })], steady())).memory],
      [
        'no-candidate',
        () => last(run([obs(1000, { nodes: [dead('app1'), sick('app2')] }), obs(3000, { nodes: [dead('app1'), sick('app2')] })], steady())).memory,
      ],
      [
        'failing-over',
        () => last(run([obs(1000, { nodes: [dead('app1'), standby('app2')] }), obs(3000, { nodes: [dead('app1'), standby('app2')] })], steady())).memory,
      ],
      ['switching-db', () => last(run([obs(1000, { followDb: true, request: switchover('app2'), nodes: pairNodes('app1') })], steady())).memory],
      ['maintenance', () => last(run([obs(0, { maintenance: true })])).memory],
    ];
    const worlds: Observation[] = [];
    for (const nowMs of [3500, 100_000]) {
      worlds.push(
        obs(nowMs, { isLeader: false }),
        obs(nowMs, { maintenance: true }),
        obs(nowMs, { active: null, nodes: [sick('app1'), sick('app2')] }),
        obs(nowMs, { active: null, request: failover('app2'), nodes: [sick('app1'), standby('app2')] }),
        obs(nowMs),
        obs(nowMs, { nodes: [dead('app1'), standby('app2')] }),
        obs(nowMs, { nodes: [dead('app1'), sick('app2')] }),
        obs(nowMs, { request: failover('app2') }),
        obs(nowMs, { active: rec('app2', 5), nodes: [standby('app1'), serving('app2', 5)] }),
        obs(nowMs, { active: rec('app2', 5), nodes: [standby('app1'), standby('app2')] }),
        obs(nowMs, { active: rec('app2', 5), nodes: [standby('app1'), dead('app2')] }),
        obs(nowMs, { active: rec('app2', 5), request: failover('app1'), nodes: [standby('app1'), standby('app2')] }),
        obs(nowMs, { followDb: true, request: switchover('app2'), nodes: pairNodes('app1') }),
        obs(nowMs, { followDb: true, request: switchover('app2'), nodes: [dead('app1'), standby('app2')] }),
        obs(nowMs, { followDb: true, active: rec('app2', 5), request: switchover('app1'), nodes: [standby('app1'), serving('app2', 5, { dbPrimary: true })] }),
        obs(nowMs, { followDb: true, active: rec('app2', 5), request: switchover('app1'), nodes: [standby('app1'), standby('app2', { dbPrimary: true })] }),
        obs(nowMs, { followDb: true, request: switchover('app2'), nodes: [serving('app1', 4), standby('app2', { dbPrimary: true })] }),
        obs(nowMs, { followDb: true, request: switchover('app3'), nodes: pairNodes('app1') }),
        obs(nowMs, { followDb: true, request: switchover('app2'), nodes: [serving('app1', 4, { dbPrimary: true }), standby('app3')] }),
      );
    }
    const taken = new Set<string>();
    for (const [name, memory] of memories) {
      assert.equal(memory().state, name, 'the memory is in the state it is named for');
      for (const w of worlds) for (const tr of decide(memory(), w, cfgOf()).transitions) taken.add(edge(tr.from, tr.to));
    }
    assert.deepEqual([...declared].filter((e) => !taken.has(e)).sort(), [], 'declared edges no tick takes');
  });
});

// ---- the documentation -------------------------------------------------------------------------

describe('docs/observer-states.md', () => {
  const doc = readFileSync(new URL('../../docs/observer-states.md', import.meta.url), 'utf8');

  /** The edges the state table names, read as the paragraph above it says. */
  function documentedEdges(): Set<string> {
    const section = doc.split(/^## /m).find((s) => s.startsWith('The state table'));
    assert.ok(section, 'the section "The state table"');
    const rows = section
      .split('\n')
      .filter((l) => l.startsWith('| '))
      .slice(1); // after the header
    assert.ok(rows.length > 20, `rows of the state table: ${rows.length}`);
    const names = (cell: string): State[] =>
      [...cell.matchAll(/`([^`]+)`/g)].map(([, n]) => {
        assert.ok((STATES as readonly string[]).includes(n ?? ''), `${JSON.stringify(n)} in ${JSON.stringify(cell)} is a state`);
        return n as State;
      });
    const out = new Set<string>();
    for (const row of rows) {
      const [fromCell = '', , nextCell = ''] = row.slice(2).split(' | ');
      const next = nextCell.replace(/\([^)]*\)/g, '').trim();
      if (next.startsWith('stays')) continue;
      const to = names(next);
      assert.ok(to.length > 0, `a next state in ${JSON.stringify(row)}`);
      const from = fromCell === 'any other' ? STATES.filter((s) => !to.includes(s)) : names(fromCell);
      assert.ok(from.length > 0, `a state in ${JSON.stringify(row)}`);
      for (const f of from) for (const t of to) if (f !== t || (from.length === 1 && to.length === 1)) out.add(`${f} -> ${t}`);
    }
    return out;
  }

  it('has a row for every state', () => {
    for (const s of STATES) assert.match(doc, new RegExp(`^\\| \`${s}\` [|,]`, 'm'), `state ${s} documented`);
  });

  it('its state table names exactly the edges in TRANSITIONS', () => {
    const documented = documentedEdges();
    const declared = new Set(TRANSITIONS.map((e) => `${e.from} -> ${e.to}`));
    assert.deepEqual([...declared].filter((e) => !documented.has(e)).sort(), [], 'declared in TRANSITIONS, missing from the doc');
    assert.deepEqual([...documented].filter((e) => !declared.has(e)).sort(), [], 'in the doc, not declared in TRANSITIONS');
  });
});
