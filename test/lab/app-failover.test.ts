/**
 * Application failover with fencing, on `pair` (warm standby) and `distributed` (cold) labs (the scenarios are in
 * failover-scenarios.ts; test/lab/apply.test.ts runs them on a cluster installed by `vigil apply`).
 * `pair` has HAProxy on the observer machine, as the seed does; `distributed` has two proxy
 * machines of their own, each with an observer and an etcd member (`--observers 2`; the third etcd
 * member is on db1): the acting observer reads and fences its own HAProxy through the runtime
 * socket and the other through that machine's agent: the checker
 * samples both and writes through both, so a machine left UP in either one is a violation. On
 * both, two planned switchovers with the checker (switchoverTest): the old machine is UP until it is
 * fenced, so a new one set UP before it is out would be seen.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { labDown, labUp, type LabHandle } from '../../src/lab/lab.ts';
import { Checker } from '../../src/lab/checker.ts';
import type { LabShape, LabTopology } from '../../src/lab/topology.ts';
import { agentMachines, withRole } from '../../src/config/schema.ts';
import pg from 'pg';
import { waitFor } from '../../src/util/exec.ts';
import { failoverTests, switchoverTest } from './failover-scenarios.ts';
import { entryPointTests, observerMovesTest } from './entry-scenarios.ts';

// `distributed` runs the application cold on the standby (started on activation), `pair` warm (its
// service on every app machine, only activated): every scenario is checked in both modes, with no
// lab brought up for it alone.
for (const [topology, warm] of [
  ['distributed', false],
  ['pair', true],
] as [LabTopology, boolean][]) {
  describe(`application failover on ${topology}${warm ? ', warm standby' : ''}`, () => {
    let lab: LabHandle;
    let checker: Checker | undefined;

    before(async () => {
      await labDown();
      // With the reference application's analytics service (runsOn: active): each scenario checks it runs where its placement says.
      const application = { warm, analytics: true };
      // distributed: an observer and an etcd member on each of two proxy machines, the third member on db1 (`--observers 2`).
      const shape: LabShape = topology === 'distributed' ? { topology, observers: 2, application } : { topology, application };
      lab = await labUp(shape, (l) => console.log(`# lab: ${l}`));
      checker = new Checker(lab, { dbWriter: true });
      await checker.start();
    });
    after(async () => {
      await checker?.stop();
      await labDown();
    });

    it('lab status lists the agents and the observers', async () => {
      const { labStatus } = await import('../../src/lab/lab.ts');
      const machines = await labStatus();
      const observers = withRole(lab.cluster, 'observer').map((m) => m.name);
      assert.deepEqual(observers, topology === 'distributed' ? ['proxy1', 'proxy2'] : ['observer']);
      for (const o of observers) assert.ok(machines.find((m) => m.name === o)!.processes.observer, `an observer runs on ${o}`);
      const withAgent = agentMachines(lab.cluster).map((m) => m.name);
      if (topology === 'distributed') assert.ok(withAgent.includes('proxy1') && withAgent.includes('proxy2'), 'an agent on each proxy machine');
      for (const m of machines) assert.equal(Boolean(m.processes.agent), withAgent.includes(m.name), `agent on ${m.name}`);
      // Warm: the application runs on every app machine, the standby's too (its agent starts it); cold: on one.
      const want = warm ? 2 : 1;
      const appMachines = async () => (await labStatus()).filter((m) => m.roles.includes('app') && m.processes.app).map((m) => m.name);
      await waitFor(`the application on ${want} app machine(s)`, async () => ((await appMachines()).length === want ? true : undefined), 30_000, 500).catch(
        async (err: Error) => assert.fail(`${err.message}: it runs on ${(await appMachines()).join(', ') || 'no machine'}`),
      );
    });

    if (warm)
      it("the standby's agent reports its warm application ready (its own health check, healthUrl)", async () => {
        const { labAgents } = await import('../../src/lab/lab.ts');
        await waitFor(
          "the standby's agent to report its warm application ready",
          async () => {
            const standby = [...(await labAgents(2000)).values()].find((a) => a && !a.active && a.services.some((x) => x.runsOn === 'every'));
            return standby?.services.find((x) => x.name === 'app')?.ready === true ? true : undefined;
          },
          30_000,
          500,
        );
      });

    failoverTests(topology, () => ({ lab, checker: checker! }));
    switchoverTest(topology, () => ({ lab, checker: checker! }));

    // Two proxy machines share the floating entry address (keepalived): it moves when its holder fails.
    if (topology === 'distributed') entryPointTests(() => ({ lab, checker: checker! }));
    // An observer on each proxy machine: the acting one's machine lost, the other acts.
    if (topology === 'distributed') observerMovesTest(() => ({ lab, checker: checker! }));

    it("the checker reports a double run of the background job planted in the database (the old machine's epoch, inside the active machine's span)", async () => {
      const before = await checker!.checkJob();
      const last = before.runs.at(-1)!;
      const other = lab.cluster.machines.find((m) => m.roles.includes('app') && m.name !== last.node)!.name;
      const db = new pg.Client({
        host: lab.cluster.machines.find((m) => m.roles.includes('proxy'))!.address,
        port: lab.cluster.proxy.postgresPort,
        user: lab.cluster.database.appUser,
        password: lab.secrets.appDbPassword,
        database: lab.cluster.database.appDatabase,
      });
      await db.connect();
      let plantedId: string | undefined;
      try {
        // Written past the fence, as a machine that ignored it would: at an older epoch, now.
        const planted = await db.query<{ id: string }>('INSERT INTO sla_runs (node, epoch, ran_at) VALUES ($1, $2, clock_timestamp()) RETURNING id', [
          other,
          last.epoch - 1,
        ]);
        plantedId = planted.rows[0]!.id;
        const job = await waitFor(
          'the active machine to run the job after the planted run',
          async () => {
            const j = await checker!.checkJob();
            return j.overlaps.length > 0 ? j : undefined;
          },
          15_000,
          500,
        );
        assert.match(job.text, new RegExp(`VIOLATION: the background job ran on two machines at once: .*${other}`));
      } finally {
        if (plantedId) await db.query('DELETE FROM sla_runs WHERE id = $1', [plantedId]).catch(() => undefined);
        await db.end();
      }
    });
  });
}
