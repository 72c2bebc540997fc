/**
 * `vigil doctor`'s vocabulary. Doctor works in two steps: gathering raw facts (commands run on
 * every machine through a RemoteShell, and what the admin's shell sees of etcd, Patroni, HAProxy
 * and the agents), then evaluating them with pure functions into findings. Facts never hold a
 * secret: a password file is reduced to "same / differs / missing" where it is read.
 */
import type { Role } from '../config/schema.ts';
import type { ActiveRecord, AgentStatus, AirgapRecord, Maintenance, ObserverLeader } from '../model/ha.ts';
import type { ServerState } from '../proxy/runtime.ts';
import type { ClockProbe, DiskUsage, Listener, PasswordFileFact, PathStat, PortProbe, Probe } from '../facts/probe.ts';
import type { TlsEndpointFact } from '../facts/app-settings.ts';
import type { KeepalivedSummary } from '../facts/keepalived.ts';

export { failed, got } from '../facts/probe.ts';
export type { KeyLookup, ServiceCredentials, TlsEndpointFact, TlsPathFact } from '../facts/app-settings.ts';
export type { ClockProbe, DiskUsage, Listener, PasswordFileFact, PasswordStatus, PathStat, PortOutcome, PortProbe, Probe } from '../facts/probe.ts';

/** fail: something is broken or a failover would not work; warn: works now, needs attention. */
export type Severity = 'fail' | 'warn';

export const CHECKS = [
  'reachable',
  'ports',
  'services',
  'ownership',
  'etcd',
  'patroni',
  'replication',
  'haproxy',
  'certificates',
  'passwords',
  'clock',
  'disk',
  'app-version',
  'agent',
  'file-sync',
  'airgap',
  'cluster-state',
  'stale-primary',
  'app-tls',
  'backend-tls',
  'entry-point',
] as const;
export type CheckId = (typeof CHECKS)[number];

export interface Finding {
  check: CheckId;
  severity: Severity;
  /** The machine concerned; null for the cluster as a whole (or the admin's shell). */
  machine: string | null;
  /** What is wrong. */
  what: string;
  /** Why it matters. */
  why: string;
  /** The command that fixes it (where to run it is part of the text). */
  fix: string;
}

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skipped';

export interface CheckResult {
  check: CheckId;
  status: CheckStatus;
  /** Why a check was skipped. */
  note?: string;
}

/**
 * Where the cluster runs: machines reached over SSH, or the lab's machines (the same units and
 * files, installed by apply; src/lab/lab.ts). Doctor checks both alike; only the fixes differ:
 * in the lab they are `vigil lab` commands run on the lab's host (src/doctor/fixes.ts).
 */
export type PlatformKind = 'lab' | 'systemd';

/** A certificate and its key as found on a machine. No private key ever leaves the machine. */
export interface Identity {
  label: 'machine' | 'haproxy-check' | 'tls-bundle';
  certPath: string;
  keyPath: string;
  /** PEM of the (first) certificate; null when the file is missing. */
  certPem: Probe<string | null>;
  /** Public key derived from the private key on the machine (`openssl pkey -pubout`), PEM. */
  keyPublicPem: Probe<string | null>;
}

export interface PkiFacts {
  caPem: string | null;
  identities: Identity[];
}

/** The program one application service runs, and its SHA-256 on the machine. */
export interface ProgramDigest {
  service: string;
  program: string;
  sha256: string | null;
}

export interface SystemdFacts {
  ntpSynchronized: Probe<boolean>;
  firewall: Probe<'firewalld' | 'ufw' | 'none'>;
  /** `systemctl is-enabled` of the application's units and the distribution's nginx. */
  enabledUnits: Probe<{ unit: string; state: string }[]>;
  /** App machines: `systemctl is-active` of the dead-man switch (src/render/deadman.ts). */
  deadman?: Probe<string>;
}

/** What a db machine holds against a stale primary: Patroni's version and a watchdog device. */
export interface DbSafetyFacts {
  /** What `patroni --version` prints, e.g. "patroni 3.0.2". */
  patroniVersion: Probe<string>;
  /** Whether /dev/watchdog exists. */
  watchdogDevice: Probe<boolean>;
}

/** Proxy machines of a cluster with `proxy.virtualAddress`: keepalived and the floating address there. */
export interface EntryPointFacts {
  /** Whether an interface of the machine holds the floating address (`ip -4 addr`). */
  holds: Probe<boolean>;
  /** `systemctl is-active vigil-keepalived.service`. */
  unit: Probe<string>;
  /** `keepalived --config-test`, with its error lines (the VRRP password redacted). */
  config: Probe<{ valid: boolean; output: string }>;
  /** The file as read (null: missing): whether it is what `vigil render` gives this machine, and its settings (the password as a digest). */
  file: Probe<{ asRendered: boolean; summary: KeepalivedSummary } | null>;
}

export interface MachineFacts {
  name: string;
  address: string;
  roles: Role[];
  /** Whether commands run on the machine at all. Every other probe is absent when not. */
  reachable: Probe<true>;
  /** false: doctor had no shell to try (run from the dashboard): the machine's own checks did not run, which is not a failure. */
  gathered?: false;
  clock?: Probe<ClockProbe>;
  listeners?: Probe<Listener[]>;
  /** systemd unit (from /proc/PID/cgroup) of processes listening on the application port. */
  processUnits?: Record<number, string | null>;
  /** The paths asked for; a path that does not exist is absent from the list. */
  paths?: Probe<PathStat[]>;
  disk?: Probe<DiskUsage[]>;
  ports?: PortProbe[];
  haproxyConfig?: Probe<{ valid: boolean; output: string }>;
  pki?: Probe<PkiFacts>;
  passwords?: PasswordFileFact[];
  appVersion?: Probe<ProgramDigest[]>;
  systemd?: SystemdFacts;
  dbSafety?: DbSafetyFacts;
  /** The application's own HTTPS endpoints (app machines, when the cluster file lists any). */
  tlsEndpoints?: TlsEndpointFact[];
  /** App machines with `application.backendTls`: the certificate file nginx serves (a standby's nginx does not run). */
  nginxCert?: Probe<{ path: string; pem: string | null }>;
  /** Proxy machines with `application.backendTls`: what each app machine's nginx presents to this proxy. */
  backendTls?: BackendTlsFacts;
  entryPoint?: EntryPointFacts;
}

export interface BackendTlsServerFact {
  machine: string;
  /** ADDRESS:PORT, as in HAProxy's server line. */
  target: string;
  /** The certificates presented (PEM, the server's first), or why there was no handshake. */
  chain: Probe<string[]>;
}

export interface BackendTlsFacts {
  /** The CA file HAProxy verifies the app machines' certificates with, and its content (null: missing). */
  caFile: string;
  caPem: Probe<string | null>;
  servers: BackendTlsServerFact[];
}

export interface EtcdMemberFacts {
  machine: string;
  endpoint: string;
  health: Probe<{ healthy: boolean; reason?: string }>;
  status: Probe<{ leader: string; memberId: string; dbSizeBytes: number }>;
}

export interface PatroniMember {
  name: string;
  role: string;
  state: string;
  /** Bytes behind the primary; null for the primary, or when Patroni does not know. */
  lagBytes: number | null;
  lagUnknown?: boolean;
}

export interface PatroniFacts {
  /** The db machine whose REST API answered. */
  from: string;
  members: PatroniMember[];
  paused: boolean;
  /** From Patroni's dynamic configuration (GET /config); null if it could not be read. */
  synchronousMode: boolean | null;
  /** DCS failsafe mode, from the same; null if it could not be read. */
  failsafeMode: boolean | null;
}

export interface ClusterFacts {
  etcd: EtcdMemberFacts[];
  /** Member names etcd lists (POST /v3/cluster/member/list). */
  etcdMembers: Probe<string[]>;
  /** Vigil's records in etcd. */
  state: Probe<{ active: ActiveRecord | null; observerLeader: ObserverLeader | null; maintenance: Maintenance | null; airgap?: AirgapRecord | null }>;
  patroni: Probe<PatroniFacts>;
  /** Which db machines' Patroni REST API answered /cluster. */
  patroniAnswered: Record<string, boolean>;
  haproxy: { machine: string; servers: Probe<ServerState[]> }[];
  /** The admin's certificate for the agents' API; the agents are not asked without it. */
  adminPki: Probe<{ caPem: string }>;
  /** null: the agent did not answer (or refused the admin's certificate). */
  agents: { machine: string; status: AgentStatus | null }[];
  /** Connections from the admin's shell to the proxy's ports. */
  adminPorts: PortProbe[];
}

export interface Facts {
  machines: MachineFacts[];
  cluster: ClusterFacts;
}

export interface DoctorReport {
  cluster: { name: string; source: string };
  platform: PlatformKind;
  startedAt: string;
  durationMs: number;
  machines: { name: string; address: string; roles: Role[]; reachable: boolean; checks: CheckResult[] }[];
  /** `machines`: every machine's own checks ran (over its shell); `cluster`: only what is seen from where doctor ran (the dashboard's run on an observer). */
  scope?: 'machines' | 'cluster';
  /** Checks about the cluster as a whole (etcd quorum, Patroni leader, the active record ...). */
  clusterChecks: CheckResult[];
  /** With `proxy.virtualAddress`: the floating entry address and the reachable proxy machines holding it (one when all is well). */
  entryPoint?: { address: string; holders: string[] };
  findings: Finding[];
  summary: { failures: number; warnings: number };
  /** 0: no failure (warnings allowed unless strict); 1: at least one failure. */
  exitStatus: number;
}
