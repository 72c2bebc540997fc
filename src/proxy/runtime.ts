/**
 * HAProxy's runtime API (the admin-level stats socket of the generated haproxy.cfg): read the
 * state of a backend's servers, and put a server into MAINT (fencing: no new connection reaches
 * it and its sessions are cut) or back to READY. One command per connection, as HAProxy closes
 * the socket after answering unless in interactive mode.
 */
import { createConnection } from 'node:net';
import { PATHS } from '../config/paths.ts';

export type AdminState = 'ready' | 'maint' | 'drain';
export type OpState = 'up' | 'down' | 'stopping' | 'starting';

export interface ServerState {
  backend: string;
  server: string;
  admin: AdminState;
  op: OpState;
}

export class RuntimeApiError extends Error {
  constructor(message: string, readonly retryable: boolean) {
    super(message);
    this.name = 'RuntimeApiError';
  }
}

export class HaproxyRuntime {
  constructor(
    private readonly socketPath: string = PATHS.haproxySocket,
    private readonly timeoutMs = 2000,
  ) {}

  /** Sends one command and returns HAProxy's answer. */
  command(cmd: string): Promise<string> {
    if (/[\n;]/.test(cmd)) return Promise.reject(new RuntimeApiError(`refusing a command with a newline or ';': ${cmd}`, false));
    return new Promise((resolve, reject) => {
      const sock = createConnection(this.socketPath);
      let out = '';
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new RuntimeApiError(`HAProxy runtime API at ${this.socketPath} did not answer "${cmd}" within ${this.timeoutMs} ms`, true));
      }, this.timeoutMs);
      sock.on('connect', () => sock.end(`${cmd}\n`));
      sock.on('data', (d: Buffer) => (out += d.toString()));
      sock.on('error', (err) => {
        clearTimeout(timer);
        reject(new RuntimeApiError(`HAProxy runtime API at ${this.socketPath}: ${err.message}`, true));
      });
      sock.on('close', () => {
        clearTimeout(timer);
        resolve(out);
      });
    });
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

  private async expectEmpty(cmd: string): Promise<void> {
    const answer = (await this.command(cmd)).trim();
    if (answer) throw new RuntimeApiError(`HAProxy refused "${cmd}": ${answer}`, false);
  }
}

/**
 * `show servers state` answers a version line, a header line starting with '#', then one line per
 * server. srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping; srv_admin_state is a bit
 * field where 0x01/0x02/0x04 are the MAINT flags and 0x08 is DRAIN (HAProxy's server.h).
 */
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
  const [be, sv, op, admin] = [at('be_name'), at('srv_name'), at('srv_op_state'), at('srv_admin_state')];
  return lines
    .filter((l) => !l.startsWith('#') && /^\d+ /.test(l))
    .map((l) => {
      const f = l.split(/\s+/);
      const adminBits = Number(f[admin]);
      const opCode = Number(f[op]);
      return {
        backend: f[be]!,
        server: f[sv]!,
        admin: adminBits & 0x07 ? 'maint' : adminBits & 0x08 ? 'drain' : 'ready',
        op: (['down', 'starting', 'up', 'stopping'] as const)[opCode] ?? 'down',
      };
    });
}
