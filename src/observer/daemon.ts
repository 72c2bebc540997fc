/**
 * `vigil observer`: campaigns for leadership in etcd; every tick it observes the cluster, asks the
 * pure decision function what to do (src/observer/decide.ts), logs every state transition with
 * its reason, and — only while it leads — carries the actions out. Every action is idempotent and
 * derived from what is observed, so an observer restarted in the middle of a failover finishes it.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { alertOnFollow } from '../alerts/followed.ts';
import { createAlerter, type Alerter } from '../alerts/send.ts';
import { loadCluster, loadSecrets } from '../config/load.ts';
import { PATHS, ROOTS } from '../layout/paths.ts';
import type { Cluster, Secrets } from '../config/schema.ts';
import { openStore, storeTls, type Leadership, type VigilStore } from '../etcd/store.ts';
import { EventLog, type NewEvent } from '../events/log.ts';
import { AgentError, agentOf } from '../agent/client.ts';
import { loadPki, type LoadedPki } from '../pki/ca.ts';
import { HaproxyRuntime } from '../proxy/runtime.ts';
import { etcdEndpoints } from '../layout/network.ts';
import { PatroniError, patroniOf } from '../patroni/client.ts';
import type { State } from '../model/ha.ts';
import { VigilError, problem } from '../util/errors.ts';
import { DEFAULT_DECIDE_CONFIG, decide, initialMemory, type Decision, type DecideConfig, type Memory } from './decide.ts';
import { observe, type Observed } from './observe.ts';
import { execute, type Effects } from './execute.ts';
import { runReleaseLoop } from './db-release-loop.ts';
import { proxyHandles, type ProxyHandle } from './proxies.ts';
import { failoverDoneEvent, FailoverClock, ObserverMetrics, type FinishedFailover } from './metrics.ts';
import { serveMetrics } from '../metrics/serve.ts';
import { certificateExpiry, watchedCertificates } from '../metrics/registry.ts';
import { serveDashboard } from '../dashboard/serve.ts';

export interface ObserverOptions {
  clusterFile: string;
  node: string;
  tickMs?: number;
  signal: AbortSignal;
}

type Log = (event: string, fields?: Record<string, unknown>) => void;
const log: Log = (event, fields = {}) => process.stdout.write(`${JSON.stringify({ ts: new Date().toISOString(), event, ...fields })}\n`);

/** How often the observer looks; a tick whose checks time out takes up to CHECK_TIMEOUT_MS longer. */
const TICK_MS = 250;

/** The leader key's lease: a dead leader is replaced after at most this long. */
const LEADER_TTL_SECONDS = 3;

interface Ctx {
  cluster: Cluster;
  secrets: Secrets;
  store: VigilStore;
  pki: LoadedPki;
  /** Every proxy's HAProxy, this machine's and the others' (./proxies.ts). */
  proxies: ProxyHandle[];
  events: EventLog;
  alerter: Alerter;
  leadership: Leadership;
  published: Published | null;
  /** A Patroni switchover is under way (see execute's db-switchover). */
  switchoverInFlight: boolean;
  /** Prometheus metrics (docs/metrics.md); absent with `metrics.enabled: false`. */
  metrics?: ObserverMetrics;
  /** Times each failover this observer carries out, for its failover-done event and the metrics. */
  clock: FailoverClock;
}

export async function runObserver(o: ObserverOptions): Promise<void> {
  const cluster = await loadCluster(o.clusterFile);
  const machine = cluster.machines.find((m) => m.name === o.node);
  if (!machine)
    throw new VigilError('USAGE', [problem(o.clusterFile, `no machine named ${o.node}`, `use one of ${cluster.machines.map((m) => m.name).join(', ')}`)]);
  const secrets = await loadSecrets(cluster);
  const pki = await loadPki(PATHS.pkiDir, o.node);
  const store = await openStore({ endpoints: etcdEndpoints(cluster), cluster: cluster.cluster.name, dialTimeoutMs: 60_000, tls: storeTls(pki) });
  const events = new EventLog(store.events, { file: join(ROOTS.log, 'events.jsonl') });
  const alerter = createAlerter(cluster.alerts, secrets, { clusterName: cluster.cluster.name, log: (entry) => log('alert', entry) });
  const leadership = await store.campaign(`${o.node}-${randomUUID().slice(0, 8)}`, o.node, LEADER_TTL_SECONDS);
  leadership.onElected(() => log('leader-elected', { node: o.node }));
  leadership.onLost((reason) => log('leader-lost', { reason }));
  // Events recorded where no alerter is (the admin's air-gap import, the agents): the leader alerts them (src/alerts/followed.ts).
  const followed = await events
    .watch((e) => void (alertOnFollow(e, leadership.isLeader()) && alerter.alert(e)), {
      onError: (err) => log('event-follow-failed', { error: err.message }),
    })
    .catch((err: Error) => {
      log('event-follow-failed', { error: err.message }); // alerts of the observer's own events still go out
      return null;
    });
  const ctx: Ctx = {
    cluster,
    secrets,
    store,
    pki,
    proxies: proxyHandles(cluster, o.node, pki, machine.roles.includes('proxy') ? new HaproxyRuntime() : undefined),
    events,
    alerter,
    leadership,
    published: null,
    switchoverInFlight: false,
    ...(cluster.metrics.enabled ? { metrics: new ObserverMetrics() } : {}),
    clock: new FailoverClock(),
  };
  if (ctx.metrics) certificateExpiry(ctx.metrics.m, watchedCertificates(cluster, machine, pki));
  const metricsServer = ctx.metrics
    ? await serveMetrics({ cluster, machine, port: cluster.metrics.observerPort, registry: ctx.metrics.m.registry, pki, log })
    : null;
  // The web dashboard (docs/dashboard.md): reads only while a page is open; never stops the observer.
  const dashboard = await serveDashboard({ cluster, machine, secrets, pki, store, events, log });
  const cfg = decideConfig(cluster);
  log('observer-started', { node: o.node, leader: leadership.isLeader() });

  const release = runReleaseLoop({
    cluster,
    proxies: ctx.proxies,
    store,
    leadership,
    patroniPassword: secrets.patroniRestPassword,
    identity: pki,
    events,
    onEvent: (e) => void alerter.alert(e),
    log,
    signal: o.signal,
  });

  let memory: Memory = initialMemory();
  while (!o.signal.aborted) {
    const started = performance.now();
    let done: Ticked | null = null;
    try {
      done = await tick(ctx, memory, cfg);
      memory = done.d.memory;
    } catch (err) {
      log('tick-failed', { error: (err as Error).message });
    }
    try {
      ctx.metrics?.loopDone(done?.obs ?? null, done?.d ?? null, (performance.now() - started) / 1000, leadership.isLeader());
    } catch (err) {
      log('metrics-failed', { error: (err as Error).message }); // metrics never stop the loop
    }
    if (done) finished(ctx, ctx.clock.tick(done.d, done.obs));
    const wait = Math.max(0, (o.tickMs ?? TICK_MS) - (performance.now() - started));
    await new Promise((r) => setTimeout(r, wait));
  }
  await release;
  await metricsServer?.close();
  await dashboard?.close();
  await followed?.close();
  await alerter.close();
  await leadership.resign().catch(() => {});
  await store.close();
  log('observer-stopped', { node: o.node });
}

/**
 * The cluster file's timers in decide's terms. A new node may wait up to the old node's agent
 * lease before it starts (the handover, src/agent/agent.ts), so its activation is given that
 * lease on top of the time to start (`timers.appStartTimeoutMs`).
 */
export function decideConfig(cluster: Cluster): DecideConfig {
  const handover = Math.max(0, cluster.timers.agentLeaseMs - 3000);
  return { ...DEFAULT_DECIDE_CONFIG, failAfterMs: cluster.timers.appFailAfterMs, activateTimeoutMs: cluster.timers.appStartTimeoutMs + handover };
}

interface Ticked {
  obs: Observed['obs'];
  d: Decision;
}

async function tick(ctx: Ctx, memory: Memory, cfg: DecideConfig): Promise<Ticked> {
  const seen = await observe({ ...ctx, isLeader: () => ctx.leadership.isLeader() }, performance.now());
  const d = decide(memory, seen.obs, cfg);
  for (const t of d.transitions) log('transition', { ...t });
  // Leadership is checked again right before acting: a deposed observer must not act on a stale view.
  if (d.actions.length && ctx.leadership.isLeader()) {
    const fx = effects(ctx, seen);
    const move = movedBy(d);
    if (!move) await execute(fx, seen.active?.record.epoch ?? null, d.actions);
    else {
      // Timed for the failover's phases (its failover-done event, vigil_failover_phase_duration_seconds): did the record get written, how long the fence took.
      let written = false;
      let fenceMs = 0;
      const timed: Effects = {
        ...fx,
        activate: async (a) => (written = await fx.activate(a)),
        fence: async (node, epoch) => {
          const t0 = performance.now();
          await fx.fence(node, epoch);
          fenceMs += performance.now() - t0;
        },
      };
      await execute(timed, seen.active?.record.epoch ?? null, d.actions);
      if (written) {
        ctx.metrics?.moved(move.kind);
        finished(ctx, ctx.clock.moved(move.kind, move.node, move.epoch, memory, seen.obs.nowMs, fenceMs));
      }
    }
  }
  await publishState(ctx, d);
  return { obs: seen.obs, d };
}

/** Failovers that ended: counted in the metrics and told as a `failover-done` event (not awaited: never holds up the loop). */
function finished(ctx: Ctx, done: FinishedFailover[]): void {
  for (const f of done) {
    try {
      ctx.metrics?.record(f);
    } catch (err) {
      log('metrics-failed', { error: (err as Error).message });
    }
    void storeEvent(ctx, failoverDoneEvent(f));
  }
}

/** The failover or switchover a decision moves the app for, if it does (a bootstrap is neither). */
function movedBy(d: Decision): { kind: 'failover' | 'switchover'; node: string; epoch: number } | null {
  const activate = d.actions.find((a) => a.kind === 'activate');
  if (!activate) return null;
  for (const a of d.actions)
    if (a.kind === 'event' && (a.event.type === 'failover' || a.event.type === 'switchover'))
      return { kind: a.event.type, node: activate.node, epoch: activate.epoch };
  return null;
}

/** What was last written to `observer/state`, and under which lead (a new lead writes it again). */
interface Published {
  state: State;
  epoch: number | null;
  reason: string;
  since: string;
  lead: string;
}

/**
 * Keeps `observer/state` equal to this leader's state, after the tick's actions are carried out
 * (so a failing-over read there always has its new active record in place). For `vigil status`
 * and for anyone waiting until the cluster is settled. A failed write is tried again next tick.
 */
async function publishState(ctx: Ctx, d: Decision): Promise<void> {
  const lead = ctx.leadership.token();
  if (!lead) return;
  const last = d.transitions.at(-1);
  const published = ctx.published;
  const { state, epoch } = d.memory;
  if (published && published.lead === lead && published.state === state && published.epoch === epoch && !last) return;
  const next = {
    state,
    epoch,
    reason: last?.reason ?? (published?.state === state ? published.reason : `this observer leads; the cluster is ${state}`),
    since: last || published?.state !== state ? new Date().toISOString() : published.since,
    lead,
  };
  try {
    const ok = await ctx.store.putObserverState(
      { state, reason: next.reason, since: next.since, epoch, by: ctx.leadership.id },
      { leader: ctx.leadership, timeoutMs: 1000 },
    );
    if (ok) ctx.published = next;
  } catch (err) {
    log('state-publish-failed', { error: (err as Error).message });
  }
}

/** The effects of execute.ts, on this observer's etcd, HAProxy, agents and Patroni. */
function effects(ctx: Ctx, seen: Observed): Effects {
  return {
    stillLeads: () => ctx.leadership.isLeader(),
    currentEpoch: async () => (await ctx.store.getActive({ timeoutMs: 1000 }))?.record.epoch ?? null,
    activate: (a) =>
      ctx.store.casActive(
        { node: a.node, epoch: a.epoch, since: new Date().toISOString(), reason: a.reason, requestId: a.requestId },
        seen.active ? { revision: seen.active.revision } : null,
        { leader: ctx.leadership },
      ),
    // MAINT on every proxy that might route to it: not yet in MAINT there, or not read this tick.
    fence: async (node, epoch) => {
      await fenceAgent(ctx, node, epoch);
      const todo = ctx.proxies.filter((p) => seen.proxies.get(p.name)?.find((s) => s.server === node)?.admin !== 'maint');
      await Promise.all(todo.map((p) => p.maint(node, epoch).catch((err: Error) => log('maint-failed', { node, proxy: p.name, error: err.message }))));
    },
    // READY where it is in MAINT; execute re-read the record's epoch just before.
    unfence: async (node, epoch) => {
      const todo = ctx.proxies.filter((p) => seen.proxies.get(p.name)?.find((s) => s.server === node)?.admin === 'maint');
      await Promise.all(todo.map((p) => p.ready(node, epoch).catch((err: Error) => log('ready-failed', { node, proxy: p.name, error: err.message }))));
    },
    // UP where it is ready but down (HAProxy's next check not yet come); execute re-read the record's epoch just before.
    markUp: async (node, epoch) => {
      const todo = ctx.proxies.filter((p) => {
        const s = seen.proxies.get(p.name)?.find((x) => x.server === node);
        return s?.admin === 'ready' && s.op !== 'up';
      });
      await Promise.all(todo.map((p) => p.up(node, epoch).catch((err: Error) => log('up-failed', { node, proxy: p.name, error: err.message }))));
    },
    // Not awaited: Patroni answers only once the switchover is done (seconds), and the observer
    // must keep observing meanwhile. One at a time: a second request would be refused anyway.
    dbSwitchover: (from, to) => {
      if (ctx.switchoverInFlight) return;
      ctx.switchoverInFlight = true;
      void patroniSwitchover(ctx, from, to).finally(() => (ctx.switchoverInFlight = false));
    },
    event: (event) => storeEvent(ctx, event),
    // The answer replaces the request in one write, so the operator's command reads it there.
    answer: async (a) => void (await ctx.store.answerRequest({ id: a.id, ok: a.ok, message: a.message, at: new Date().toISOString() })),
    log,
  };
}

/** Stores the event and alerts it (the alert is not awaited: it never holds up a failover). Never throws. */
async function storeEvent(ctx: Ctx, event: NewEvent): Promise<void> {
  const stored = await ctx.events.append(event).catch((err: Error) => {
    log('event-store-failed', { error: err.message });
    return { ...event, at: new Date().toISOString() };
  });
  void ctx.alerter.alert(stored);
}

/** Best effort: the agent may be dead or cut off; MAINT in HAProxy and its own lease fence it anyway. */
async function fenceAgent(ctx: Ctx, node: string, epoch: number): Promise<void> {
  const m = ctx.cluster.machines.find((x) => x.name === node);
  if (!m) return;
  try {
    await agentOf(ctx.pki, m).fence(epoch, { timeoutMs: 1000 });
  } catch (err) {
    if (err instanceof AgentError && err.code === 'AGENT_HTTP') log('fence-agent-refused', { node, status: err.status, error: err.message });
    else log('fence-agent-unreachable', { node, error: (err as Error).message });
  }
}

/** Patroni's planned switchover: the primary hands over to the candidate once it has caught up. */
async function patroniSwitchover(ctx: Ctx, from: string, to: string): Promise<void> {
  const m = ctx.cluster.machines.find((x) => x.name === from);
  if (!m) return;
  try {
    const r = await patroniOf(ctx.cluster, m, { identity: ctx.pki, password: ctx.secrets.patroniRestPassword }).switchover(
      { leader: from, candidate: to },
      { timeoutMs: 30_000 },
    );
    log('db-switchover', { from, to, status: r.status, answer: r.answer.slice(0, 200) });
  } catch (err) {
    // Patroni refused (412, 503, ...): its answer says why, logged as before.
    if (err instanceof PatroniError && err.code === 'PATRONI_HTTP') log('db-switchover', { from, to, status: err.status, answer: err.answer });
    else log('db-switchover-failed', { from, to, error: (err as Error).message });
  }
}
