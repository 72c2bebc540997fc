/**
 * Keeps a doctor report in etcd (KEYS.doctorPrefix), where the dashboard's Doctor page shows the
 * last one of each source. Keeping it is a convenience: when etcd does not take it, doctor says
 * so and its report and exit status stand.
 */
import { hostname, userInfo } from 'node:os';
import type { Cluster } from '../config/schema.ts';
import { openStore, storeTls, type VigilStore } from '../etcd/store.ts';
import { etcdEndpoints } from '../layout/network.ts';
import type { DoctorSource } from '../model/ha.ts';
import { loadPki, type LoadedPki } from '../pki/ca.ts';
import type { DoctorReport } from './types.ts';

/** Who runs `vigil doctor` here, as the Doctor page names them. */
export function cliRunner(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry for this uid (a container): the host still says where it ran
  }
  return `${user}@${hostname()}`;
}

export async function keepReport(store: VigilStore, report: DoctorReport, source: DoctorSource, by: string): Promise<void> {
  await store.putDoctorRun({ source, by, at: new Date().toISOString(), report: report as unknown as Record<string, unknown> }, { timeoutMs: 5000 });
}

/** `vigil doctor`: opens etcd with the admin's certificate, keeps the report, closes. */
export async function keepCliReport(cluster: Cluster, pkiDir: string, report: DoctorReport): Promise<void> {
  const admin: LoadedPki = await loadPki(pkiDir, 'admin');
  const store = await openStore({ endpoints: etcdEndpoints(cluster), cluster: cluster.cluster.name, dialTimeoutMs: 5000, tls: storeTls(admin) });
  try {
    await keepReport(store, report, 'cli', cliRunner());
  } finally {
    await store.close();
  }
}
