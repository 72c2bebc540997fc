/**
 * Application failover with fencing, on `pair` and `distributed` labs (the scenarios are in
 * failover-scenarios.ts; test/lab/apply.test.ts runs them on a cluster installed by `vigil apply`).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { withRole } from '../../src/config/schema.ts';
import { labDown, labUp, type LabHandle } from '../../src/lab/lab.ts';
import { HttpProbe } from '../../src/lab/probe.ts';
import type { LabTopology } from '../../src/lab/topology.ts';
import { failoverTests } from './failover-scenarios.ts';

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

    failoverTests(topology, () => ({ lab, probe }));
  });
}
