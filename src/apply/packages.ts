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

export type PackageManager = 'apt' | 'dnf';

/** The packages of one machine, by its roles. */
export function packagesFor(cluster: Cluster, m: Pick<Machine, 'roles'>, pm: PackageManager): string[] {
  const pg = cluster.database.postgresVersion;
  const names: Record<string, Record<PackageManager, string[]>> = {
    // openssl: apply compares certificates and keys on the machine without reading keys back.
    base: { apt: ['openssl', 'ca-certificates'], dnf: ['openssl', 'ca-certificates'] },
    etcd: { apt: ['etcd-server', 'etcd-client'], dnf: ['etcd'] },
    db: { apt: [`postgresql-${pg}`, 'patroni'], dnf: [`postgresql${pg}-server`, 'patroni', 'patroni-etcd'] },
    proxy: { apt: ['haproxy'], dnf: ['haproxy'] },
    app: { apt: ['nginx', 'rsync', 'openssh-server', 'openssh-client'], dnf: ['nginx', 'rsync', 'openssh-server', 'openssh-clients'] },
  };
  const out = new Set(names.base![pm]);
  for (const role of ['etcd', 'db', 'proxy', 'app'] as const) if (m.roles.includes(role)) for (const p of names[role]![pm]) out.add(p);
  return [...out].sort();
}

/**
 * Services the packages install and (on Debian) start at once: Debian's etcd-server runs a
 * member on 2379, postgresql a "main" cluster on 5432, haproxy and nginx their default sites.
 * Vigil runs its own units instead (vigil-etcd, vigil-patroni, ...), so these are disabled and
 * stopped wherever they are enabled or running. Their configuration and data are left alone.
 */
export const DISTRO_SERVICES = ['etcd.service', 'postgresql.service', 'patroni.service', 'haproxy.service', 'nginx.service'] as const;

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
