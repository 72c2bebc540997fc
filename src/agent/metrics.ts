/**
 * The agent's Prometheus metrics (docs/metrics.md). Gauges read the agent's memory when scraped
 * (`collect`); counters count the agent's own log events as it writes them (`fromLog`), so the
 * code that fences stays free of metrics. The one call a scrape makes is to this machine's own
 * Patroni (db machines: replication lag), with a 1 s deadline, shared by the two lag gauges.
 */
import { Counter, Gauge } from 'prom-client';
import type { SyncErrorKind, SyncStatus } from '../model/ha.ts';
import { daemonRegistry, setStates, type DaemonMetrics } from '../metrics/registry.ts';

export const AGENT_ROLES = ['active', 'starting', 'standby'] as const;
export type AgentRole = (typeof AGENT_ROLES)[number];
const SYNC_ERROR_KINDS: readonly SyncErrorKind[] = ['disk-full', 'refused', 'unreachable', 'failed'];

/** What the agent's memory says, read at scrape time. */
export interface AgentView {
  /** App machines only: its role now. */
  role?: () => AgentRole;
  /** The epoch of the active record it last read; null before it read one. */
  epoch: () => number | null;
  /** Unix ms at which its lease runs out while it serves; null when it does not serve. */
  leaseExpiryMs: () => number | null;
  /** Unix ms of its last confirmation of the active record; null before the first. */
  lastConfirmMs: () => number | null;
  /** App machines: file sync as it reports it. */
  sync?: () => SyncStatus;
  /** db machines: this member's replication lag (none on the primary, or when Patroni does not say). */
  replication?: () => Promise<{ member: string; lagBytes: number | null; lagSeconds: number | null } | null>;
}

export class AgentMetrics {
  readonly m: DaemonMetrics;
  private readonly selfFences: Counter;
  private readonly fenced: Counter;
  private readonly dbFences: Counter;
  private readonly syncErrors: Counter;

  constructor(view: AgentView, m: DaemonMetrics = daemonRegistry('agent')) {
    this.m = m;
    const registers = [m.registry];
    this.selfFences = new Counter({
      name: 'vigil_agent_self_fence_total',
      help: 'Times this agent stopped its services by itself: lease_ended (no confirmation within the lease), confirm_failed (etcd did not confirm the record).',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of ['lease_ended', 'confirm_failed']) this.selfFences.inc({ reason }, 0);
    this.fenced = new Counter({ name: 'vigil_agent_fenced_total', help: 'Fences the observer sent this agent (its services stopped at an epoch).', registers });
    this.dbFences = new Counter({
      name: 'vigil_agent_db_fences_total',
      help: 'Stale PostgreSQL primaries (and their Patroni) this agent ended on its machine (docs/failure-semantics.md, a stale primary).',
      registers,
    });
    this.syncErrors = new Counter({
      name: 'vigil_filesync_errors_total',
      help: 'File sync pushes to a standby that failed with a new error, by peer and kind (disk-full, refused, unreachable, failed).',
      labelNames: ['peer', 'kind'],
      registers,
    });
    if (view.role) {
      const role = view.role;
      new Gauge({
        name: 'vigil_agent_role',
        help: "This app machine's role as its agent holds it, a state set: active (serves at a confirmed epoch), starting (named by the record, not serving yet), standby.",
        labelNames: ['state'],
        registers,
        collect() {
          setStates(this, AGENT_ROLES, role());
        },
      });
    }
    new Gauge({
      name: 'vigil_agent_epoch',
      help: 'Epoch of the active record this agent last read, 0 before it read one (compare with vigil_cluster_epoch).',
      registers,
      collect() {
        this.set(view.epoch() ?? 0);
      },
    });
    new Gauge({
      name: 'vigil_agent_lease_expiry_timestamp_seconds',
      help: 'Unix time at which this agent stops its services unless it confirms again; 0 while it does not serve.',
      registers,
      collect() {
        this.set((view.leaseExpiryMs() ?? 0) / 1000);
      },
    });
    new Gauge({
      name: 'vigil_agent_last_confirm_timestamp_seconds',
      help: 'Unix time of the last confirmation of the active record in etcd, 0 before the first.',
      registers,
      collect() {
        this.set((view.lastConfirmMs() ?? 0) / 1000);
      },
    });
    if (view.sync) this.syncGauges(view.sync, registers);
    if (view.replication) this.replicationGauges(view.replication, registers);
  }

  /** Counts the agent's log events: pass every log line here. */
  fromLog(event: string, fields: Record<string, unknown>): void {
    if (event === 'self-fence') this.selfFences.inc({ reason: fields.error === undefined ? 'lease_ended' : 'confirm_failed' });
    else if (event === 'fenced') this.fenced.inc();
    else if (event === 'db-fenced') this.dbFences.inc();
    else if (event === 'sync-failed' && typeof fields.peer === 'string' && typeof fields.kind === 'string')
      this.syncErrors.inc({ peer: fields.peer, kind: fields.kind });
  }

  private syncGauges(sync: () => SyncStatus, registers: DaemonMetrics['registry'][]): void {
    const perPeer = (name: string, help: string, value: (p: SyncStatus['peers'][number]) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['peer'],
        registers,
        collect() {
          this.reset(); // a standby has no peers; an active machine's peers are its standbys
          for (const p of sync().peers) this.set({ peer: p.node }, value(p));
        },
      });
    perPeer(
      'vigil_filesync_lag_seconds',
      'Age of the oldest change not yet carried to this standby (0 when none is waiting); on the active machine.',
      (p) => p.lagMs / 1000,
    );
    perPeer('vigil_filesync_backlog_files', 'Changed paths not yet carried to this standby; on the active machine.', (p) => p.backlog);
    perPeer('vigil_filesync_out_of_sync', '1 while this standby lacks changes (a backlog or an error), else 0; on the active machine.', (p) =>
      p.backlog > 0 || p.error ? 1 : 0,
    );
    perPeer('vigil_filesync_last_success_timestamp_seconds', 'Unix time of the last push to this standby that succeeded (0: none yet).', (p) =>
      p.lastSyncAt ? Date.parse(p.lastSyncAt) / 1000 : 0,
    );
    new Gauge({
      name: 'vigil_filesync_peer_error',
      help: 'The error pushes to this standby fail with now, a state set over kind (disk-full, refused, unreachable, failed): all 0 while pushes work.',
      labelNames: ['peer', 'kind'],
      registers,
      collect() {
        this.reset();
        for (const p of sync().peers) for (const kind of SYNC_ERROR_KINDS) this.set({ peer: p.node, kind }, p.error?.kind === kind ? 1 : 0);
      },
    });
    new Gauge({
      name: 'vigil_filesync_quarantined_files',
      help: 'Files moved aside on this machine because they never reached the active machine (never deleted by Vigil; docs/file-sync.md).',
      registers,
      collect() {
        this.set(sync().quarantine.files);
      },
    });
  }

  private replicationGauges(read: NonNullable<AgentView['replication']>, registers: DaemonMetrics['registry'][]): void {
    // One read of Patroni serves both gauges of a scrape.
    let last: { at: number; value: ReturnType<typeof read> } | null = null;
    const once = () => {
      const now = performance.now();
      if (!last || now - last.at > 1000) last = { at: now, value: read().catch(() => null) };
      return last.value;
    };
    const gauge = (name: string, help: string, pick: (r: { lagBytes: number | null; lagSeconds: number | null }) => number | null) =>
      new Gauge({
        name,
        help,
        labelNames: ['member'],
        registers,
        async collect() {
          this.reset();
          const r = await once();
          const v = r && pick(r);
          if (r && v !== null && v !== undefined) this.set({ member: r.member }, v);
        },
      });
    gauge(
      'vigil_pg_replication_lag_bytes',
      "Bytes of WAL this standby is behind its primary, as Patroni's /cluster says; exported by the standby's agent.",
      (r) => r.lagBytes,
    );
    gauge(
      'vigil_pg_replication_replay_lag_seconds',
      "Seconds since the last transaction this standby replayed was committed on the primary; 0 while it is caught up (lag 0 bytes); exported by the standby's agent.",
      (r) => r.lagSeconds,
    );
  }
}
