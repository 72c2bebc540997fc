/**
 * Processes of lab machines: started inside a machine's namespaces, found again through the
 * machine's network namespace (its own id, never a name pattern across the host), and named the
 * way `vigil lab status` shows them.
 */
import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { netnsPids } from './net.ts';
import { hostRoot, mountNsPath, netnsPath } from './paths.ts';

export const PROCESS_NAMES = ['etcd', 'patroni', 'postgres', 'haproxy', 'nginx', 'app', 'agent', 'observer', 'sshd'] as const;
export type ProcessName = (typeof PROCESS_NAMES)[number];

export interface LabProcess {
  pid: number;
  name: ProcessName | 'other';
}

export interface SpawnSpec {
  /** Name of the log file under the machine's /var/log/vigil. */
  name: string;
  argv: string[];
  /** Run as this system user instead of root (PostgreSQL refuses root). */
  user?: string;
  env?: Record<string, string>;
}

/** Starts a detached process in a lab machine; its output goes to the machine's log directory. */
export function spawnIn(host: string, spec: SpawnSpec): number {
  const prefix = ['nsenter', `--net=${netnsPath(host)}`, `--mount=${mountNsPath(host)}`, '--'];
  const asUser = spec.user ? ['setpriv', `--reuid=${spec.user}`, `--regid=${spec.user}`, '--init-groups', '--'] : [];
  const argv = [...prefix, ...asUser, ...spec.argv];
  const logFd = openSync(join(hostRoot(host), 'log', `${spec.name}.log`), 'a');
  try {
    const child = spawn(argv[0]!, argv.slice(1), {
      detached: true,
      cwd: '/',
      stdio: ['ignore', logFd, logFd],
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', ...spec.env },
    });
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start ${spec.argv[0]} on ${host}`);
    return child.pid;
  } finally {
    closeSync(logFd);
  }
}

export function classify(comm: string, cmdline: string[]): ProcessName | 'other' {
  if (comm === 'etcd' || comm === 'haproxy' || comm === 'postgres' || comm === 'nginx' || comm === 'sshd') return comm;
  if (comm === 'patroni' || cmdline.some((a) => a.endsWith('/patroni'))) return 'patroni';
  const vigilCmd = cmdline.find((a) => a === 'refapp' || a === 'agent' || a === 'observer');
  if (vigilCmd === 'refapp') return 'app';
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
