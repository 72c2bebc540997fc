/** Where the lab keeps its state on this machine, and how it names what it creates. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

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
export const BRIDGE = `vigilbr${LAB_ID}`;
/** Every network namespace of the lab carries this prefix: it is how `lab down` finds leftovers. */
export const NETNS_PREFIX = `vigil-lab${suffix}-`;

export const netnsName = (host: string): string => `${NETNS_PREFIX}${host}`;
export const netnsPath = (host: string): string => `/run/netns/${netnsName(host)}`;
export const vethName = (host: string): string => `vl${suffix}-${host}`.slice(0, 15);
export const hostRoot = (host: string): string => join(LAB_DIR, 'hosts', host);
/** Where a machine has its root on this host: an overlay of its release's root filesystem (src/lab/rootfs.ts, net.ts mountOverlay). */
export const machineRoot = (host: string): string => join(hostRoot(host), 'root');
export const statePath = (): string => join(LAB_DIR, 'state.json');
export const clusterFilePath = (): string => join(LAB_DIR, 'vigil.yaml');

/** Mounted fresh inside a booted machine: not in its overlay. */
const RUNTIME_DIRS = ['/run', '/tmp', '/dev', '/proc', '/sys'];

/** systemd-nspawn's PID for a machine (src/lab/boot.ts). */
export const nspawnPidFile = (host: string): string => join(hostRoot(host), 'nspawn.pid');

/** A machine's PID 1 (systemd) as this host numbers it: nspawn's only child; undefined while it does not run. */
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

/**
 * Where a machine's path is on this host. Every file of a machine is its own: in its overlay
 * (mounted on this host at machineRoot), except what its systemd mounts fresh (tmpfs /run and
 * /tmp), reached through its running PID 1's /proc/PID/root.
 */
export function hostPathOf(host: string, path: string): string {
  if (!RUNTIME_DIRS.some((d) => path === d || path.startsWith(`${d}/`))) return join(machineRoot(host), path);
  const leader = bootedLeaderPid(host);
  if (leader === undefined) throw new Error(`${host} is not running: its ${path} exists only while it runs`);
  return join('/proc', String(leader), 'root', path);
}
