/**
 * The observer's decision: a pure function from what the leader observed this tick, and what it
 * remembers from earlier ticks, to the actions the daemon carries out. No I/O and no clock: time
 * is `obs.nowMs`, a monotonic reading the daemon passes in. TRANSITIONS declares every edge;
 * docs/observer-states.md lists every state and transition with the reason texts written here.
 *
 * Two kinds of output:
 * - moves (activate, db-switchover, complete-request, events) come from the state machine, which
 *   needs memory for its timers (how long has the active node been failing?) and for where it
 *   last accepted the database primary (`pair`: did the primary move by itself?). An automatic
 *   failover, or `failover --to`, moves only the app; only a planned switchover moves the database;
 * - fencing (fence, unfence) is derived from the observation alone on every acting tick: every
 *   app machine but the active one is in MAINT with its services stopped, the active one is not
 *   in MAINT. So an observer that restarts with empty memory finishes an interrupted failover,
 *   and the record in etcd, not this memory, says which node is active.
 *
 * @example
 *   let memory = initialMemory();
 *   const { memory: next, actions, transitions } = decide(memory, observation, DEFAULT_DECIDE_CONFIG);
 */
import { STATES, type ActiveRecord, type EventType, type OperatorRequest, type State, type VigilEvent } from '../model/ha.ts';

/** HAProxy's view of an app server: its admin state (maint, drain) or else its check result. */
export type ProxyState = 'ready' | 'maint' | 'drain' | 'down' | 'unknown';

export interface NodeObservation {
  name: string;
  /** The observer's own request through nginx and the app to the database answered 200. */
  deepOk: boolean;
  agentReachable: boolean;
  /** The agent says it serves (started the services at an epoch it confirmed). */
  agentActive: boolean;
  agentEpoch: number | null;
  /**
   * The agent's local view of the app's health check; for a node whose agent does not serve (a
   * standby), its readiness: it confirmed the cluster state in etcd within its lease.
   */
  appHealthy: boolean;
  /** The Patroni primary runs on this machine (pair topology). */
  dbPrimary: boolean;
  /**
   * pair, read only while a switchover request is pending: its Patroni is the primary stopping
   * PostgreSQL (role primary, state `stopping`: a switchover's demote, past its checkpoint, in the
   * fast shutdown). Its /primary still answers 200 until Patroni's stop loop ends, about a second later.
   */
  dbStopping?: boolean;
  /** The highest epoch its agent has seen, kept across restarts (a new record starts above it). */
  highestEpoch?: number;
  /** Activated, its agent waits for these machines to stop serving and drop their claims (the handover). */
  waitingFor?: string[];
  /** Its server in each proxy's app backend, one entry per proxy machine ('unknown': that proxy could not be read). */
  proxyStates: ProxyState[];
}

export interface Observation {
  /** Monotonic milliseconds. */
  nowMs: number;
  isLeader: boolean;
  maintenance: boolean;
  active: ActiveRecord | null;
  request: OperatorRequest | null;
  /**
   * `pair` topology: the app and the PostgreSQL primary run on one machine. The app follows a
   * primary that moved by itself; a failover of the app never moves the primary (the app reaches
   * it on the other machine through HAProxy's :5000); only a planned switchover moves both.
   */
  followDb: boolean;
  /** Every app machine, in cluster-file order (the order breaks ties between candidates). */
  nodes: NodeObservation[];
}

export interface NodeMemory {
  /** Since when the machine has been healthy without interruption; null while it is not. */
  healthySinceMs: number | null;
  /** Reachability as last reported by node-lost / node-back, or as first seen. */
  reachable: boolean;
  /** This leader recorded node-lost and no node-back since: only then is its return a node-back. */
  lost: boolean;
  /** When the observation first differed from `reachable`; null while it agrees. */
  changedSinceMs: number | null;
}

/** What the daemon carries from one tick to the next; plain JSON so it can be logged. */
export interface Memory {
  state: State;
  /** Epoch of the record the timers below refer to (also the floor of a new bootstrap epoch). */
  epoch: number | null;
  /** When the active node started failing its checks (suspect, no-candidate). */
  failingSinceMs: number | null;
  /** The activation failing-over waits for. */
  activation: { node: string; epoch: number; sinceMs: number } | null;
  /**
   * A planned switchover waiting for Patroni to move the primary (switching-db); `appMoved`: the
   * app already moved to `to` when the old primary stopped, and the request waits for the primary there.
   */
  switchover: { requestId: string; from: string; to: string; sinceMs: number; appMoved?: boolean } | null;
  /**
   * The epoch at which this leader last set the active machine UP at once (a `mark-up`): once per
   * activation, after which HAProxy's own checks alone decide (a proxy that cannot reach the
   * machine's agent would otherwise be told UP again every tick).
   */
  markedUp?: number;
  /** `pair`: the database tier as this leader follows it. */
  db: DbMemory;
  nodes: Record<string, NodeMemory>;
}

export interface DbMemory {
  /**
   * The machine where the primary is accepted: where it was first seen, where the app joined it,
   * or where it was when the app moved (a failover leaves it where it is). A primary on another
   * machine moved by itself (a Patroni failover), and only then does the app follow it: never
   * back to a machine the app just left, never merely because the tiers are apart.
   */
  primary: string | null;
}

export interface DecideConfig {
  /** How long the active node must fail its checks before a failover. */
  failAfterMs: number;
  /** How long a standby must have been healthy to be a failover candidate (0: healthy now). */
  standbyHealthyForMs: number;
  /** How long a machine must be gone (or back) before node-lost (node-back) is recorded. */
  lostAfterMs: number;
  /** How long a newly activated node may take to serve before it counts as failing. */
  activateTimeoutMs: number;
  /** How long a planned switchover waits for Patroni to move the primary (pair). */
  dbSwitchoverTimeoutMs: number;
}

export const DEFAULT_DECIDE_CONFIG: DecideConfig = {
  failAfterMs: 2000,
  standbyHealthyForMs: 0,
  lostAfterMs: 2000,
  activateTimeoutMs: 10_000,
  dbSwitchoverTimeoutMs: 30_000,
};

export type EventAction = Omit<VigilEvent, 'seq' | 'at'>;

/**
 * The daemon carries these out in the order given (decide sorts them). When an `activate`'s
 * compare-and-swap fails, it drops the rest of the list and decides again on the next tick.
 */
export type Action =
  /**
   * Write ActiveRecord {node, epoch} if the current record's epoch is `expectEpoch` (null: no
   * record); `requestId` names the operator request that moves the app, if one does.
   */
  | { kind: 'activate'; node: string; epoch: number; expectEpoch: number | null; reason: string; requestId?: string }
  /** Stop the node's services through its agent (best effort) and put it in MAINT (always). */
  | { kind: 'fence'; node: string; epoch: number; reason: string }
  /** Set the active node's server back to READY in HAProxy (while the record is at `epoch`). */
  | { kind: 'unfence'; node: string; epoch: number }
  /**
   * Set the active node's server UP at once where HAProxy reads it ready but down (while the record
   * is at `epoch`): the observer saw it serve, and every other app machine fenced, this tick.
   */
  | { kind: 'mark-up'; node: string; epoch: number }
  /** Ask Patroni to move the primary (pair: a planned switchover only; a failover never moves it). */
  | { kind: 'db-switchover'; from: string; to: string }
  | { kind: 'event'; event: EventAction }
  /** Answer the operator request (the answer is kept in etcd for the operator) and remove it. */
  | { kind: 'complete-request'; id: string; ok: boolean; message: string };

export interface Transition {
  from: State;
  to: State;
  reason: string;
}

/**
 * Every edge the state machine may take, one row per rule (a pair the code reaches in two ways
 * has two rows). go() refuses any other; decide.test.ts checks the table against the state table
 * in docs/observer-states.md both ways, and that some scenario takes every edge. Only an
 * activation re-enters its state (failing-over to failing-over: a new epoch).
 */
export const TRANSITIONS: readonly { from: State; to: State; rule: string }[] = [
  ...edges(othersThan('follower'), 'follower', 'this observer does not hold the leadership in etcd'),
  ...edges(othersThan('maintenance'), 'maintenance', 'the maintenance flag is set in etcd'),
  ...edges(othersThan('bootstrap'), 'bootstrap', 'leader, and there is no active record in etcd'),
  // resume(): a new lead, the end of maintenance or of a switchover's wait, a record another writer changed.
  ...edges(othersThan('healthy'), 'healthy', 'resume: the recorded node serves at the recorded epoch'),
  ...edges(othersThan('failing-over'), 'failing-over', 'resume: its agent has not confirmed the recorded epoch yet'),
  ...edges(othersThan('suspect'), 'suspect', 'resume: the recorded node fails its checks'),
  // watch(): the active node's checks and the failure timer.
  ...edges(['healthy'], 'suspect', 'the active node fails its checks'),
  ...edges(['suspect', 'no-candidate'], 'healthy', 'the active node passes its checks again'),
  ...edges(['suspect'], 'no-candidate', 'failing for failAfterMs and no standby is a candidate'),
  // failingOver(): the activation under way.
  ...edges(['failing-over'], 'healthy', 'the new node serves at the new epoch'),
  ...edges(['failing-over'], 'suspect', 'the new node did not serve within activateTimeoutMs'),
  // move(): a new active record (bootstrap, failover, follow-db, an operator request).
  ...edges(['bootstrap', 'healthy', 'suspect', 'no-candidate', 'failing-over', 'switching-db'], 'failing-over', 'a node is activated at a new epoch'),
  // switchoverRequest(): pair, the database primary moves first.
  ...edges(['healthy', 'suspect', 'no-candidate', 'failing-over'], 'switching-db', 'pair: a switchover waits for Patroni to move the primary'),
];

function edges(from: readonly State[], to: State, rule: string): { from: State; to: State; rule: string }[] {
  return from.map((f) => ({ from: f, to, rule }));
}

function othersThan(to: State): State[] {
  return STATES.filter((s) => s !== to);
}

const DECLARED = new Set(TRANSITIONS.map((e) => `${e.from} -> ${e.to}`));

/** A transition on a declared edge; any other is a bug in decide, refused before it is acted on. */
export function transition(from: State, to: State, reason: string): Transition {
  if (!DECLARED.has(`${from} -> ${to}`))
    throw new Error(`decide: undeclared transition ${from} -> ${to} (${reason}); declare it in TRANSITIONS and docs/observer-states.md`);
  return { from, to, reason };
}

export interface Decision {
  memory: Memory;
  actions: Action[];
  transitions: Transition[];
}

export const initialMemory = (): Memory => ({
  state: 'follower',
  epoch: null,
  failingSinceMs: null,
  activation: null,
  switchover: null,
  db: { primary: null },
  nodes: {},
});

/**
 * Healthy: the observer's deep check passes or, when it cannot reach the machine that way, the
 * agent it can reach says the app passes its own health check (the same path through nginx and
 * the app to the database). The active node and the candidates are judged alike, so a broken
 * path from the observer alone never moves the app back and forth. HAProxy routes on the agent's
 * role check, not on the deep check: a passing deep check does not count when the agent does not
 * answer and the observer's HAProxy marks the machine down (a hung or dead agent takes the
 * machine out of the proxy, a total outage the deep check alone would not see).
 */
export const isHealthy = (n: NodeObservation | undefined): boolean =>
  n !== undefined && ((n.deepOk && (n.agentReachable || !n.proxyStates.includes('down'))) || (n.agentReachable && n.appHealthy));

/**
 * A machine whose agent answers but does not serve: it runs neither nginx nor the app, so its
 * deep check fails by design, and observe.ts passes the agent's readiness (it confirmed the
 * cluster state in etcd within its lease) as `appHealthy`.
 */
const standsBy = (n: NodeObservation): boolean => n.agentReachable && !n.agentActive;

/** Serving at `epoch`: healthy, and its agent confirms the epoch when the observer can ask it. */
const servesAt = (n: NodeObservation | undefined, epoch: number): boolean =>
  n !== undefined && isHealthy(n) && (!n.agentReachable || (n.agentActive && n.agentEpoch === epoch));

/** A machine that is not the active one may still run services or take traffic. */
const needsFence = (n: NodeObservation): boolean =>
  (n.agentReachable && n.agentActive) || n.proxyStates.some((s) => s === 'ready' || s === 'drain' || s === 'down');

/**
 * What the checks say of a machine. A failing deep check is named only for the active node: a
 * standby runs no nginx, so there it is expected and says nothing.
 */
const why = (n: NodeObservation | undefined, active = false): string => {
  if (!n) return 'not an app machine of this cluster';
  const parts: string[] = [];
  if (n.deepOk) parts.push('deep check passes');
  else if (active) parts.push('deep check fails');
  if (!n.agentReachable) parts.push(n.deepOk && n.proxyStates.includes('down') ? 'agent unreachable and HAProxy marks it down' : 'agent unreachable');
  else if (n.agentActive) parts.push(n.appHealthy ? 'agent reports the app healthy' : 'agent reports the app unhealthy');
  else if (n.waitingFor?.length) parts.push(`agent waits for ${n.waitingFor.join(', ')} to stop serving`);
  else parts.push(n.appHealthy ? 'agent reachable, confirmed in etcd' : 'agent reachable, not confirmed in etcd within its lease');
  return parts.join(', ');
};

/** A standby judged by its agent's readiness is "ready"; a machine judged by its app is "healthy". */
const byReadiness = (n: NodeObservation): boolean => standsBy(n) && !n.deepOk;

/** `app2 is ready (agent reachable, confirmed in etcd)`, `app2 is healthy (deep check passes, ...)`. */
const standing = (n: NodeObservation): string => `${n.name} is ${byReadiness(n) ? 'ready' : 'healthy'} (${why(n)})`;
const notStanding = (n: NodeObservation): string => `${n.name} is not ${byReadiness(n) ? 'ready' : 'healthy'} (${why(n)})`;

/** A duration for people: whole milliseconds below 10 s, then seconds, then minutes, one decimal. */
export function duration(ms: number): string {
  if (!Number.isFinite(ms)) return `${ms} ms`;
  const whole = Math.round(ms);
  if (Math.abs(whole) < 10_000) return `${whole} ms`;
  const one = (x: number): string => String(Math.round(x * 10) / 10);
  return Math.abs(whole) < 600_000 ? `${one(ms / 1000)} s` : `${one(ms / 60_000)} min`;
}

interface Tick {
  obs: Observation;
  cfg: DecideConfig;
  mem: Memory;
  actions: Action[];
  transitions: Transition[];
  /** The record after this tick: the observed one, or the one this tick's activate writes. */
  record: { node: string; epoch: number } | null;
  /** This tick activates a node (its fences are then recorded as events). */
  moved: boolean;
}

/**
 * The app tier first: the record (compare-and-swap; when it fails the daemon drops the rest), then
 * fencing, then the events, so a move is recorded and alerted at once. A db-switchover (a planned
 * switchover in pair, in a tick of its own) comes after them; the request is answered once
 * everything it caused has been carried out.
 */
const ORDER: Record<Action['kind'], number> = {
  activate: 0,
  fence: 1,
  unfence: 2,
  'mark-up': 3,
  event: 4,
  'db-switchover': 5,
  'complete-request': 6,
};

/** Decide one tick. See the module comment and docs/observer-states.md. */
export function decide(memory: Memory, obs: Observation, cfg: DecideConfig): Decision {
  if (!obs.isLeader) {
    const transitions = memory.state === 'follower' ? [] : [transition(memory.state, 'follower', 'this observer does not hold the leadership in etcd')];
    return { memory: initialMemory(), actions: [], transitions };
  }
  const t: Tick = {
    obs,
    cfg,
    mem: structuredClone(memory),
    actions: [],
    transitions: [],
    record: obs.active && { node: obs.active.node, epoch: obs.active.epoch },
    moved: false,
  };
  // Machine changes seen during maintenance are reported once it ends, not lost.
  track(t, !obs.maintenance);
  if (obs.maintenance) {
    maintenance(t);
  } else {
    if (t.mem.state === 'maintenance') t.actions.push(event('maintenance-off', 'maintenance ended: the observer acts again'));
    if (obs.followDb) seeDb(t);
    if (obs.active) withRecord(t, obs.active);
    else bootstrap(t);
    if (t.record) fencing(t);
  }
  const actions = t.actions.sort((a, b) => ORDER[a.kind] - ORDER[b.kind]);
  return { memory: t.mem, actions, transitions: t.transitions };
}

function go(t: Tick, to: State, reason: string, always = false): void {
  if (t.mem.state === to && !always) return;
  t.transitions.push(transition(t.mem.state, to, reason));
  t.mem.state = to;
}

function event(type: EventType, message: string, extra: Omit<EventAction, 'type' | 'message'> = {}): Action {
  return { kind: 'event', event: { type, message, ...extra } };
}

const nodeOf = (obs: Observation, name: string): NodeObservation | undefined => obs.nodes.find((n) => n.name === name);

/** Two machines claiming the primary is a passing Patroni view: follow neither until it settles. */
function dbPrimaryOf(obs: Observation): NodeObservation | undefined {
  const primaries = obs.nodes.filter((n) => n.dbPrimary);
  return primaries.length === 1 ? primaries[0] : undefined;
}

function isCandidate(t: Tick, n: NodeObservation): boolean {
  const since = t.mem.nodes[n.name]?.healthySinceMs ?? null;
  return isHealthy(n) && since !== null && t.obs.nowMs - since >= t.cfg.standbyHealthyForMs;
}

/** In pair the DB primary's machine first: there the tiers are together again. */
function candidate(t: Tick, exclude: string): NodeObservation | undefined {
  const all = t.obs.nodes.filter((n) => n.name !== exclude && isCandidate(t, n));
  return (t.obs.followDb ? all.find((n) => n.dbPrimary) : undefined) ?? all[0];
}

/** Health and reachability bookkeeping; node-lost / node-back once a change has lasted lostAfterMs. */
function track(t: Tick, report: boolean): void {
  const { obs, cfg } = t;
  const nodes: Record<string, NodeMemory> = {};
  for (const n of obs.nodes) {
    const prev = t.mem.nodes[n.name];
    const up = n.deepOk || n.agentReachable;
    // A machine first seen (fresh memory) is taken as it is: a new leader does not repeat alerts.
    const m: NodeMemory = prev ? { ...prev } : { healthySinceMs: null, reachable: up, lost: false, changedSinceMs: null };
    m.healthySinceMs = isHealthy(n) ? (m.healthySinceMs ?? obs.nowMs) : null;
    nodes[n.name] = m;
    if (!report) continue;
    if (up === m.reachable) {
      m.changedSinceMs = null;
      continue;
    }
    m.changedSinceMs ??= obs.nowMs;
    const forMs = obs.nowMs - m.changedSinceMs;
    if (forMs < cfg.lostAfterMs) continue;
    m.reachable = up;
    m.changedSinceMs = null;
    if (!up) {
      m.lost = true;
      t.actions.push(event('node-lost', `${n.name} has not answered for ${duration(forMs)}: neither the deep check nor its agent`, { node: n.name }));
    } else if (m.lost) {
      m.lost = false;
      t.actions.push(event('node-back', `${n.name} answers again (for ${duration(forMs)})`, { node: n.name }));
    }
    // Up after first being seen down (start-up, or lost before this leader): nothing was reported.
  }
  t.mem.nodes = nodes;
}

function maintenance(t: Tick): void {
  const { mem, obs } = t;
  if (mem.state !== 'maintenance') {
    // A leader that finds maintenance already on (it just took the lead) did not see it start.
    if (mem.state !== 'follower') t.actions.push(event('maintenance-on', 'maintenance started: the observer takes no action until it ends'));
    go(t, 'maintenance', 'the maintenance flag is set in etcd');
    Object.assign(mem, { failingSinceMs: null, activation: null, switchover: null });
  }
  if (obs.request) refuse(t, obs.request, 'the cluster is in maintenance: the observer carries out no request until maintenance ends');
}

function bootstrap(t: Tick): void {
  const { mem, obs } = t;
  if (mem.state !== 'bootstrap') {
    go(t, 'bootstrap', 'there is no active record in etcd: the first healthy app machine becomes active');
    Object.assign(mem, { failingSinceMs: null, activation: null, switchover: null });
  }
  if (obs.request && request(t, obs.request, null)) return;
  const primary = dbPrimaryOf(obs);
  const chosen = obs.followDb ? (isHealthy(primary) ? primary : undefined) : obs.nodes.find((n) => isHealthy(n));
  if (!chosen) return; // never activate a machine that is not healthy: wait
  const db = obs.followDb ? ' and holds the database primary' : '';
  move(t, chosen.name, 'bootstrap', `bootstrap: ${standing(chosen)}${db}`);
}

function withRecord(t: Tick, active: ActiveRecord): void {
  const { mem, obs } = t;
  // The timers belong to one record and one spell of leadership: after a follower or maintenance
  // spell, or a record another writer changed, only the observation counts.
  const stale = mem.epoch !== active.epoch || mem.state === 'follower' || mem.state === 'maintenance' || mem.state === 'bootstrap';
  const withdrawn = mem.state === 'switching-db' && obs.request?.id !== mem.switchover?.requestId;
  if (stale) resume(t, active);
  else if (withdrawn) resume(t, active, 'the switchover request was withdrawn; ');
  if (obs.request && request(t, obs.request, active)) return;
  // switching-db lasts while its request is pending: one answered without a move (its target is
  // gone) ends the wait here, not on the next tick.
  if (mem.state === 'switching-db') resume(t, active, 'the switchover request was answered; ');
  if (mem.state === 'failing-over') failingOver(t, active);
  else watch(t, active);
}

/** Derive the state from the record and the observation alone (fresh memory converges). */
function resume(t: Tick, active: ActiveRecord, cause = ''): void {
  const { mem, obs } = t;
  const n = nodeOf(obs, active.node);
  const at = `${active.node} is active at epoch ${active.epoch}`;
  Object.assign(mem, { epoch: active.epoch, failingSinceMs: null, activation: null, switchover: null });
  if (servesAt(n, active.epoch)) return go(t, 'healthy', `${cause}${at} and serves`);
  if (n?.agentReachable && !(n.agentActive && n.agentEpoch === active.epoch)) {
    // Its agent answers but has not confirmed this epoch: an activation still under way.
    mem.activation = { node: active.node, epoch: active.epoch, sinceMs: obs.nowMs };
    return go(t, 'failing-over', `${cause}${at}; waiting for it to serve (${why(n, true)}, agent at epoch ${n.agentEpoch ?? 'none'})`);
  }
  mem.failingSinceMs = obs.nowMs;
  go(t, 'suspect', `${cause}${at} but fails its checks (${why(n, true)})`);
}

/** healthy, suspect, no-candidate: watch the active node, fail over after failAfterMs. */
function watch(t: Tick, active: ActiveRecord): void {
  const { mem, obs, cfg } = t;
  const n = nodeOf(obs, active.node);
  const failing = !isHealthy(n);
  if (obs.followDb && followDb(t, active, failing)) return;
  if (!failing) {
    const after = mem.failingSinceMs === null ? '' : ` after failing for ${duration(obs.nowMs - mem.failingSinceMs)}`;
    go(t, 'healthy', `${active.node} passes its checks again${after}`);
    mem.failingSinceMs = null;
    return;
  }
  mem.failingSinceMs ??= obs.nowMs;
  if (mem.state === 'healthy') go(t, 'suspect', `${active.node} fails its checks (${why(n, true)}); failover after ${duration(cfg.failAfterMs)}`);
  const failedMs = obs.nowMs - mem.failingSinceMs;
  if (failedMs < cfg.failAfterMs) return;
  const failed = `${active.node} has failed its checks for ${duration(failedMs)} (${why(n, true)})`;
  const to = candidate(t, active.node);
  if (to) {
    const db = obs.followDb && to.dbPrimary ? ' and holds the database primary' : '';
    move(t, to.name, 'failover', `failover: ${failed}; ${standing(to)}${db}`);
    return;
  }
  if (mem.state === 'no-candidate') return;
  go(t, 'no-candidate', `${failed} and no standby is healthy`);
  const standbys = obs.nodes.filter((s) => s.name !== active.node).map((s) => `${s.name}: ${why(s)}`);
  t.actions.push(
    event('failover', `no failover: ${failed} and no standby is healthy (${standbys.join('; ') || 'none'}); the observer keeps checking`, {
      node: active.node,
      epoch: active.epoch,
      details: { outcome: 'no-candidate' },
    }),
  );
}

/**
 * pair: when the primary moved to another machine by itself (a Patroni failover), the app follows
 * it once that machine is a candidate. A primary still on the machine the app left (the app failed
 * there while its Patroni kept the primary) is the accepted primary and is not followed: never
 * fail back, and tiers apart after an app failover are no reason to move anything.
 */
function followDb(t: Tick, active: ActiveRecord, failing: boolean): boolean {
  const p = dbPrimaryOf(t.obs);
  const was = t.mem.db.primary;
  if (!p || p.name === active.node || p.name === was || !isCandidate(t, p)) return false;
  const state = failing ? `, which fails its checks (${why(nodeOf(t.obs, active.node), true)})` : '';
  const moved = was ? `moved from ${was} to ${p.name}` : `is on ${p.name}`;
  move(t, p.name, failing ? 'failover' : 'switchover', `follow-db: the database primary ${moved} and the app runs on ${active.node}${state}; ${standing(p)}`);
  return true;
}

/** pair, before the rules: settle where the primary is accepted (see DbMemory.primary). */
function seeDb(t: Tick): void {
  const { db } = t.mem;
  const p = dbPrimaryOf(t.obs);
  if (!p) return; // none or two: Patroni is between states; wait until it settles
  // A new leader takes the primary where it first sees it, like a machine: not a move by itself.
  if (db.primary === null || p.name === t.obs.active?.node) db.primary = p.name;
}

/** failing-over: the epoch is bumped; wait until the new node serves at it. */
function failingOver(t: Tick, active: ActiveRecord): void {
  const { mem, obs, cfg } = t;
  const act = mem.activation;
  if (!act || act.node !== active.node || act.epoch !== active.epoch) {
    resume(t, active);
    if (mem.state !== 'failing-over') watch(t, active);
    return;
  }
  const n = nodeOf(obs, act.node);
  const waitedMs = obs.nowMs - act.sinceMs;
  if (servesAt(n, act.epoch)) {
    mem.activation = null;
    go(t, 'healthy', `${act.node} serves at epoch ${act.epoch}, ${duration(waitedMs)} after its activation`);
    t.actions.push(event('activate', `${act.node} serves at epoch ${act.epoch}`, { node: act.node, epoch: act.epoch }));
    return;
  }
  if (waitedMs < cfg.activateTimeoutMs) return; // fencing re-issues fence and unfence meanwhile
  Object.assign(mem, { activation: null, failingSinceMs: act.sinceMs });
  go(t, 'suspect', `${act.node} did not serve within ${duration(cfg.activateTimeoutMs)} of its activation at epoch ${act.epoch} (${why(n, true)})`);
  watch(t, active);
}

/**
 * Write the new record (compare-and-swap on the epoch) and wait for the node in failing-over.
 * pair: the primary stays where it is and becomes the accepted primary, so follow-db never sends
 * the app back to the machine it leaves; the new node reaches the primary through HAProxy's :5000.
 */
function move(t: Tick, to: string, type: 'bootstrap' | 'failover' | 'switchover', reason: string, requestId?: string): void {
  const { mem, obs } = t;
  const prev = obs.active;
  // Without a record, start above every epoch still known, so no agent mistakes it for a stale one.
  const floor = Math.max(mem.epoch ?? 0, ...obs.nodes.map((n) => Math.max(n.agentEpoch ?? 0, n.highestEpoch ?? 0)));
  const epoch = prev ? prev.epoch + 1 : floor + 1;
  const p = obs.followDb ? dbPrimaryOf(obs) : undefined;
  t.actions.push({ kind: 'activate', node: to, epoch, expectEpoch: prev?.epoch ?? null, reason, ...(requestId === undefined ? {} : { requestId }) });
  t.actions.push(event(type, reason, { node: to, epoch, details: { from: prev?.node ?? null } }));
  if (p) mem.db.primary = p.name;
  t.record = { node: to, epoch };
  t.moved = true;
  Object.assign(mem, { epoch, failingSinceMs: null, switchover: null, activation: { node: to, epoch, sinceMs: obs.nowMs } });
  go(t, 'failing-over', reason, true);
}

/**
 * Seen serving at `epoch` by both of the observer's own sources, as HAProxy's role check would
 * find it: its agent answers and serves at that epoch, and the observer's deep check through
 * nginx and the app to the database passes (the agent's own `appHealthy` is from its last cycle,
 * often a tick behind, so it is not waited for).
 */
const seenServingAt = (n: NodeObservation, epoch: number): boolean => n.agentReachable && n.agentActive && n.agentEpoch === epoch && n.deepOk;

/**
 * Every app machine but the active one in MAINT with its services stopped; the active one not in
 * MAINT. And the active one UP at once where a proxy has it ready but still down (HAProxy's next
 * check of a server leaving MAINT can be up to a whole check interval away), once the observer
 * sees it serve and no other machine needs fencing: never while another might still take traffic;
 * once per epoch (Memory.markedUp).
 */
function fencing(t: Tick): void {
  const rec = t.record;
  if (!rec) return;
  let markUp: string | null = null;
  let fenced = false;
  for (const n of t.obs.nodes) {
    if (n.name === rec.node) {
      if (n.proxyStates.includes('maint')) t.actions.push({ kind: 'unfence', node: n.name, epoch: rec.epoch });
      if (!t.moved && t.mem.markedUp !== rec.epoch && n.proxyStates.includes('down') && seenServingAt(n, rec.epoch)) markUp = n.name;
      continue;
    }
    if (!needsFence(n)) continue;
    fenced = true;
    t.actions.push({ kind: 'fence', node: n.name, epoch: rec.epoch, reason: `${n.name} is not the active node (${rec.node} is, at epoch ${rec.epoch})` });
    if (t.moved)
      t.actions.push(event('fence', `${n.name} fenced at epoch ${rec.epoch}: services stopped, MAINT in HAProxy`, { node: n.name, epoch: rec.epoch }));
  }
  if (markUp && !fenced) {
    t.actions.push({ kind: 'mark-up', node: markUp, epoch: rec.epoch });
    t.mem.markedUp = rec.epoch;
  }
}

// ---- operator requests ----------------------------------------------------------------------

/** Both return false: answering a request does not take over the tick. */
function complete(t: Tick, req: OperatorRequest, message: string): false {
  t.actions.push({ kind: 'complete-request', id: req.id, ok: true, message });
  return false;
}

function refuse(t: Tick, req: OperatorRequest, message: string): false {
  t.actions.push({ kind: 'complete-request', id: req.id, ok: false, message });
  t.actions.push(event('request-failed', `${req.kind} request ${req.id} refused: ${message}`, { details: { request: req } }));
  return false;
}

/** Carry out a request; true when it owns this tick (it moved the app or waits for the database). */
function request(t: Tick, req: OperatorRequest, active: ActiveRecord | null): boolean {
  // The record names the request that wrote it: a request read again after a crash is done.
  if (active?.requestId === req.id) {
    return complete(t, req, `already carried out: ${active.node} is active at epoch ${active.epoch}`);
  }
  // Decided on a record that has moved since (the dashboard's requests carry the epoch they were decided on).
  if (req.epoch !== undefined && req.epoch !== (active?.epoch ?? null)) {
    const now = active ? `${active.node} is active at epoch ${active.epoch}` : 'there is no active record';
    return refuse(t, req, `it was decided at epoch ${req.epoch} and the cluster has moved since: ${now}; look again and decide anew`);
  }
  return req.kind === 'failover' ? failoverRequest(t, req, active) : switchoverRequest(t, req, active);
}

const appMachines = (obs: Observation): string => obs.nodes.map((n) => n.name).join(', ');

function failoverRequest(t: Tick, req: Extract<OperatorRequest, { kind: 'failover' }>, active: ActiveRecord | null): boolean {
  const { obs } = t;
  const to = nodeOf(obs, req.to);
  const stays = active ? `; ${active.node} stays active` : '';
  if (!to) return refuse(t, req, `no app machine is named ${req.to} (app machines: ${appMachines(obs)})`);
  if (active?.node === to.name) return complete(t, req, `${to.name} is already active at epoch ${active.epoch}`);
  if (!isHealthy(to)) return refuse(t, req, `${notStanding(to)}${stays}`);
  // pair: like an automatic failover, only the app moves; the primary stays where it is.
  move(t, to.name, 'failover', `failover to ${to.name} requested by the operator (request ${req.id})`, req.id);
  const p = obs.followDb ? dbPrimaryOf(obs) : undefined;
  const stay = p && p.name !== to.name ? `; the database primary stays on ${p.name}` : '';
  complete(t, req, `${to.name} is active at epoch ${t.record?.epoch}${stay}`);
  return true;
}

function switchoverRequest(t: Tick, req: Extract<OperatorRequest, { kind: 'switchover' }>, active: ActiveRecord | null): boolean {
  const { mem, obs, cfg } = t;
  if (!active) return refuse(t, req, 'there is no active node yet, so nothing to switch over from');
  const sw = mem.switchover?.requestId === req.id ? mem.switchover : null;
  const name = sw?.to ?? req.to ?? obs.nodes.find((n) => n.name !== active.node && isHealthy(n))?.name;
  const stays = `; ${active.node} stays active`;
  if (!name) return refuse(t, req, `no standby is healthy${stays}`);
  const to = nodeOf(obs, name);
  if (!to) return refuse(t, req, `no app machine is named ${name} (app machines: ${appMachines(obs)})`);
  if (to.name === active.node) {
    if (sw?.appMoved && obs.followDb && !to.dbPrimary) {
      // The app moved at the old primary's stop: answered once Patroni's new primary is there too.
      if (obs.nowMs - sw.sinceMs < cfg.dbSwitchoverTimeoutMs) return false;
      mem.switchover = null;
      return refuse(
        t,
        req,
        `${to.name} is active at epoch ${active.epoch} but the database primary did not move from ${sw.from} within ${duration(cfg.dbSwitchoverTimeoutMs)}`,
      );
    }
    if (sw) mem.switchover = null;
    return complete(t, req, `${to.name} is already active at epoch ${active.epoch}`);
  }
  const dbThere = !obs.followDb || to.dbPrimary;
  if (dbThere && isHealthy(to)) {
    move(t, to.name, 'switchover', `switchover to ${to.name} requested by the operator (request ${req.id})`, req.id);
    complete(t, req, `${to.name} is active at epoch ${t.record?.epoch}`);
    return true;
  }
  if (!sw) {
    if (!isHealthy(to)) return refuse(t, req, `${notStanding(to)}${stays}`);
    // pair: the database moves first, so the app never runs away from its primary.
    const from = dbPrimaryOf(obs)?.name ?? active.node;
    mem.switchover = { requestId: req.id, from, to: to.name, sinceMs: obs.nowMs };
    t.actions.push({ kind: 'db-switchover', from, to: to.name });
    go(
      t,
      'switching-db',
      `switchover to ${to.name} requested by the operator (request ${req.id}): asking Patroni to move the database primary from ${from} first`,
    );
    return true;
  }
  if (obs.followDb && nodeOf(obs, sw.from)?.dbStopping && isHealthy(to)) {
    // The old primary is past its demote's checkpoint and stopping: from here its PostgreSQL takes
    // no write, so the app's own handover (old machine stood down, new one started and activated)
    // runs beside Patroni's stop loop and promotion instead of after them. The primary stays the
    // accepted one (move), so follow-db does not send the app back while the old /primary still
    // answers; the request is answered once the new primary is on `to` (above).
    move(
      t,
      to.name,
      'switchover',
      `switchover to ${to.name} requested by the operator (request ${req.id}): the database primary on ${sw.from} is stopping for it, so the app moves now, beside Patroni's promotion of ${to.name}`,
    );
    mem.switchover = { ...sw, appMoved: true };
    return true;
  }
  if (obs.nowMs - sw.sinceMs < cfg.dbSwitchoverTimeoutMs) return true;
  const what = dbThere
    ? `${to.name} holds the database primary but did not pass its checks (${why(to)})`
    : `the database primary did not move from ${sw.from} to ${to.name}`;
  resume(t, active, `switchover request ${req.id} failed; `);
  return refuse(t, req, `${what} within ${duration(cfg.dbSwitchoverTimeoutMs)}${stays}`);
}
