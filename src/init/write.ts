/**
 * Writing what `vigil init` makes, all or nothing: every file is first written into a staging
 * directory inside the target directory (same file system), checked there (the cluster and
 * secrets files through their loaders, the PKI through loadPki), the machines are contacted from
 * there (host keys pinned into the staged known_hosts, the admin key installed with a password
 * where one was given), and only then is each entry renamed into place. An error at any step
 * removes the staging directory and takes the admin key back off the machines it was put on;
 * nothing half-written is left. Files replaced under --force are kept in a backup directory.
 *
 * What is written (modes are set explicitly, whatever the umask):
 *   vigil.yaml 644, vigil.secrets.yaml 600, dashboard-admin.password 600, vigil.known_hosts 644,
 *   pki/ (755): ca.pem 644, ca.key 600, admin.pem 644, admin.key 600,
 *   ssh/ (700): id_ed25519 600, id_ed25519.pub 644.
 */
import { access, chmod, copyFile, mkdir, mkdtemp, open, readdir, rename, rm, rmdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { loadCluster, loadSecrets } from '../config/load.ts';
import type { Machine } from '../config/schema.ts';
import { caFiles, createClusterCa, issueCertificate, loadPki, writePki } from '../pki/ca.ts';
import {
  KNOWN_HOSTS_FILE,
  generateAdminKey,
  installAdminKey,
  openSsh,
  pinHostKey,
  removeAdminKey,
  sshTarget,
  type AdminKeyPair,
  type ScannedHostKey,
  type SshTarget,
} from '../remote/ssh.ts';
import { VigilError, problem } from '../util/errors.ts';
import type { InitAnswers } from './answers.ts';
import { hashPassword, newDashboardPassword } from '../dashboard/users.ts';
import { CLUSTER_FILE, SECRETS_FILE, withDashboardAdmin, type RenderedInit } from './render.ts';

export const PKI_DIR_NAME = 'pki';
export const SSH_DIR_NAME = 'ssh';
/** Everything init writes into the target directory, in the order it is renamed into place. */
/** The dashboard admin's generated password, for the admin to read once (docs/dashboard.md); the secrets file holds its hash. */
export const DASHBOARD_PASSWORD_FILE = 'dashboard-admin.password';
export const INIT_ENTRIES = [SECRETS_FILE, DASHBOARD_PASSWORD_FILE, PKI_DIR_NAME, SSH_DIR_NAME, KNOWN_HOSTS_FILE, CLUSTER_FILE] as const;

export type Progress = (line: string) => void;

export type HostKeyDecision = (key: ScannedHostKey, target: SshTarget) => boolean | Promise<boolean>;

export interface WriteOptions {
  dir: string;
  force?: boolean;
  /** `skip` (--no-ssh): no machine is contacted. Otherwise how a first-contact host key is accepted. */
  ssh: 'skip' | { confirm: HostKeyDecision; connectTimeoutMs?: number };
  progress?: Progress;
}

export interface MachineContact {
  machine: string;
  address: string;
  port: number;
  /** `skipped` with --no-ssh. */
  pin: 'pinned' | 'already-pinned' | 'skipped';
  type?: string;
  fingerprint?: string;
  /** The admin key: installed now, already there, or not installed (no password given). */
  key: 'added' | 'present' | 'not-installed' | 'skipped';
}

export interface InitResult {
  dir: string;
  written: string[];
  machines: MachineContact[];
  /** Where replaced files went (with --force). */
  backup?: string;
}

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

/** Writes a file with exactly this mode (the umask does not apply), failing if it exists. */
async function writeNew(path: string, content: string, mode: number): Promise<void> {
  const fh = await open(path, 'wx', mode);
  try {
    await fh.writeFile(content);
    await fh.chmod(mode);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** The files of init that exist already in `dir`. */
export async function existingEntries(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of INIT_ENTRIES) if (await exists(join(dir, e))) out.push(e);
  return out;
}

/** Writes everything init makes into `opts.dir`, contacting the machines unless `ssh: 'skip'`. */
export async function writeInit(r: RenderedInit, answers: InitAnswers, opts: WriteOptions): Promise<InitResult> {
  const say = opts.progress ?? (() => {});
  const dir = resolve(opts.dir);
  const createdDir = !(await exists(dir));
  const present = createdDir ? [] : await existingEntries(dir);
  if (present.length > 0 && !opts.force) {
    throw new VigilError('INIT', [
      problem(
        dir,
        `${present.join(', ')} already ${present.length === 1 ? 'exists' : 'exist'}: init does not overwrite a cluster's files`,
        'edit vigil.yaml by hand to change a cluster (then `vigil validate`); to start over pass --force (the old files are kept in a backup directory); or write elsewhere with --dir',
      ),
    ]);
  }
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const stage = await mkdtemp(join(dir, '.vigil-init-'));
  await chmod(stage, 0o700);
  const installed: { target: SshTarget; key: AdminKeyPair }[] = [];
  let knownHosts = join(stage, KNOWN_HOSTS_FILE);
  try {
    // 1. The cluster and secrets files, read back through the loaders every command uses.
    await writeNew(join(stage, CLUSTER_FILE), r.clusterYaml, 0o644);
    // The dashboard's first user: admin, with a generated password given in a file of its own (the secrets file holds the hash).
    const dashboardPassword = newDashboardPassword();
    await writeNew(join(stage, SECRETS_FILE), withDashboardAdmin(r.secretsYaml, await hashPassword(dashboardPassword)), 0o600);
    await writeNew(join(stage, DASHBOARD_PASSWORD_FILE), `${dashboardPassword}\n`, 0o600);
    const cluster = await loadCluster(join(stage, CLUSTER_FILE));
    await loadSecrets(cluster);
    say(`files: ${CLUSTER_FILE} and ${SECRETS_FILE} (passwords generated: ${r.generated.join(', ') || 'none'})`);
    say(`dashboard: user admin; its password is in ${DASHBOARD_PASSWORD_FILE} (read it, then delete the file)`);

    // 2. The cluster CA and the admin's client certificate (src/ops/context.ts reads pki/ beside the cluster file).
    const ca = await createClusterCa({ clusterName: cluster.cluster.name });
    const admin = await issueCertificate(ca, { commonName: 'admin', ipAddresses: [], usage: 'client' });
    await writePki(join(stage, PKI_DIR_NAME), { ...caFiles(ca), 'admin.pem': admin.certPem, 'admin.key': admin.keyPem });
    await chmod(join(stage, PKI_DIR_NAME), 0o755);
    await loadPki(join(stage, PKI_DIR_NAME), 'admin');
    say(`pki: cluster CA "${cluster.cluster.name}" and the admin certificate`);

    // 3. The admin SSH key pair.
    const key = generateAdminKey(`vigil-admin@${cluster.cluster.name}`);
    await mkdir(join(stage, SSH_DIR_NAME), { mode: 0o700 });
    await chmod(join(stage, SSH_DIR_NAME), 0o700);
    await writeNew(join(stage, SSH_DIR_NAME, 'id_ed25519'), `${key.privateKey.trimEnd()}\n`, 0o600);
    await writeNew(join(stage, SSH_DIR_NAME, 'id_ed25519.pub'), `${key.publicKey}\n`, 0o644);
    say('ssh: admin key pair ssh/id_ed25519');

    // 4. The machines. Pins already in a replaced known_hosts are kept and checked, never overridden.
    if (opts.force && present.includes(KNOWN_HOSTS_FILE)) await copyFile(join(dir, KNOWN_HOSTS_FILE), knownHosts);
    const machines =
      opts.ssh === 'skip' ? cluster.machines.map(skipped) : await contactMachines(cluster.machines, answers, key, knownHosts, opts.ssh, installed, say);
    if (await exists(knownHosts)) await chmod(knownHosts, 0o644);
    else knownHosts = '';

    // 5. Into place; the cluster file last, so a vigil.yaml beside the directory means the rest is there.
    const backup = present.length > 0 ? join(dir, `.vigil-init-backup-${new Date().toISOString().replace(/[:.]/g, '-')}`) : undefined;
    const written = await moveIntoPlace(stage, dir, backup);
    await rm(stage, { recursive: true, force: true });
    return { dir, written, machines, ...(backup ? { backup } : {}) };
  } catch (err) {
    await undoKeys(installed, knownHosts, say);
    await rm(stage, { recursive: true, force: true });
    if (createdDir) await rmdir(dir).catch(() => {});
    throw err;
  }
}

const skipped = (m: Machine): MachineContact => ({ machine: m.name, address: m.address, port: m.sshPort, pin: 'skipped', key: 'skipped' });

async function contactMachines(
  machines: Machine[],
  answers: InitAnswers,
  key: AdminKeyPair,
  knownHosts: string,
  ssh: { confirm: HostKeyDecision; connectTimeoutMs?: number },
  installed: { target: SshTarget; key: AdminKeyPair }[],
  say: Progress,
): Promise<MachineContact[]> {
  const timeoutMs = ssh.connectTimeoutMs;
  const out: MachineContact[] = [];
  // Every host key first: a wrong address or a refused key stops init before any machine is changed.
  for (const m of machines) {
    const t = sshTarget(m);
    const pin = await pinHostKey(t, knownHosts, { confirm: ssh.confirm, ...(timeoutMs ? { timeoutMs } : {}) });
    say(`ssh: ${m.name} ${m.address}:${m.sshPort} ${pin.type} ${pin.fingerprint} ${pin.status === 'pinned' ? 'pinned' : '(already pinned)'}`);
    out.push({ machine: m.name, address: m.address, port: m.sshPort, pin: pin.status, type: pin.type, fingerprint: pin.fingerprint, key: 'not-installed' });
  }
  for (const [i, m] of machines.entries()) {
    const password = answers.machines.find((a) => a.name === m.name)?.sshPassword ?? answers.ssh.password;
    if (password === undefined) continue;
    const t = sshTarget(m);
    const status = await installAdminKey(t, { knownHostsFile: knownHosts, password, publicKey: key.publicKey, ...(timeoutMs ? { timeoutMs } : {}) });
    if (status === 'added') installed.push({ target: t, key });
    // Log in with the key as every later command will (through sudo -n for a user other than root).
    const shell = openSsh(t, { knownHostsFile: knownHosts, privateKey: key.privateKey, ...(timeoutMs ? { connectTimeoutMs: timeoutMs } : {}) });
    try {
      const r = await shell.exec(['true'], { timeoutMs: 15_000 });
      if (r.code !== 0)
        throw new VigilError('REMOTE_COMMAND', [
          problem(
            `${m.name} (${m.sshUser}@${m.address}:${m.sshPort})`,
            `a test command failed (exit ${r.code}): ${r.stderr.trim().slice(0, 200)}`,
            `log in as ${m.sshUser} and check that commands run (and \`sudo -n true\` for a user other than root)`,
          ),
        ]);
    } finally {
      await shell.close();
    }
    out[i]!.key = status;
    say(`ssh: ${m.name} admin key ${status === 'added' ? 'installed' : 'already installed'} for ${m.sshUser}; the password is not kept`);
  }
  return out;
}

/** Takes the admin key back off the machines init put it on, after a failure. */
async function undoKeys(installed: { target: SshTarget; key: AdminKeyPair }[], knownHosts: string, say: Progress): Promise<void> {
  for (const { target, key } of installed) {
    try {
      await removeAdminKey(target, { knownHostsFile: knownHosts, privateKey: key.privateKey, publicKey: key.publicKey });
      say(`ssh: ${target.machine}: the admin key installed by this run was removed again`);
    } catch {
      say(
        `ssh: ${target.machine}: could not remove the admin key this run installed (a key nobody holds any more: remove the line "vigil-admin@..." from ~${target.user}/.ssh/authorized_keys)`,
      );
    }
  }
}

/** Renames each staged entry into `dir`, moving what it replaces into `backup`; undoes the moves on a failure. */
async function moveIntoPlace(stage: string, dir: string, backup: string | undefined): Promise<string[]> {
  const staged = new Set(await readdir(stage));
  const done: { name: string; replaced: boolean; placed: boolean }[] = [];
  try {
    for (const name of INIT_ENTRIES) {
      if (!staged.has(name)) continue;
      const step = { name, replaced: false, placed: false };
      done.push(step);
      if (backup && (await exists(join(dir, name)))) {
        await mkdir(backup, { recursive: true, mode: 0o700 });
        await rename(join(dir, name), join(backup, name));
        step.replaced = true;
      }
      await rename(join(stage, name), join(dir, name));
      step.placed = true;
    }
  } catch (err) {
    for (const { name, replaced, placed } of done.reverse()) {
      if (placed) await rename(join(dir, name), join(stage, name)).catch(() => {});
      if (replaced && backup) await rename(join(backup, name), join(dir, name)).catch(() => {});
    }
    if (backup) await rmdir(backup).catch(() => {});
    throw err;
  }
  return done.map((d) => d.name);
}

/**
 * `vigil init --pin-only`: pins the host key of every machine of the existing cluster file in
 * `dir` that has no pin yet (after a machine was added, or an old pin was removed with
 * `ssh-keygen -R` once the new key was checked), and checks the ones that have. Writes only
 * vigil.known_hosts.
 */
export async function pinOnly(dir: string, opts: { confirm: HostKeyDecision; connectTimeoutMs?: number; progress?: Progress }): Promise<MachineContact[]> {
  const say = opts.progress ?? (() => {});
  const cluster = await loadCluster(join(dir, CLUSTER_FILE));
  const knownHosts = join(dir, KNOWN_HOSTS_FILE);
  const out: MachineContact[] = [];
  for (const m of cluster.machines) {
    const pin = await pinHostKey(sshTarget(m), knownHosts, { confirm: opts.confirm, ...(opts.connectTimeoutMs ? { timeoutMs: opts.connectTimeoutMs } : {}) });
    say(`ssh: ${m.name} ${m.address}:${m.sshPort} ${pin.type} ${pin.fingerprint} ${pin.status === 'pinned' ? 'pinned' : '(already pinned)'}`);
    out.push({ machine: m.name, address: m.address, port: m.sshPort, pin: pin.status, type: pin.type, fingerprint: pin.fingerprint, key: 'skipped' });
  }
  return out;
}
