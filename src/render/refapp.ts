/**
 * The reference application's properties file (PATHS.refappConfig), one per app machine.
 *
 * The app reaches PostgreSQL only through the proxy's :5000, which always leads to the current
 * primary, so the file is the same before and after a database failover. The database password
 * is in it (`spring.datasource.password`, the key ServiceOps-style Java apps use, so `vigil
 * doctor` can compare it with the other password files), hence mode 0600.
 *
 * Format: java.util.Properties (`key=value`, `\` escapes, ISO-8859-1 with \uXXXX beyond it), so
 * a Java app could read it as is (src/util/properties.ts).
 */
import type { Cluster, Machine, Secrets } from '../config/schema.ts';
import { entryAddress } from '../config/schema.ts';
import { PATHS } from '../layout/paths.ts';
import { REFAPP_ANALYTICS_PORT, REFAPP_CONTROL_PORT, REFAPP_PORT } from '../layout/network.ts';
import { VigilError, problem } from '../util/errors.ts';
import { REFAPP_HTTPS_KEYS, REFAPP_KEYS } from '../layout/refapp.ts';
import { UNITS } from '../layout/units.ts';
import { formatProperties } from '../util/properties.ts';
import { HEADER, type RenderedFile } from './file.ts';

/**
 * An app machine whose cluster runs the reference application: `application.services` names its
 * unit (as the default does) or its analytics service's. Only there do its units, its properties
 * file and its bundle go.
 */
export function runsRefapp(cluster: Cluster, m: Pick<Machine, 'roles'>): boolean {
  return m.roles.includes('app') && cluster.application.services.some((s) => s.unit === UNITS.refapp || s.unit === UNITS.refappAnalytics);
}

/** An app machine whose cluster lists the reference application's analytics service (its second one, `vigil-refapp --analytics`). */
export function runsRefappAnalytics(cluster: Cluster, m: Pick<Machine, 'roles'>): boolean {
  return m.roles.includes('app') && cluster.application.services.some((s) => s.unit === UNITS.refappAnalytics);
}

/**
 * The reference application's HTTPS endpoint: the `application.tlsEndpoints` entry whose settings
 * file is the reference application's own (PATHS.refappSettings), as the lab's cluster file has it.
 * Only then does it serve HTTPS, with a certificate apply issues from the cluster CA.
 */
export function refappTlsEndpoint(cluster: Cluster): Cluster['application']['tlsEndpoints'][number] | undefined {
  return cluster.application.tlsEndpoints.find((e) => e.settingsFile === PATHS.refappSettings);
}

export type RefappKey = (typeof REFAPP_KEYS)[keyof typeof REFAPP_KEYS];

export function refappProperties(cluster: Cluster, secrets: Secrets, machine: Machine): Partial<Record<RefappKey, string>> {
  // The entry point: the floating address keepalived holds (proxy.virtualAddress), else the first proxy machine.
  const entry = entryAddress(cluster);
  if (!entry) {
    throw new VigilError('RENDER', [
      problem(
        `${cluster.source} machines`,
        'no machine has the proxy role, so the app has no database address',
        'give one machine the roles etcd, proxy, observer',
      ),
    ]);
  }
  return {
    [REFAPP_KEYS.node]: machine.name,
    [REFAPP_KEYS.dbHost]: entry,
    [REFAPP_KEYS.dbPort]: String(cluster.proxy.postgresPort),
    [REFAPP_KEYS.dbName]: cluster.database.appDatabase,
    [REFAPP_KEYS.dbUser]: cluster.database.appUser,
    [REFAPP_KEYS.dbPassword]: secrets.appDbPassword,
    // Loopback only: users reach the app through HAProxy and nginx, never directly.
    [REFAPP_KEYS.httpHost]: '127.0.0.1',
    [REFAPP_KEYS.httpPort]: String(REFAPP_PORT),
    [REFAPP_KEYS.attachmentsDir]: PATHS.refappAttachments,
    [REFAPP_KEYS.startupSeconds]: String(cluster.application.refappStartupSeconds),
    [REFAPP_KEYS.controlPort]: String(REFAPP_CONTROL_PORT),
    [REFAPP_KEYS.analyticsPort]: String(REFAPP_ANALYTICS_PORT),
    ...(refappTlsEndpoint(cluster) ? { [REFAPP_KEYS.httpsSettings]: PATHS.refappSettings } : {}),
  };
}

/** `{"Https": {"Port": 8443, "CertificateFilePath": ..., "KeyFilePath": ...}}` from dotted keys. */
function nested(entries: [string, unknown][]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of entries) {
    const segs = key.split('.');
    let at = out;
    for (const s of segs.slice(0, -1)) at = (at[s] ??= {}) as Record<string, unknown>;
    at[segs.at(-1)!] = value;
  }
  return out;
}

/** The reference application's HTTPS settings (PATHS.refappSettings), where it serves HTTPS. No secret: paths and a port. */
export function renderRefappSettings(cluster: Cluster, machine: Machine): RenderedFile | undefined {
  const e = refappTlsEndpoint(cluster);
  if (!e) return undefined;
  const doc = nested([
    [REFAPP_HTTPS_KEYS.port, e.port],
    [REFAPP_HTTPS_KEYS.certificate, PATHS.refappTlsCert],
    [REFAPP_HTTPS_KEYS.key, PATHS.refappTlsKey],
  ]);
  return {
    machine: machine.name,
    path: PATHS.refappSettings,
    mode: 0o644,
    owner: 'root:root',
    // A comment, as .NET's appsettings.json allows and the app's reader (src/facts/app-settings.ts) skips.
    content: `// ${HEADER}\n${JSON.stringify(doc, null, 2)}\n`,
  };
}

export function renderRefapp(cluster: Cluster, secrets: Secrets, machine: Machine): RenderedFile {
  return {
    machine: machine.name,
    path: PATHS.refappConfig,
    mode: 0o600, // holds the database password
    // root: the reference app runs as root in the lab; a real app's unit would own its copy.
    owner: 'root:root',
    content: `# ${HEADER}\n${formatProperties(refappProperties(cluster, secrets, machine))}`,
  };
}
