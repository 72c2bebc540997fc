/**
 * A RemoteShell for a lab machine: commands run inside the machine with nsenter, as root, in
 * every namespace of its PID 1 (its systemd; src/lab/boot.ts). Files are read and written through
 * the machine's files on this host (src/lab/paths.ts hostPathOf): the same files the machine
 * sees; owners are set by the machine's own chown, since its users are its root filesystem's.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { bootedLeaderPid, hostPathOf } from './paths.ts';
import { inMachine } from './boot.ts';
import { machineOf, requireState } from './state.ts';
import { VigilError, problem } from '../util/errors.ts';
import type { ExecOptions, ExecResult, RemoteShell } from '../remote/types.ts';

const DEFAULT_TIMEOUT_MS = 30_000;

/** nsenter's arguments that put a command inside a lab machine: every namespace of its PID 1. */
export function labEnter(machine: string): string[] {
  return inMachine(machine).slice(1);
}

/** Where a path of the machine is on this host (src/lab/paths.ts hostPathOf). */
export const labHostPath = hostPathOf;

export class LabShell implements RemoteShell {
  constructor(readonly machine: string) {}

  exec(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    if (argv.length === 0) return Promise.reject(new RangeError('exec: empty argv'));
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    // A machine that does not run answers as an SSH connection to a host that is down: exit 255.
    if (bootedLeaderPid(this.machine) === undefined)
      return Promise.resolve({ code: 255, stdout: '', stderr: `${this.machine} is not running (no PID 1 of the lab machine)` });
    return new Promise((resolve) => {
      // Without --fork nsenter execs the program itself; detached makes it a process group, so a
      // timeout also ends what the program started (e.g. `timeout` and its child).
      const child = spawn('nsenter', [...labEnter(this.machine), ...argv], {
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true,
        cwd: '/',
        // LANG=C: tools print the messages and formats doctor parses.
        env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C', LC_ALL: 'C' },
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        try {
          if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }, timeoutMs);
      child.stdout.on('data', (d: Buffer) => out.push(d));
      child.stderr.on('data', (d: Buffer) => err.push(d));
      let settled = false;
      const finish = (code: number, extra = '') => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() + extra });
      };
      // A program that cannot be started at all answers like a shell would: 127.
      child.on('error', (e) => finish(127, e.message));
      child.on('close', (code, signal) => finish(timedOut ? 124 : (code ?? (signal ? 128 : 1)), timedOut ? `timed out after ${timeoutMs} ms` : ''));
      child.stdin.on('error', () => {}); // a program that exits without reading its input
      child.stdin.end(opts.input ?? '');
    });
  }

  async readFile(path: string): Promise<Buffer | null> {
    try {
      return await readFile(labHostPath(this.machine, path));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async writeFile(path: string, content: string | Buffer, opts: { mode?: number; owner?: string } = {}): Promise<void> {
    const target = labHostPath(this.machine, path);
    const mode = opts.mode ?? 0o644;
    const tmpName = `.${randomBytes(6).toString('hex')}.tmp`;
    const tmp = join(dirname(target), tmpName);
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(content);
      await fh.chmod(mode); // whatever the umask
      await fh.sync();
      await fh.close();
      // By the machine's own chown: its users are numbered by its root filesystem, not this host.
      if (opts.owner) {
        const r = await this.exec(['chown', '--', opts.owner, posix.join(posix.dirname(path), tmpName)]);
        if (r.code !== 0) throw new Error(`chown ${opts.owner} ${path} on ${this.machine}: ${r.stderr.trim()}`);
      }
      await rename(tmp, target);
    } catch (err) {
      await fh.close().catch(() => {});
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async close(): Promise<void> {}
}

/** A shell on a machine of the running lab; refuses a machine the lab does not have or that does not run. */
export async function openLabShell(machine: string): Promise<RemoteShell> {
  machineOf(await requireState(), machine);
  if (bootedLeaderPid(machine) === undefined)
    throw new VigilError('LAB', [problem(machine, 'the machine is not running', `start it again: \`vigil lab revive ${machine}\``)]);
  return new LabShell(machine);
}
