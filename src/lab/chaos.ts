/**
 * `vigil lab chaos`: a randomized but reproducible run of faults over the running lab, with the
 * checker (checker.ts) on for the whole run. The seed (printed; `--seed` replays it) gives the
 * schedule (chaos-plan.ts): each step a fault kind, a target by what it is to the cluster (the
 * active app machine, a standby, the db primary, ...), a hold time, and for `two-at-once` two
 * single faults overlapping. Each step: resolve the target to a machine, inject, hold, recover,
 * wait until the cluster is whole again (settle.ts), then measure the step's window: when
 * service was back through :80 and :5000, the checker's violations, and the acknowledged writes
 * that are missing.
 */
import { withRole, type Cluster } from '../config/schema.ts';
import { ETCD_CLIENT_PORT } from '../layout/network.ts';
import { sleep, waitFor } from '../util/exec.ts';
import { Checker } from './checker.ts';
import {
  findPrimary,
  labAgents,
  labCut,
  labDropOutput,
  labFill,
  labHeal,
  labKill,
  labLatency,
  labLoss,
  labRevive,
  labSignal,
  labStart,
  labUnblock,
  labUnfill,
  type LabHandle,
  type Progress,
} from './lab.ts';
import { readMachineLog } from './logs.ts';
import { failStarts } from './db-faults.ts';
import { UNITS } from '../layout/units.ts';
import { WAIT_ANSWER_MS, labSettled } from './settle.ts';
import {
  CHAOS_PROCS,
  LATENCY_MS,
  LOSS_PERCENT,
  backAfter,
  between,
  formatReport,
  formatResult,
  mulberry32,
  pick,
  schedule,
  summarize,
  type ChaosProc,
  type ChaosTotals,
  type FaultKind,
  type FaultResult,
  type KindSummary,
  type Rng,
  type SingleStep,
  type TargetRole,
} from './chaos-plan.ts';

export interface ChaosOptions {
  seed: number;
  minutes: number;
  kinds: readonly FaultKind[];
  holdMs?: [number, number];
  /** Longest wait for the cluster to be whole again after a fault (default 180 s). */
  settleTimeoutMs?: number;
  /** Once aborted, no new fault starts; the one under way is recovered and the report made. */
  signal?: AbortSignal;
}

export interface ChaosReport {
  seed: number;
  results: FaultResult[];
  summary: KindSummary[];
  totals: ChaosTotals;
  /** The markdown table with its totals line. */
  text: string;
  /** No violation, no lost write, no run error. */
  ok: boolean;
}

/** How long the choice of a target waits for a machine to fit (a failover under way, a loaded agent slow to answer). */
const TARGET_WAIT_MS = 30_000;

/**
 * Resolves a target role to a machine; `avoid` is left out when another machine fits. Waits up to
 * TARGET_WAIT_MS for one to fit: for the application's roles, until exactly one agent answers
 * active (mid-failover there is none, or two claims); for the database's, until there is a primary.
 */
async function resolveTarget(cluster: Cluster, role: TargetRole, rng: Rng, avoid?: string): Promise<string> {
  const names = (r: Parameters<typeof withRole>[1]) => withRole(cluster, r).map((m) => m.name);
  const candidates = async (): Promise<string[] | undefined> => {
    switch (role) {
      case 'active-app':
      case 'standby-app': {
        const agents = await labAgents(WAIT_ANSWER_MS);
        const apps = names('app');
        const active = apps.filter((n) => agents.get(n)?.active);
        if (active.length !== 1) return undefined;
        const fit = role === 'active-app' ? active : apps.filter((n) => !active.includes(n));
        return fit.length ? fit : undefined;
      }
      case 'db-primary':
      case 'db-standby': {
        const primary = (await findPrimary(cluster))?.name;
        if (primary === undefined) return undefined;
        const fit = role === 'db-primary' ? [primary] : names('db').filter((n) => n !== primary);
        return fit.length ? fit : undefined;
      }
      case 'observer':
        return names('observer');
      case 'etcd-member':
        return names('etcd');
      case 'proxy':
        return names('proxy');
    }
  };
  const fit = await waitFor(`a machine that is the ${role} now`, candidates, TARGET_WAIT_MS, 500);
  const others = fit.filter((n) => n !== avoid);
  return pick(rng, others.length ? others : fit);
}

/** The unit that brings a killed process back (PostgreSQL is Patroni's to start). */
const unitOf = (p: ChaosProc) => (p === 'postgres' ? 'patroni' : p);

interface Injected {
  host: string;
  recover: () => Promise<void>;
}

/** Injects one single fault on `host`; returns how to recover it. */
async function inject(cluster: Cluster, f: SingleStep, host: string): Promise<Injected> {
  const kind = f.kind;
  if (kind === 'machine-kill') {
    await labKill(host);
    return { host, recover: () => labRevive(host) };
  }
  if (kind === 'partition' || kind === 'partition-one-way') {
    await labCut(host, [], kind === 'partition-one-way');
    return { host, recover: () => labUnblock(host) };
  }
  if (kind === 'etcd-cut') {
    const etcd = withRole(cluster, 'etcd').filter((m) => m.name !== host);
    if (!etcd.length) throw new Error(`${host} is the only etcd machine: no etcd to cut it from`);
    for (const e of etcd) await labDropOutput(host, e.name, { port: ETCD_CLIENT_PORT });
    return { host, recover: () => labUnblock(host) };
  }
  if (kind === 'proxy-cut-app') {
    // The active machine now (a failover may be under way, a loaded agent slow to answer).
    const active = await waitFor(
      'an active app machine to cut the proxy from',
      async () => [...(await labAgents(WAIT_ANSWER_MS))].find(([, st]) => st?.active)?.[0],
      30_000,
      250,
    );
    await labCut(host, [active], false);
    return { host: `${host}↮${active}`, recover: () => labUnblock(host) };
  }
  if (kind === 'packet-loss') {
    // From the step (its hold time), so a seed replays the same share.
    const percent = between(mulberry32(f.holdMs), LOSS_PERCENT[0], LOSS_PERCENT[1]);
    await labLoss(host, percent);
    return { host: `${host} ${percent}%`, recover: () => labUnblock(host) };
  }
  if (kind === 'latency') {
    // From the step (its hold time), so a seed replays the same delay.
    const ms = between(mulberry32(f.holdMs), LATENCY_MS[0], LATENCY_MS[1]);
    await labLatency(host, ms);
    return { host: `${host} +${ms} ms`, recover: () => labUnblock(host) };
  }
  if (kind === 'disk-full') {
    const dir = cluster.application.syncDirs[0];
    if (!dir) throw new Error('the cluster syncs no directory to fill');
    await labFill(host, dir);
    return { host: `${host}:${dir}`, recover: () => labUnfill(host, dir) };
  }
  if (kind === 'observer-mid-failover') {
    // As test/lab/failover-scenarios.ts: the app killed on the active machine, the observer
    // killed as soon as it has begun the failover, started again a second later.
    // The application's restarts fail meanwhile: systemd would otherwise bring it back within
    // the observer's appFailAfterMs on a quiet machine, and there would be no failover to cut.
    const observer = withRole(cluster, 'observer')[0]!.name;
    const before = (await readMachineLog(observer, 'observer')).length;
    await failStarts(host, UNITS.refapp, true);
    try {
      await labSignal(host, 'app', 'SIGKILL');
      try {
        await waitFor(
          'the observer to start the failover',
          async () => ((await readMachineLog(observer, 'observer')).slice(before).includes('"to":"failing-over"') ? true : undefined),
          30_000,
          200,
        );
        await labSignal(observer, 'observer', 'SIGKILL');
        await sleep(1000);
      } finally {
        await labStart(observer, 'observer');
      }
    } catch (err) {
      await failStarts(host, UNITS.refapp, false);
      throw err;
    }
    return { host, recover: () => failStarts(host, UNITS.refapp, false) };
  }
  const proc = kind.slice(5) as ChaosProc;
  if (kind.startsWith('kill-')) {
    await labSignal(host, proc, 'SIGKILL');
    // systemd restarts it (Restart=); a start makes sure, and does nothing when it runs.
    return { host, recover: () => labStart(host, unitOf(proc)) };
  }
  await labSignal(host, proc, 'SIGSTOP');
  // The agent may have ended a paused application while fencing: then there is nothing to resume.
  return { host, recover: async () => void (await labSignal(host, proc, 'SIGCONT').catch(() => 0)) };
}

/** After a run that went wrong: every cut healed, every paused process resumed. */
async function repair(cluster: Cluster): Promise<void> {
  await labHeal().catch(() => undefined);
  for (const m of cluster.machines) for (const p of CHAOS_PROCS) await labSignal(m.name, p, 'SIGCONT').catch(() => 0);
}

const errText = (err: unknown) => ((err as Error)?.message ?? String(err)).split('\n')[0]!.slice(0, 300);

/** Runs the schedule of `o.seed` on the running lab until `o.minutes` have passed (the fault under way finishes). */
export async function runChaos(lab: LabHandle, o: ChaosOptions, progress: Progress): Promise<ChaosReport> {
  const { cluster } = lab;
  const topology = lab.state.shape.topology;
  const settleMs = o.settleTimeoutMs ?? 180_000;
  progress(`chaos: seed ${o.seed} (replay with --seed ${o.seed}), ${o.minutes} min, topology ${topology}, faults: ${o.kinds.join(', ')}`);
  await labSettled(lab, settleMs);
  const checker = new Checker(lab, { dbWriter: true });
  await checker.start();
  const dbw = checker.dbWriter!;
  const results: FaultResult[] = [];
  const lostDbSeen = new Set<number>();
  // Progress times count from the checker's origin, as the timelines of its violations do.
  const t0 = checker.originMs;
  const endAt = performance.now() + o.minutes * 60_000;
  try {
    await waitFor('a write acknowledged through :80', async () => checker.serving(), 60_000, 100);
    for (const step of schedule(o.seed, { kinds: o.kinds, holdMs: o.holdMs })) {
      if (performance.now() >= endAt || o.signal?.aborted) break;
      const rng = mulberry32((o.seed ^ (step.n * 0x9e3779b1)) >>> 0);
      const before = checker.serving();
      const injectAt = performance.now();
      const what: string[] = [];
      const errors: string[] = [];
      // The first fault's machine is resolved now; a second one avoids it when another fits.
      let first: string | undefined;
      try {
        first = await resolveTarget(cluster, step.faults[0]!.target, rng);
      } catch (err) {
        errors.push(`${step.faults[0]!.kind}: ${errText(err)}`);
      }
      // One task per single fault: wait its offset, inject, hold, recover. Two overlap.
      const tasks = step.faults.map(async (f, i) => {
        let host: string | undefined = first;
        if (i > 0) {
          await sleep(step.offsetMs);
          try {
            host = await resolveTarget(cluster, f.target, rng, first);
          } catch (err) {
            errors.push(`${f.kind}: ${errText(err)}`);
            return;
          }
        }
        if (host === undefined) return;
        what[i] = `${f.kind} on ${host} (${f.target})${i > 0 ? ` ${(step.offsetMs / 1000).toFixed(1)} s later` : ''}`;
        const hold = f.kind === 'observer-mid-failover' ? '' : `, hold ${(f.holdMs / 1000).toFixed(1)} s`;
        progress(`[+${((performance.now() - t0) / 1000).toFixed(1)}s] #${step.n} inject ${what[i]}${hold}`);
        let done: Injected | undefined;
        try {
          done = await inject(cluster, f, host);
        } catch (err) {
          errors.push(`${f.kind} on ${host}: ${errText(err)}`);
        }
        if (f.kind !== 'observer-mid-failover') await sleep(f.holdMs);
        try {
          await done?.recover();
        } catch (err) {
          errors.push(`recovering ${f.kind} on ${host}: ${errText(err)}`);
        }
      });
      await Promise.all(tasks);
      const heldMs = performance.now() - injectAt;
      let settled = true;
      try {
        await labSettled(lab, settleMs);
      } catch (err) {
        errors.push(`not settled: ${errText(err)}`);
        await repair(cluster);
        try {
          await labSettled(lab, settleMs);
        } catch {
          settled = false;
        }
      }
      const settledAt = performance.now();
      // Service back: the first acknowledgement after the window's last failure.
      const acksHttp = () => checker.writes.map((w) => w.ackMs);
      const acksDb = () => dbw.acked.map((w) => w.atMs);
      const measure = () => ({
        http: backAfter(injectAt, settledAt, checker.failedWritesAtMs, acksHttp()),
        db: backAfter(injectAt, settledAt, dbw.failedAtMs, acksDb()),
      });
      await waitFor(
        'service back through :80 and :5000',
        async () => {
          const m = measure();
          return m.http !== undefined && m.db !== undefined ? true : undefined;
        },
        20_000,
        200,
      ).catch(() => undefined);
      const back = measure();
      const after = checker.serving();
      const takeover = step.faults.length === 1 && after && before && after !== before ? after : undefined;
      const report = checker.check({ sinceMs: injectAt, ...(takeover ? { takeover } : {}) });
      let lostHttp = 0;
      let lostDb = 0;
      try {
        const missing = await checker.missingWrites();
        lostHttp = missing.http.length;
        const fresh = missing.db.filter((s) => !lostDbSeen.has(s));
        fresh.forEach((s) => lostDbSeen.add(s));
        lostDb = fresh.length;
      } catch (err) {
        errors.push(`reading back the writes: ${errText(err)}`);
      }
      const violations = report.violations.length + report.servedAfterTakeover.length;
      const result: FaultResult = {
        n: step.n,
        kind: step.kind,
        what: what.filter(Boolean).join(' + ') || '(not injected)',
        heldMs,
        httpBackMs: back.http ?? null,
        dbBackMs: back.db ?? null,
        violations,
        lostHttp,
        lostDb,
        ...(errors.length ? { error: errors.join('; ') } : {}),
        ...(violations || lostHttp || lostDb ? { detail: report.text } : {}),
      };
      results.push(result);
      progress(formatResult(result, performance.now() - t0));
      if (result.detail) progress(result.detail);
      if (!settled) {
        progress('chaos: the cluster did not settle after a repair; the run stops here');
        break;
      }
    }
  } finally {
    await checker.stop();
    await repair(cluster);
  }
  const totals: ChaosTotals = {
    seed: o.seed,
    topology,
    minutes: (performance.now() - t0) / 60_000,
    faults: results.length,
    violations: results.reduce((n, r) => n + r.violations, 0),
    lostHttp: results.reduce((n, r) => n + r.lostHttp, 0),
    lostDb: results.reduce((n, r) => n + r.lostDb, 0),
    errors: results.filter((r) => r.error).length,
  };
  // Writes acknowledged after the last fault's check.
  try {
    const missing = await checker.missingWrites();
    totals.lostHttp += missing.http.length;
    totals.lostDb += missing.db.filter((s) => !lostDbSeen.has(s)).length;
  } catch (err) {
    totals.errors++;
    progress(`chaos: the final read-back failed: ${errText(err)}`);
  }
  const summary = summarize(results);
  const text = formatReport(summary, totals);
  return {
    seed: o.seed,
    results,
    summary,
    totals,
    text,
    ok: totals.violations === 0 && totals.lostHttp + totals.lostDb === 0 && totals.errors === 0,
  };
}
