/**
 * The SSH transport of `RemoteShell` (src/remote/types.ts), over the ssh2 package.
 *
 * This module is the public face of the SSH code: ssh-connect.ts dials and runs channels,
 * ssh-trust.ts holds the admin key and the host-key pinning; both are re-exported here.
 *
 * Trust model (DESIGN.md, Security):
 * - Host keys are pinned in an OpenSSH known_hosts file beside the cluster file
 *   (`vigil.known_hosts`, see known-hosts.ts). Every connection checks the key the machine
 *   offers against that file; ssh2 would accept any key without a `hostVerifier`, so one is
 *   always passed. Pinning is a separate, explicit step (`pinHostKey`, used by `vigil init`):
 *   nothing here trusts a key on first use by itself.
 * - Logins use the cluster's admin key (`ssh/id_ed25519` beside the cluster file) only. A
 *   password is accepted in exactly one place, `installAdminKey`, which uses it for one
 *   connection to append the admin public key to the user's authorized_keys. It is never
 *   written anywhere and never appears in a command line, a log line or an error message.
 *
 * Commands: the remote sshd hands the command string to the login shell, so every argument is
 * single-quoted here (`shellQuote`): argv in, the same argv out, whatever it contains. The login
 * shell must be a POSIX shell (sh, dash, bash, ksh, zsh), as it is for root on every supported
 * distribution. When the SSH user is not root, every command runs through `sudo -n` (never
 * prompting: sudo must allow the user without a password, e.g. `vigil ALL=(ALL) NOPASSWD: ALL`
 * in /etc/sudoers.d/vigil). Sudo passwords are not supported.
 */
import { dirname, join } from 'node:path';
import type { Client } from 'ssh2';
import type { Machine } from '../config/schema.ts';
import { VigilError, problem } from '../util/errors.ts';
import type { ExecOptions, ExecResult, RemoteShell } from './types.ts';
import {
  ADMIN_KEY_FILE,
  DEFAULT_CONNECT_TIMEOUT_MS,
  KNOWN_HOSTS_FILE,
  classify,
  dial,
  remoteCommand,
  runChannel,
  sshTarget,
  where,
  type DialContext,
  type RawResult,
  type SshTarget,
} from './ssh-connect.ts';
import { readAdminKey } from './ssh-trust.ts';

export { fingerprint, type HostKey } from './known-hosts.ts';
export { ADMIN_KEY_FILE, KNOWN_HOSTS_FILE, remoteCommand, shellQuote, sshTarget, type SshTarget } from './ssh-connect.ts';
export {
  generateAdminKey,
  installAdminKey,
  openSshEd25519,
  pinHostKey,
  readAdminKey,
  removeAdminKey,
  scanHostKey,
  type AdminKeyPair,
  type PinResult,
  type ScannedHostKey,
} from './ssh-trust.ts';

/** Where the SSH trust files live: beside the cluster file. */
export interface SshFiles {
  knownHosts: string;
  privateKey: string;
  publicKey: string;
}

export function sshFiles(clusterFile: string): SshFiles {
  const dir = dirname(clusterFile);
  return { knownHosts: join(dir, KNOWN_HOSTS_FILE), privateKey: join(dir, ADMIN_KEY_FILE), publicKey: join(dir, `${ADMIN_KEY_FILE}.pub`) };
}

const DEFAULT_EXEC_TIMEOUT_MS = 30_000;
/**
 * Below OpenSSH's MaxSessions (10): more concurrent channels on one connection are refused. sshd
 * frees a session slot a moment after the channel closes on our side, so leave some headroom
 * (and retry a refused open, see openChannel).
 */
const DEFAULT_MAX_CHANNELS = 6;
/** How long after the remote `timeout` should have fired the channel is torn down from here. */
const LOCAL_TIMEOUT_GRACE_MS = 3000;

export interface SshShellOptions {
  knownHostsFile: string;
  /** The admin private key (OpenSSH format), e.g. from `readAdminKey`. */
  privateKey: string | Buffer;
  /** Its path, for messages. */
  identityFile?: string;
  /** TCP connect plus SSH handshake plus login (default 10 s). */
  connectTimeoutMs?: number;
  /** Commands running at once on the connection (default 6, below sshd's MaxSessions of 10). */
  maxChannels?: number;
}

const READ_SCRIPT = '[ -e "$1" ] || exit 44; exec cat -- "$1"';
const NOT_FOUND = 44;
/** Temp file in the target's directory (same file system, so mv is a rename), mode 600 until chmod. */
const WRITE_SCRIPT = `set -e
p=$1; m=$2; o=$3
t=$(mktemp "$(dirname -- "$p")/.vigil-tmp.XXXXXXXX")
trap 'rm -f -- "$t"' EXIT
cat > "$t"
if [ -n "$o" ]; then chown -- "$o" "$t"; fi
chmod -- "$m" "$t"
sync -- "$t" 2>/dev/null || true
mv -f -- "$t" "$p"
trap - EXIT`;

const OWNER_RE = /^[A-Za-z0-9_.][A-Za-z0-9_.-]*(:[A-Za-z0-9_.][A-Za-z0-9_.-]*)?$/;

/**
 * A RemoteShell over one SSH connection per machine, opened on first use and reopened on the next
 * command if it drops; `close()` ends it. Commands share the connection as separate channels.
 */
export class SshShell implements RemoteShell {
  readonly machine: string;
  private conn: Promise<Client> | undefined;
  private closed = false;
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    readonly target: SshTarget,
    private readonly opts: SshShellOptions,
  ) {
    this.machine = target.machine;
  }

  private get sudo(): boolean {
    return this.target.user !== 'root';
  }

  private context(): DialContext {
    return {
      target: this.target,
      knownHostsFile: this.opts.knownHostsFile,
      auth: { privateKey: this.opts.privateKey, ...(this.opts.identityFile ? { identityFile: this.opts.identityFile } : {}) },
      timeoutMs: this.opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      pinned: [],
    };
  }

  /** Connects now (it otherwise happens on the first command): errors surface early, classified. */
  async connect(): Promise<void> {
    await this.client();
  }

  private client(): Promise<Client> {
    if (this.closed) return Promise.reject(new VigilError('USAGE', [problem(where(this.target), 'the SSH shell was closed', 'open a new one')]));
    if (!this.conn) {
      const p = dial(this.context()).then((c) => {
        const client = c!;
        client.on('error', () => {}); // a dropped connection shows as 'close'; running commands fail on their own
        client.on('close', () => {
          if (this.conn === p) this.conn = undefined;
        });
        return client;
      });
      p.catch(() => {
        if (this.conn === p) this.conn = undefined;
      });
      this.conn = p;
    }
    return this.conn;
  }

  private async slot<T>(fn: () => Promise<T>): Promise<T> {
    const max = this.opts.maxChannels ?? DEFAULT_MAX_CHANNELS;
    while (this.running >= max) await new Promise<void>((r) => this.waiting.push(r));
    this.running++;
    try {
      return await fn();
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }

  private async raw(argv: string[], opts: ExecOptions = {}): Promise<RawResult> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
    const command = remoteCommand(argv, { sudo: this.sudo, timeoutMs });
    let started = 0;
    // The connection is taken once a slot is free: one that dropped while this command waited is reopened, not used dead.
    const r = await this.slot(async () => {
      const client = await this.client();
      started = performance.now();
      return runChannel(client, command, opts.input, timeoutMs + LOCAL_TIMEOUT_GRACE_MS);
    }).catch((err: unknown) => {
      if (err instanceof VigilError) throw err;
      const e = classify(err as Error, this.context());
      // The command may or may not have run: say so, since steps are retried on this basis.
      throw new VigilError(
        e.code,
        [problem(where(this.target), `${e.problems[0]!.message} while running ${argv[0]} (it may or may not have finished)`, e.problems[0]!.fix)],
        { cause: err, retryable: true },
      );
    });
    if (this.sudo && r.code === 1 && /^sudo: (a password is required|a terminal is required)/m.test(r.stderr.toString())) {
      throw new VigilError('REMOTE_COMMAND', [
        problem(
          where(this.target),
          `sudo asks ${this.target.user} for a password; Vigil runs commands with \`sudo -n\` and has no sudo password`,
          `allow ${this.target.user} sudo without a password on ${this.target.machine}: \`echo '${this.target.user} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/vigil && chmod 440 /etc/sudoers.d/vigil\`, or set \`sshUser: root\``,
        ),
      ]);
    }
    if (this.sudo && r.code === 127 && /sudo: (command )?not found/.test(r.stderr.toString())) {
      throw new VigilError('REMOTE_COMMAND', [
        problem(
          where(this.target),
          'sudo is not installed',
          `install sudo on ${this.target.machine} (apt install sudo / dnf install sudo), or set \`sshUser: root\``,
        ),
      ]);
    }
    // 124 is what `timeout` exits with; a command that returns 124 by itself long before the deadline did not time out.
    if (r.code === 124 && performance.now() - started >= timeoutMs * 0.9) r.timedOut = true;
    if (r.timedOut) r.stderr = Buffer.concat([r.stderr, Buffer.from(`vigil: ${argv[0]} timed out after ${timeoutMs} ms on ${this.machine}\n`)]);
    return r;
  }

  async exec(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.raw(argv, opts);
    return { code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') };
  }

  private failed(what: string, path: string, r: RawResult): VigilError {
    const stderr = r.stderr.toString().trim().slice(0, 500);
    return new VigilError('REMOTE_COMMAND', [
      problem(
        `${where(this.target)} ${path}`,
        `${what} failed (exit ${r.code})${stderr ? `: ${stderr}` : ''}`,
        `check the path, its directory and the free space on ${this.machine}`,
      ),
    ]);
  }

  async readFile(path: string): Promise<Buffer | null> {
    absolute(path);
    const r = await this.raw(['sh', '-c', READ_SCRIPT, 'vigil-read', path], { timeoutMs: 120_000 });
    if (r.code === NOT_FOUND) return null;
    if (r.code !== 0) throw this.failed('reading the file', path, r);
    return r.stdout;
  }

  /** Atomic: written to a temp file in the same directory (which must exist), then renamed. Default mode 644; owner unchanged (root) unless given. */
  async writeFile(path: string, content: string | Buffer, opts: { mode?: number; owner?: string } = {}): Promise<void> {
    absolute(path);
    const mode = opts.mode ?? 0o644;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777)
      throw new VigilError('USAGE', [problem(path, `mode ${mode} is not a file mode`, 'pass a mode such as 0o640')]);
    if (opts.owner !== undefined && !OWNER_RE.test(opts.owner))
      throw new VigilError('USAGE', [
        problem(path, `owner "${opts.owner}" is not a user or user:group`, 'pass an owner such as postgres or postgres:postgres'),
      ]);
    const r = await this.raw(['sh', '-c', WRITE_SCRIPT, 'vigil-write', path, mode.toString(8).padStart(4, '0'), opts.owner ?? ''], {
      input: content,
      timeoutMs: 120_000,
    });
    if (r.code !== 0) throw this.failed('writing the file', path, r);
  }

  async close(): Promise<void> {
    this.closed = true;
    const p = this.conn;
    this.conn = undefined;
    if (!p) return;
    const client = await p.catch(() => undefined);
    if (!client) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => (client.destroy(), resolve()), 2000);
      client.once('close', () => (clearTimeout(timer), resolve()));
      client.end();
    });
  }
}

function absolute(path: string): void {
  if (!path.startsWith('/'))
    throw new VigilError('USAGE', [problem(path, 'a remote path must be absolute', `write it from the root, e.g. /etc/vigil/${path}`)]);
}

/** Opens a shell on a machine with the admin key, checking the pinned host key (the connection opens on first use). */
export function openSsh(target: SshTarget, opts: SshShellOptions): SshShell {
  return new SshShell(target, opts);
}

/** A shell for a machine of the cluster whose file is `clusterFile` (trust files beside it). */
export async function openClusterSsh(
  clusterFile: string,
  machine: Pick<Machine, 'name' | 'address' | 'sshPort' | 'sshUser'>,
  opts: { connectTimeoutMs?: number } = {},
): Promise<SshShell> {
  const files = sshFiles(clusterFile);
  return openSsh(sshTarget(machine), {
    knownHostsFile: files.knownHosts,
    privateKey: await readAdminKey(files.privateKey),
    identityFile: files.privateKey,
    ...opts,
  });
}
