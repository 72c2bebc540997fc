/**
 * The distribution packages each role needs, checked and installed with the machine's own
 * package manager (apt on Debian and Ubuntu, dnf on RHEL 9 and its rebuilds), and the services
 * those packages start on their own that would sit on the cluster's ports.
 *
 * Only the names differ between the families. On RHEL, PostgreSQL, Patroni and etcd come from
 * the PGDG and EPEL repositories, which the machine must have configured (or mirrored, offline):
 * Vigil does not add repositories.
 */
import type { Cluster, Machine } from '../config/schema.ts';
import type { RemoteShell } from '../remote/types.ts';
import { runsKeepalived } from '../render/keepalived.ts';

export type PackageManager = 'apt' | 'dnf';

/** The packages of each role (and `base`, every machine's), for a PostgreSQL major version. */
function packagesByRole(pg: number): Record<'base' | 'etcd' | 'db' | 'proxy' | 'app', Record<PackageManager, string[]>> {
  return {
    // openssl: apply compares certificates and keys on the machine without reading keys back.
    base: { apt: ['openssl', 'ca-certificates'], dnf: ['openssl', 'ca-certificates'] },
    etcd: { apt: ['etcd-server', 'etcd-client'], dnf: ['etcd'] },
    // nftables: the agent's Patroni gate for Patroni 3.0.0-3.0.2 (src/agent/patroni-gate.ts).
    // python3-etcd: Debian's patroni depends on one of python3-etcd, -consul, -kazoo, ...; on
    // Debian 13 apt picks python3-consul, and Patroni then refuses an etcd3: section ("Can not
    // find suitable configuration of distributed configuration store"). Seen in the bare lab.
    db: { apt: [`postgresql-${pg}`, 'patroni', 'python3-etcd', 'nftables'], dnf: [`postgresql${pg}-server`, 'patroni', 'patroni-etcd', 'nftables'] },
    // socat: the haproxy unit's reload saves the servers' state through the runtime API socket.
    proxy: { apt: ['haproxy', 'socat'], dnf: ['haproxy', 'socat'] },
    app: { apt: ['nginx', 'rsync', 'openssh-server', 'openssh-client'], dnf: ['nginx', 'rsync', 'openssh-server', 'openssh-clients'] },
  };
}

/** The packages of one machine, by its roles. */
export function packagesFor(cluster: Cluster, m: Pick<Machine, 'roles'>, pm: PackageManager): string[] {
  const names = packagesByRole(cluster.database.postgresVersion);
  const out = new Set(names.base[pm]);
  for (const role of ['etcd', 'db', 'proxy', 'app'] as const) if (m.roles.includes(role)) for (const p of names[role][pm]) out.add(p);
  if (runsKeepalived(cluster, m)) for (const p of KEEPALIVED[pm]) out.add(p);
  return [...out].sort();
}

/** Proxy machines of a cluster with a floating entry address (`proxy.virtualAddress`). */
const KEEPALIVED: Record<PackageManager, string[]> = { apt: ['keepalived'], dnf: ['keepalived'] };

/** Every package apply may install with `pm`, whatever the roles (the lab's mirror holds them). */
export function allPackages(pm: PackageManager, pg: number): string[] {
  return [...new Set([...Object.values(packagesByRole(pg)).flatMap((r) => r[pm]), ...KEEPALIVED[pm]])].sort();
}

/**
 * The PostgreSQL major version each supported distribution release ships in its own archive
 * (`postgresql-<n>`); any other version comes from the PGDG repository. RHEL 9 ships several as
 * AppStream modules under another package name, so it is not listed: there PGDG is the source.
 */
export const DISTRO_POSTGRES: Readonly<Record<string, Readonly<Record<string, number>>>> = {
  debian: { '12': 15, '13': 17 },
  ubuntu: { '22.04': 14, '24.04': 16 },
};

/** The PostgreSQL version a release ships, e.g. ('debian', '13') -> 17; undefined when it ships none of its own (or is not known). */
export function distroPostgres(os: { id: string; versionId: string } | undefined): number | undefined {
  return os ? DISTRO_POSTGRES[os.id]?.[os.versionId] : undefined;
}

/** A component whose version matters: the package that brings it and the lowest upstream version Vigil runs with (DESIGN.md). */
export interface VersionNeed {
  pkg: string;
  component: string;
  /** Upstream version, e.g. "3.4"; undefined when any version of the package will do. */
  min?: string;
  /** Where a newer or a missing one comes from. */
  source: string;
}

/** The components of one machine whose version preflight checks before anything is installed. */
export function versionNeedsFor(cluster: Cluster, m: Pick<Machine, 'roles'>, pm: PackageManager): VersionNeed[] {
  const pg = cluster.database.postgresVersion;
  const pgdg = pm === 'apt' ? 'the PGDG repository (apt.postgresql.org)' : 'the PGDG repository (download.postgresql.org)';
  const out: VersionNeed[] = [];
  if (m.roles.includes('etcd'))
    out.push({
      pkg: pm === 'apt' ? 'etcd-server' : 'etcd',
      component: 'etcd',
      min: '3.4',
      source: pm === 'apt' ? "the distribution's backports or an etcd release repository" : 'EPEL',
    });
  if (m.roles.includes('db')) {
    out.push({ pkg: pm === 'apt' ? `postgresql-${pg}` : `postgresql${pg}-server`, component: `PostgreSQL ${pg} (database.postgresVersion)`, source: pgdg });
    out.push({ pkg: 'patroni', component: 'Patroni', min: '3.0', source: pgdg });
  }
  if (m.roles.includes('proxy'))
    out.push({
      pkg: 'haproxy',
      component: 'HAProxy',
      min: '2.6',
      source: pm === 'apt' ? "haproxy.debian.net (or Ubuntu's vbernat/haproxy PPA)" : "the distribution's AppStream",
    });
  return out;
}

export interface PackageVersion {
  pkg: string;
  /** Installed version, as the package manager prints it. */
  installed: string | null;
  /** What installing would bring from the configured repositories. */
  candidate: string | null;
}

/** `apt-cache policy` blocks: a package name line, then "  Installed:" and "  Candidate:" ("(none)" when there is none). */
export function parseAptPolicy(text: string): PackageVersion[] {
  const out: PackageVersion[] = [];
  let cur: PackageVersion | undefined;
  for (const line of text.split('\n')) {
    const head = /^(\S+):$/.exec(line);
    if (head) out.push((cur = { pkg: head[1]!, installed: null, candidate: null }));
    const field = /^ {2}(Installed|Candidate): (\S+)$/.exec(line);
    if (cur && field) cur[field[1] === 'Installed' ? 'installed' : 'candidate'] = field[2] === '(none)' ? null : field[2]!;
  }
  return out;
}

/** The installed and the installable version of each package (a package the lists do not know has neither). */
export async function packageVersions(shell: RemoteShell, pm: PackageManager, pkgs: string[]): Promise<PackageVersion[]> {
  if (!pkgs.length) return [];
  if (pm === 'apt') {
    const r = await shell.exec(['env', 'LANG=C', 'LC_ALL=C', 'apt-cache', 'policy', ...pkgs], { timeoutMs: 30_000 });
    const known = parseAptPolicy(r.stdout);
    return pkgs.map((pkg) => known.find((k) => k.pkg === pkg) ?? { pkg, installed: null, candidate: null });
  }
  const lines = async (argv: string[]) =>
    new Map(
      (await shell.exec(argv, { timeoutMs: 60_000 })).stdout
        .split('\n')
        .map((l) => l.trim().split(' '))
        .filter((f): f is [string, string] => f.length === 2 && pkgs.includes(f[0]!)),
    );
  const installed = await lines(['rpm', '-q', '--qf', '%{NAME} %{VERSION}\\n', ...pkgs]);
  const available = await lines(['dnf', '-q', 'repoquery', '--latest-limit', '1', '--qf', '%{name} %{version}', ...pkgs]);
  return pkgs.map((pkg) => ({ pkg, installed: installed.get(pkg) ?? null, candidate: available.get(pkg) ?? installed.get(pkg) ?? null }));
}

/** The upstream part of a package version: "1:3.4.23-4+b4" -> [3, 4, 23]. */
export function upstreamVersion(v: string): number[] {
  const m = /^(?:\d+:)?(\d+(?:\.\d+)*)/.exec(v);
  return m ? m[1]!.split('.').map(Number) : [];
}

/** a >= b, segment by segment ("3.10" > "3.4"). */
export function versionAtLeast(a: number[], b: number[]): boolean {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x > y;
  }
  return true;
}

/**
 * Services the packages install and (on Debian) start at once: Debian's etcd-server runs a
 * member on 2379, postgresql a "main" cluster on 5432, haproxy and nginx their default sites
 * (keepalived's starts only once /etc/keepalived/keepalived.conf exists, but is enabled).
 * Vigil runs its own units instead (vigil-etcd, vigil-patroni, ...), so these are disabled and
 * stopped wherever they are enabled or running. Their configuration and data are left alone.
 */
export const DISTRO_SERVICES = ['etcd.service', 'postgresql.service', 'patroni.service', 'haproxy.service', 'nginx.service', 'keepalived.service'] as const;

/** The packages of `wanted` that are not installed. */
export async function missingPackages(shell: RemoteShell, pm: PackageManager, wanted: string[]): Promise<string[]> {
  if (pm === 'apt') {
    // One line per package; a package dpkg never heard of is reported on stderr and not printed.
    const r = await shell.exec(['dpkg-query', '-W', '-f=${Package} ${db:Status-Status}\\n', ...wanted], { timeoutMs: 30_000 });
    const installed = new Set(
      r.stdout
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .filter(([, status]) => status === 'installed')
        .map(([name]) => name),
    );
    return wanted.filter((p) => !installed.has(p));
  }
  const r = await shell.exec(['rpm', '-q', '--qf', '%{NAME}\\n', ...wanted], { timeoutMs: 30_000 });
  const installed = new Set(r.stdout.split('\n').map((l) => l.trim()));
  return wanted.filter((p) => !installed.has(p));
}

/** The command that installs `pkgs` without questions; the environment goes through `env`, never a shell string. */
export function installCommand(pm: PackageManager, pkgs: string[]): string[] {
  return pm === 'apt'
    ? ['env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', 'install', '-y', '-q', '--no-install-recommends', '-o', 'Dpkg::Options::=--force-confold', ...pkgs]
    : ['dnf', 'install', '-y', '-q', ...pkgs];
}

/** What to run by hand when installing failed. */
export function installFix(pm: PackageManager, machine: string, pkgs: string[]): string {
  return pm === 'apt'
    ? `on ${machine}, run \`apt-get update && apt-get install ${pkgs.join(' ')}\` and read its error (no network: point /etc/apt/sources.list at a local mirror); then run \`vigil apply\` again`
    : `on ${machine}, run \`dnf install ${pkgs.join(' ')}\` and read its error (PostgreSQL, Patroni and etcd need the PGDG and EPEL repositories, or a local mirror); then run \`vigil apply\` again`;
}
