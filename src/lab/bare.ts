/**
 * `vigil lab up --bare`: the machines of a topology as they come out of an OS install, running
 * only sshd, for `vigil init` and `vigil apply` to turn into a cluster. Each machine gets its own
 * root password (its own /etc/shadow, bind-mounted in its mount namespace: this host's accounts are
 * never touched) and its own SSH host key. The lab hands over an answers file for
 * `vigil init --answers` (mode 600: it holds the root password, which init uses once).
 *
 * No systemd runs as PID 1 in a lab machine, so each bare machine gets the lab's service manager
 * (src/lab/init): a daemon in the machine's namespaces that starts the units enabled in the
 * machine's own /etc/systemd/system, and a `systemctl` (bind-mounted over /usr/bin/systemctl in
 * the machine's mount namespace only) that talks to it. sshd is a unit of it, ssh.service, as on
 * Debian; apply adds its own units the way it does on a real machine.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { access, chmod, chown, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { PATHS } from '../config/paths.ts';
import { PRESET_ROLES, type Role } from '../config/schema.ts';
import { UNITS } from '../render/systemd.ts';
import { LabShell } from '../remote/lab.ts';
import { VigilError, problem } from '../util/errors.ts';
import { run, waitFor } from '../util/exec.ts';
import * as net from './net.ts';
import { claimLabDir, labDown } from './lab.ts';
import { LAB_DIR, hostRoot, mountNsPath, ownHostPathOf } from './paths.ts';
import { spawnIn } from './procs.ts';
import { LAB_HOST_KEY, LAB_SSHD_CONFIG, LAB_SSH_UNIT, labSshUnit, labSshdConfig } from './sshd.ts';
import { writeState, type LabState } from './state.ts';
import { labMachines, type LabShape } from './topology.ts';
import { createKeyPair } from '../sync/keys.ts';
import { bundleLabInit, writeSystemctlShim } from './init/bundle.ts';
import { BOOT_TARGET, unitLogPath } from './init/files.ts';

export const answersPath = (): string => join(LAB_DIR, 'answers.yaml');
const SSH_PORT = 22;
/** The service manager and systemctl, bundled once per lab; every bare machine runs this one file. */
const labInitPath = () => join(LAB_DIR, 'bin', 'lab-init.mjs');
/** The script bind-mounted over each bare machine's /usr/bin/systemctl. */
const systemctlShimPath = () => join(LAB_DIR, 'bin', 'systemctl');
const SYSTEMCTL = '/usr/bin/systemctl';

export interface BareOptions {
  /**
   * The SSH user the answers name (default root). Another name gets an account of its own on each
   * machine, with the lab's password, a home under /home and password-less sudo, as an admin
   * prepares machines for a user other than root: `apply` then runs everything through `sudo -n`.
   */
  sshUser?: string;
}

/** Builds the machines with sshd only; returns the answers file's path. */
export async function labUpBare(shape: LabShape, progress: (line: string) => void, opts: BareOptions = {}): Promise<string> {
  const user = opts.sshUser ?? 'root';
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(user)) throw new VigilError('USAGE', [problem('--ssh-user', `${JSON.stringify(user)} is not a user name`, 'use lower-case letters, digits, _ and -, starting with a letter, e.g. vigil')]);
  await claimLabDir();
  const machines = labMachines(shape);
  const state: LabState = { version: 1, shape, machines, createdAt: new Date().toISOString(), bare: true };
  await writeState(state);
  try {
    const password = randomBytes(15).toString('base64url');
    const accounts = await labAccounts(password, user);
    progress(`network: bridge and ${machines.length} bare machines (sshd only, started by the lab's service manager)`);
    await access(SYSTEMCTL).catch(() => {
      throw new VigilError('LAB', [problem(SYSTEMCTL, 'is missing on this host', "the bare lab binds its machines' systemctl over it: install systemd (apt-get install systemd)")]);
    });
    await bundleLabInit(labInitPath());
    await writeSystemctlShim(systemctlShimPath(), labInitPath());
    await net.createBridge();
    await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
    for (const m of machines) {
      await net.createMachineNet(m.name, m.address);
      await net.createMachineMounts(m.name);
      const shadowFile = join(hostRoot(m.name), 'shadow');
      await writeFile(shadowFile, accounts.shadow, { mode: 0o600 });
      await run('nsenter', [`--mount=${mountNsPath(m.name)}`, '--', 'mount', '--bind', shadowFile, '/etc/shadow']);
      if (accounts.user) await addSudoUser(m.name, accounts.user);
      await chmod(ownHostPathOf(m.name, '/root'), 0o700);
      await mkdir(dirname(ownHostPathOf(m.name, LAB_HOST_KEY)), { recursive: true, mode: 0o700 });
      await createKeyPair(ownHostPathOf(m.name, LAB_HOST_KEY), `host@${m.name}`);
      await writeFile(ownHostPathOf(m.name, LAB_SSHD_CONFIG), labSshdConfig({ address: m.address, port: SSH_PORT, bare: true }), { mode: 0o600 });
      await installSshUnit(m.name);
      await run('nsenter', [`--mount=${mountNsPath(m.name)}`, '--', 'mount', '--bind', systemctlShimPath(), SYSTEMCTL]);
      startLabInit(m.name);
    }
    await waitFor('sshd on every machine', async () => ((await Promise.all(machines.map((m) => sshAnswers(m.address)))).every(Boolean) ? true : undefined), 30_000, 250);
    const answers = {
      cluster: { name: 'lab' },
      ssh: { user, port: SSH_PORT, password },
      ...machinesAnswer(shape.topology, machines),
      // :443 as in the lab's own cluster file; apply issues the certificate from the cluster CA.
      proxy: { tlsBundle: PATHS.tlsBundle },
    };
    const file = answersPath();
    await writeFile(file, `# Generated by \`vigil lab up --bare\`: answers for \`vigil init --answers ${file}\`.\n# It holds the machines' ${user} password (used once by init to install the admin key): mode 600.\n${stringify(answers)}`, { mode: 0o600 });
    progress(`ready: ${machines.map((m) => `${m.name} ${m.address}`).join(', ')}; ${user === 'root' ? 'root' : `${user} (password-less sudo)`} password and addresses in ${file}`);
    return file;
  } catch (err) {
    progress('bare lab up failed; tearing down what it made');
    await labDown();
    throw err;
  }
}

/**
 * ssh.service in the machine's own /etc/systemd/system, enabled with the links `systemctl enable`
 * makes (the boot target's .wants and the sshd.service alias; absolute, as systemctl makes them:
 * they resolve inside the machine).
 */
async function installSshUnit(host: string): Promise<void> {
  const unit = `${PATHS.systemdDir}/${LAB_SSH_UNIT}`;
  await writeFile(ownHostPathOf(host, unit), labSshUnit(), { mode: 0o644 });
  const wants = ownHostPathOf(host, `${PATHS.systemdDir}/${BOOT_TARGET}.wants`);
  await mkdir(wants, { recursive: true, mode: 0o755 });
  await symlink(unit, join(wants, LAB_SSH_UNIT));
  await symlink(unit, ownHostPathOf(host, `${PATHS.systemdDir}/sshd.service`));
}

/**
 * Starts the machine's service manager, which starts the enabled units: what a machine does when
 * it boots. Its own log is the machine's /var/log/vigil/lab-init.log.
 */
export function startLabInit(host: string): void {
  spawnIn(host, { name: 'lab-init', argv: [process.execPath, labInitPath(), 'manager'] });
}

/** The unit of each process `vigil lab start` names, on a machine `vigil apply` installed. */
const PHASE_UNITS: Record<string, string> = {
  sshd: LAB_SSH_UNIT,
  etcd: UNITS.etcd,
  patroni: UNITS.patroni,
  haproxy: UNITS.haproxy,
  agent: UNITS.agent,
  observer: UNITS.observer,
};

/**
 * `vigil lab start HOST PROCESS` on a bare machine: `systemctl start UNIT` inside it, which does
 * nothing when the unit runs already (Restart= may have brought it back first).
 */
export async function startBareUnit(host: string, proc: string): Promise<void> {
  const unit = PHASE_UNITS[proc];
  if (!unit) throw new VigilError('USAGE', [problem(host, `no unit for ${proc}`, `use one of: ${Object.keys(PHASE_UNITS).join(', ')}`)]);
  const r = await new LabShell(host).exec(['systemctl', 'start', unit], { timeoutMs: 120_000 });
  if (r.code === 0) return;
  const fix = r.code === 5 ? `${unit} is not installed on ${host}: \`vigil apply\` installs it` : `read ${unitLogPath(unit)} on ${host} (\`vigil lab exec ${host} -- systemctl status ${unit}\`)`;
  throw new VigilError('LAB', [problem(host, `systemctl start ${unit} failed (exit ${r.code}): ${r.stderr.trim()}`, fix)]);
}

interface LabUser {
  name: string;
  uid: number;
  passwd: string;
  group: string;
}

/**
 * A machine's accounts: this host's /etc/shadow with root's password replaced by the lab's (hashed
 * with SHA-512 crypt; the password goes through stdin) and, for a user other than root, that user
 * added with the same password: its lines for the machine's own /etc/passwd, /etc/group and
 * /etc/shadow, under a user and group id this host does not use.
 */
async function labAccounts(password: string, user: string): Promise<{ shadow: string; user?: LabUser }> {
  const hash = (await run('openssl', ['passwd', '-6', '-stdin'], { input: `${password}\n` })).stdout.trim();
  const lines = (await readFile('/etc/shadow', 'utf8')).split('\n');
  const i = lines.findIndex((l) => l.startsWith('root:'));
  if (i < 0) throw new VigilError('LAB', [problem('/etc/shadow', 'has no root entry', 'this host needs a root account')]);
  const fields = lines[i]!.split(':');
  fields[1] = hash;
  lines[i] = fields.join(':');
  if (user === 'root') return { shadow: lines.join('\n') };
  const [passwd, group] = await Promise.all([readFile('/etc/passwd', 'utf8'), readFile('/etc/group', 'utf8')]);
  const taken = (text: string, name: string) => text.split('\n').some((l) => l.split(':')[0] === name);
  if (taken(passwd, user) || taken(group, user)) throw new VigilError('USAGE', [problem('--ssh-user', `${user} is an account of this host already, which the lab's machines share`, 'pick a name this host does not have, e.g. vigil-admin')]);
  const ids = new Set([...passwd.split('\n'), ...group.split('\n')].map((l) => Number(l.split(':')[2])));
  let uid = 2000;
  while (ids.has(uid)) uid++;
  const withNewline = (text: string) => (text.endsWith('\n') ? text : `${text}\n`);
  const shadow = `${withNewline(lines.join('\n'))}${user}:${hash}:20000:0:99999:7:::\n`;
  return {
    shadow,
    user: { name: user, uid, passwd: `${withNewline(passwd)}${user}:x:${uid}:${uid}:Vigil lab admin:/home/${user}:/bin/bash\n`, group: `${withNewline(group)}${user}:x:${uid}:\n` },
  };
}

/**
 * The user in the machine's own /etc/passwd and /etc/group, its home in the machine's own /home,
 * and a rule in the machine's own /etc/sudoers.d giving it sudo without a password. All are bind
 * mounts in the machine's mount namespace over files of the lab's: this host's are not touched.
 */
async function addSudoUser(host: string, u: LabUser): Promise<void> {
  const root = hostRoot(host);
  const bind = (source: string, target: string) => run('nsenter', [`--mount=${mountNsPath(host)}`, '--', 'mount', '--bind', source, target]);
  await writeFile(join(root, 'passwd'), u.passwd, { mode: 0o644 });
  await writeFile(join(root, 'group'), u.group, { mode: 0o644 });
  const home = join(root, 'home', u.name);
  await mkdir(join(root, 'home'), { mode: 0o755 });
  await mkdir(home, { mode: 0o700 });
  await chown(home, u.uid, u.uid);
  const sudoers = join(root, 'sudoers.d');
  await mkdir(sudoers, { recursive: true, mode: 0o755 });
  await writeFile(join(sudoers, 'vigil'), `${u.name} ALL=(ALL) NOPASSWD: ALL\n`, { mode: 0o440 });
  await access('/etc/sudoers.d').catch(() => {
    throw new VigilError('LAB', [problem('/etc/sudoers.d', 'is missing on this host', 'a bare lab with --ssh-user needs sudo: apt-get install sudo (scripts/setup.sh installs it)')]);
  });
  await bind(join(root, 'passwd'), '/etc/passwd');
  await bind(join(root, 'group'), '/etc/group');
  await bind(join(root, 'home'), '/home');
  await bind(sudoers, '/etc/sudoers.d');
}

/**
 * The answers' topology and machines: the preset with addresses only when the lab's machines are
 * exactly the preset's, else `custom` with every machine's roles (extra app or db machines, more
 * etcd members).
 */
function machinesAnswer(topology: LabShape['topology'], machines: { name: string; address: string; roles: Role[] }[]): { topology: string; machines: Record<string, unknown> } {
  const preset = PRESET_ROLES[topology];
  const same = machines.length === Object.keys(preset).length && machines.every((m) => preset[m.name]?.join() === m.roles.join());
  return same
    ? { topology, machines: Object.fromEntries(machines.map((m) => [m.name, { address: m.address }])) }
    : { topology: 'custom', machines: Object.fromEntries(machines.map((m) => [m.name, { address: m.address, roles: m.roles }])) };
}

/** sshd answers with its banner on the machine's port 22 (from this host, over the bridge). */
async function sshAnswers(address: string): Promise<boolean> {
  // From this process rather than a `bash -c` probe: this host's shell start-up files (pyenv)
  // can take longer than the probe's whole budget on a loaded machine.
  return new Promise((resolve) => {
    const sock = connect({ host: address, port: SSH_PORT });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(2000, () => done(false));
    sock.once('data', (d: Buffer) => done(d.subarray(0, 4).toString('latin1') === 'SSH-'));
    sock.once('error', () => done(false));
    sock.once('close', () => done(false));
  });
}
