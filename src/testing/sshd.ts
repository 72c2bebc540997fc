/**
 * A real OpenSSH server for tests, started and stopped by the test itself: its own config, host
 * key, PidFile and authorized_keys in a temporary directory, listening on 127.0.0.1 and a free
 * port. It is stopped by the pid it was started with, never by name, and never touches the
 * machine's own sshd, /etc/ssh or /root/.ssh.
 *
 * It runs inside a private mount namespace (`unshare --mount`, propagation private) in which a
 * temporary directory is bind-mounted over /root. With `password`, a temporary copy of
 * /etc/shadow whose root entry holds the hash of the test password is bind-mounted over
 * /etc/shadow too: sshd (with `UsePAM no`, so it reads the shadow file itself) then accepts that
 * password for root, and the key a test installs lands in the temporary /root/.ssh. Nothing
 * changes outside the namespace.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, sleep } from '../util/exec.ts';
import { freePort } from '../util/net.ts';
import { generateAdminKey } from '../remote/ssh-trust.ts';

export const SSHD = '/usr/sbin/sshd';

export interface TestSshd {
  port: number;
  dir: string;
  /** The pid of the running sshd (the listener). */
  pid(): number;
  /** The authorized_keys file of key-only servers. */
  authorizedKeys: string;
  /** The temporary directory standing in for /root inside a password server's namespace. */
  rootHome: string;
  /** Path of the current host key's public half. */
  hostKeyPub(): string;
  /** Everything sshd logged (it runs with -e). */
  log(): string;
  /** With `sudoUser`: makes the stand-in sudo ask for a password (true) or not (false). */
  sudoNeedsPassword(on: boolean): Promise<void>;
  /** Stops and starts it again on the same port; with `newHostKey`, with a freshly made host key. */
  restart(opts?: { newHostKey?: boolean }): Promise<void>;
  stop(): Promise<void>;
}

export interface TestSshdOptions {
  /**
   * Loopback addresses to listen on (default 127.0.0.1), all on the same port: one server then
   * stands for several machines, which a cluster file needs at distinct addresses.
   */
  listen?: string[];
  /** Accept this password for root (in a private mount namespace; see the header). */
  password?: string;
  /**
   * Adds this user (uid 4242, shell /bin/sh) through a copy of /etc/passwd bind-mounted in the
   * namespace, and a stand-in `sudo` in /usr/local/bin (a directory of its own, bind-mounted
   * there) that insists on Vigil's `sudo -n --` and runs the command as the same user with
   * VIGIL_FAKE_SUDO=1 set, or says a password is required while `sudoNeedsPassword()` is on.
   * (This machine has no sudo, and a real one would need a sudoers file of the host.)
   */
  sudoUser?: string;
}

const FAKE_SUDO = `#!/bin/sh
# Test stand-in for sudo (src/testing/sshd.ts): checks the flags Vigil passes, elevates nothing.
if [ -e /usr/local/bin/.needs-password ]; then echo 'sudo: a password is required' >&2; exit 1; fi
if [ "$1" != -n ] || [ "$2" != -- ]; then echo "fake sudo: unexpected arguments: $*" >&2; exit 99; fi
shift 2
VIGIL_FAKE_SUDO=1 exec "$@"
`;

/** Why the test sshd cannot run here, or undefined when it can. */
export function sshdUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (sshd checks the owner of its files and switches users)';
  return undefined;
}

export async function startTestSshd(opts: TestSshdOptions = {}): Promise<TestSshd> {
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 }); // sshd's privilege-separation directory
  const dir = await mkdtemp(join(tmpdir(), 'vigil-sshd-'));
  const port = await freePort();
  const listen = opts.listen ?? ['127.0.0.1'];
  const rootHome = join(dir, 'root-home');
  await mkdir(rootHome, { mode: 0o700 });
  const authorizedKeys = join(dir, 'authorized_keys');
  await writeFile(authorizedKeys, '', { mode: 0o600 });
  let generation = 0;
  const keyPath = () => join(dir, `host_key_${generation}`);

  const newHostKey = async () => {
    generation++;
    const pair = generateAdminKey('vigil-test-host'); // an ed25519 key in OpenSSH's format serves as a host key too
    await writeFile(keyPath(), pair.privateKey, { mode: 0o600 });
    await writeFile(`${keyPath()}.pub`, `${pair.publicKey}\n`, { mode: 0o644 });
  };

  const writeConfig = async () => {
    const lines = [
      `Port ${port}`,
      ...listen.map((a) => `ListenAddress ${a}`),
      `HostKey ${keyPath()}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      'UsePAM no',
      'StrictModes no', // the temporary directory sits under /tmp, which is world-writable
      'PubkeyAuthentication yes',
      'KbdInteractiveAuthentication no',
      'LogLevel VERBOSE',
      'MaxStartups 50',
      ...(opts.password
        ? ['PermitRootLogin yes', 'PasswordAuthentication yes', 'AuthorizedKeysFile .ssh/authorized_keys']
        : ['PermitRootLogin prohibit-password', 'PasswordAuthentication no', `AuthorizedKeysFile ${authorizedKeys}`]),
    ];
    await writeFile(join(dir, 'sshd_config'), `${lines.join('\n')}\n`, { mode: 0o600 });
  };

  let shadow = '/etc/shadow';
  if (opts.password) {
    const hash = (await run('openssl', ['passwd', '-6', '-stdin'], { input: `${opts.password}\n` })).stdout.trim();
    const lines = (await readFile('/etc/shadow', 'utf8')).split('\n').map((l) => {
      const f = l.split(':');
      if (f[0] !== 'root') return l;
      f[1] = hash;
      return f.join(':');
    });
    shadow = join(dir, 'shadow');
    await writeFile(shadow, lines.join('\n'), { mode: 0o640 });
  }

  // Bind mounts made in the namespace before sshd starts: [source, target].
  const binds: [string, string][] = [[rootHome, '/root']];
  if (shadow !== '/etc/shadow') binds.push([shadow, '/etc/shadow']);
  const sudoDir = join(dir, 'sudo-bin');
  if (opts.sudoUser) {
    const passwd = join(dir, 'passwd');
    await writeFile(passwd, `${(await readFile('/etc/passwd', 'utf8')).trimEnd()}\n${opts.sudoUser}:x:4242:65534:vigil test:/nonexistent:/bin/sh\n`, {
      mode: 0o644,
    });
    await mkdir(sudoDir, { mode: 0o755 });
    await writeFile(join(sudoDir, 'sudo'), FAKE_SUDO, { mode: 0o755 });
    binds.push([passwd, '/etc/passwd'], [sudoDir, '/usr/local/bin']);
    // sshd reads authorized_keys as the user: let it through the directory to that one file.
    await chmod(dir, 0o711);
    await chmod(authorizedKeys, 0o644);
  }

  let child: ChildProcess | undefined;
  let log = '';
  const start = async () => {
    const config = join(dir, 'sshd_config');
    // /root is always replaced by a temporary directory: root's own dotfiles (a .bashrc that
    // runs pyenv or prints a banner) would slow down or garble every command, and nothing a test
    // does may reach the real /root/.ssh.
    // Positional parameters past $9 need braces: "${10}".
    const mounts = binds.map((_, i) => `mount --bind "\${${2 * i + 3}}" "\${${2 * i + 4}}"`).join(' && ');
    const args = [
      '--mount',
      '--propagation',
      'private',
      '--',
      'sh',
      '-c',
      `${mounts} && exec "$1" -D -e -f "$2"`,
      'vigil-test-sshd',
      SSHD,
      config,
      ...binds.flat(),
    ];
    // unshare and sh exec into sshd: the pid started here is sshd's.
    const cmd = 'unshare';
    const c = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    c.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const deadline = performance.now() + 10_000;
    const from = log.length; // after a restart, the first start's line is still in the log
    while (!listen.every((a) => log.includes(`Server listening on ${a} port ${port}`, from))) {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`sshd exited at start:\n${log}`);
      if (performance.now() > deadline) {
        await stopChild();
        throw new Error(`sshd did not listen within 10 s:\n${log}`);
      }
      await sleep(20);
    }
  };

  const stopChild = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null || c.pid === undefined) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    process.kill(c.pid, 'SIGTERM');
    const timer = setTimeout(() => {
      if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) process.kill(c.pid, 'SIGKILL');
    }, 3000);
    await exited;
    clearTimeout(timer);
  };

  await newHostKey();
  await writeConfig();
  try {
    await start();
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  return {
    port,
    dir,
    authorizedKeys,
    rootHome,
    pid: () => child?.pid ?? -1,
    sudoNeedsPassword: async (on) => {
      if (on) await writeFile(join(sudoDir, '.needs-password'), '');
      else await rm(join(sudoDir, '.needs-password'), { force: true });
    },
    hostKeyPub: () => `${keyPath()}.pub`,
    log: () => log,
    restart: async (o = {}) => {
      await stopChild();
      if (o.newHostKey) {
        await newHostKey();
        await writeConfig();
      }
      await start();
    },
    stop: async () => {
      await stopChild();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
