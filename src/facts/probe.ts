/**
 * Facts about a machine as one command through its shell shows them, shared by `vigil doctor`
 * (which gathers many) and `vigil preflight`/`apply` (which need a few before installing): the
 * probe result type, the clock offset and one TCP connection from the machine. No secret is
 * ever part of a fact.
 */
import type { Machine } from '../config/schema.ts';
import type { RemoteShell } from '../remote/types.ts';

/** The result of one probe: its value, or why it could not be had. */
export type Probe<T> = { ok: true; value: T } | { ok: false; error: string };
export const got = <T>(value: T): Probe<T> => ({ ok: true, value });
export const failed = <T = never>(error: string): Probe<T> => ({ ok: false, error });

export interface Listener {
  /** Local address as `ss` prints it: 0.0.0.0, *, [::], 10.0.0.1, 127.0.0.1 ... */
  address: string;
  port: number;
  processes: { name: string; pid: number }[];
}

export interface PathStat {
  path: string;
  user: string;
  group: string;
  /** Permission bits (e.g. 0o755). */
  mode: number;
  type: 'directory' | 'file' | 'other';
}

export interface DiskUsage {
  path: string;
  mount: string;
  totalBytes: number;
  freeBytes: number;
}

export type PortOutcome = 'open' | 'refused' | 'timeout' | 'unreachable' | 'error';

/** One TCP connection attempt from a machine (or the admin's shell) to another machine's port. */
export interface PortProbe {
  /** Machine name, or null for the admin's shell. */
  from: string | null;
  to: string;
  port: number;
  outcome: PortOutcome;
  detail?: string;
}

export interface ClockProbe {
  /** The machine's clock minus the admin's, estimated at the middle of the round trip. */
  offsetMs: number;
  /** Half the round trip: the offset is known to within this. */
  uncertaintyMs: number;
}

export type PasswordStatus = 'same' | 'differs' | 'missing-file' | 'missing-key' | 'unparseable' | 'unreadable';

export interface PasswordFileFact {
  path: string;
  key: string;
  status: PasswordStatus;
  /** Line of the key, or of the parse problem. Never the value. */
  line?: number;
  detail?: string;
  /** Where the path points when it is a symbolic link (then the content is not read). */
  symlinkTo?: string;
  /** Permission bits of the file itself (not a link's target), when known. */
  mode?: number;
}

export const firstLine = (s: string) => s.trim().split('\n')[0]?.slice(0, 300) ?? '';
export const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Runs a command; a non-zero exit is an error unless `okCodes` allows it. */
export async function runOn(
  shell: RemoteShell,
  argv: string[],
  timeoutMs: number,
  okCodes: number[] = [0],
): Promise<Probe<{ code: number; stdout: string; stderr: string }>> {
  try {
    const r = await shell.exec(argv, { timeoutMs });
    if (okCodes.includes(r.code)) return got(r);
    if (r.code === 124) return failed(`\`${argv[0]}\` did not finish within ${timeoutMs} ms`);
    if (r.code === 127) return failed(`\`${argv[0]}\` is not installed (${firstLine(r.stderr) || 'command not found'})`);
    return failed(`\`${argv.slice(0, 3).join(' ')}\` exited with ${r.code}: ${firstLine(r.stderr) || firstLine(r.stdout)}`);
  } catch (err) {
    return failed(errorText(err));
  }
}

/** The machine's clock against this one, read at the middle of the command's round trip. */
export async function clock(shell: RemoteShell, timeoutMs: number): Promise<Probe<{ offsetMs: number; uncertaintyMs: number }>> {
  const t0 = Date.now();
  const r = await runOn(shell, ['date', '+%s%N'], timeoutMs);
  const t1 = Date.now();
  if (!r.ok) return r;
  const ns = r.value.stdout.trim();
  if (!/^\d{10,}$/.test(ns)) return failed(`\`date +%s%N\` printed "${firstLine(ns)}"`);
  const remoteMs = Number(BigInt(ns) / 1000n) / 1000;
  return got({ offsetMs: remoteMs - (t0 + t1) / 2, uncertaintyMs: (t1 - t0) / 2 });
}

/**
 * One TCP connection from the machine: bash's /dev/tcp under coreutils' timeout. The script is a
 * constant; address and port are positional arguments, never part of it.
 */
export async function connect(shell: RemoteShell, from: string, to: Machine, port: number, timeoutMs: number): Promise<PortProbe> {
  const seconds = Math.max(1, Math.round(timeoutMs / 1000));
  const base = { from, to: to.name, port };
  try {
    const r = await shell.exec(['timeout', String(seconds), 'bash', '-c', 'exec 3<>"/dev/tcp/$0/$1"', to.address, String(port)], {
      timeoutMs: timeoutMs + 5000,
    });
    let outcome: PortOutcome;
    if (r.code === 0) outcome = 'open';
    else if (r.code === 124) outcome = 'timeout';
    else if (/refused/i.test(r.stderr)) outcome = 'refused';
    else if (/no route|unreachable/i.test(r.stderr)) outcome = 'unreachable';
    else outcome = 'error';
    return { ...base, outcome, ...(outcome === 'error' ? { detail: firstLine(r.stderr) || `exit ${r.code}` } : {}) };
  } catch (err) {
    return { ...base, outcome: 'error', detail: errorText(err) };
  }
}
