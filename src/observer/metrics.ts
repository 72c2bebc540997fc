/**
 * The observer's Prometheus metrics (docs/metrics.md). `FailoverClock` times each app failover
 * and switchover from what the ticks saw, without a clock of its own (times are the ticks'
 * monotonic `nowMs`) and without I/O, so it is tested like decide.ts. The observer's daemon owns
 * the clock: each finished failover becomes a `failover-done` event (`failoverDoneEvent`, for the
 * dashboard's timeline and `vigil events`) and, with metrics on, `ObserverMetrics.record`.
 * `ObserverMetrics` puts those results and each tick's observation into one prom-client registry.
 *
 * A failover's phases, each measured where the observer sees it:
 * - detect: the active node failing its checks until the new record is written (automatic only);
 * - db_switchover: a planned switchover in `pair` waiting for Patroni to move the primary;
 * - fence: the old node's fence (its agent asked to stop, MAINT on every proxy) in the tick of the move;
 * - app_start: the new record written until the new node serves at the new epoch;
 * - proxy_switch: from then until every proxy that could be read routes to it.
 * The whole (`vigil_failover_duration_seconds`) runs from the first phase's start to the last's end.
 */
import { Counter, Gauge, Histogram } from 'prom-client';
import { STATES } from '../model/ha.ts';
import { daemonRegistry, setStates, type DaemonMetrics } from '../metrics/registry.ts';
import type { Decision, Memory, Observation } from './decide.ts';

export const FAILOVER_KINDS = ['failover', 'switchover'] as const;
export type FailoverKind = (typeof FAILOVER_KINDS)[number];
export const FAILOVER_RESULTS = ['success', 'failed', 'aborted'] as const;
export type FailoverResult = (typeof FAILOVER_RESULTS)[number];
export const PHASES = ['detect', 'db_switchover', 'fence', 'app_start', 'proxy_switch'] as const;
export type Phase = (typeof PHASES)[number];

/** A failover whose end was seen: how it ended and how long each phase it went through took. */
export interface FinishedFailover {
  kind: FailoverKind;
  result: FailoverResult;
  node: string;
  epoch: number;
  totalMs: number;
  phasesMs: Partial<Record<Phase, number>>;
}

/** Once the new node serves, its proxies are waited for this long at most before the failover counts as done without them. */
export const PROXY_WAIT_MS = 60_000;

interface Pending {
  kind: FailoverKind;
  node: string;
  epoch: number;
  startMs: number;
  movedMs: number;
  servedMs: number | null;
  phasesMs: Partial<Record<Phase, number>>;
}

export class FailoverClock {
  private pending: Pending | null = null;

  /**
   * A record this observer wrote (its compare-and-swap succeeded) for a failover or switchover.
   * `before` is the memory the tick's decision started from: its failure timer and switchover.
   */
  moved(kind: FailoverKind, node: string, epoch: number, before: Memory, nowMs: number, fenceMs: number): FinishedFailover[] {
    const done = this.pending ? [this.finish('aborted', nowMs)] : [];
    const phasesMs: Partial<Record<Phase, number>> = { fence: fenceMs };
    let startMs = nowMs;
    if (kind === 'failover' && before.failingSinceMs !== null) {
      phasesMs.detect = nowMs - before.failingSinceMs;
      startMs = before.failingSinceMs;
    }
    if (kind === 'switchover' && before.switchover) {
      phasesMs.db_switchover = nowMs - before.switchover.sinceMs;
      startMs = before.switchover.sinceMs;
    }
    this.pending = { kind, node, epoch, startMs, movedMs: nowMs, servedMs: null, phasesMs };
    return done;
  }

  /** Each tick after the decision: ends the failover under way when its node serves behind every proxy, or failed. */
  tick(d: Decision, obs: Observation): FinishedFailover[] {
    const p = this.pending;
    if (!p) return [];
    const now = obs.nowMs;
    const state = d.memory.state;
    if (state === 'follower') {
      this.pending = null; // another observer leads now and finishes it; not counted here
      return [];
    }
    // A newer record replaced it. (An older one is the observation the move itself was decided on.)
    if (obs.active && obs.active.epoch > p.epoch) return [this.finish('aborted', now)];
    if (p.servedMs === null) {
      if (d.transitions.some((t) => t.from === 'failing-over' && t.to === 'healthy')) {
        p.servedMs = now;
        p.phasesMs.app_start = now - p.movedMs;
      } else if (d.transitions.some((t) => t.from === 'failing-over' && t.to === 'suspect')) {
        p.phasesMs.app_start = now - p.movedMs;
        return [this.finish('failed', now)];
      } else return [];
    }
    const n = obs.nodes.find((x) => x.name === p.node);
    const routed = n !== undefined && n.proxyStates.every((s) => s === 'ready' || s === 'unknown');
    if (routed) {
      p.phasesMs.proxy_switch = now - p.servedMs;
      return [this.finish('success', now)];
    }
    if (now - p.servedMs >= PROXY_WAIT_MS) return [this.finish('success', now)];
    return [];
  }

  private finish(result: FailoverResult, nowMs: number): FinishedFailover {
    const p = this.pending!;
    this.pending = null;
    return { kind: p.kind, result, node: p.node, epoch: p.epoch, totalMs: nowMs - p.startMs, phasesMs: p.phasesMs };
  }
}

const PHASE_WORDS: Record<Phase, string> = {
  detect: 'detect',
  db_switchover: 'database switchover',
  fence: 'fence',
  app_start: 'app start',
  proxy_switch: 'proxy switch',
};

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** The `failover-done` event of a finished failover: one sentence, and the figures in `details`. */
export function failoverDoneEvent(f: FinishedFailover): {
  type: 'failover-done';
  node: string;
  epoch: number;
  message: string;
  details: Record<string, unknown>;
} {
  const phases = PHASES.filter((p) => f.phasesMs[p] !== undefined).map((p) => `${PHASE_WORDS[p]} ${seconds(f.phasesMs[p]!)}`);
  const how =
    f.result === 'success'
      ? `done in ${seconds(f.totalMs)}`
      : f.result === 'failed'
        ? `failed after ${seconds(f.totalMs)}: ${f.node} did not serve in time`
        : `abandoned after ${seconds(f.totalMs)}: a newer active record replaced it`;
  return {
    type: 'failover-done',
    node: f.node,
    epoch: f.epoch,
    message: `${f.kind} to ${f.node} at epoch ${f.epoch} ${how}${phases.length ? ` (${phases.join(', ')})` : ''}`,
    details: {
      kind: f.kind,
      result: f.result,
      totalMs: Math.round(f.totalMs),
      phasesMs: Object.fromEntries(Object.entries(f.phasesMs).map(([k, v]) => [k, Math.round(v)])),
    },
  };
}

const NODE_ROLES = ['active', 'standby', 'unreachable'] as const;

export class ObserverMetrics {
  readonly m: DaemonMetrics;
  private readonly failovers: Counter;
  private readonly duration: Histogram;
  private readonly phase: Histogram;
  private readonly lastFailover: Gauge;
  private readonly loop: Histogram;
  private readonly lastLoop: Gauge;
  private readonly isLeader: Gauge;
  private readonly state: Gauge;
  private readonly epoch: Gauge;
  private readonly maintenance: Gauge;
  private readonly nodeRole: Gauge;
  private readonly nodeCheck: Gauge;

  constructor(m: DaemonMetrics = daemonRegistry('observer')) {
    this.m = m;
    const registers = [m.registry];
    this.failovers = new Counter({
      name: 'vigil_failovers_total',
      help: 'App failovers and switchovers this observer carried out, counted when they end: success (the new node serves behind the proxies), failed (it did not serve in time), aborted (another record replaced it).',
      labelNames: ['kind', 'result'],
      registers,
    });
    for (const kind of FAILOVER_KINDS) for (const result of FAILOVER_RESULTS) this.failovers.inc({ kind, result }, 0);
    this.duration = new Histogram({
      name: 'vigil_failover_duration_seconds',
      help: 'Whole duration of each failover or switchover this observer carried out, from the first sign (the active node failing, or the request) to the new node routed by every proxy.',
      labelNames: ['kind'],
      buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300],
      registers,
    });
    this.phase = new Histogram({
      name: 'vigil_failover_phase_duration_seconds',
      help: 'Duration of each phase of a failover or switchover: detect, db_switchover, fence, app_start, proxy_switch (docs/metrics.md).',
      labelNames: ['kind', 'phase'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120],
      registers,
    });
    this.lastFailover = new Gauge({
      name: 'vigil_last_failover_timestamp_seconds',
      help: 'Unix time at which this observer last wrote a new active record for a failover or switchover.',
      labelNames: ['kind'],
      registers,
    });
    this.loop = new Histogram({
      name: 'vigil_observer_loop_duration_seconds',
      help: "Duration of the observer's loop: observe, decide, act, publish.",
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.lastLoop = new Gauge({
      name: 'vigil_observer_last_loop_success_timestamp_seconds',
      help: 'Unix time at which a loop last ended without an error.',
      registers,
    });
    this.isLeader = new Gauge({ name: 'vigil_observer_is_leader', help: '1 while this observer holds the leadership in etcd and acts, else 0.', registers });
    this.state = new Gauge({
      name: 'vigil_observer_state',
      help: `The observer's state (docs/observer-states.md) as a state set: 1 for the current state, 0 for the others (${STATES.join(', ')}).`,
      labelNames: ['state'],
      registers,
    });
    setStates(this.state, STATES, 'follower');
    this.epoch = new Gauge({
      name: 'vigil_cluster_epoch',
      help: 'Epoch of the active record in etcd, as this observer last read it; 0 before it read one.',
      registers,
    });
    this.maintenance = new Gauge({ name: 'vigil_maintenance_enabled', help: 'The maintenance flag is set in etcd (no failover): 1, else 0.', registers });
    this.nodeRole = new Gauge({
      name: 'vigil_node_role',
      help: 'Each app machine as this observer sees it, a state set: active (the record names it), standby (its agent answers), unreachable (its agent does not).',
      labelNames: ['node', 'state'],
      registers,
    });
    this.nodeCheck = new Gauge({
      name: 'vigil_node_check_up',
      help: "The observer's checks of each app machine: deep (a request through nginx and the app to the database), agent (its agent answers), app (the agent's own view: healthy, or ready on a standby). 1 passes, 0 fails.",
      labelNames: ['node', 'check'],
      registers,
    });
  }

  /** One loop's results: its decision (null when the loop failed) and its duration. */
  loopDone(obs: Observation | null, d: Decision | null, seconds: number, isLeader: boolean): void {
    this.loop.observe(seconds);
    this.isLeader.set(isLeader ? 1 : 0);
    if (!obs || !d) return;
    this.lastLoop.set(Date.now() / 1000);
    setStates(this.state, STATES, d.memory.state);
    if (obs.active) this.epoch.set(obs.active.epoch);
    this.maintenance.set(obs.maintenance ? 1 : 0);
    for (const n of obs.nodes) {
      const role = obs.active?.node === n.name ? 'active' : n.agentReachable ? 'standby' : 'unreachable';
      setStates(this.nodeRole, NODE_ROLES, role, { node: n.name });
      this.nodeCheck.set({ node: n.name, check: 'deep' }, n.deepOk ? 1 : 0);
      this.nodeCheck.set({ node: n.name, check: 'agent' }, n.agentReachable ? 1 : 0);
      this.nodeCheck.set({ node: n.name, check: 'app' }, n.appHealthy ? 1 : 0);
    }
  }

  /** A failover or switchover's record was written by this observer. */
  moved(kind: FailoverKind): void {
    this.lastFailover.set({ kind }, Date.now() / 1000);
  }

  /** A failover's end (from the FailoverClock). Every end counts; only a success's durations go into the histograms (a failed one's would read as a fast failover). */
  record(f: FinishedFailover): void {
    this.failovers.inc({ kind: f.kind, result: f.result });
    if (f.result !== 'success') return;
    this.duration.observe({ kind: f.kind }, f.totalMs / 1000);
    for (const [phase, ms] of Object.entries(f.phasesMs)) this.phase.observe({ kind: f.kind, phase }, ms / 1000);
  }
}
