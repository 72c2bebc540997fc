/**
 * Processes of lab machines: found through the machine's network namespace (its own id, never a
 * name pattern across the host), and named the way `vigil lab status` shows them.
 */
import { readFile } from 'node:fs/promises';
import { netnsPids } from './net.ts';

export const PROCESS_NAMES = ['etcd', 'patroni', 'postgres', 'haproxy', 'keepalived', 'nginx', 'app', 'analytics', 'agent', 'observer', 'sshd'] as const;
export type ProcessName = (typeof PROCESS_NAMES)[number];

export interface LabProcess {
  pid: number;
  name: ProcessName | 'other';
}

export function classify(comm: string, cmdline: string[]): ProcessName | 'other' {
  if (comm === 'etcd' || comm === 'haproxy' || comm === 'keepalived' || comm === 'postgres' || comm === 'nginx' || comm === 'sshd') return comm;
  if (comm === 'patroni' || cmdline.some((a) => a.endsWith('/patroni'))) return 'patroni';
  // The reference application: its own bundle on a machine (VIGIL_INSTALL.refapp), `vigil refapp` from a checkout;
  // with --analytics, its second service.
  const refapp = cmdline.some((a) => a.endsWith('/vigil-refapp.mjs'));
  const vigilCmd = cmdline.find((a) => a === 'refapp' || a === 'agent' || a === 'observer');
  if (refapp || vigilCmd === 'refapp') return cmdline.includes('--analytics') ? 'analytics' : 'app';
  if (vigilCmd === 'agent' || vigilCmd === 'observer') return vigilCmd;
  return 'other';
}

async function describe(pid: number): Promise<LabProcess | undefined> {
  try {
    const comm = (await readFile(`/proc/${pid}/comm`, 'utf8')).trim();
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean);
    return { pid, name: classify(comm, cmdline) };
  } catch {
    return undefined; // exited while we looked
  }
}

export async function listProcesses(host: string): Promise<LabProcess[]> {
  const found = await Promise.all((await netnsPids(host)).map(describe));
  return found.filter((p): p is LabProcess => p !== undefined);
}

export async function signalProcesses(host: string, signal: NodeJS.Signals, name?: ProcessName): Promise<number> {
  const procs = (await listProcesses(host)).filter((p) => name === undefined || p.name === name);
  for (const p of procs) {
    try {
      process.kill(p.pid, signal);
    } catch {
      // already gone
    }
  }
  return procs.length;
}
