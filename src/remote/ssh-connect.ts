/**
 * SSH connections for src/remote/ssh.ts: dialling with the pinned host keys checked, mapping
 * ssh2's errors to Vigil's (SSH_UNREACHABLE, SSH_AUTH, SSH_HOST_KEY, each naming the machine and
 * the fix), quoting argument vectors for the remote shell, and running one command on a channel.
 * Internal: other modules use ssh.ts.
 */
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
// ssh2 is CommonJS: node's ESM loader cannot see `utils` as a named export, so take it off the default.
import ssh2, { type Client, type ClientChannel, type ConnectConfig, type ServerHostKeyAlgorithm } from 'ssh2';
import type { Machine } from '../config/schema.ts';
import { VigilError, problem } from '../util/errors.ts';
import { fingerprint, hostPattern, keyType, pinnedKeys, readKnownHosts, type HostKey } from './known-hosts.ts';

/** One machine as SSH reaches it. */
export interface SshTarget {
  /** The machine's name in the cluster file, for messages. */
  machine: string;
  address: string;
  port: number;
  user: string;
}

export const sshTarget = (m: Pick<Machine, 'name' | 'address' | 'sshPort' | 'sshUser'>): SshTarget => ({
  machine: m.name,
  address: m.address,
  port: m.sshPort,
  user: m.sshUser,
});

export const KNOWN_HOSTS_FILE = 'vigil.known_hosts';
export const ADMIN_KEY_FILE = join('ssh', 'id_ed25519');
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const CHANNEL_OPEN_RETRIES = 5;

// ---------------------------------------------------------------- quoting

/** One argument for a POSIX shell: unchanged when plainly safe, else in single quotes (a quote becomes '\''). */
export function shellQuote(arg: string): string {
  if (arg.includes('\0'))
    throw new VigilError('USAGE', [
      problem('remote command', 'an argument contains a NUL byte', 'arguments cannot hold NUL bytes; pass such data through stdin'),
    ]);
  if (/^[A-Za-z0-9_./:=@%+,-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * The command string sent to sshd for argv: wrapped in coreutils `timeout` (SIGTERM at the
 * deadline, SIGKILL 2 s later, exit status 124) so a hung command stops on the machine, not just
 * here; behind `sudo -n --` for a user other than root.
 */
export function remoteCommand(argv: string[], opts: { sudo: boolean; timeoutMs: number }): string {
  if (argv.length === 0 || argv[0] === '')
    throw new VigilError('USAGE', [problem('remote command', 'the argument vector is empty', 'pass the program and its arguments')]);
  const seconds = `${(Math.max(opts.timeoutMs, 1) / 1000).toFixed(3)}s`;
  const words = [...(opts.sudo ? ['sudo', '-n', '--'] : []), 'timeout', '-k', '2s', seconds, ...argv];
  return words.map(shellQuote).join(' ');
}

// ---------------------------------------------------------------- errors

export const where = (t: SshTarget) => `${t.machine} (${t.user}@${t.address}:${t.port})`;

export type Auth = { privateKey: string | Buffer; identityFile?: string } | { password: string };

export interface DialContext {
  target: SshTarget;
  knownHostsFile: string;
  auth?: Auth;
  timeoutMs: number;
  /** Keys pinned for the host (empty on first contact). */
  pinned: HostKey[];
  /** The key the host offered when it was refused. */
  offered?: HostKey;
}

const HOST_KEY_FILES: Record<string, string> = { 'ssh-ed25519': 'ed25519', 'ssh-rsa': 'rsa', 'ssh-dss': 'dsa' };
export const hostKeyFile = (type: string) => `/etc/ssh/ssh_host_${HOST_KEY_FILES[type] ?? (type.startsWith('ecdsa') ? 'ecdsa' : 'ed25519')}_key.pub`;

function hostKeyProblem(c: DialContext, message: string): VigilError {
  const pattern = hostPattern(c.target.address, c.target.port);
  const offered = c.offered ? fingerprint(c.offered.blob) : undefined;
  const check = offered
    ? `check on ${c.target.machine}'s console that \`ssh-keygen -lf ${hostKeyFile(c.offered!.type)}\` prints ${offered}; only then`
    : `if ${c.target.machine} was reinstalled,`;
  const fix = `${check} remove the old pin with \`ssh-keygen -R '${pattern}' -f ${c.knownHostsFile}\` and pin again with \`vigil init --pin-only\` (it shows the fingerprint to confirm)`;
  return new VigilError('SSH_HOST_KEY', [problem(where(c.target), message, fix)]);
}

/** Maps an ssh2 error to one of Vigil's SSH errors, naming the machine and the fix. */
export function classify(err: Error & { level?: string; code?: string }, c: DialContext): VigilError {
  const t = c.target;
  const pinnedFps = c.pinned.map((k) => fingerprint(k.blob)).join(', ');
  if (c.offered) {
    return hostKeyProblem(
      c,
      `the SSH host key is not the one pinned in ${c.knownHostsFile}: pinned ${pinnedFps}, offered ${fingerprint(c.offered.blob)} (${c.offered.type}). The machine was reinstalled or re-keyed, or someone is intercepting the connection`,
    );
  }
  if (/no matching host key format/.test(err.message) && c.pinned.length > 0) {
    return hostKeyProblem(
      c,
      `the machine no longer offers a host key of the pinned type (${[...new Set(c.pinned.map((k) => k.type))].join(', ')}; pinned ${pinnedFps})`,
    );
  }
  if (err.level === 'client-authentication') {
    if (c.auth && 'password' in c.auth) {
      const root = t.user === 'root' ? ' and `PermitRootLogin yes`' : '';
      return new VigilError(
        'SSH_AUTH',
        [
          problem(
            where(t),
            `the password was refused for ${t.user}`,
            `check the password of ${t.user} on ${t.machine}; sshd must allow password logins for it (\`PasswordAuthentication yes\`${root} in /etc/ssh/sshd_config), or install the admin key by hand`,
          ),
        ],
        { cause: err },
      );
    }
    const id = c.auth && 'identityFile' in c.auth && c.auth.identityFile ? c.auth.identityFile : ADMIN_KEY_FILE;
    const root = t.user === 'root' ? ' (for root also `PermitRootLogin prohibit-password` or `yes`)' : '';
    return new VigilError(
      'SSH_AUTH',
      [
        problem(
          where(t),
          `the admin key was refused for ${t.user}`,
          `install the admin key on ${t.machine}: \`vigil init\` does it with the machine's password once, or by hand: \`ssh-copy-id -i ${id}.pub -p ${t.port} -o UserKnownHostsFile=${c.knownHostsFile} ${t.user}@${t.address}\`${root}`,
        ),
      ],
      { cause: err },
    );
  }
  const reasons: Record<string, string> = {
    ECONNREFUSED: `connection refused: nothing listens on port ${t.port}`,
    EHOSTUNREACH: 'no route to the machine',
    ENETUNREACH: 'no route to the network',
    ETIMEDOUT: 'no answer (timed out)',
    ECONNRESET: 'the connection was reset',
    ENOTFOUND: 'the address does not resolve',
    EAI_AGAIN: 'the address does not resolve',
  };
  const reason =
    (err.code && reasons[err.code]) ??
    (err.level === 'client-timeout'
      ? `no SSH handshake within ${c.timeoutMs} ms`
      : err.level === 'handshake' || err.level === 'protocol'
        ? `the SSH handshake failed: ${err.message}`
        : err.message);
  return new VigilError(
    'SSH_UNREACHABLE',
    [
      problem(
        where(t),
        `cannot reach SSH: ${reason}`,
        `check that ${t.machine} is up, that sshd listens on ${t.address}:${t.port} and that no firewall blocks it (from here: \`nc -vz ${t.address} ${t.port}\`); correct \`address\`/\`sshPort\` in vigil.yaml if they are wrong`,
      ),
    ],
    { cause: err, retryable: err.level !== 'handshake' && err.level !== 'protocol' },
  );
}

// ---------------------------------------------------------------- connecting

/** ssh2's host key algorithm names for a key type, so the negotiation picks the pinned key. */
export function algorithmsFor(types: string[]): ServerHostKeyAlgorithm[] {
  const out: ServerHostKeyAlgorithm[] = [];
  for (const t of new Set(types)) {
    if (t === 'ssh-rsa') out.push('rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa');
    else if (t === 'ssh-ed25519' || t === 'ecdsa-sha2-nistp256' || t === 'ecdsa-sha2-nistp384' || t === 'ecdsa-sha2-nistp521') out.push(t);
  }
  return out;
}

/**
 * Opens one SSH connection. Without `auth` it stops right after the key exchange, once the host
 * has proved it holds the key it offered (ssh2 emits 'handshake' after checking the signature):
 * that is how host keys are read and checked without logging in. With `capture`, any key is
 * accepted and reported (first contact only); otherwise it must be one pinned in the file.
 */
export async function dial(c: DialContext, capture?: (key: HostKey) => void): Promise<Client | null> {
  const t = c.target;
  if (!capture) {
    const pins = pinnedKeys(await readKnownHosts(c.knownHostsFile), t.address, t.port);
    c.pinned = pins.trusted;
    if (c.pinned.length === 0) {
      throw new VigilError('SSH_HOST_KEY', [
        problem(
          where(t),
          `no host key is pinned for ${hostPattern(t.address, t.port)} in ${c.knownHostsFile}`,
          'pin it first: `vigil init --pin-only` shows the fingerprint to confirm and pins it',
        ),
      ]);
    }
  }
  const verifier = (raw: Buffer): boolean => {
    const key: HostKey = { type: keyType(raw), blob: Buffer.from(raw) };
    if (capture) {
      capture(key);
      return true;
    }
    if (c.pinned.some((k) => k.blob.equals(raw))) return true;
    c.offered = key;
    return false;
  };
  const cfg: ConnectConfig = {
    host: t.address,
    port: t.port,
    username: t.user,
    readyTimeout: c.timeoutMs,
    keepaliveInterval: 10_000,
    keepaliveCountMax: 3,
    hostVerifier: verifier,
    ...(capture ? {} : { algorithms: { serverHostKey: algorithmsFor(c.pinned.map((k) => k.type)) } }),
  };
  const auth = c.auth;
  if (auth && 'password' in auth) Object.assign(cfg, { password: auth.password, tryKeyboard: true, authHandler: ['password', 'keyboard-interactive'] });
  else if (auth) Object.assign(cfg, { privateKey: auth.privateKey, authHandler: ['publickey'] });

  return new Promise<Client | null>((resolve, reject) => {
    const client = new ssh2.Client();
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      fn();
    };
    client.on('handshake', () => {
      if (!auth) settle(() => (client.end(), resolve(null)));
    });
    client.on('ready', () => settle(() => resolve(client)));
    client.on('error', (err: Error & { level?: string }) => settle(() => (client.end(), reject(classify(err, c)))));
    client.on('close', () =>
      settle(() => reject(classify(Object.assign(new Error('the connection closed during the SSH handshake'), { level: 'client-socket' }), c))),
    );
    // Password logins through PAM often come as keyboard-interactive: answer the hidden prompts with the password.
    client.on('keyboard-interactive', (_name, _instructions, _lang, prompts, finish) => {
      finish(prompts.map((p) => (auth && 'password' in auth && !p.echo ? auth.password : '')));
    });
    try {
      client.connect(cfg);
    } catch (err) {
      settle(() => reject(classify(err as Error, c)));
    }
  });
}

// ---------------------------------------------------------------- channels

export interface RawResult {
  code: number;
  stdout: Buffer;
  stderr: Buffer;
  timedOut: boolean;
}

/** ssh2 names the signal of an exit-signal with its SIG prefix ('SIGTERM'); OpenSSH sends it without ('TERM'). */
const signalCode = (name: string | undefined) => 128 + ((name && (osConstants.signals as Record<string, number>)[`SIG${name.replace(/^SIG/, '')}`]) || 0);

/**
 * Opens an exec channel and hands it to `attach` synchronously, inside ssh2's callback (see
 * runChannel for why). A refused open ("open failed": sshd is at MaxSessions, typically still
 * freeing the slots of channels that just closed) is retried with a short backoff: the command
 * has not started, so this is safe.
 */
async function openChannel(client: Client, command: string, attach: (ch: ClientChannel) => void): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await new Promise<void>((resolve, reject) =>
        client.exec(command, (err, ch) => {
          if (err) return reject(err);
          attach(ch);
          resolve();
        }),
      );
    } catch (err) {
      if (attempt >= CHANNEL_OPEN_RETRIES || !/open failed/i.test((err as Error).message)) throw err;
      await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
    }
  }
}

/**
 * Runs one command string on an open connection; `timeoutMs` is the local backstop (the remote
 * `timeout` fires first).
 *
 * Every listener goes on the channel inside ssh2's exec callback, before that callback returns.
 * ssh2 parses everything one socket read holds in one synchronous pass, and for a short command
 * (`true`, `stat`, `df`) a single read often holds sshd's reply to the exec request, the output,
 * the exit status and the close: whenever this process was busy for longer than the command took
 * on the machine (doctor probing five machines at once). ssh2 then emits 'exit' in that same
 * pass, right after calling the exec callback. Listeners added after an `await` of the channel
 * (as they once were) come only after the pass, so 'exit' went unheard; the output was still
 * buffered in the stream and 'close' still came (ssh2 emits it after the stream's end), but
 * without an exit status, and a command that had finished normally was reported as cut off by
 * a closed connection ("the connection closed before the command finished"). The
 * "short commands fail as another channel closes" pattern in doctor was this, not MaxSessions
 * or the open retry. src/remote/ssh.test.ts reproduces it by stalling the event loop.
 */
export function runChannel(client: Client, command: string, input: string | Buffer | undefined, timeoutMs: number): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const errOut: Buffer[] = [];
    let code: number | undefined;
    let timedOut = false;
    const attach = (ch: ClientChannel) => {
      const timer = setTimeout(() => {
        timedOut = true;
        try {
          ch.signal('KILL');
        } catch {
          // the channel may already be closing
        }
        ch.close();
      }, timeoutMs);
      ch.on('data', (d: Buffer) => out.push(d));
      ch.stderr.on('data', (d: Buffer) => errOut.push(d));
      ch.on('exit', (c: number | null, signal?: string) => (code = c ?? signalCode(signal)));
      ch.on('close', () => {
        clearTimeout(timer);
        if (timedOut) return resolve({ code: 124, stdout: Buffer.concat(out), stderr: Buffer.concat(errOut), timedOut: true });
        // No exit status: the connection went away under the command.
        if (code === undefined) return reject(Object.assign(new Error('the connection closed before the command finished'), { level: 'client-socket' }));
        resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(errOut), timedOut: false });
      });
      ch.on('error', () => {}); // reported through 'close' without an exit status
      ch.end(input ?? '');
    };
    openChannel(client, command, attach).catch(reject);
  });
}
