/**
 * Application failover with fencing, on `pair` and `distributed` labs (the scenarios are in
 * failover-scenarios.ts; test/lab/apply.test.ts runs them on a cluster installed by `vigil apply`).
 * `pair` has HAProxy on the observer machine, as the seed does; `distributed` has two proxy
 * machines of their own, which the observer reads and fences through their agents: the checker
 * samples both and writes through both, so a machine left UP in either one is a violation.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { labDown, labUp, type LabHandle } from '../../src/lab/lab.ts';
import { Checker } from '../../src/lab/checker.ts';
import type { LabShape, LabTopology } from '../../src/lab/topology.ts';
import { agentMachines } from '../../src/config/schema.ts';
import { failoverTests } from './failover-scenarios.ts';

for (const topology of ['distributed', 'pair'] as LabTopology[]) {
  describe(`application failover on ${topology}`, () => {
    let lab: LabHandle;
    let checker: Checker | undefined;

    before(async () => {
      await labDown();
      const shape: LabShape = topology === 'distributed' ? { topology, proxies: 2 } : { topology };
      lab = await labUp(shape, (l) => console.log(`# lab: ${l}`));
      checker = new Checker(lab, { dbWriter: true });
      await checker.start();
    });
    after(async () => {
      await checker?.stop();
      await labDown();
    });

    it('lab status lists the agents and the observer', async () => {
      const { labStatus } = await import('../../src/lab/lab.ts');
      const machines = await labStatus();
      assert.ok(machines.find((m) => m.name === 'observer')!.processes.observer, 'observer runs on the observer machine');
      const withAgent = agentMachines(lab.cluster).map((m) => m.name);
      if (topology === 'distributed') assert.ok(withAgent.includes('proxy1') && withAgent.includes('proxy2'), 'an agent on each proxy machine');
      for (const m of machines) assert.equal(Boolean(m.processes.agent), withAgent.includes(m.name), `agent on ${m.name}`);
    });

    failoverTests(topology, () => ({ lab, checker: checker! }));
  });
}
