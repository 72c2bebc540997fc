/**
 * `vigil lab up --bare`: the machines of a topology as they come out of an OS install, for
 * `vigil init` and `vigil apply` to turn into a cluster. Each is a Debian release's bare root
 * filesystem (systemd, sshd, sudo, apt: rootfs.ts) booted with real systemd as PID 1 (boot.ts),
 * with its own root password, its own SSH host keys and apt pointed at the lab's package mirror
 * (mirror.ts): `vigil apply` installs PostgreSQL, Patroni, etcd, HAProxy and nginx with apt, and
 * runs its units under the machine's own systemd. The lab hands over an answers file for
 * `vigil init --answers` (mode 600: it holds the root password, which init uses once).
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { chmod, chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { PATHS } from '../layout/paths.ts';
import { PRESET_ROLES, type Role } from '../config/schema.ts';
import { LabShell } from './shell.ts';
import { VigilError, problem } from '../util/errors.ts';
import { run, waitFor } from '../util/exec.ts';
import * as net from './net.ts';
import { bootMachine, consoleLog, prepareMachineIdentity } from './boot.ts';
import { claimLabDir, labDown, waitBooted } from './lab.ts';
import { mirrorSources, startMirror } from './mirror.ts';
import { LAB_DIR, machineRoot } from './paths.ts';
import { DEFAULT_RELEASE, RELEASE_INFO, requireRootfs, rootfsVersions, upstreamVersion, type Release } from './rootfs.ts';
import { labApplication, needsTtl20 } from './topology.ts';
import { writeState, type LabState } from './state.ts';
import { labMachines, type LabShape } from './topology.ts';

export const answersPath = (): string => join(LAB_DIR, 'answers.yaml');
const SSH_PORT = 22;

export interface BareOptions {
  /**
   * The SSH user the answers name (default root). Another name gets an account of its own on each
   * machine, with the lab's password, a home under /home and password-less sudo, as an admin
   * prepares machines for a user other than root: `apply` then runs everything through `sudo -n`.
   */
  sshUser?: string;
}

/** Builds and boots the bare machines; returns the answers file's path. */
export async function labUpBare(shape: LabShape, progress: (line: string) => void, opts: BareOptions = {}): Promise<string> {
  const user = opts.sshUser ?? 'root';
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(user))
    throw new VigilError('USAGE', [
      problem('--ssh-user', `${JSON.stringify(user)} is not a user name`, 'use lower-case letters, digits, _ and -, starting with a letter, e.g. vigil'),
    ]);
  if (user === 'postgres' || user === 'etcd' || user === 'haproxy')
    throw new VigilError('USAGE', [problem('--ssh-user', `${user} is an account the cluster's packages create`, 'pick another name, e.g. vigil-admin')]);
  const release: Release = shape.release ?? DEFAULT_RELEASE;
  const lower = requireRootfs(release, 'bare');
  const mirror = requireRootfs(release, 'mirror');
  await claimLabDir();
  const machines = labMachines(shape);
  const packages = await rootfsVersions(mirror, 'mirror');
  const state: LabState = { version: 1, shape: { ...shape, release }, machines, createdAt: new Date().toISOString(), bare: true, packages };
  await writeState(state);
  try {
    const password = randomBytes(15).toString('base64url');
    const hash = (await run('openssl', ['passwd', '-6', '-stdin'], { input: `${password}\n` })).stdout.trim();
    progress(`network: bridge, the lab's package mirror and ${machines.length} bare ${release} machines (systemd, sshd, apt)`);
    await net.createBridge();
    await startMirror(mirror);
    for (const m of machines) {
      await net.createMachineNet(m.name, m.address);
      await net.mountOverlay(m.name, lower);
      await prepareMachine(m.name, hash, user);
      await bootMachine(m.name);
    }
    for (const m of machines) await waitBooted(m.name);
    // As an installer leaves a machine: package lists fetched (here from the lab's mirror).
    await Promise.all(
      machines.map(async (m) => {
        const r = await new LabShell(m.name).exec(['apt-get', 'update', '-q'], { timeoutMs: 120_000 });
        if (r.code !== 0)
          throw new VigilError('LAB', [
            problem(m.name, `apt-get update from the lab's mirror failed: ${r.stderr.trim() || r.stdout.trim()}`, `read ${join(LAB_DIR, 'mirror.log')}`),
          ]);
      }),
    );
    await waitFor(
      'sshd on every machine',
      async () => ((await Promise.all(machines.map((m) => sshAnswers(m.address)))).every(Boolean) ? true : undefined),
      60_000,
      250,
    ).catch((err: Error) => {
      throw new VigilError('LAB', [
        problem('vigil lab up --bare', err.message, `read the machines' consoles: ${machines.map((m) => consoleLog(m.name)).join(', ')}`),
      ]);
    });
    const answers = {
      cluster: { name: 'lab' },
      ssh: { user, port: SSH_PORT, password },
      ...machinesAnswer(shape.topology, machines),
      // :443 as in the lab's own cluster file; apply issues the certificate from the cluster CA.
      proxy: { tlsBundle: PATHS.tlsBundle },
      // What the release's mirror offers: its PostgreSQL, and Patroni 3.2+'s shortest ttl.
      database: { postgresVersion: RELEASE_INFO[release].postgres },
      // The reference application as in the lab's own cluster file: its activation hook, a short start-up.
      application: labApplication({}),
      ...(needsTtl20(upstreamVersion(packages.patroni)) ? { timers: { ttlSeconds: 20 } } : {}),
    };
    const file = answersPath();
    await writeFile(
      file,
      `# Generated by \`vigil lab up --bare\`: answers for \`vigil init --answers ${file}\`.\n# It holds the machines' ${user} password (used once by init to install the admin key): mode 600.\n${stringify(answers)}`,
      { mode: 0o600 },
    );
    progress(
      `ready: ${machines.map((m) => `${m.name} ${m.address}`).join(', ')}; ${user === 'root' ? 'root' : `${user} (password-less sudo)`} password and addresses in ${file}`,
    );
    return file;
  } catch (err) {
    progress('bare lab up failed; tearing down what it made');
    await labDown();
    throw err;
  }
}

/**
 * What an installer leaves that is the machine's own: its name, root's password (SHA-512 crypt;
 * the password went through stdin), SSH host keys of its own, root allowed to log in with a
 * password (once, for init to install the admin key), apt pointed at the lab's mirror, and, for a
 * user other than root, that account with the same password and sudo without a password.
 * Written through the machine's overlay, before it boots.
 */
async function prepareMachine(host: string, hash: string, user: string): Promise<void> {
  const root = machineRoot(host);
  const at = (p: string) => join(root, p);
  await prepareMachineIdentity(host);
  const shadow = (await readFile(at('/etc/shadow'), 'utf8')).split('\n');
  const i = shadow.findIndex((l) => l.startsWith('root:'));
  if (i < 0) throw new VigilError('LAB', [problem(at('/etc/shadow'), 'has no root entry', 'rebuild the bare root filesystem: `vigil lab rootfs`')]);
  const fields = shadow[i]!.split(':');
  fields[1] = hash;
  shadow[i] = fields.join(':');
  if (user !== 'root') shadow.splice(shadow.length - (shadow.at(-1) === '' ? 1 : 0), 0, `${user}:${hash}:20000:0:99999:7:::`);
  await writeFile(at('/etc/shadow'), shadow.join('\n'), { mode: 0o640 });
  await mkdir(at('/etc/ssh/sshd_config.d'), { recursive: true });
  // sshd keeps the first value it reads; Debian's sshd_config includes the drop-ins first.
  await writeFile(
    at('/etc/ssh/sshd_config.d/00-vigil-lab.conf'),
    '# Written by `vigil lab up --bare`: root may log in with its password, as after an install that allows it.\nPermitRootLogin yes\nPasswordAuthentication yes\n',
  );
  await mkdir(at('/root/.ssh'), { recursive: true, mode: 0o700 });
  await writeFile(at('/etc/apt/sources.list.d/vigil-lab.sources'), mirrorSources());
  if (user !== 'root') await addSudoUser(root, user);
}

/** The account in the machine's own /etc/passwd and /etc/group, its home, and a sudo rule without a password. */
async function addSudoUser(root: string, user: string): Promise<void> {
  const at = (p: string) => join(root, p);
  const passwd = await readFile(at('/etc/passwd'), 'utf8');
  const group = await readFile(at('/etc/group'), 'utf8');
  const taken = (text: string) => new Set(text.split('\n').map((l) => Number(l.split(':')[2])));
  const used = new Set([...taken(passwd), ...taken(group)]);
  let uid = 1000;
  while (used.has(uid)) uid++;
  const nl = (t: string) => (t.endsWith('\n') ? t : `${t}\n`);
  await writeFile(at('/etc/passwd'), `${nl(passwd)}${user}:x:${uid}:${uid}:Vigil lab admin:/home/${user}:/bin/bash\n`);
  await writeFile(at('/etc/group'), `${nl(group)}${user}:x:${uid}:\n`);
  await mkdir(at(`/home/${user}`), { recursive: true, mode: 0o700 });
  await chown(at(`/home/${user}`), uid, uid);
  await mkdir(at('/etc/sudoers.d'), { recursive: true, mode: 0o755 });
  await writeFile(at('/etc/sudoers.d/vigil'), `${user} ALL=(ALL) NOPASSWD: ALL\n`, { mode: 0o440 });
  await chmod(at('/etc/sudoers.d/vigil'), 0o440);
}

/**
 * The answers' topology and machines: the preset with addresses only when the lab's machines are
 * exactly the preset's, else `custom` with every machine's roles (extra app or db machines, more
 * etcd members).
 */
function machinesAnswer(
  topology: LabShape['topology'],
  machines: { name: string; address: string; roles: Role[] }[],
): { topology: string; machines: Record<string, unknown> } {
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
