/**
 * PostgreSQL and Patroni as processes on this machine, for the agent's fence (db-fence.ts): the
 * postmaster's state read from its data directory (no query: a paused PostgreSQL answers none),
 * and ending both with SIGKILL. On a real machine systemd holds Patroni and everything it started
 * in one unit (`systemctl kill` reaches them all, Restart=on-failure starts Patroni again).
 */
import { access, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { PATHS } from '../layout/paths.ts';
import { UNITS } from '../layout/units.ts';
import { run } from '../util/exec.ts';
import type { PostgresState } from './db-fence.ts';

interface ProcInfo {
  pid: number;
  ppid: number;
  /** 'Z' for a zombie. */
  state: string;
  argv: string[];
}

async function procInfo(pid: number): Promise<ProcInfo | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean);
    return { pid, state: rest[0]!, ppid: Number(rest[1]), argv };
  } catch {
    return undefined; // gone
  }
}

/** Whether a process lives in this process's network namespace (a lab machine's processes share the host's PID space). */
async function sameNet(pid: number): Promise<boolean> {
  const [own, its] = await Promise.all([readlink('/proc/self/ns/net'), readlink(`/proc/${pid}/ns/net`).catch(() => '')]);
  return own === its;
}

async function allProcesses(): Promise<ProcInfo[]> {
  const pids = (await readdir('/proc')).filter((n) => /^\d+$/.test(n)).map(Number);
  return (await Promise.all(pids.map(procInfo))).filter((p): p is ProcInfo => p !== undefined && p.state !== 'Z');
}

/** The postmaster of `dataDir`, if one is alive: postmaster.pid's first line, checked against the process's own arguments. */
export async function postmaster(dataDir: string = PATHS.pgData): Promise<ProcInfo | undefined> {
  const text = await readFile(join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '');
  const pid = Number(text.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const p = await procInfo(pid);
  // A stale file after a crash may name a PID now used by something else.
  if (!p || p.state === 'Z' || !p.argv.some((a) => a.includes(dataDir)) || !(await sameNet(pid))) return undefined;
  return p;
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/** A data directory that PostgreSQL (12 and later) starts in recovery from: standby.signal or recovery.signal. */
export async function inRecoveryByFiles(dataDir: string): Promise<boolean> {
  return (await exists(join(dataDir, 'standby.signal'))) || (await exists(join(dataDir, 'recovery.signal')));
}

export async function postgresState(dataDir: string = PATHS.pgData): Promise<PostgresState> {
  const pm = await postmaster(dataDir);
  if (!pm) return { running: false, primary: false };
  return { running: true, primary: !(await inRecoveryByFiles(dataDir)) };
}

function kill(pid: number): boolean {
  try {
    process.kill(pid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

/** The postmaster and its children (collected before it dies: they lose their parent then). */
export async function killPostgres(dataDir: string): Promise<string[]> {
  const pm = await postmaster(dataDir);
  if (!pm) return [];
  const children = (await allProcesses()).filter((p) => p.ppid === pm.pid);
  const ended = [pm, ...children].filter((p) => kill(p.pid));
  return ended.length ? [`postgres (${ended.length} processes, postmaster ${pm.pid})`] : [];
}

export interface DatabaseProcesses {
  /** Ends Patroni and PostgreSQL with SIGKILL; Patroni is started again by its service manager. */
  kill(): Promise<string[]>;
}

/** A real machine: Patroni's unit holds Patroni and the PostgreSQL it started. */
export class SystemdDatabase implements DatabaseProcesses {
  async kill(): Promise<string[]> {
    const ended: string[] = [];
    // Patroni first, so it cannot act on PostgreSQL's end. The whole unit: every process in it.
    const r = await run('systemctl', ['kill', '--signal=SIGKILL', UNITS.patroni], { allowFail: true, timeoutMs: 10_000 });
    if (r.code === 0) ended.push(`${UNITS.patroni} (every process)`);
    // A PostgreSQL started outside the unit (by hand) is a primary all the same.
    ended.push(...(await killPostgres(PATHS.pgData)));
    return ended;
  }
}
