/** Where the lab keeps its state on this machine, and how it names what it creates. */
import { join } from 'node:path';

/** State, cluster file and every machine's files. Overridable so a test can use its own. */
export const LAB_DIR = process.env.VIGIL_LAB_DIR ?? '/var/lib/vigil-lab';
/** Mount-namespace handles (must sit on a private mount; see net.ts). */
export const LAB_RUN_DIR = '/run/vigil-lab';
export const BRIDGE = 'vigilbr0';
/** Every network namespace of the lab carries this prefix: it is how `lab down` finds leftovers. */
export const NETNS_PREFIX = 'vigil-lab-';

export const netnsName = (host: string): string => `${NETNS_PREFIX}${host}`;
export const netnsPath = (host: string): string => `/run/netns/${netnsName(host)}`;
export const vethName = (host: string): string => `vl-${host}`.slice(0, 15);
export const mountNsPath = (host: string): string => join(LAB_RUN_DIR, 'mnt', host);
export const hostRoot = (host: string): string => join(LAB_DIR, 'hosts', host);
export const statePath = (): string => join(LAB_DIR, 'state.json');
export const clusterFilePath = (): string => join(LAB_DIR, 'vigil.yaml');
