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
import { VigilError, problem } from '../util/errors.ts';
import { run } from '../util/exec.ts';
import { anyLabNetns } from './net.ts';

export const RELEASES = ['trixie', 'bookworm'] as const;
export type Release = (typeof RELEASES)[number];
/** What a lab machine runs on: a release's root filesystem, or (`host`) this host's own packages. */
export type LabRelease = Release | 'host';
export const DEFAULT_RELEASE: LabRelease = 'trixie';

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
 * Everything a lab machine may run, whatever its roles: the cluster's components, what Vigil's
 * agent and doctor call on a machine (nft, ss, psql, openssl, sudo), and sshd for file sync.
 * Node.js is not in it: the lab binds this host's node binary into every machine.
 */
export function rootfsPackages(release: Release): string[] {
  const pg = RELEASE_INFO[release].postgres;
  return [
    `postgresql-${pg}`,
    'patroni',
    'python3-etcd',
    'etcd-server',
    'etcd-client',
    'haproxy',
    'socat',
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
 * Hooks, run by mmdebstrap with the root filesystem's path as $1. postgresql-common must not
 * make its default cluster (Patroni makes the cluster's own); documentation and manuals are not
 * needed in a lab machine.
 */
const ESSENTIAL_HOOK = 'mkdir -p "$1/etc/postgresql-common/createcluster.d" && echo "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.d/vigil.conf"';
const CUSTOMIZE_HOOK = 'rm -rf "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/var/cache/apt/*.bin "$1"/var/lib/apt/lists/*_Packages && : > "$1/etc/hostname"';

/** Bump when the build changes in a way the inputs below do not show. */
const FORMAT = 1;

function buildHash(release: Release): string {
  const inputs = JSON.stringify({ FORMAT, release, packages: rootfsPackages(release), ESSENTIAL_HOOK, CUSTOMIZE_HOOK, MIRROR });
  return createHash('sha256').update(inputs).digest('hex').slice(0, 12);
}

/** The directory of a release's root filesystem (built or not). */
export function rootfsDir(release: Release): string {
  return join(ROOTFS_CACHE, `${release}-${buildHash(release)}`);
}

/** The root filesystem of a release, or a clear error naming the command that builds it. */
export function requireRootfs(release: Release): string {
  const dir = rootfsDir(release);
  if (!existsSync(join(dir, 'etc', 'os-release')))
    throw new VigilError('LAB', [problem(dir, `the ${release} root filesystem for lab machines is not built (or its package list changed)`, `run \`npx vigil lab rootfs --release ${release}\` (scripts/setup.sh builds ${DEFAULT_RELEASE})`)]);
  return dir;
}

/**
 * Builds a release's root filesystem unless it exists. Builds into a directory of its own and
 * renames it into place, so a build that fails or is interrupted leaves nothing a lab would use,
 * and two builds at once cannot mix. Older builds of the same release are removed.
 */
export async function ensureRootfs(release: Release, progress: (line: string) => void = () => {}): Promise<string> {
  const dir = rootfsDir(release);
  if (existsSync(join(dir, 'etc', 'os-release'))) return dir;
  const tmp = `${dir}.build-${process.pid}`;
  await mkdir(ROOTFS_CACHE, { recursive: true });
  await rm(tmp, { recursive: true, force: true });
  progress(`rootfs: building ${release} (Debian ${RELEASE_INFO[release].debian}) with mmdebstrap from ${MIRROR} into ${dir}; about a minute`);
  const started = performance.now();
  const mmdebstrap = await run('sh', ['-c', 'command -v mmdebstrap'], { allowFail: true });
  if (mmdebstrap.code !== 0) throw new VigilError('LAB', [problem('mmdebstrap', 'is not installed', 'run `bash scripts/setup.sh` (or apt-get install mmdebstrap)')]);
  const r = await run(
    'mmdebstrap',
    ['--variant=apt', '--mode=root', '--quiet', `--include=${rootfsPackages(release).join(',')}`, `--essential-hook=${ESSENTIAL_HOOK}`, `--customize-hook=${CUSTOMIZE_HOOK}`, release, tmp, MIRROR],
    { allowFail: true, timeoutMs: 30 * 60_000 },
  );
  if (r.code !== 0) {
    await rm(tmp, { recursive: true, force: true });
    const tail = `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-12).join('\n');
    throw new VigilError('LAB', [problem(`mmdebstrap ${release}`, `failed (exit ${r.code}):\n${tail}`, `check that ${MIRROR} is reachable (set VIGIL_DEBIAN_MIRROR to a mirror of Debian's archive) and run again`)]);
  }
  try {
    await rename(tmp, dir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    if (!existsSync(join(dir, 'etc', 'os-release'))) throw err; // another build won the race otherwise
  }
  // Older builds go only while no lab of any id runs: one may be the lower layer of its machines.
  if (!(await anyLabNetns())) for (const old of await readdir(ROOTFS_CACHE)) {
    if (old.startsWith(`${release}-`) && join(ROOTFS_CACHE, old) !== dir && !old.includes('.build-')) await rm(join(ROOTFS_CACHE, old), { recursive: true, force: true });
  }
  progress(`rootfs: ${release} built in ${((performance.now() - started) / 1000).toFixed(0)} s`);
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

export async function rootfsVersions(root: string): Promise<RootfsPackages> {
  const status = await readFile(join(root, 'var', 'lib', 'dpkg', 'status'), 'utf8');
  const out: RootfsPackages = {};
  for (const stanza of status.split('\n\n')) {
    const pkg = /^Package: (.+)$/m.exec(stanza)?.[1];
    const version = /^Version: (.+)$/m.exec(stanza)?.[1];
    if (!pkg || !version || !/^Status: install ok installed$/m.test(stanza)) continue;
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
