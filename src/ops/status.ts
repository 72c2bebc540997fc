/**
 * `vigil status`: one place that says what state the cluster is in — every machine's role,
 * health and lag, the active node and its epoch, maintenance, the observer leader, last events.
 */
import type { StoredEvent } from '../etcd/store.ts';
import type { ActiveRecord, AgentStatus, Maintenance, ObserverLeader, ObserverState } from '../model/ha.ts';
import { agentOf } from '../agent/client.ts';
import { agentMachines, runsAgent } from '../config/schema.ts';
import type { OpsContext } from './context.ts';
import { airgapStatus, formatAirgapStatus, type AirgapStatus } from './airgap-status.ts';

export interface ClusterStatus {
  cluster: string;
  active: ActiveRecord | null;
  maintenance: Maintenance | null;
  observerLeader: ObserverLeader | null;
  /** What the leader is doing (healthy, suspect, failing-over, ...), as it last wrote it. */
  observerState: ObserverState | null;
  /** `hasAgent`: an agent runs there (config/schema.ts runsAgent); `agent`: its status, null when it did not answer. */
  machines: { name: string; address: string; roles: string[]; hasAgent: boolean; agent: AgentStatus | null }[];
  events: StoredEvent[];
  /** The air gap (docs/airgap.md): the cluster's last bundle and what every app machine holds; null without application.patchDir. */
  airgap: AirgapStatus | null;
}

export async function clusterStatus(ctx: OpsContext, eventCount = 5): Promise<ClusterStatus> {
  const { cluster, store } = ctx;
  const pki = await ctx.admin();
  const withAgents = agentMachines(cluster);
  const [active, maintenance, observerLeader, observerState, events, agents, airgap] = await Promise.all([
    store.getActive(),
    store.getMaintenance(),
    store.currentLeader(),
    store.getObserverState(),
    ctx.events.list(eventCount),
    // An agent that does not answer shows as unknown.
    Promise.all(
      withAgents.map((m) =>
        agentOf(pki, m)
          .status({ timeoutMs: 2000 })
          .catch(() => undefined),
      ),
    ),
    cluster.application.patchDir ? store.getAirgap() : null,
  ]);
  const byName = new Map(withAgents.map((m, i) => [m.name, agents[i] ?? null]));
  return {
    cluster: cluster.cluster.name,
    active: active?.record ?? null,
    maintenance,
    observerLeader,
    observerState,
    machines: cluster.machines.map((m) => ({
      name: m.name,
      address: m.address,
      roles: m.roles,
      hasAgent: runsAgent(cluster, m),
      agent: byName.get(m.name) ?? null,
    })),
    events,
    airgap: cluster.application.patchDir ? airgapStatus(cluster, airgap?.record ?? null, byName) : null,
  };
}

const fmtBytes = (n: number) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : `${Math.round(n / (1 << 20))} MiB`);

/** The human form: a header, one line per machine, the last events. */
export function formatStatus(s: ClusterStatus): string {
  const lines: string[] = [];
  lines.push(`cluster ${s.cluster}`);
  lines.push(`  active app node: ${s.active ? `${s.active.node} at epoch ${s.active.epoch} since ${s.active.since} (${s.active.reason})` : 'none yet'}`);
  lines.push(`  maintenance:     ${s.maintenance ? `ON since ${s.maintenance.since} by ${s.maintenance.by}: ${s.maintenance.reason}` : 'off'}`);
  lines.push(
    `  observer leader: ${s.observerLeader ? `${s.observerLeader.id} on ${s.observerLeader.host} since ${s.observerLeader.since}` : 'NONE: no observer is acting'}`,
  );
  const os = s.observerState;
  if (s.observerLeader)
    lines.push(
      `  observer state:  ${os ? `${os.state} since ${os.since}${os.epoch === null ? '' : ` (epoch ${os.epoch})`}: ${os.reason}` : 'not written yet'}`,
    );
  lines.push('');
  lines.push('machine     address         roles                 app           database                   disk free');
  for (const m of s.machines) {
    const c = machineColumns(m);
    lines.push(`${c.machine.padEnd(11)} ${c.address.padEnd(15)} ${c.roles.padEnd(21)} ${c.app.padEnd(13)} ${c.database.padEnd(26)} ${c.diskFree}`);
  }
  const services = formatServices(s);
  if (services.length) lines.push('', 'application services (runs on: active machine only, or every app machine)', ...services);
  const fences = s.machines
    .filter((m) => m.agent?.dbFence)
    .map((m) => {
      const f = m.agent!.dbFence!;
      const gate = f.patroniGate ? ", Patroni gate on (this Patroni can overwrite a newer leader's key after a pause)" : '';
      return `  ${m.name.padEnd(10)} Patroni ${f.patroniVersion ?? 'version unknown'}${gate}; fenced ${f.fences} time(s)${f.lastReason ? `, last: ${f.lastReason}` : ''}`;
    });
  if (fences.length) lines.push('', 'stale-primary fence', ...fences);
  const sync = formatSync(s);
  if (sync.length) lines.push('', 'file sync', ...sync);
  if (s.airgap)
    lines.push(
      '',
      'air gap',
      ...formatAirgapStatus(s.airgap)
        .split('\n')
        .map((l) => `  ${l}`),
    );
  if (s.events.length) {
    lines.push('');
    lines.push('last events');
    for (const e of s.events) lines.push(`  ${e.at}  ${e.type.padEnd(15)} ${e.message}`);
  }
  return lines.join('\n');
}

/** One machine's row of the status table, as words: the CLI's table and the dashboard's (src/dashboard/view.ts) show the same. */
export interface MachineColumns {
  machine: string;
  address: string;
  roles: string;
  /** `ACTIVE`, `ACTIVE, UNHEALTHY`, `STARTING, waits for …`, `standby`, `standby, NOT READY`, `UNREACHABLE`, or `-` (no app role). */
  app: string;
  /** Patroni's role and state (`leader running, lag 0 B`), `unknown`, or `-`. */
  database: string;
  diskFree: string;
}

export function machineColumns(m: ClusterStatus['machines'][number]): MachineColumns {
  const a = m.agent;
  let app = '-';
  if (m.roles.includes('app'))
    app = !a
      ? 'UNREACHABLE'
      : a.active
        ? a.appHealthy
          ? 'ACTIVE'
          : 'ACTIVE, UNHEALTHY'
        : a.waitingFor?.length
          ? `STARTING, waits for ${a.waitingFor.join(',')} to stop`
          : a.ready
            ? 'standby'
            : 'standby, NOT READY';
  let db = '-';
  if (m.roles.includes('db')) db = !a?.patroni ? 'unknown' : `${a.patroni.role} ${a.patroni.state}${a.patroni.lagBytes ? `, lag ${a.patroni.lagBytes} B` : ''}`;
  const disk = a?.disk[0] ? fmtBytes(a.disk[0].freeBytes) : m.hasAgent ? '?' : '-';
  return { machine: m.name, address: m.address, roles: m.roles.join(','), app, database: db, diskFree: disk };
}

/** Per app machine, each service: where it runs and whether it runs, e.g. `app1  nginx (active) running, app (every) running`. */
function formatServices(s: ClusterStatus): string[] {
  return s.machines
    .filter((m) => m.roles.includes('app') && m.agent && m.agent.services.length > 0)
    .map((m) => `  ${m.name.padEnd(10)} ${m.agent!.services.map((x) => `${x.name} (${x.runsOn ?? 'active'}) ${serviceState(x)}`).join(', ')}`);
}

/** `stopped`, `running`, or for a warm service with a health check of its own `running, starting` / `running, ready`. */
function serviceState(x: { running: boolean; ready?: boolean }): string {
  if (!x.running) return 'stopped';
  return x.ready === undefined ? 'running' : x.ready ? 'running, ready' : 'running, starting';
}

const ago = (iso: string | null) => (iso ? `${Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000))} s ago` : 'never');

/** File sync: per standby, backlog and lag from the active machine; per machine, what is in quarantine. */
function formatSync(s: ClusterStatus): string[] {
  const lines: string[] = [];
  for (const m of s.machines) {
    const sync = m.agent?.sync;
    if (!sync) continue;
    if (sync.role === 'pushing') {
      const lag = sync.recentLagMs ? `, recent lag p50 ${Math.round(sync.recentLagMs.p50)} ms, p99 ${Math.round(sync.recentLagMs.p99)} ms` : '';
      const watch = sync.watch?.degraded ? ` WATCH DEGRADED: ${sync.watch.degraded}` : '';
      lines.push(`  ${m.name} pushes ${sync.dirs.join(', ')}${lag}${watch}`);
      for (const p of sync.peers) {
        const state = p.error ? `FAILING since ${p.error.since}: ${p.error.message}` : p.reconciling ? 'reconciling' : 'in sync';
        lines.push(
          `    -> ${p.node.padEnd(10)} backlog ${p.backlog}, oldest change ${p.lagMs} ms, last push ${ago(p.lastSyncAt)}, last full reconciliation ${ago(p.lastReconcileAt)}: ${state}`,
        );
      }
    }
    if (sync.quarantine.files > 0)
      lines.push(
        `  ${m.name} QUARANTINE: ${sync.quarantine.files} file(s) that never reached the active machine kept in ${sync.quarantine.path} (docs/file-sync.md: how to restore them)`,
      );
  }
  return lines;
}
