/** Where the lab keeps its state on this machine, and how it names what it creates. */
import { existsSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { PATHS, ROOTS } from '../config/paths.ts';
import { VIGIL_INSTALL } from '../render/systemd.ts';

/**
 * Several labs may run side by side on one host, one per `VIGIL_LAB_ID` (0 to 9, default 0):
 * each has its own bridge, subnet 10.213.<id>.0/24, namespaces, state directory and run
 * directory. Lab 0 keeps the plain names.
 */
export const LAB_ID = labId(process.env.VIGIL_LAB_ID);
const suffix = LAB_ID === 0 ? '' : String(LAB_ID);

function labId(raw: string | undefined): number {
  if (raw === undefined || raw === '') return 0;
  if (!/^\d$/.test(raw)) throw new Error(`VIGIL_LAB_ID=${raw}: must be a digit 0 to 9 (each lab id is one bridge and one subnet 10.213.<id>.0/24)`);
  return Number(raw);
}

/** State, cluster file and every machine's files. VIGIL_LAB_DIR overrides it. */
export const LAB_DIR = process.env.VIGIL_LAB_DIR ?? `/var/lib/vigil-lab${suffix}`;
/** Mount-namespace handles (must sit on a private mount; see net.ts). */
export const LAB_RUN_DIR = `/run/vigil-lab${suffix}`;
export const BRIDGE = `vigilbr${LAB_ID}`;
/** Every network namespace of the lab carries this prefix: it is how `lab down` finds leftovers. */
export const NETNS_PREFIX = `vigil-lab${suffix}-`;

export const netnsName = (host: string): string => `${NETNS_PREFIX}${host}`;
export const netnsPath = (host: string): string => `/run/netns/${netnsName(host)}`;
export const vethName = (host: string): string => `vl${suffix}-${host}`.slice(0, 15);
export const mountNsPath = (host: string): string => join(LAB_RUN_DIR, 'mnt', host);
export const hostRoot = (host: string): string => join(LAB_DIR, 'hosts', host);
/** Where a machine on a release's root filesystem (src/lab/rootfs.ts) has its root, on this host: an overlay mount. */
export const machineRoot = (host: string): string => join(hostRoot(host), 'root');
export const statePath = (): string => join(LAB_DIR, 'state.json');
export const clusterFilePath = (): string => join(LAB_DIR, 'vigil.yaml');

/**
 * What each lab machine has of its own, bind-mounted from its directory over this host's path:
 * Vigil's four roots; root's home (sshd runs forced commands through root's shell, which reads
 * ~/.bashrc; the host's must not leak in); and what `vigil apply` installs outside the roots: the
 * systemd units, Vigil's artifact (VIGIL_INSTALL) and sshd drop-ins. Every other path is this
 * host's own.
 */
export const MACHINE_BINDS: readonly (readonly [key: string, target: string])[] = [
  ...Object.entries(ROOTS),
  ['root-home', '/root'],
  ['systemd', PATHS.systemdDir],
  ['opt-vigil', VIGIL_INSTALL.dir],
  ['sshd-config-d', '/etc/ssh/sshd_config.d'],
];

/**
 * Mount points the lab creates on this host when they are missing, and removes again (only when
 * empty) once no lab is left: Vigil's four roots and /opt/vigil. Never /etc/systemd/system or
 * /etc/ssh/sshd_config.d, which belong to this host's own systemd and sshd.
 */
export const LAB_MOUNT_POINTS: readonly string[] = [...Object.values(ROOTS), VIGIL_INSTALL.dir];

/** Mounted fresh inside a booted machine: not in its overlay. */
const RUNTIME_DIRS = ['/run', '/tmp', '/dev', '/proc', '/sys'];

/** Present on a machine that boots (src/lab/boot.ts), as opposed to one whose processes the lab starts itself. */
export const bootMarker = (host: string): string => join(hostRoot(host), 'boot.json');
/** systemd-nspawn's PID for a machine that boots. */
export const nspawnPidFile = (host: string): string => join(hostRoot(host), 'nspawn.pid');

export function isBooted(host: string): boolean {
  return existsSync(bootMarker(host));
}

/** A booted machine's PID 1 (systemd) as this host numbers it: nspawn's only child; undefined while it does not run. */
export function bootedLeaderPid(host: string): number | undefined {
  try {
    const nspawn = Number(readFileSync(nspawnPidFile(host), 'utf8').trim());
    if (!Number.isInteger(nspawn) || nspawn <= 0) return undefined;
    const child = Number(readFileSync(`/proc/${nspawn}/task/${nspawn}/children`, 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(child) && child > 0 ? child : undefined;
  } catch {
    return undefined;
  }
}

function bootedPathOf(host: string, path: string): string {
  if (!RUNTIME_DIRS.some((d) => path === d || path.startsWith(`${d}/`))) return join(machineRoot(host), path);
  // /proc/PID/root is the machine's root as its PID 1 sees it, tmpfs mounts included.
  const leader = bootedLeaderPid(host);
  if (leader === undefined) throw new Error(`${host} is not running: its ${path} exists only while it runs`);
  return join('/proc', String(leader), 'root', path);
}

/** The bound part a machine's path falls in: its host directory key and the path below it. */
function boundPart(path: string): { key: string; rest: string } | undefined {
  for (const [key, target] of MACHINE_BINDS) if (path === target || path.startsWith(`${target}/`)) return { key, rest: relative(target, path) };
  return undefined;
}

/**
 * Where a machine's path is on this host: under the machine's directory for what it has of its
 * own; else, on a machine with a root filesystem of its own, under its root; else the same path
 * (the machine shares this host's files).
 */
export function hostPathOf(host: string, path: string): string {
  // A machine that boots (src/lab/boot.ts) has every file of its own: in its overlay, except what
  // its systemd mounts fresh (tmpfs /run and /tmp), reached through its running PID 1.
  if (isBooted(host)) return bootedPathOf(host, path);
  const b = boundPart(path);
  if (b) return join(hostRoot(host), b.key, b.rest);
  return existsSync(join(machineRoot(host), 'etc', 'os-release')) ? join(machineRoot(host), path) : path;
}

/** Like hostPathOf, for paths that must be the machine's own (what the lab installs); throws for any other. */
export function ownHostPathOf(host: string, path: string): string {
  if (isBooted(host)) return bootedPathOf(host, path);
  const b = boundPart(path);
  if (!b) throw new Error(`${path} is outside a lab machine's own directories (${MACHINE_BINDS.map(([, t]) => t).join(', ')})`);
  return join(hostRoot(host), b.key, b.rest);
}
