/**
 * HAProxy's runtime API (the admin-level stats socket of the generated haproxy.cfg): read the
 * state of a backend's servers, put a server into MAINT (fencing: no new connection reaches it
 * and its sessions are cut) or back to READY, and pause or resume its health checks. One command
 * per connection, as HAProxy closes the socket after answering unless in interactive mode.
 *
 * The observer talks to the socket on its own machine; `vigil apply` reaches it from the
 * admin's shell through the proxy machine's shell (src/apply/remote.ts), hence the `send` seam.
 */
import { createConnection } from 'node:net';
import { PATHS } from '../layout/paths.ts';
import type { CodedError } from '../util/errors.ts';

export type AdminState = 'ready' | 'maint' | 'drain';
export type OpState = 'up' | 'down' | 'stopping' | 'starting';

export interface ServerState {
  backend: string;
  server: string;
  admin: AdminState;
  op: OpState;
  /** Health checks: running, configured but paused (`disable health`), or none configured. */
  checks: 'enabled' | 'disabled' | 'none';
}

/** Delivers one command to the runtime API and returns the answer. */
export type RuntimeSend = (cmd: string) => Promise<string>;

export class RuntimeApiError extends Error implements CodedError {
  readonly code = 'HAPROXY_RUNTIME' as const;

  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'RuntimeApiError';
  }
}

/** The runtime API's unix socket on this machine. */
export function socketSend(socketPath: string = PATHS.haproxySocket, timeoutMs = 2000): RuntimeSend {
  return (cmd) =>
    new Promise((resolve, reject) => {
      const sock = createConnection(socketPath);
      let out = '';
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new RuntimeApiError(`HAProxy runtime API at ${socketPath} did not answer "${cmd}" within ${timeoutMs} ms`, true));
      }, timeoutMs);
      sock.on('connect', () => sock.end(`${cmd}\n`));
      sock.on('data', (d: Buffer) => (out += d.toString()));
      sock.on('error', (err) => {
        clearTimeout(timer);
        reject(new RuntimeApiError(`HAProxy runtime API at ${socketPath}: ${err.message}`, true));
      });
      sock.on('close', () => {
        clearTimeout(timer);
        resolve(out);
      });
    });
}

export class HaproxyRuntime {
  private readonly send: RuntimeSend;

  /** A socket path on this machine, or any other way to deliver commands. */
  constructor(socket: string | RuntimeSend = PATHS.haproxySocket, timeoutMs = 2000) {
    this.send = typeof socket === 'string' ? socketSend(socket, timeoutMs) : socket;
  }

  /** Sends one command and returns HAProxy's answer. */
  command(cmd: string): Promise<string> {
    if (/[\n;]/.test(cmd)) return Promise.reject(new RuntimeApiError(`refusing a command with a newline or ';': ${cmd}`, false));
    return this.send(cmd);
  }

  /** Admin and operational state of every server of a backend, from `show servers state`. */
  async servers(backend: string): Promise<ServerState[]> {
    return parseServersState(await this.command(`show servers state ${backend}`));
  }

  /** MAINT: HAProxy sends the server nothing, and cuts the sessions it has. */
  async maint(backend: string, server: string): Promise<void> {
    await this.expectEmpty(`set server ${backend}/${server} state maint`);
    await this.expectEmpty(`shutdown sessions server ${backend}/${server}`);
  }

  async ready(backend: string, server: string): Promise<void> {
    await this.expectEmpty(`set server ${backend}/${server} state ready`);
  }

  /**
   * Out of MAINT as a server that is down until its health check passes: HAProxy would otherwise
   * take a server leaving MAINT as UP at once, before its first check. `health down` is ignored
   * in MAINT, so the server passes through DRAIN (up, but given no new connection) on the way.
   */
  async readyWhenChecked(backend: string, server: string): Promise<void> {
    await this.expectEmpty(`set server ${backend}/${server} state drain`);
    await this.expectEmpty(`set server ${backend}/${server} health down`);
    await this.expectEmpty(`set server ${backend}/${server} state ready`);
  }

  /**
   * UP now, without waiting for its next health check (`set server ... health up`; ignored while
   * the server is in MAINT). Its checks go on: fall failed ones take it down again. HAProxy keeps
   * the next check of a server that leaves MAINT where it was scheduled, up to a whole `inter`
   * away, so a newly active machine may wait that long to be found (docs/benchmarks.md).
   */
  async healthUp(backend: string, server: string): Promise<void> {
    await this.expectEmpty(`set server ${backend}/${server} health up`);
  }

  /** Pauses the server's health checks: it keeps the state it has (UP stays UP) until they resume. */
  async disableHealth(backend: string, server: string): Promise<void> {
    await this.expectEmpty(`disable health ${backend}/${server}`);
  }

  async enableHealth(backend: string, server: string): Promise<void> {
    await this.expectEmpty(`enable health ${backend}/${server}`);
  }

  private async expectEmpty(cmd: string): Promise<void> {
    const answer = (await this.command(cmd)).trim();
    if (answer) throw new RuntimeApiError(`HAProxy refused "${cmd}": ${answer}`, false);
  }
}

/**
 * `show servers state` answers a version line, a header line starting with '#', then one line per
 * server. srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping; srv_admin_state is a bit
 * field (HAProxy's server-t.h): MAINT when forced (0x01), inherited (0x02) or for a failed
 * resolution (0x20); 0x04 only says the configuration starts the server `disabled` (a server
 * readied since then keeps it and is not in MAINT); DRAIN when forced (0x08) or inherited (0x10).
 * srv_check_state is a bit field where 0x02 is "configured" and 0x04 "enabled" (check.h).
 */
const ADMIN_MAINT = 0x01 | 0x02 | 0x20;
const ADMIN_DRAIN = 0x08 | 0x10;

export function parseServersState(text: string): ServerState[] {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const header = lines.find((l) => l.startsWith('#'));
  if (!header) throw new RuntimeApiError(`unexpected answer to show servers state: ${text.slice(0, 200)}`, false);
  const cols = header.replace(/^#\s*/, '').split(/\s+/);
  const at = (name: string) => {
    const i = cols.indexOf(name);
    if (i < 0) throw new RuntimeApiError(`show servers state lacks column ${name}`, false);
    return i;
  };
  const [be, sv, op, admin, check] = [at('be_name'), at('srv_name'), at('srv_op_state'), at('srv_admin_state'), at('srv_check_state')];
  return lines
    .filter((l) => !l.startsWith('#') && /^\d+ /.test(l))
    .map((l) => {
      const f = l.split(/\s+/);
      const adminBits = Number(f[admin]);
      const opCode = Number(f[op]);
      const checkBits = Number(f[check]);
      return {
        backend: f[be]!,
        server: f[sv]!,
        admin: adminBits & ADMIN_MAINT ? 'maint' : adminBits & ADMIN_DRAIN ? 'drain' : 'ready',
        op: (['down', 'starting', 'up', 'stopping'] as const)[opCode] ?? 'down',
        checks: !(checkBits & 0x02) ? 'none' : checkBits & 0x04 ? 'enabled' : 'disabled',
      };
    });
}
