/**
 * The observer's hook (src/observer/daemon.ts): starts the dashboard's server on the observer
 * machine's address when the cluster file enables it and the secrets file names users. A port
 * that cannot be taken is logged with the fix and left out: the dashboard must never stop an
 * observer.
 */
import { withRole, type Cluster, type Secrets } from '../config/schema.ts';
import type { VigilStore } from '../etcd/store.ts';
import type { EventLog } from '../events/log.ts';
import type { LoadedPki } from '../pki/ca.ts';
import type { OpsContext } from '../ops/context.ts';
import { clusterStatus } from '../ops/status.ts';
import { patroniOf, type PatroniHistoryEntry } from '../patroni/client.ts';
import { startDashboardServer, type DashboardServer } from './server.ts';
import { buildTimeline, type TimelineView } from './timeline.ts';
import { carryOut, parseAction } from './actions.ts';
import { nowView } from './view.ts';
import { doctorRunMessage, doctorView, type DoctorView } from './doctor.ts';

export interface ServeDashboardOptions {
  cluster: Cluster;
  machine: { name: string; address: string };
  secrets: Secrets;
  /** The observer machine's identity: its certificate serves HTTPS and reads the agents' status. */
  pki: LoadedPki;
  store: VigilStore;
  events: EventLog;
  log: (event: string, fields?: Record<string, unknown>) => void;
}

/** The dashboard's URL on a machine (`vigil lab status --json`, docs/dashboard.md). */
export const dashboardUrl = (cluster: Cluster, machine: { address: string }): string => `https://${machine.address}:${cluster.dashboard.port}/`;

/** Starts the server; null when the dashboard is off, has no users, or could not listen (logged). */
export async function serveDashboard(o: ServeDashboardOptions): Promise<DashboardServer | null> {
  const d = o.cluster.dashboard;
  if (!d.enabled) return null;
  const users = o.secrets.dashboardUsers ?? [];
  if (users.length === 0) {
    o.log('dashboard-not-served', {
      reason: 'the secrets file names no dashboard user',
      fix: 'add dashboardUsers to the secrets file (docs/dashboard.md, "Users and roles"), or set dashboard.enabled: false',
    });
    return null;
  }
  const doctor = doctorRunner(o);
  // clusterStatus's context, on the observer's own etcd connection and certificate.
  const ops: OpsContext = { cluster: o.cluster, store: o.store, events: o.events, pkiDir: '', admin: async () => o.pki, close: async () => {} };
  try {
    const server = await startDashboardServer({
      cert: o.pki.cert,
      key: o.pki.key,
      host: o.machine.address,
      port: d.port,
      users,
      read: async () => nowView(await clusterStatus(ops, 1)),
      readTimeline: () => readTimeline(o),
      readDoctor: doctor.read,
      runDoctor: doctor.run,
      parseAction: (form) => parseAction(form, o.cluster),
      act: (a, user) => carryOut(o.store, a, user),
      audit: async (e) => void (await o.events.append(e)),
      log: o.log,
    });
    o.log('dashboard-listening', { url: dashboardUrl(o.cluster, o.machine), users: users.length });
    return server;
  } catch (err) {
    o.log('dashboard-not-served', {
      port: d.port,
      error: (err as Error).message,
      fix: `free port ${d.port} on ${o.machine.name} or change dashboard.port in the cluster file`,
    });
    return null;
  }
}

/**
 * The Doctor page's data and its one run at a time: doctor from this observer, with its own
 * certificate and no shell on the machines (src/doctor/doctor.ts without `openShell`), kept in
 * etcd as the dashboard's report and told as a `doctor-run` event. Doctor's code is loaded on the
 * first run, not with the observer.
 */
function doctorRunner(o: ServeDashboardOptions): { read: () => Promise<DoctorView>; run: (user: string) => { started: boolean; message: string } } {
  let running: { by: string; since: string } | null = null;
  let lastError: string | null = null;
  const once = async (user: string, by: string): Promise<void> => {
    try {
      const [{ runDoctor }, { systemdFixes }, { keepReport }] = await Promise.all([
        import('../doctor/doctor.ts'),
        import('../doctor/fixes.ts'),
        import('../doctor/keep.ts'),
      ]);
      const report = await runDoctor({ cluster: o.cluster, secrets: o.secrets, platform: 'systemd', fixes: systemdFixes(o.cluster), identity: o.pki });
      await keepReport(o.store, report, 'dashboard', by);
      lastError = null;
      o.log('dashboard-doctor-done', { user, failures: report.summary.failures, warnings: report.summary.warnings });
      await o.events.append({
        type: 'doctor-run',
        message: doctorRunMessage(by, report.summary, report.durationMs),
        details: { by: user, failures: report.summary.failures, warnings: report.summary.warnings, scope: report.scope ?? 'machines' },
      });
    } catch (err) {
      lastError = (err as Error).message.split('\n')[0]!;
      o.log('dashboard-doctor-failed', { user, error: lastError });
      await o.events
        .append({ type: 'doctor-run', message: `doctor run from the dashboard by ${by} failed: ${lastError}`, details: { by: user, error: lastError } })
        .catch(() => {});
    } finally {
      running = null;
    }
  };
  return {
    read: async () => doctorView(o.cluster.cluster.name, await o.store.getDoctorRuns({ timeoutMs: 3000 }), { running, lastError }),
    run: (user) => {
      if (running) return { started: false, message: `doctor is already running (${running.by}, since ${running.since})` };
      const by = `${user} (dashboard on ${o.machine.name})`;
      running = { by, since: new Date().toISOString() };
      void once(user, by);
      return { started: true, message: 'doctor is running from the observer; its report appears on the Doctor page' };
    },
  };
}

/** Every event etcd keeps, and the database's timeline switches from the first db machine whose Patroni answers. */
async function readTimeline(o: ServeDashboardOptions): Promise<TimelineView> {
  const [events, db] = await Promise.all([o.events.list(o.events.keep, { timeoutMs: 3000 }), databaseHistory(o.cluster, o.pki)]);
  return buildTimeline(events, db.history, { cluster: o.cluster.cluster.name, ...(db.error ? { databaseError: db.error } : {}) });
}

async function databaseHistory(cluster: Cluster, pki: LoadedPki): Promise<{ history: PatroniHistoryEntry[]; error?: string }> {
  const members = withRole(cluster, 'db');
  if (members.length === 0) return { history: [] };
  const errors: string[] = [];
  for (const m of members) {
    try {
      return { history: await patroniOf(cluster, m, { identity: pki }).history({ timeoutMs: 1000 }) };
    } catch (err) {
      errors.push(`${m.name}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  return { history: [], error: `no Patroni answered GET /history (${errors.join('; ')})` };
}
