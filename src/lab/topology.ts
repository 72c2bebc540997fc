/**
 * The cluster file of a lab: a real vigil.yaml (and secrets file) for a topology, with the
 * lab's addresses, written where the lab keeps its state and read back through the same
 * loader a real cluster uses.
 */
import { randomBytes } from 'node:crypto';
import { stringify } from 'yaml';
import type { AlertsInput } from '../config/alerts.ts';
import type { ClusterFile, Role } from '../config/schema.ts';
import { PATHS } from '../layout/paths.ts';
import { hashPassword } from '../dashboard/users.ts';
import { REFAPP_ANALYTICS_PORT, REFAPP_CONTROL_PORT, REFAPP_HTTPS_PORT, REFAPP_PORT } from '../layout/network.ts';
import { REFAPP_ACTIVATION_PATH, REFAPP_HTTPS_KEYS } from '../layout/refapp.ts';
import { UNITS, VIGIL_INSTALL } from '../layout/units.ts';
import { LAB_ID } from './paths.ts';
import type { Release } from './rootfs.ts';
import { hasTimerFloors } from '../render/patroni.ts';
import { VigilError, problem } from '../util/errors.ts';

/** The lab bridge's subnet; the bridge holds .1 and the machines .10 and up. No route leads out. */
export const LAB_SUBNET = `10.213.${LAB_ID}`;
export const LAB_PREFIX_LEN = 24;
export const BRIDGE_ADDRESS = `${LAB_SUBNET}.1`;
/** The floating entry address of a lab with two or more proxy machines (keepalived holds it on one; proxies are .41 and up). */
export const LAB_ENTRY_ADDRESS = `${LAB_SUBNET}.40`;

export type LabTopology = 'pair' | 'distributed';

export interface LabShape {
  topology: LabTopology;
  /** App machines (default 2). */
  appNodes?: number;
  /** Database machines in `distributed` (default 2); ignored in `pair`, where app machines hold the database. */
  dbNodes?: number;
  /** etcd members: 1, 3, 5 or 7 (default 1). */
  etcd?: number;
  /**
   * HAProxy on machines of their own, `proxy1` and up (default 0: on the observer machine, the
   * seed's layout). With two or more they share the floating entry address LAB_ENTRY_ADDRESS
   * (keepalived), which the lab's clients and the application use; with one, clients use it.
   */
  proxies?: number;
  /**
   * Observers (default 1: on the `observer` machine, the seed's layout). With 2 or more the
   * `observer` role goes on the proxy machines `proxy1` and up, each with an etcd member, and there
   * is no `observer` machine: the layout of docs/topologies.md's "observers on the proxy machines".
   * `proxies` defaults to this count (no fewer), and `etcd` to 3.
   */
  observers?: number;
  replication?: 'synchronous' | 'asynchronous';
  /** Failover timers (cluster file `timers:`), e.g. Patroni's defaults for a baseline. */
  timers?: Partial<ClusterFile['timers']>;
  /** The cluster file's `alerts:` section, e.g. an SMTP sink on the bridge address for tests. */
  alerts?: AlertsInput;
  /** Who ends a dead primary's leadership (cluster file `database.failoverBy`); default the observer. */
  failoverBy?: 'observer' | 'patroni';
  /** PostgreSQL major version the machines run (the release's). */
  postgresVersion?: number;
  /** What the machines run on: a Debian release's root filesystem (src/lab/rootfs.ts). */
  release?: Release;
  /** Patroni's upstream version on the machines, when known: 3.2 and later need ttl 20 or more. */
  patroniVersion?: string;
  /** HTTPS from the proxy to nginx on the app machines (cluster file `application.backendTls`), certificates from the cluster CA. */
  backendTls?: { verify: boolean };
  /**
   * The reference application: warm standby (its service on every app machine), its start-up time
   * (default 1 s), and the form of its activation hook: its endpoint (`url`, default) or its own
   * program forwarding to it (`command`: `vigil-refapp --forward-activation`); `analytics`: its
   * second service too (`vigil-refapp --analytics`, standing for the seed's cm-analytics), on the
   * active machine only, with its own health check.
   */
  application?: { warm?: boolean; refappStartupSeconds?: number; activation?: 'url' | 'command'; analytics?: boolean };
}

export function needsTtl20(patroniVersion: string | undefined): boolean {
  return patroniVersion !== undefined && hasTimerFloors(patroniVersion);
}

/** Patroni 3.2 and later raise a ttl below 20 to 20 (src/render/patroni.ts timerProblems): the lab asks for what they run with. */
function labTimers(shape: LabShape): Partial<ClusterFile['timers']> | undefined {
  if (!needsTtl20(shape.patroniVersion) || shape.timers?.ttlSeconds !== undefined) return shape.timers;
  return { ...shape.timers, ttlSeconds: 20 };
}

interface LabMachine {
  name: string;
  address: string;
  roles: Role[];
}

/** Machines of a lab shape, with addresses: observer .10 (none with 2 or more observers: they are on the proxies), app .11+, db .21+, extra etcd .31+, proxies .41+. */
export function labMachines(shape: LabShape): LabMachine[] {
  const appNodes = shape.appNodes ?? 2;
  const dbNodes = shape.topology === 'pair' ? 0 : (shape.dbNodes ?? 2);
  const observers = shape.observers ?? 1;
  const where = 'vigil lab up';
  if (observers < 1 || observers > 9) throw new VigilError('USAGE', [problem(where, `--observers ${observers} is out of range`, 'use 1 to 9 observers')]);
  // Observers on the proxy machines: as many proxy machines as observers unless more are asked for.
  const proxies = shape.proxies ?? (observers >= 2 ? observers : 0);
  const etcd = shape.etcd ?? (observers >= 2 ? 3 : 1);
  if (appNodes < 2 || appNodes > 9) throw new VigilError('USAGE', [problem(where, `--app-nodes ${appNodes} is out of range`, 'use 2 to 9 app machines')]);
  if (shape.topology === 'distributed' && (dbNodes < 2 || dbNodes > 9))
    throw new VigilError('USAGE', [problem(where, `--db-nodes ${dbNodes} is out of range`, 'use 2 to 9 database machines')]);
  if (![1, 3, 5, 7].includes(etcd))
    throw new VigilError('USAGE', [problem(where, `--etcd ${etcd}: etcd needs an odd member count for a majority`, 'use 1, 3, 5 or 7')]);
  if (proxies < 0 || proxies > 9)
    throw new VigilError('USAGE', [problem(where, `--proxies ${proxies} is out of range`, 'use 0 (HAProxy on the observer machine) to 9')]);
  if (observers >= 2 && proxies < observers)
    throw new VigilError('USAGE', [
      problem(
        where,
        `--observers ${observers} with --proxies ${proxies}: the observers go on the proxy machines`,
        `use --proxies ${observers} or more, or leave --proxies out`,
      ),
    ]);
  if (observers >= 2 && (etcd < 3 || etcd < observers))
    throw new VigilError('USAGE', [
      problem(
        where,
        `--observers ${observers} with --etcd ${etcd}: one etcd member would be the single point of failure the second observer is there to remove`,
        `use --etcd ${Math.max(3, observers + ((observers + 1) % 2))} or more (3 is the default with --observers 2)`,
      ),
    ]);

  const machines: LabMachine[] =
    observers >= 2 ? [] : [{ name: 'observer', address: `${LAB_SUBNET}.10`, roles: proxies ? ['etcd', 'observer'] : ['etcd', 'proxy', 'observer'] }];
  for (let i = 1; i <= appNodes; i++)
    machines.push({ name: `app${i}`, address: `${LAB_SUBNET}.${10 + i}`, roles: shape.topology === 'pair' ? ['app', 'db'] : ['app'] });
  for (let i = 1; i <= dbNodes; i++) machines.push({ name: `db${i}`, address: `${LAB_SUBNET}.${20 + i}`, roles: ['db'] });
  const proxyMachines: LabMachine[] = [];
  for (let i = 1; i <= proxies; i++)
    proxyMachines.push({
      name: `proxy${i}`,
      address: `${LAB_SUBNET}.${40 + i}`,
      roles: i <= observers && observers >= 2 ? ['proxy', 'observer', 'etcd'] : ['proxy'],
    });

  // Extra etcd members (beyond the observer machines') go first on database machines, then app
  // machines, then machines of their own: the order of docs/topologies.md.
  const placed = observers >= 2 ? observers : 1;
  const candidates = [...machines.filter((m) => m.roles.includes('db') && !m.roles.includes('app')), ...machines.filter((m) => m.roles.includes('app'))];
  for (let need = etcd - placed, i = 0; need > 0; need--, i++) {
    const m = candidates[i];
    if (m) m.roles.push('etcd');
    else machines.push({ name: `etcd${i + 1}`, address: `${LAB_SUBNET}.${31 + i}`, roles: ['etcd'] });
  }
  machines.push(...proxyMachines);
  return machines;
}

/** vigil.yaml for a lab shape. */
export function labClusterYaml(shape: LabShape): string {
  const machines = Object.fromEntries(labMachines(shape).map((m) => [m.name, { address: m.address, roles: m.roles }]));
  const doc = {
    cluster: { name: 'lab' },
    topology: 'custom',
    secretsFile: 'vigil.secrets.yaml',
    machines,
    database: {
      replication: shape.replication ?? 'synchronous',
      ...(shape.postgresVersion ? { postgresVersion: shape.postgresVersion } : {}),
      ...(shape.failoverBy ? { failoverBy: shape.failoverBy } : {}),
    },
    ...(labTimers(shape) ? { timers: labTimers(shape) } : {}),
    ...(shape.alerts ? { alerts: shape.alerts } : {}),
    // The lab makes a self-signed bundle there on each proxy machine (lab.ts), so :443 is served too.
    // Two or more proxy machines share the floating entry address (keepalived, on the lab's eth0).
    proxy: {
      tlsBundle: PATHS.tlsBundle,
      ...(labMachines(shape).filter((m) => m.roles.includes('proxy')).length >= 2 ? { virtualAddress: LAB_ENTRY_ADDRESS, vrrp: { interface: 'eth0' } } : {}),
    },
    application: {
      ...(shape.backendTls ? { backendTls: { port: 443, ca: 'cluster', verify: shape.backendTls.verify } } : {}),
      ...labApplication(shape),
      passwordFiles: [{ path: PATHS.refappConfig, format: 'properties', key: 'spring.datasource.password' }],
      // The reference application's own HTTPS port, configured as the seed's application is (its
      // appsettings.json names the certificate and key): doctor's app-tls check looks at it.
      tlsEndpoints: [
        {
          service: 'app',
          port: REFAPP_HTTPS_PORT,
          settingsFile: PATHS.refappSettings,
          format: 'json',
          certificatePathKey: REFAPP_HTTPS_KEYS.certificate,
          keyPathKey: REFAPP_HTTPS_KEYS.key,
        },
      ],
    },
  };
  return `# Generated by \`vigil lab up --topology ${shape.topology}\`: the lab's cluster file.\n${stringify(doc)}`;
}

/** The reference application's placement, activation hook and start-up time (docs/application-contract.md). */
export function labApplication(shape: Pick<LabShape, 'application'>): Record<string, unknown> {
  const warm = shape.application?.warm ?? false;
  return {
    services: [
      { name: 'nginx', unit: UNITS.nginx, runsOn: 'active' },
      // Warm: its own health check, so status and doctor tell a standby still starting from a ready one.
      warm
        ? { name: 'app', unit: UNITS.refapp, runsOn: 'every', healthUrl: `http://127.0.0.1:${REFAPP_PORT}/health` }
        : { name: 'app', unit: UNITS.refapp, runsOn: 'active' },
      ...(shape.application?.analytics
        ? [{ name: 'analytics', unit: UNITS.refappAnalytics, runsOn: 'active', healthUrl: `http://127.0.0.1:${REFAPP_ANALYTICS_PORT}/health` }]
        : []),
    ],
    activation:
      shape.application?.activation === 'command'
        ? { command: [VIGIL_INSTALL.node, VIGIL_INSTALL.refapp, '--config', PATHS.refappConfig, '--forward-activation'] }
        : { url: `http://127.0.0.1:${REFAPP_CONTROL_PORT}${REFAPP_ACTIVATION_PATH}` },
    refappStartupSeconds: shape.application?.refappStartupSeconds ?? 1,
    // A second synced directory for air-gap imports (docs/airgap.md).
    syncDirs: [PATHS.refappAttachments, PATHS.refappPatches],
    patchDir: PATHS.refappPatches,
  };
}

/** The lab dashboard's admin (docs/lab.md); its password is in dashboard-admin.password in the lab's directory. */
export const LAB_DASHBOARD_USER = 'admin';
/** The lab dashboard's viewer, who may look and not act; its password is in dashboard-viewer.password. */
export const LAB_DASHBOARD_VIEWER = 'viewer';

/** A secrets file with fresh random passwords, and the dashboard's admin and viewer with those passwords (only their hashes). */
export async function labSecretsYaml(dashboardPassword: string, viewerPassword: string): Promise<string> {
  const pw = () => randomBytes(18).toString('base64url');
  return stringify({
    postgresPassword: pw(),
    replicationPassword: pw(),
    appDbPassword: pw(),
    patroniRestPassword: pw(),
    vrrpPassword: pw(),
    dashboardUsers: [
      { name: LAB_DASHBOARD_USER, role: 'admin', passwordHash: await hashPassword(dashboardPassword) },
      { name: LAB_DASHBOARD_VIEWER, role: 'viewer', passwordHash: await hashPassword(viewerPassword) },
    ],
  });
}
