/**
 * Root filesystems for lab machines: a Debian release built with mmdebstrap from Debian's
 * archive, so a lab machine runs that release's own PostgreSQL, Patroni, etcd, HAProxy, nginx
 * and sshd instead of this host's. Each machine mounts it as the lower layer of an overlay of
 * its own (src/lab/net.ts), so machines share the read-only files and keep their changes apart.
 *
 * A root filesystem is built once and kept under ROOTFS_CACHE in a directory named by the
 * release and a hash of everything that goes into it (suite, packages, hooks): a changed
 * package list builds a new one, an unchanged one is reused. `scripts/setup.sh` builds the
 * default release, so lab tests never download anything.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DISTRO_SERVICES, allPackages } from '../apply/packages.ts';
import { VigilError, problem } from '../util/errors.ts';
import { run } from '../util/exec.ts';
import { anyLabNetns } from './net.ts';

export const RELEASES = ['trixie', 'bookworm'] as const;
export type Release = (typeof RELEASES)[number];
export const DEFAULT_RELEASE: Release = 'trixie';

export interface ReleaseInfo {
  /** Debian's version number, for `vigil lab status`. */
  debian: string;
  /** The PostgreSQL major version the release ships (postgresql-<n>). */
  postgres: number;
}

export const RELEASE_INFO: Record<Release, ReleaseInfo> = {
  trixie: { debian: '13', postgres: 17 },
  bookworm: { debian: '12', postgres: 15 },
};

/** Where built root filesystems are kept; VIGIL_ROOTFS_CACHE overrides it. */
export const ROOTFS_CACHE = process.env.VIGIL_ROOTFS_CACHE ?? '/var/cache/vigil-lab/rootfs';
/** Debian's archive (or a mirror of it); VIGIL_DEBIAN_MIRROR overrides it. */
const MIRROR = process.env.VIGIL_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';

/**
 * Everything a lab machine may run, whatever its roles: a bare machine's (systemd, sshd, apt),
 * the cluster's components, and what Vigil's agent and doctor call on a machine (nft, ss, psql,
 * openssl, sudo). Node.js is not in it: `vigil apply` installs Vigil's artifact, which brings it.
 */
export function rootfsPackages(release: Release): string[] {
  const pg = RELEASE_INFO[release].postgres;
  return [
    ...barePackages(),
    `postgresql-${pg}`,
    'patroni',
    'python3-etcd',
    'etcd-server',
    'etcd-client',
    'haproxy',
    'socat',
    'keepalived',
    'nginx',
    'rsync',
    'openssh-server',
    'openssh-client',
    'iproute2',
    'nftables',
    'procps',
    // Not essential from bookworm on; `vigil lab fill` mounts inside a machine.
    'mount',
    'sudo',
    'openssl',
    'ca-certificates',
  ];
}

/**
 * What a bare lab machine holds (`vigil lab up --bare`): a minimal server, as it comes out of an
 * OS install. systemd boots it; sshd lets `vigil init` and `vigil apply` in; apt installs what the
 * cluster needs from the lab's mirror (lab.ts).
 */
export function barePackages(): string[] {
  return ['systemd', 'systemd-sysv', 'dbus', 'libpam-systemd', 'openssh-server', 'sudo', 'apt', 'ca-certificates', 'iproute2', 'procps', 'netbase', 'mount'];
}

/**
 * What `vigil apply` installs on a machine of each role (src/apply/packages.ts), for the release:
 * the lab's mirror holds them and everything they depend on beyond a bare machine.
 */
export function mirrorPackages(release: Release): string[] {
  return allPackages('apt', RELEASE_INFO[release].postgres);
}

export type ImageKind = 'full' | 'bare' | 'mirror';

/**
 * Hooks, run by mmdebstrap with the root filesystem's path as $1. Full machines: postgresql-common
 * must not make its default cluster (Patroni makes the cluster's own); documentation and manuals
 * are not needed. Bare machines are left as an install leaves them (apply copes with a default
 * cluster and the packages' own services), without SSH host keys (each machine gets its own) and
 * without the build's package sources (each points at the lab's mirror).
 */
const ESSENTIAL_HOOK =
  'mkdir -p "$1/etc/postgresql-common/createcluster.d" && echo "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.d/vigil.conf"';
const SLIM = 'rm -rf "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/var/cache/apt/*.bin "$1"/var/lib/apt/lists/*_Packages && : > "$1/etc/hostname"';
const BARE =
  'rm -f "$1"/etc/ssh/ssh_host_* "$1/etc/apt/sources.list" "$1"/etc/apt/sources.list.d/* && : > "$1/etc/machine-id" && printf \'APT::Keep-Downloaded-Packages "false";\\n\' > "$1/etc/apt/apt.conf.d/90vigil-lab"';
/**
 * Full machines, as a site's golden image leaves them: each machine gets its own SSH host keys
 * and machine id at boot, and the packages' own services (Debian starts etcd, haproxy, nginx on
 * install) are not enabled, as `vigil apply`'s distro-services step would leave them.
 */
const FULL = `rm -f "$1"/etc/ssh/ssh_host_* && : > "$1/etc/machine-id" && rm -f ${DISTRO_SERVICES.map((u) => `"$1/etc/systemd/system/multi-user.target.wants/${u}"`).join(' ')}`;

/** The mmdebstrap arguments of an image (before the suite, target and mirror). */
function imageArgs(release: Release, kind: ImageKind): string[] {
  switch (kind) {
    case 'full':
      return [
        '--variant=apt',
        `--include=${rootfsPackages(release).join(',')}`,
        `--essential-hook=${ESSENTIAL_HOOK}`,
        `--customize-hook=${SLIM}`,
        `--customize-hook=${FULL}`,
      ];
    case 'bare':
      return ['--variant=minbase', `--include=${barePackages().join(',')}`, `--customize-hook=${SLIM}`, `--customize-hook=${BARE}`];
    case 'mirror':
      // The packages apply installs, downloaded (with what they need beyond a bare machine) and
      // indexed as a flat repository: `deb [trusted=yes] http://<bridge>/ ./`.
      return [
        '--variant=minbase',
        `--include=${barePackages().join(',')}`,
        '--skip=cleanup/apt/cache',
        `--customize-hook=chroot "$1" apt-get install -y -q --no-install-recommends --download-only ${mirrorPackages(release).join(' ')}`,
        '--customize-hook=mkdir -p "$1/.mirror" && cp "$1"/var/cache/apt/archives/*.deb "$1/.mirror/"',
      ];
  }
}

/** Bump when the build changes in a way the inputs below do not show. */
const FORMAT = 2;

function buildHash(release: Release, kind: ImageKind): string {
  const inputs = JSON.stringify({ FORMAT, release, kind, args: imageArgs(release, kind), MIRROR });
  return createHash('sha256').update(inputs).digest('hex').slice(0, 12);
}

const SUFFIX: Record<ImageKind, string> = { full: '', bare: '-bare', mirror: '-mirror' };

/** The directory of a release's image (built or not): a root filesystem, or for `mirror` the repository. */
export function rootfsDir(release: Release, kind: ImageKind = 'full'): string {
  return join(ROOTFS_CACHE, `${release}${SUFFIX[kind]}-${buildHash(release, kind)}`);
}

/** The file whose presence says an image is complete. */
const doneMarker = (dir: string, kind: ImageKind) => join(dir, kind === 'mirror' ? 'Packages.gz' : join('etc', 'os-release'));

/** A release's image, or a clear error naming the command that builds it. */
export function requireRootfs(release: Release, kind: ImageKind = 'full'): string {
  const dir = rootfsDir(release, kind);
  const what = kind === 'mirror' ? 'package mirror' : kind === 'bare' ? 'bare root filesystem' : 'root filesystem';
  if (!existsSync(doneMarker(dir, kind)))
    throw new VigilError('LAB', [
      problem(
        dir,
        `the ${release} ${what} for lab machines is not built (or its package list changed)`,
        `run \`npx vigil lab rootfs --release ${release}\` (scripts/setup.sh builds it)`,
      ),
    ]);
  return dir;
}

/** Builds every image of a release that is not built yet: the full root filesystem, the bare one and the mirror. */
export async function ensureRelease(release: Release, progress: (line: string) => void = () => {}): Promise<string[]> {
  const out: string[] = [];
  for (const kind of ['full', 'bare', 'mirror'] as const) out.push(await ensureRootfs(release, kind, progress));
  return out;
}

/**
 * Builds a release's image unless it exists. Builds into a directory of its own and renames it
 * into place, so a build that fails or is interrupted leaves nothing a lab would use, and two
 * builds at once cannot mix. Older builds of the same image are removed while no lab runs.
 */
export async function ensureRootfs(release: Release, kind: ImageKind = 'full', progress: (line: string) => void = () => {}): Promise<string> {
  const dir = rootfsDir(release, kind);
  if (existsSync(doneMarker(dir, kind))) return dir;
  const tmp = `${dir}.build-${process.pid}`;
  await mkdir(ROOTFS_CACHE, { recursive: true });
  await rm(tmp, { recursive: true, force: true });
  progress(`rootfs: building the ${release} (Debian ${RELEASE_INFO[release].debian}) ${kind} image with mmdebstrap from ${MIRROR} into ${dir}; under a minute`);
  const started = performance.now();
  const mmdebstrap = await run('sh', ['-c', 'command -v mmdebstrap'], { allowFail: true });
  if (mmdebstrap.code !== 0)
    throw new VigilError('LAB', [problem('mmdebstrap', 'is not installed', 'run `bash scripts/setup.sh` (or apt-get install mmdebstrap)')]);
  const target = kind === 'mirror' ? `${tmp}.root` : tmp;
  const r = await run('mmdebstrap', ['--mode=root', '--quiet', ...imageArgs(release, kind), release, target, MIRROR], {
    allowFail: true,
    timeoutMs: 30 * 60_000,
  });
  if (r.code === 0 && kind === 'mirror') {
    await rename(join(target, '.mirror'), tmp);
    await rm(target, { recursive: true, force: true });
    const index = await run('sh', ['-c', 'cd "$1" && dpkg-scanpackages --multiversion . /dev/null > Packages && gzip -9k Packages', 'sh', tmp], {
      allowFail: true,
    });
    if (index.code !== 0) {
      await rm(tmp, { recursive: true, force: true });
      throw new VigilError('LAB', [
        problem('dpkg-scanpackages', `could not index the ${release} mirror: ${index.stderr.trim()}`, 'install dpkg-dev (scripts/setup.sh does) and run again'),
      ]);
    }
  }
  if (r.code !== 0) {
    await rm(tmp, { recursive: true, force: true });
    await rm(`${tmp}.root`, { recursive: true, force: true });
    const tail = `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-12).join('\n');
    throw new VigilError('LAB', [
      problem(
        `mmdebstrap ${release} (${kind})`,
        `failed (exit ${r.code}):\n${tail}`,
        `check that ${MIRROR} is reachable (set VIGIL_DEBIAN_MIRROR to a mirror of Debian's archive) and run again`,
      ),
    ]);
  }
  try {
    await rename(tmp, dir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    if (!existsSync(doneMarker(dir, kind))) throw err; // another build won the race otherwise
  }
  // Older builds go only while no lab of any id runs: one may be the lower layer of its machines.
  const prefix = `${release}${SUFFIX[kind]}-`;
  if (!(await anyLabNetns()))
    for (const old of await readdir(ROOTFS_CACHE)) {
      const other = old.slice(prefix.length);
      if (old.startsWith(prefix) && /^[0-9a-f]{12}$/.test(other) && join(ROOTFS_CACHE, old) !== dir)
        await rm(join(ROOTFS_CACHE, old), { recursive: true, force: true });
    }
  progress(`rootfs: ${release} ${kind} image built in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  return dir;
}

export function isRelease(v: string): v is Release {
  return (RELEASES as readonly string[]).includes(v);
}

/** The packages whose versions `vigil lab status` shows, as the root filesystem's dpkg database lists them. */
export interface RootfsPackages {
  postgresql?: string;
  patroni?: string;
  etcd?: string;
  haproxy?: string;
}

/** From a root filesystem's dpkg database, or (`mirror`) from the packages a mirror image offers. */
export async function rootfsVersions(root: string, kind: 'installed' | 'mirror' = 'installed'): Promise<RootfsPackages> {
  const status = await readFile(kind === 'mirror' ? join(root, 'Packages') : join(root, 'var', 'lib', 'dpkg', 'status'), 'utf8');
  const out: RootfsPackages = {};
  for (const stanza of status.split('\n\n')) {
    const pkg = /^Package: (.+)$/m.exec(stanza)?.[1];
    const version = /^Version: (.+)$/m.exec(stanza)?.[1];
    if (!pkg || !version || (kind === 'installed' && !/^Status: install ok installed$/m.test(stanza))) continue;
    if (/^postgresql-\d+$/.test(pkg)) out.postgresql = version;
    else if (pkg === 'patroni') out.patroni = version;
    else if (pkg === 'etcd-server') out.etcd = version;
    else if (pkg === 'haproxy') out.haproxy = version;
  }
  return out;
}

/** The upstream part of a Debian version: "4.0.7-3~deb13u1" -> "4.0.7". */
export function upstreamVersion(debian: string | undefined): string | undefined {
  return debian?.replace(/^\d+:/, '').replace(/[-+~].*$/, '');
}

export function describePackages(p: RootfsPackages): string {
  return [
    ['PostgreSQL', p.postgresql],
    ['Patroni', p.patroni],
    ['etcd', p.etcd],
    ['HAProxy', p.haproxy],
  ]
    .filter(([, v]) => v)
    .map(([n, v]) => `${n} ${upstreamVersion(v)}`)
    .join(', ');
}
