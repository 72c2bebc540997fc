/**
 * Application failover with fencing, on `pair` and `distributed` labs (the scenarios are in
 * failover-scenarios.ts; test/lab/apply.test.ts runs them on a cluster installed by `vigil apply`).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { labDown, labUp, type LabHandle } from '../../src/lab/lab.ts';
import { Checker } from '../../src/lab/checker.ts';
import type { LabTopology } from '../../src/lab/topology.ts';
import { failoverTests } from './failover-scenarios.ts';

for (const topology of ['distributed', 'pair'] as LabTopology[]) {
  describe(`application failover on ${topology}`, () => {
    let lab: LabHandle;
    let checker: Checker | undefined;

    before(async () => {
      await labDown();
      lab = await labUp({ topology }, (l) => console.log(`# lab: ${l}`));
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
      for (const m of machines.filter((x) => x.roles.includes('app') || x.roles.includes('db'))) assert.ok(m.processes.agent, `agent runs on ${m.name}`);
    });

    failoverTests(topology, () => ({ lab, checker: checker! }));
  });
}
