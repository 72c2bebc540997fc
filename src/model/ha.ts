/**
 * The shared vocabulary of the application tier's high availability: what Vigil keeps in etcd,
 * what the observer sees of each app machine, and what it records. Pure types and constants;
 * the daemons (src/agent, src/observer) and the adapters (src/etcd, src/proxy, ...) use them.
 */

/**
 * Keys under the cluster's prefix `/vigil/<cluster>/` (Patroni keeps its own under
 * `/vigil/<cluster>/patroni/`). Every value is JSON.
 */
export const KEYS = {
  /** ActiveRecord: the app machine that may serve, and the epoch it serves at. */
  active: 'active',
  /** ObserverLeader: held under a lease by the observer that acts. */
  observerLeader: 'observer/leader',
  /** ObserverState: the acting observer's state, under its leader lease (gone with the lead). */
  observerState: 'observer/state',
  /** Maintenance, or absent: while present the observer takes no action. */
  maintenance: 'maintenance',
  /** OperatorRequest, or absent: a switchover or failover the leader should carry out. */
  request: 'request',
  /** RequestAnswer: the leader's answer to the last request it completed, kept until the next. */
  requestAnswer: 'request-answer',
  /** VigilEvent, one key per event: `events/<zero-padded sequence>`; the oldest are pruned. */
  eventsPrefix: 'events/',
  /**
   * ServingClaim, one key per app machine (`holders/<node>`), under that agent's own lease: the
   * machine may run the application. A newly activated machine starts only once no other
   * machine's claim is left (src/agent/agent.ts, "Handover").
   */
  holdersPrefix: 'holders/',
  /** AirgapRecord: the last air-gap bundle the cluster accepted; an older one is refused cluster-wide. */
  airgap: 'airgap/last',
  /** DoctorRun, one key per source (`doctor/cli`, `doctor/dashboard`): the last report of each, for the dashboard's Doctor page. */
  doctorPrefix: 'doctor/',
} as const;

export const keyPrefix = (cluster: string): string => `/vigil/${cluster}/`;

/** The active app machine. `epoch` only grows; every fence and activation carries it. */
export interface ActiveRecord {
  node: string;
  epoch: number;
  /** ISO time the record was written. */
  since: string;
  /** Why this machine became active (bootstrap, failover, switchover, manual), for people. */
  reason: string;
  /**
   * The operator request that wrote this record, if one did: a request read again after a crash
   * is then known as carried out. Absent in records written before it existed.
   */
  requestId?: string;
}

export interface Maintenance {
  since: string;
  by: string;
  reason: string;
}

export interface ObserverLeader {
  id: string;
  host: string;
  since: string;
}

/**
 * The observer's states (docs/observer-states.md). Here rather than in src/observer/decide.ts,
 * which moves between them, because `observer/state` in etcd carries one to `vigil status`.
 */
export const STATES = ['follower', 'bootstrap', 'healthy', 'suspect', 'failing-over', 'switching-db', 'no-candidate', 'maintenance'] as const;
export type State = (typeof STATES)[number];

/** What the acting observer is doing, written by it on each change of state (see src/observer/decide.ts). */
export interface ObserverState {
  state: State;
  /** Why it is in that state, in words (the transition's reason). */
  reason: string;
  /** When it entered the state. */
  since: string;
  /** The epoch of the active record the state refers to, null before the first one. */
  epoch: number | null;
  /** The leader's id, as in `observer/leader`. */
  by: string;
}

/**
 * What every request carries besides its kind: `epoch` is the active record's epoch the operator
 * decided on (the dashboard sends it): the observer refuses the request if the record has moved
 * since. `by` names who asked, for the events.
 */
interface RequestStamp {
  id: string;
  at: string;
  epoch?: number;
  by?: string;
}

export type OperatorRequest = ({ kind: 'switchover'; to?: string } & RequestStamp) | ({ kind: 'failover'; to: string } & RequestStamp);

/** How the observer answered a request: written as it removes the request, read by the operator's command. */
export interface RequestAnswer {
  /** The request's id. */
  id: string;
  ok: boolean;
  /** One sentence: what was done, or why the request was refused. */
  message: string;
  /** ISO time of the answer. */
  at: string;
}

/** Where a doctor report came from: `vigil doctor` (every machine, over its shell) or the dashboard (an observer, no shell). */
export const DOCTOR_SOURCES = ['cli', 'dashboard'] as const;
export type DoctorSource = (typeof DOCTOR_SOURCES)[number];

/** The last doctor report of one source, kept in etcd (KEYS.doctorPrefix + source). */
export interface DoctorRun {
  source: DoctorSource;
  /** Who ran it: `user@host` for the CLI, the dashboard user and the observer machine for the page. */
  by: string;
  /** When it was stored (ISO). */
  at: string;
  /** The DoctorReport (src/doctor/types.ts) as JSON; the store checks only that it is an object, the page what it shows. */
  report: Record<string, unknown>;
}

/** The last air-gap bundle imported into the cluster (src/airgap/cluster.ts), kept in etcd. */
export interface AirgapRecord {
  sequence: number;
  bundleId: string;
  /** SHA-256 of the manifest's exact bytes: the same sequence with another manifest is another bundle. */
  manifestSha256: string;
  /** The active app machine it was imported on. */
  node: string;
  importedAt: string;
  /** The database backup taken before it: machine and file. */
  backup: { machine: string; path: string } | null;
}

/** An app machine's patch directory checked against the manifest of the bundle it holds (src/airgap/check.ts). */
export interface PatchDirState {
  dir: string;
  /** From the directory's .vigil-airgap/state.json; null when nothing was imported there. */
  sequence: number | null;
  bundleId: string | null;
  manifestSha256: string | null;
  /** Files the manifest lists. */
  files: number;
  /** Listed but absent; present but not listed; present with another size or SHA-256 (at most 20 of each named). */
  missing: string[];
  extra: string[];
  different: string[];
  /** Counts, when the lists were cut. */
  counts: { missing: number; extra: number; different: number };
  /** Nothing missing, extra or different, and the recorded manifest is intact. */
  matches: boolean;
  /** Why the directory could not be checked (unreadable manifest, a state that does not match it). */
  error: string | null;
  checkedAt: string;
}

export const EVENT_TYPES = [
  'bootstrap', // first active node chosen
  'failover', // active node replaced after a failure
  'switchover', // planned move, both tiers
  'fence', // a machine's services stopped / put in MAINT
  'activate', // a machine's services started at an epoch
  'node-lost', // an app machine stopped answering
  'node-back', // it answers again
  'maintenance-on',
  'maintenance-off',
  'observer-leader', // an observer took the lead
  'request-failed', // an operator request could not be carried out
  'files-quarantined', // file sync moved files that never reached the active machine aside
  'sync-failed', // file sync to a standby keeps failing (disk full, refused, unreachable)
  'sync-recovered', // it works again
  'primary-fenced', // a db machine's agent ended a stale PostgreSQL primary and its Patroni
  'db-leader-released', // the observer revoked a dead primary's Patroni leader lease: the standby takes over
  'airgap-import', // an air-gap bundle was imported into the cluster
  'airgap-refused', // an air-gap bundle was refused (older, tampered, unsigned, expired ...) or its import failed
  'login-failed', // a dashboard login was refused (wrong name or password, or too many tries)
  'failover-done', // a failover or switchover this observer carried out ended: how, and each phase's duration
  'incident-acknowledged', // someone acknowledged an incident on the dashboard's timeline, with a comment
  'action-refused', // the dashboard refused an action (the user's role does not allow it, or the request was stale)
  'action-requested', // someone asked for a switchover, failover or maintenance from the dashboard, with a reason
  'doctor-run', // doctor was run from the dashboard: who, and how many failures and warnings it found
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface VigilEvent {
  /** Sequence number, increasing; assigned when stored. */
  seq?: number;
  at: string;
  type: EventType;
  node?: string;
  epoch?: number;
  /** One sentence a person can read: what happened and why. */
  message: string;
  details?: Record<string, unknown>;
}

/** What the agent of an app machine reports (GET /status). */
/** An app machine's claim to run the application (KEYS.holdersPrefix). */
export interface ServingClaim {
  node: string;
  /** The epoch the machine was activated at when it claimed. */
  epoch: number;
  /** Wall-clock time of the claim, for people. */
  since: string;
}

export interface AgentStatus {
  node: string;
  /** Active at the current epoch, confirmed within the lease. */
  active: boolean;
  epoch: number | null;
  /** The highest epoch this agent has seen (kept across its restarts): a new cluster's first epoch starts above it. */
  highestEpoch?: number;
  /** ms since the agent last confirmed the active record in etcd; null if never. */
  confirmedAgoMs: number | null;
  /** The application's own health check through nginx and the app to the database. */
  appHealthy: boolean;
  /**
   * A standby's readiness to take over: its agent confirmed the active record in etcd within the
   * lease, so it can see the cluster and would learn of its activation at once.
   */
  ready: boolean;
  /** The application's services: running or not, and where they run (`every`: kept warm on a standby too; absent: `active`). */
  services: { name: string; running: boolean; runsOn?: 'active' | 'every'; ready?: boolean }[];
  /**
   * App machines: the machines whose claim to run the application this one, activated, waits to
   * see gone (they stop their services and drop the claim, or their agent's etcd lease expires).
   */
  waitingFor?: string[];
  /** App machines not active: why, in words (the agent's own account: record, lease, fence, promise, handover). */
  inactiveReason?: string;
  patroni?: { role: string; state: string; lagBytes: number | null };
  /** db machines: the agent's fence of a stale primary (failure-semantics.md, "A stale primary"). */
  dbFence?: { patroniVersion: string | null; patroniGate: boolean; fences: number; lastReason: string | null };
  disk: { path: string; freeBytes: number; totalBytes: number }[];
  /** File sync between app machines (app machines only). */
  sync?: SyncStatus;
  /** App machines with `application.patchDir`: the air-gap set this machine holds, checked. */
  airgap?: PatchDirState;
}

/** Why pushes to a standby fail, as file sync classifies rsync's and ssh's errors. */
export type SyncErrorKind = 'disk-full' | 'refused' | 'unreachable' | 'failed';

/** File sync as one app machine's agent sees it (see docs/file-sync.md). */
export interface SyncStatus {
  /** pushing: this machine is active and carries its files to the standbys; receiving: a standby. */
  role: 'pushing' | 'receiving';
  dirs: string[];
  /** Directories watched; `degraded` says why changes are found only by reconciliation (e.g. inotify limit). */
  watch: { dirs: number; degraded: string | null } | null;
  /** One entry per standby, on the active machine. */
  peers: {
    node: string;
    /** Changed paths not yet carried to this standby. */
    backlog: number;
    /** Age of the oldest change not yet carried, ms (0 when the backlog is empty). */
    lagMs: number;
    reconciling: boolean;
    lastSyncAt: string | null;
    lastReconcileAt: string | null;
    error: { kind: SyncErrorKind; message: string; since: string } | null;
  }[];
  /** Write-to-standby lag of the most recent changes carried. */
  recentLagMs: { p50: number; p99: number; samples: number } | null;
  /** Files moved aside on this machine because they never reached the active machine; never deleted by Vigil. */
  quarantine: { path: string; files: number; bytes: number; sessions: string[] };
}
