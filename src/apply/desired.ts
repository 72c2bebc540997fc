/**
 * What one machine should hold after `vigil apply`, as files with content, mode and owner, and
 * which service each file concerns: the configuration rendered for it (src/render), its systemd
 * units, the copy of the cluster file, the secrets file (observer machines only), Vigil's
 * artifact (its `refapp` set only where the reference application runs), and the directories the
 * components need. Pure apart from hashing.
 */
import { createHash } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { PATHS, ROOTS } from '../layout/paths.ts';
import { runsAgent, type Cluster, type Machine, type Secrets } from '../config/schema.ts';
import { VRRP_AUTH_LENGTH, renderMachine } from '../render/index.ts';
import { UNITS } from '../layout/units.ts';
import { SYNC_PATHS } from '../sync/protocol.ts';
import type { Artifact } from './artifact.ts';
import { runsRefapp, runsRefappAnalytics } from '../render/refapp.ts';

/** What a changed file asks of a service: restart it, reload it, or restart it only when it runs (the agent decides whether it runs). */
export type UnitAction = { unit: string; action: 'restart' | 'reload' | 'try-restart' | 'try-reload' };

export interface DesiredFile {
  path: string;
  mode: number;
  owner: string;
  sha256: string;
  /** The content, or the local file it is copied from (the artifact's node binary is 100 MB). */
  content: string | Buffer | { source: string; size: number };
  /** Holds a secret: never shown, only named. */
  secret: boolean;
  affects: UnitAction[];
  /** Part of Vigil's artifact: reported as one change, not file by file. */
  artifact?: string;
}

export interface DesiredDir {
  path: string;
  mode: number;
  owner: string;
}

export const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

/** The units of Vigil's daemons that read the cluster file, the certificates and the artifact. */
export function daemonUnits(cluster: Cluster, m: Pick<Machine, 'name' | 'roles'>): string[] {
  const out: string[] = [];
  if (runsAgent(cluster, m)) out.push(UNITS.agent);
  if (m.roles.includes('observer')) out.push(UNITS.observer);
  return out;
}

/** The reference application's units on `m`: its own, and its analytics service's where the cluster lists it; both read its properties file and bundle. */
function refappUnits(cluster: Cluster, m: Machine): string[] {
  return runsRefappAnalytics(cluster, m) ? [UNITS.refapp, UNITS.refappAnalytics] : [UNITS.refapp];
}

/** Which service a rendered file belongs to. */
function affectsOf(cluster: Cluster, path: string, m: Machine): UnitAction[] {
  switch (path) {
    case PATHS.etcdConfig:
      return [{ unit: UNITS.etcd, action: 'restart' }];
    case PATHS.patroniConfig:
      return [{ unit: UNITS.patroni, action: 'reload' }]; // SIGHUP: Patroni re-reads it without stopping PostgreSQL
    case PATHS.haproxyConfig:
      return [{ unit: UNITS.haproxy, action: 'reload' }];
    // SIGHUP: keepalived re-reads it and keeps the address where it is when the instance is unchanged.
    case PATHS.keepalivedConfig:
    case PATHS.keepalivedCheck:
      return [{ unit: UNITS.keepalived, action: 'reload' }];
    case PATHS.nginxConfig:
      return [{ unit: UNITS.nginx, action: 'try-reload' }];
    case PATHS.refappConfig:
      return refappUnits(cluster, m).map((unit) => ({ unit, action: 'try-restart' as const }));
    case PATHS.refappSettings:
      return [{ unit: UNITS.refapp, action: 'try-restart' }];
    case PATHS.deadmanScript:
      return [{ unit: UNITS.deadman, action: 'restart' }];
  }
  if (path.startsWith(`${PATHS.systemdDir}/`)) {
    const unit = basename(path);
    // The application's units run only where the agent started them.
    const agentRuns = unit === UNITS.nginx || unit === UNITS.refapp || cluster.application.services.some((s) => s.unit === unit);
    return [{ unit, action: agentRuns ? 'try-restart' : 'restart' }];
  }
  return daemonUnits(cluster, m).map((unit) => ({ unit, action: 'restart' as const }));
}

/** What of the secrets a rendered file may hold: every value, and the part of the VRRP password keepalived.conf carries. */
function secretFragments(secrets: Secrets): string[] {
  const values = Object.values(secrets).filter((v): v is string => typeof v === 'string' && v.length > 0);
  return secrets.vrrpPassword ? [...values, secrets.vrrpPassword.slice(0, VRRP_AUTH_LENGTH)] : values;
}

export interface DesiredInput {
  cluster: Cluster;
  secrets: Secrets;
  /** The admin's cluster file, copied as it is (the daemons read it). */
  clusterText: string;
  secretsText: string;
  artifact: Artifact;
}

export function desiredFiles(input: DesiredInput, m: Machine): DesiredFile[] {
  const out: DesiredFile[] = [];
  const add = (path: string, content: string, mode: number, owner: string, secret = false) =>
    out.push({ path, content, mode, owner, secret, sha256: sha256(content), affects: affectsOf(input.cluster, path, m) });
  const secretValues = secretFragments(input.secrets);
  for (const f of renderMachine(input.cluster, input.secrets, m.name))
    add(
      f.path,
      f.content,
      f.mode,
      f.owner.includes(':') ? f.owner : `${f.owner}:${f.owner}`,
      secretValues.some((v) => f.content.includes(v)),
    );
  add(PATHS.clusterFile, input.clusterText, 0o644, 'root:root');
  if (m.roles.includes('observer')) add(join(ROOTS.etc, basename(input.cluster.secretsFile)), input.secretsText, 0o600, 'root:root', true);
  const daemons = daemonUnits(input.cluster, m);
  const refapp = runsRefapp(input.cluster, m);
  if (daemons.length) {
    for (const f of input.artifact.files) {
      if (f.set === 'refapp' && !refapp) continue;
      // The agent runs the reference application where it is active: its new bundle restarts it (and its analytics service) there only.
      const affects: UnitAction[] =
        f.set === 'refapp'
          ? refappUnits(input.cluster, m).map((unit) => ({ unit, action: 'try-restart' }))
          : daemons.map((unit) => ({ unit, action: 'restart' }));
      out.push({
        path: f.target,
        content: { source: f.source, size: f.size },
        sha256: f.sha256,
        mode: f.mode,
        owner: 'root:root',
        secret: false,
        affects,
        artifact: input.artifact.version,
      });
    }
  }
  return out;
}

/** Machines that verify the app machines' certificates: HAProxy, the observer's deep check, the agent's health check. */
export const usesBackendCa = (m: Machine): boolean => m.roles.some((r) => r === 'proxy' || r === 'observer' || r === 'app');

export function desiredDirs(cluster: Cluster, m: Machine): DesiredDir[] {
  const out: DesiredDir[] = [
    { path: ROOTS.etc, mode: 0o755, owner: 'root:root' },
    { path: ROOTS.log, mode: 0o755, owner: 'root:root' },
    { path: PATHS.pkiDir, mode: 0o755, owner: 'root:root' },
  ];
  if (m.roles.includes('db')) out.push({ path: dirname(PATHS.pgData), mode: 0o700, owner: 'postgres:postgres' });
  // nginx's certificate (app) and your CA for the app machines' certificates (app, proxy, observer): application.backendTls.
  if (cluster.application.backendTls && usesBackendCa(m)) out.push({ path: dirname(PATHS.backendCa), mode: 0o755, owner: 'root:root' });
  if (m.roles.includes('app')) {
    out.push({ path: dirname(SYNC_PATHS.key), mode: 0o700, owner: 'root:root' }, { path: dirname(SYNC_PATHS.authorizedKeys), mode: 0o700, owner: 'root:root' });
    // 0750: what file sync's receiver gives the directories it carries (src/sync/protocol.ts RECEIVER_FORCED), so apply and sync agree.
    for (const d of cluster.application.syncDirs) out.push({ path: d, mode: 0o750, owner: 'root:root' });
  }
  return out;
}
