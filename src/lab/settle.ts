/** Waiting for a lab cluster to be whole again between faults: for tests and benchmarks. */
import { withRole } from '../config/schema.ts';
import { waitFor } from '../util/exec.ts';
import { findPrimary, hasSyncStandby, labAgents, type LabHandle } from './lab.ts';

/** One app machine active, every other one ready to take over, and (synchronous mode) a synchronous standby. */
export async function labSettled(lab: LabHandle, timeoutMs = 120_000): Promise<void> {
  const { cluster } = lab;
  const apps = withRole(cluster, 'app').map((m) => m.name);
  await waitFor('every app machine ready, one active', async () => {
    const agents = await labAgents();
    const ready = apps.every((n) => agents.get(n)?.ready || agents.get(n)?.active);
    return ready && apps.filter((n) => agents.get(n)?.active).length === 1 ? true : undefined;
  }, timeoutMs, 500);
  if (cluster.database.replication === 'synchronous') {
    const primary = await waitFor('a primary', () => findPrimary(cluster), timeoutMs, 500);
    await waitFor('a synchronous standby', () => hasSyncStandby(cluster, primary), timeoutMs, 500);
  }
}
