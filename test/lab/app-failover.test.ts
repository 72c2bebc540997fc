/**
 * Application failover with fencing, on `pair` and `distributed`: each fault is injected on the
 * active app machine while a client polls through the proxy's :80 and records which machine
 * answered every request. After each fault: another machine serves, the old one never answers
 * again (also once it is resumed, reconnected or revived), and exactly one machine is active.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withRole } from '../../src/config/schema.ts';
import {
  labAgents,
  labCut,
  labDown,
  labHeal,
  labKill,
  labRevive,
  labRuntime,
  labSignal,
  labStart,
  labUp,
  type LabHandle,
} from '../../src/lab/lab.ts';
import { hostRoot } from '../../src/lab/paths.ts';
import { HttpProbe } from '../../src/lab/probe.ts';
import { labSettled } from '../../src/lab/settle.ts';
import type { LabTopology } from '../../src/lab/topology.ts';
import { sleep, waitFor } from '../../src/util/exec.ts';

interface Fault {
  name: string;
  inject(active: string): Promise<void>;
  /** After the failover: resume, reconnect or revive the old machine. */
  recover(old: string): Promise<void>;
}

const FAULTS: Fault[] = [
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
    name: 'the machine is cut off from the observer machine',
    inject: (a) => labCut(a, ['observer'], false),
    recover: () => labHeal(),
  },
  {
    name: 'the observer restarts in the middle of the failover',
    inject: async (a) => {
      const logFile = join(hostRoot('observer'), 'log', 'observer.log');
      const before = (await readFile(logFile, 'utf8')).length;
      await labSignal(a, 'app', 'SIGKILL');
      // Kill the observer as soon as it has started the failover (epoch bumped, new node not yet serving).
      await waitFor('the observer to start the failover', async () => ((await readFile(logFile, 'utf8')).slice(before).includes('"to":"failing-over"') ? true : undefined), 30_000, 20);
      await labSignal('observer', 'observer', 'SIGKILL');
      await sleep(1000);
      await labStart('observer', 'observer');
    },
    recover: async () => {},
  },
];

for (const topology of ['distributed', 'pair'] as LabTopology[]) {
  describe(`application failover on ${topology}`, () => {
    let lab: LabHandle;
    let probe: HttpProbe;

    before(async () => {
      await labDown();
      lab = await labUp({ topology }, (l) => console.log(`# lab: ${l}`));
      const proxy = withRole(lab.cluster, 'proxy')[0]!;
      probe = new HttpProbe(`http://${proxy.address}:${lab.cluster.proxy.httpPort}${lab.cluster.application.healthPath}`);
      probe.start();
    });
    after(async () => {
      await probe?.stop();
      await labDown();
    });

    it('lab status lists the agents and the observer', async () => {
      const { labStatus } = await import('../../src/lab/lab.ts');
      const machines = await labStatus();
      assert.ok(machines.find((m) => m.name === 'observer')!.processes.observer, 'observer runs on the observer machine');
      for (const m of machines.filter((x) => x.roles.includes('app') || x.roles.includes('db'))) assert.ok(m.processes.agent, `agent runs on ${m.name}`);
    });

    for (const fault of FAULTS) {
      it(`fails over when ${fault.name}, and the old machine never serves again`, async () => {
        await labSettled(lab);
        const old = await waitFor('a machine serving', async () => probe.current() ?? undefined, 30_000, 50);
        const faultAt = performance.now();
        await fault.inject(old);
        const first = await waitFor('another machine to serve', async () => probe.firstOtherAfter(faultAt, old), 60_000, 50);
        console.log(`# ${topology}, ${fault.name}: ${first.node} serves ${((first.atMs - faultAt) / 1000).toFixed(1)} s after the fault`);
        await fault.recover(old);
        await sleep(6000); // long enough for a resumed or reconnected machine to try to serve again
        assert.deepEqual(probe.violations(faultAt, first.node!), [], `only ${first.node} answered once it had taken over`);
        await exactlyOneActive(lab, first.node!);
      });
    }
  });
}

/** The agents and HAProxy agree: exactly one app machine is active, serving, and the only one in READY. */
async function exactlyOneActive(lab: LabHandle, node: string): Promise<void> {
  await waitFor(`${node} as the only active machine`, async () => {
    const agents = await labAgents();
    const active = [...agents].filter(([, s]) => s?.active).map(([n]) => n);
    const servers = await labRuntime('observer').servers('app');
    const up = servers.filter((s) => s.admin === 'ready' && s.op === 'up').map((s) => s.server);
    return active.length === 1 && active[0] === node && up.length === 1 && up[0] === node ? true : undefined;
  }, 30_000, 500);
}
