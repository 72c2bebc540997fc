/**
 * The application failover scenarios of test/lab/app-failover.test.ts, shared with
 * test/lab/apply.test.ts, which runs them on a cluster installed by `vigil apply`: each fault is
 * injected on the active app machine while a client polls through the proxy's :80 and records
 * which machine answered every request. After each fault: another machine serves, the old one
 * never answers again (also once it is resumed, reconnected or revived), and exactly one machine
 * is active.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { labAgents, labCut, labHeal, labKill, labRevive, labRun, labRuntime, labSignal, labStart, type LabHandle } from '../../src/lab/lab.ts';
import { UNITS } from '../../src/layout/units.ts';
import { readMachineLog } from '../../src/lab/logs.ts';
import type { HttpProbe } from '../../src/lab/probe.ts';
import { labSettled } from '../../src/lab/settle.ts';
import { sleep, waitFor } from '../../src/util/exec.ts';

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
    name: 'the machine is cut off from the observer machine',
    inject: (a) => labCut(a, ['observer'], false),
    recover: () => labHeal(),
  },
  {
    name: 'the observer restarts in the middle of the failover',
    inject: async (a) => {
      const before = (await readMachineLog('observer', 'observer')).length;
      await labSignal(a, 'app', 'SIGKILL');
      // Kill the observer as soon as it has started the failover (epoch bumped, new node not yet serving).
      await waitFor(
        'the observer to start the failover',
        async () => ((await readMachineLog('observer', 'observer')).slice(before).includes('"to":"failing-over"') ? true : undefined),
        30_000,
        50,
      );
      await labSignal('observer', 'observer', 'SIGKILL');
      await sleep(1000);
      await labStart('observer', 'observer');
    },
    recover: async () => {},
  },
];

/** One `it` per fault; `lab` and `probe` are read when the tests run (set up in a `before`). */
export function failoverTests(label: string, env: () => { lab: LabHandle; probe: HttpProbe }): void {
  for (const fault of FAULTS) {
    it(`fails over when ${fault.name}, and the old machine never serves again`, async () => {
      const { lab, probe } = env();
      await labSettled(lab);
      const old = await waitFor('a machine serving', async () => probe.current() ?? undefined, 30_000, 50);
      const faultAt = performance.now();
      await fault.inject(old);
      const first = await waitFor('another machine to serve', async () => probe.firstOtherAfter(faultAt, old), 60_000, 50);
      console.log(`# ${label}, ${fault.name}: ${first.node} serves ${((first.atMs - faultAt) / 1000).toFixed(1)} s after the fault`);
      await fault.recover(old);
      await sleep(6000); // long enough for a resumed or reconnected machine to try to serve again
      assert.deepEqual(probe.violations(faultAt, first.node!), [], `only ${first.node} answered once it had taken over`);
      await exactlyOneActive(first.node!);
    });
  }
}

/** The agents and HAProxy agree: exactly one app machine is active, serving, and the only one in READY. */
export async function exactlyOneActive(node: string): Promise<void> {
  await waitFor(
    `${node} as the only active machine`,
    async () => {
      const agents = await labAgents();
      const active = [...agents].filter(([, s]) => s?.active).map(([n]) => n);
      const servers = await labRuntime('observer').servers('app');
      const up = servers.filter((s) => s.admin === 'ready' && s.op === 'up').map((s) => s.server);
      return active.length === 1 && active[0] === node && up.length === 1 && up[0] === node ? true : undefined;
    },
    30_000,
    500,
  );
}
