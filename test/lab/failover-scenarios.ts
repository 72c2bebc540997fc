/**
 * The application failover scenarios of test/lab/app-failover.test.ts, shared with
 * test/lab/apply.test.ts, which runs them on a cluster installed by `vigil apply`: each fault is
 * injected on the active app machine while the checker (src/lab/checker.ts) samples every proxy,
 * agent, app machine and Patroni every 50 ms and its writers create tickets through the proxy's
 * :80 (and rows through :5000). After each fault: another machine serves; in no sample round were
 * two app machines UP and READY in a proxy, two agents active, two /role 200 or two primaries; the
 * old machine acknowledges no write once the new one has (also once it is resumed, reconnected or
 * revived); every acknowledged write is there; exactly one machine is active in every view; and
 * every proxy has every other app machine in MAINT (the observer fences each proxy, its own
 * through the runtime socket and the others through their agents); and the application's
 * background job (the reference application's SLA timer) moved to the new machine at a newer
 * epoch and never ran on two machines at once (on the database's clock).
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import type { Checker } from '../../src/lab/checker.ts';
import { labAgents, labCut, labHeal, labKill, labObservers, labRevive, labRun, labRuntime, labSignal, labStart, type LabHandle } from '../../src/lab/lab.ts';
import { withRole } from '../../src/config/schema.ts';
import { APP_BACKEND } from '../../src/layout/network.ts';
import { UNITS } from '../../src/layout/units.ts';
import { readMachineLog } from '../../src/lab/logs.ts';
import { signalProcesses } from '../../src/lab/procs.ts';
import { labSettled } from '../../src/lab/settle.ts';
import { sleep, waitFor } from '../../src/util/exec.ts';
import { withOps } from '../../src/ops/context.ts';
import { LAB_OPS } from '../../src/lab/target.ts';
import { sendRequest } from '../../src/ops/requests.ts';
import { printJournals } from './journal.ts';

export interface Fault {
  name: string;
  inject(active: string): Promise<void>;
  /** After the failover: resume, reconnect or revive the old machine. */
  recover(old: string): Promise<void>;
}

export const FAULTS: Fault[] = [
  {
    name: 'the machine is killed',
    inject: (a) => labKill(a),
    recover: (a) => labRevive(a),
  },
  {
    name: 'only the app process is killed',
    inject: async (a) => void (await labSignal(a, 'app', 'SIGKILL')),
    recover: async () => {},
  },
  {
    name: 'the app process hangs (SIGSTOP, SIGCONT after the failover)',
    inject: async (a) => void (await labSignal(a, 'app', 'SIGSTOP')),
    // The agent may already have ended the paused process while fencing; then there is nothing to resume.
    recover: async (a) => void (await labSignal(a, 'app', 'SIGCONT').catch(() => 0)),
  },
  {
    name: 'the agent hangs (SIGSTOP, SIGCONT after the failover)',
    // HAProxy routes on the agent's role check: the machine is out of the proxy although its
    // application answers the observer's deep check. The observer fails over; the new machine
    // starts once the hung agent's claim has expired; the dead-man switch stops the old application.
    inject: async (a) => void (await labSignal(a, 'agent', 'SIGSTOP')),
    recover: async (a) => {
      await waitFor(
        `the dead-man switch to stop the application on ${a} while its agent hangs`,
        async () => ((await labRun(a, ['systemctl', 'is-active', '--quiet', UNITS.nginx, UNITS.refapp])).code !== 0 ? true : undefined),
        15_000,
        200,
      );
      const running = await labRun(a, ['systemctl', 'is-active', UNITS.nginx, UNITS.refapp]);
      assert.doesNotMatch(running.stdout, /^active$/m, `nothing of the application runs on ${a}: ${running.stdout.trim()}`);
      await labSignal(a, 'agent', 'SIGCONT');
    },
  },
  {
    name: 'the whole machine hangs (every process SIGSTOP, SIGCONT after the failover)',
    // Nothing on it runs, not its agent, its dead-man switch, its application or (in `pair`) its
    // Patroni and PostgreSQL: the new machine starts once the hung agent's claim has expired.
    // Resumed, the old machine finds a newer epoch everywhere: the checks below hold it to never
    // serving again and its background job to never running beside the new machine's.
    inject: async (a) => void (await signalProcesses(a, 'SIGSTOP')),
    recover: async (a) => void (await signalProcesses(a, 'SIGCONT')),
  },
  {
    // With observers on the proxy machines (`--observers 2`), the acting one's: also that proxy's HAProxy.
    name: "the machine is cut off from the acting observer's machine",
    inject: async (a) => labCut(a, [await actingObserver()], false),
    recover: () => labHeal(),
  },
  {
    name: 'the acting observer restarts in the middle of the failover',
    inject: async (a) => {
      const observer = await actingObserver();
      const before = (await readMachineLog(observer, 'observer')).length;
      await labSignal(a, 'app', 'SIGKILL');
      // Kill the observer as soon as it has started the failover (epoch bumped, new node not yet serving).
      await waitFor(
        `the observer on ${observer} to start the failover`,
        async () => ((await readMachineLog(observer, 'observer')).slice(before).includes('"to":"failing-over"') ? true : undefined),
        30_000,
        50,
      );
      await labSignal(observer, 'observer', 'SIGKILL');
      await sleep(1000);
      await labStart(observer, 'observer');
    },
    recover: async () => {},
  },
];

/** The machine whose observer acts (etcd's leader key), once one does. */
export async function actingObserver(deadlineMs = 60_000): Promise<string> {
  let last = '';
  return waitFor(
    'an acting observer',
    async () => {
      const o = await labObservers();
      last = o.error ?? 'no observer holds the leadership';
      return o.acting ?? undefined;
    },
    deadlineMs,
    250,
  ).catch((err: Error) => assert.fail(`${err.message}: ${last}`));
}

/** Within this long after the faults healed (the old machine resumed, reconnected or revived), exactly one machine is active in every view. */
export const CONVERGE_MS = 30_000;

/** One `it` per fault; `lab` and `checker` (started) are read when the tests run (set up in a `before`). */
export function failoverTests(label: string, env: () => { lab: LabHandle; checker: Checker }): void {
  for (const fault of FAULTS) {
    it(`fails over when ${fault.name}, and the old machine never serves again`, async () => {
      const { lab, checker } = env();
      await labSettled(lab);
      const old = await waitFor('a machine serving', async () => checker.serving(), 30_000, 50);
      const faultAt = performance.now();
      await fault.inject(old);
      const first = await waitFor('another machine to serve', async () => checker.firstOtherAfter(faultAt, old), 60_000, 50);
      console.log(`# ${label}, ${fault.name}: ${first.node} acknowledged a write ${((first.ackMs - faultAt) / 1000).toFixed(1)} s after the fault`);
      await fault.recover(old);
      const healedAt = performance.now();
      await sleep(6000); // long enough for a resumed or reconnected machine to try to serve again
      const at = await checker.exactlyOneActive(first.node, healedAt + CONVERGE_MS - performance.now());
      const since = checker.onlyActiveSince(first.node, healedAt, at) ?? at;
      console.log(
        `# ${label}, ${fault.name}: ${first.node} the only active machine in every view from ${((since - healedAt) / 1000).toFixed(1)} s after the recovery`,
      );
      await nothingServedTwice(checker, faultAt, first.node);
      await everyProxyFences(lab, first.node);
      const job = await jobMoved(checker, first.node, old);
      console.log(`# ${label}, ${fault.name}: ${job.text.split('\n')[0]}`);
      assert.deepEqual(job.overlaps, [], job.text);
      await analyticsWherePlaced(lab, first.node);
    });
  }
}

/**
 * Where the cluster file lists the reference application's analytics service (its second
 * service, `vigil-refapp --analytics`): it runs as its placement says, asked of systemd on each
 * app machine (`active`: on the active machine alone; `every`: on each), and on the active machine
 * its agent reports it passing its own health check (`healthUrl`: it reached the database).
 */
async function analyticsWherePlaced(lab: LabHandle, active: string): Promise<void> {
  const svc = lab.cluster.application.services.find((s) => s.unit === UNITS.refappAnalytics);
  if (!svc) return;
  const apps = withRole(lab.cluster, 'app').map((m) => m.name);
  let seen = '';
  const startedAt = performance.now();
  await waitFor(
    `the analytics service (runsOn: ${svc.runsOn}) to run on ${svc.runsOn === 'every' ? 'every app machine' : `${active} alone`} and pass its health check there`,
    async () => {
      const states = await Promise.all(apps.map(async (m) => [m, (await labRun(m, ['systemctl', 'is-active', svc.unit])).stdout.trim()] as const));
      const ready = (await labAgents(2000)).get(active)?.services.find((x) => x.name === svc.name)?.ready;
      seen = `${states.map(([m, st]) => `${m} ${st}`).join(', ')}; ${active}'s agent reports it ready: ${String(ready)}`;
      const placed = states.every(([m, st]) => (st === 'active') === (svc.runsOn === 'every' || m === active));
      return placed && ready === true ? true : undefined;
    },
    15_000,
    250,
  ).catch((err: Error) => assert.fail(`${err.message}: ${seen}`));
  console.log(`# analytics service: ${seen} (checked in ${((performance.now() - startedAt) / 1000).toFixed(1)} s)`);
}

/**
 * Planned switchovers (`vigil switchover`), the old machine healthy and UP in every proxy until it is
 * fenced: the checker's rules hold through each, in particular never two app machines UP and READY
 * in one proxy. The observer sets the new machine UP at once when it sees it serve (its `mark-up`,
 * docs/failure-semantics.md), only once every other machine is out: this is the test that fails when
 * it does so before the old one is in MAINT (a failover does not show it: the failed machine is
 * down in every proxy by then). Not in failoverTests: apply.test.ts does not run it.
 */
export function switchoverTest(label: string, env: () => { lab: LabHandle; checker: Checker }): void {
  it('a planned switchover, twice: never two machines UP in a proxy or serving at once; then the new one alone out of MAINT in every proxy', async () => {
    const { lab, checker } = env();
    for (let round = 1; round <= 2; round++) {
      await labSettled(lab);
      const old = await waitFor('a machine serving', async () => checker.serving(), 30_000, 50);
      const t0 = performance.now();
      const wall0 = Date.now();
      const active = await withOps(LAB_OPS, (ctx) => sendRequest(ctx, { kind: 'switchover' }, () => {}));
      const first = await waitFor(`${active.node} to serve after the switchover`, async () => checker.firstOtherAfter(t0, old), 60_000, 50);
      console.log(
        `# ${label}, switchover ${round}: ${old} -> ${first.node}, a write acknowledged ${((first.ackMs - t0) / 1000).toFixed(1)} s after the request`,
      );
      await sleep(2000); // the rounds around the handover, sampled on both sides
      const report = checker.check({ sinceMs: t0, takeover: first.node });
      console.log(`# ${report.text.split('\n')[0]}`);
      if (report.violations.length || report.servedAfterTakeover.length) {
        const apps = withRole(lab.cluster, 'app').map((m): [string, string] => [m.name, UNITS.agent]);
        const proxies = withRole(lab.cluster, 'proxy').map((m): [string, string] => [m.name, UNITS.haproxy]);
        const observers = withRole(lab.cluster, 'observer').map((m): [string, string] => [m.name, UNITS.observer]);
        await printJournals([...observers, ...apps, ...proxies], wall0 - 500, Date.now());
      }
      assert.deepEqual(report.violations, [], report.text);
      assert.deepEqual(report.servedAfterTakeover, [], report.text);
      await checker.exactlyOneActive(first.node, CONVERGE_MS);
      await everyProxyFences(lab, first.node);
    }
    assert.deepEqual(await checker.missingWrites(), { http: [], db: [] }, 'every acknowledged write is there');
  });
}

/** The checker's verdict since `sinceMs` with `takeover` the new machine: no violation, nothing served by another after it, no acknowledged write missing. */
export async function nothingServedTwice(checker: Checker, sinceMs: number, takeover: string): Promise<void> {
  const report = checker.check({ sinceMs, takeover });
  console.log(`# ${report.text.split('\n')[0]}`);
  assert.deepEqual(report.violations, [], report.text);
  assert.deepEqual(report.servedAfterTakeover, [], report.text);
  const missing = await checker.missingWrites();
  assert.deepEqual(missing, { http: [], db: [] }, 'every acknowledged write is there');
}

/** In every proxy, the active machine's server is out of MAINT and every other app machine's in it (the observer fences within a tick or two). */
export async function everyProxyFences(lab: LabHandle, active: string): Promise<void> {
  const want = (server: string) => (server === active ? 'ready' : 'maint');
  for (const p of withRole(lab.cluster, 'proxy')) {
    const seen = async () => (await labRuntime(p.name).servers(APP_BACKEND)).map((s) => `${s.server}:${s.admin}`).sort();
    const expected = withRole(lab.cluster, 'app')
      .map((m) => `${m.name}:${want(m.name)}`)
      .sort();
    await waitFor(
      `${p.name} to have ${expected.join(', ')}`,
      async () => (JSON.stringify(await seen()) === JSON.stringify(expected) ? true : undefined),
      5000,
      100,
    ).catch(async () => assert.deepEqual(await seen(), expected, `the app backend of ${p.name}`));
  }
}

/**
 * Until the background job has run on `to` at an epoch above every epoch `from` ran it at (an
 * empty table would prove nothing); then its runs since the checker started, with the overlaps.
 */
export async function jobMoved(checker: Checker, to: string, from: string): ReturnType<Checker['checkJob']> {
  let last = '';
  try {
    return await waitFor(
      `the background job to run on ${to} at a newer epoch than on ${from}`,
      async () => {
        const job = await checker.checkJob();
        last = job.text;
        const oldTop = Math.max(0, ...job.runs.filter((r) => r.node === from).map((r) => r.epoch));
        return job.runs.some((r) => r.node === to && r.epoch > oldTop) ? job : undefined;
      },
      30_000,
      500,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; ${last}`, { cause: err });
  }
}
