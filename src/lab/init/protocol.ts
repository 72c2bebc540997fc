/**
 * How systemctl talks to the lab's service manager: one JSON request per connection on an
 * abstract unix socket, one JSON answer back, each a line. Abstract sockets belong to a network
 * namespace, so every lab machine has its own manager at the same name and nothing to mount.
 */
import { connect } from 'node:net';

export const SOCKET = '\0vigil-lab-init';
/** The socket as people write it (ss -x shows abstract sockets with an @). */
export const SOCKET_DISPLAY = '@vigil-lab-init';

export type JobVerb = 'start' | 'stop' | 'restart' | 'reload' | 'try-restart' | 'reload-or-restart';

export type Request =
  | { op: 'job'; verb: JobVerb; unit: string; noBlock?: boolean }
  | { op: 'show'; unit: string }
  | { op: 'daemon-reload' }
  | { op: 'reset-failed'; unit?: string }
  /** `systemctl kill`: a signal to every process of the unit (here: the main process's group). */
  | { op: 'kill'; unit: string; signal: string };

export interface JobAnswer {
  outcome: 'done' | 'queued' | 'not-found' | 'not-loaded' | 'masked' | 'bad-setting' | 'failed' | 'not-active' | 'not-applicable';
  /** Why a job failed, in systemd's words: "the control process exited with error code". */
  reason?: string;
  /** The unit file changed on disk since it was loaded. */
  needsReload?: boolean;
}

/** What the manager knows of a unit at run time (systemctl show's properties come from it). */
export interface UnitProps {
  name: string;
  description: string;
  loadState: 'loaded' | 'not-found' | 'bad-setting' | 'masked';
  loadError?: string;
  activeState: 'active' | 'reloading' | 'inactive' | 'failed' | 'activating' | 'deactivating';
  subState: string;
  result: string;
  mainPid: number;
  /** How the last main process ended: exited (code) or killed/dumped (signal). */
  execMainCode?: 'exited' | 'killed';
  execMainStatus?: number | string;
  fragmentPath?: string;
  stateChangeMs: number;
  activeEnterMs?: number;
  nRestarts: number;
  invocationId?: string;
  needsReload: boolean;
  type?: string;
  restart?: string;
  user?: string;
  group?: string;
  killMode?: string;
  killSignal?: string;
  timeoutStopMs?: number;
  /** ExecStart= and the other command settings, as written (before $VARIABLE substitution). */
  exec?: Record<string, { path: string; argv: string[]; ignoreFailure: boolean }[]>;
  /** The unit's log file on the machine. */
  log: string;
}

export class ManagerUnreachable extends Error {}

/** Sends one request and waits for the answer (a stop may take as long as the unit's TimeoutStopSec). */
export function ask<T>(req: Request): Promise<T> {
  return new Promise((resolve, reject) => {
    const sock = connect(SOCKET);
    let buf = '';
    let answered = false;
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${JSON.stringify(req)}\n`));
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      answered = true;
      sock.end();
      try {
        resolve(JSON.parse(buf.slice(0, nl)) as T);
      } catch (err) {
        reject(err);
      }
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (!answered) reject(new ManagerUnreachable(err.code ?? err.message));
    });
    sock.on('close', () => {
      if (!answered) reject(new ManagerUnreachable('the manager closed the connection without an answer'));
    });
  });
}
