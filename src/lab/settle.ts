/** Waiting for a lab cluster to be whole again between faults: for tests and benchmarks. */
import { withRole } from '../config/schema.ts';
import { openStore, storeTls } from '../etcd/store.ts';
import { etcdEndpoints } from '../layout/network.ts';
import { waitFor } from '../util/exec.ts';
import { findPrimary, hasSyncStandby, labAdminPki, labAgents, type LabHandle } from './lab.ts';

/**
 * One app machine active, every other one ready to take over, the acting observer done with its
 * last move (`healthy` at the active record's epoch: a fault injected while it still waits for the
 * new node to serve would be a second fault, not the one being measured), and (synchronous mode)
 * a synchronous standby. The observer is not waited for while maintenance is on: it does not act then.
 */
/** How long a wait gives each agent to answer: waiting, not checking, so a loaded machine's slow answer counts. */
export const WAIT_ANSWER_MS = 2000;

export async function labSettled(lab: LabHandle, timeoutMs = 120_000): Promise<void> {
  const { cluster } = lab;
  const apps = withRole(cluster, 'app').map((m) => m.name);
  await waitFor(
    'every app machine ready, one active',
    async () => {
      const agents = await labAgents(WAIT_ANSWER_MS);
      const ready = apps.every((n) => agents.get(n)?.ready || agents.get(n)?.active);
      return ready && apps.filter((n) => agents.get(n)?.active).length === 1 ? true : undefined;
    },
    timeoutMs,
    500,
  );
  if (withRole(cluster, 'observer').length) {
    const store = await openStore({
      endpoints: etcdEndpoints(cluster),
      cluster: cluster.cluster.name,
      dialTimeoutMs: 10_000,
      tls: storeTls(await labAdminPki()),
    });
    try {
      await waitFor(
        'the observer healthy at the active epoch',
        async () => {
          const [active, state, maintenance] = await Promise.all([store.getActive(), store.getObserverState(), store.getMaintenance()]);
          if (maintenance || (state?.state === 'healthy' && active && state.epoch === active.record.epoch)) return true;
          // Thrown so that a timeout says what was seen last.
          throw new Error(
            `last seen: ${state ? `${state.state} at epoch ${state.epoch}` : 'no observer state'}, active epoch ${active?.record.epoch ?? 'none'}`,
          );
        },
        timeoutMs,
        100,
      );
    } finally {
      await store.close();
    }
  }
  if (cluster.database.replication === 'synchronous') {
    const primary = await waitFor('a primary', () => findPrimary(cluster), timeoutMs, 500);
    await waitFor('a synchronous standby', () => hasSyncStandby(cluster, primary), timeoutMs, 500);
  }
}
