/**
 * `vigil lab`: a topology on this one machine, each machine a pair of namespaces running the
 * real etcd, Patroni/PostgreSQL, HAProxy, nginx and the reference application from the
 * configuration Vigil generates for real machines.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, copyFile, mkdir, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadCluster, loadSecrets } from '../config/load.ts';
import { PATHS, ROOTS } from '../config/paths.ts';
import { withRole, type Cluster, type Machine, type Role, type Secrets } from '../config/schema.ts';
import { EMPTY_SERVER_STATE } from '../render/haproxy.ts';
import { renderMachine } from '../render/index.ts';
import { checkTlsBundle, createSelfSignedBundle } from '../render/tls.ts';
import { loadPki, caFiles, createClusterCa, issueCertificate, machinePkiFiles, pemBundle, writePki, type ClusterCa } from '../pki/ca.ts';
import { NGINX_DIRS } from '../render/nginx.ts';
import { appDbDifferences, ensureAppDb, readAppDbState } from '../db/appdb.ts';
import type { AgentStatus } from '../ha/model.ts';
import { agentStatus } from '../observer/observe.ts';
import { HaproxyRuntime } from '../proxy/runtime.ts';
import { VigilError, problem } from '../util/errors.ts';
import { sleep, waitFor } from '../util/exec.ts';
import { httpOk } from '../util/net.ts';
import { LabShell, labEnter } from '../remote/lab.ts';
import { bootMachine, isBooted, powerOff, removeLabCgroups } from './boot.ts';
import { stopMirror } from './mirror.ts';
import type { ExecResult } from '../remote/types.ts';
import * as net from './net.ts';
import { LAB_DIR, LAB_MOUNT_POINTS, clusterFilePath, hostPathOf, hostRoot, machineRoot, ownHostPathOf } from './paths.ts';
import { DEFAULT_RELEASE, RELEASE_INFO, describePackages, requireRootfs, rootfsVersions, upstreamVersion, type RootfsPackages } from './rootfs.ts';
import { listProcesses, signalProcesses, spawnIn, type LabProcess, type ProcessName, type SpawnSpec } from './procs.ts';
import { machineOf, readState, requireState, writeState, type LabState } from './state.ts';
import { BRIDGE_ADDRESS, labClusterYaml, labSecretsYaml, type LabShape } from './topology.ts';
import { LAB_HOST_KEY, LAB_SSHD_CONFIG, labSshdConfig } from './sshd.ts';
import { bundleReceiver } from '../sync/bundle.ts';
import { authorizedKeyLine, createKeyPair, knownHostLine } from '../sync/keys.ts';
import { SYNC_PATHS } from '../sync/protocol.ts';

export type Progress = (line: string) => void;
const quiet: Progress = () => {};

const VIGIL_BIN = fileURLToPath(new URL('../../bin/vigil.js', import.meta.url));

export interface LabHandle {
  cluster: Cluster;
  secrets: Secrets;
  state: LabState;
}

/** Loads the running lab's cluster and secrets. */
export async function openLab(): Promise<LabHandle> {
  const state = await requireState();
  const cluster = await loadCluster(clusterFilePath());
  return { state, cluster, secrets: await loadSecrets(cluster) };
}

/** Refuses to build over a lab that is up (or a crashed one's leftovers), then makes the lab's directory. */
export async function claimLabDir(): Promise<void> {
  if ((await readState()) || (await net.listLabNetns()).length > 0)
    throw new VigilError('LAB', [problem(LAB_DIR, 'a lab is already up (or an earlier one crashed)', 'run `vigil lab down` first')]);
  await mkdir(LAB_DIR, { recursive: true, mode: 0o700 });
}

/** Brings a lab up; on any failure tears down what it made, and the error carries the log tail. */
export async function labUp(shape: LabShape, progress: Progress = quiet, opts: { keepOnFailure?: boolean } = {}): Promise<LabHandle> {
  const release = shape.release ?? DEFAULT_RELEASE;
  const lower = release === 'host' ? undefined : requireRootfs(release); // before anything is made
  await claimLabDir();
  const packages = lower ? await rootfsVersions(lower) : undefined;
  shape = {
    ...shape,
    release,
    postgresVersion: shape.postgresVersion ?? (release === 'host' ? await installedPostgres() : RELEASE_INFO[release].postgres),
    patroniVersion: shape.patroniVersion ?? upstreamVersion(packages?.patroni),
  };
  await writeFile(clusterFilePath(), labClusterYaml(shape));
  await writeFile(join(LAB_DIR, 'vigil.secrets.yaml'), labSecretsYaml(), { mode: 0o600 });
  const cluster = await loadCluster(clusterFilePath());
  const secrets = await loadSecrets(cluster);
  const state: LabState = {
    version: 1,
    shape,
    ...(packages ? { packages } : {}),
    machines: cluster.machines.map((m) => ({ name: m.name, address: m.address, roles: m.roles })),
    createdAt: new Date().toISOString(),
  };
  await writeState(state);
  try {
    progress(`network: bridge and ${cluster.machines.length} machines; cluster CA and certificates`);
    const ca = await createLabPki(cluster);
    await net.createBridge();
    await mkdir(dirname(receiverPath()), { recursive: true });
    if (lower) progress(`machines: ${release} root filesystem (${describePackages(packages!)})`);
    for (const m of cluster.machines) {
      await net.createMachineNet(m.name, m.address);
      await net.createMachineMounts(m.name, lower ? { lower, readOnly: labReadOnlyPaths() } : undefined);
      await installFiles(cluster, secrets, m, ca);
    }
    await installFileSync(cluster);
    await startAll(cluster, secrets, progress);
    return { cluster, secrets, state };
  } catch (err) {
    const logs = await logTails(cluster.machines.map((m) => m.name));
    if (opts.keepOnFailure) progress('lab up failed; the lab is left as it is for inspection (`vigil lab down` removes it)');
    else {
      progress('lab up failed; tearing down what it made');
      await labDown(quiet);
    }
    if (err instanceof VigilError) throw err;
    throw new VigilError('LAB', [problem('vigil lab up', (err as Error).message, `read the logs above, fix the cause and run \`vigil lab up\` again\n${logs}`)], { cause: err });
  }
}

async function startAll(cluster: Cluster, secrets: Secrets, progress: Progress): Promise<void> {
  const apps = withRole(cluster, 'app');
  progress(`sshd: starting on ${apps.map((m) => m.name).join(', ')} (file sync)`);
  for (const m of apps) startPhase(m, 'sshd');
  const etcd = withRole(cluster, 'etcd');
  progress(`etcd: starting ${etcd.length} member(s)`);
  for (const m of etcd) startPhase(m, 'etcd');
  await waitFor('etcd to be healthy', async () => ((await Promise.all(etcd.map((m) => httpOk(`http://${m.address}:2379/health`)))).every(Boolean) ? true : undefined), 30_000);

  const db = withRole(cluster, 'db');
  progress(`patroni: starting ${db.length} PostgreSQL node(s)`);
  for (const m of db) startPhase(m, 'patroni');
  const primary = await waitFor('a Patroni primary', () => findPrimary(cluster), 90_000, 500);
  progress(`patroni: ${primary.name} is primary`);

  const proxies = withRole(cluster, 'proxy');
  progress('haproxy: starting');
  for (const m of proxies) startPhase(m, 'haproxy');
  const proxy = proxies[0]!;
  // As `vigil apply` does it: psql on the primary's local socket (src/db/appdb.ts).
  await waitFor(
    "the application's role and database on the primary",
    async () => {
      const shell = new LabShell(primary.name);
      const state = await readAppDbState(shell, cluster).catch(() => undefined);
      if (!state) return undefined;
      if (appDbDifferences(state, cluster, secrets).length) await ensureAppDb(shell, cluster, secrets, state);
      return true;
    },
    60_000,
    500,
  );
  if (cluster.database.replication === 'synchronous') {
    progress('patroni: waiting for a synchronous standby');
    await waitFor('a synchronous standby', () => hasSyncStandby(cluster, primary), 90_000, 500);
  }

  const agents = cluster.machines.filter(needsAgent);
  progress(`agents: starting on ${agents.map((m) => m.name).join(', ')}`);
  for (const m of agents) startPhase(m, 'agent');
  const observers = withRole(cluster, 'observer');
  progress(`observer: starting on ${observers.map((m) => m.name).join(', ')}; it picks the active app machine`);
  for (const m of observers) startPhase(m, 'observer');
  await waitFor('the application through the proxy', async () => ((await httpOk(`http://${proxy.address}:${cluster.proxy.httpPort}${cluster.application.healthPath}`)) ? true : undefined), 60_000, 500);
  progress(`ready: http://${proxy.address}:${cluster.proxy.httpPort}/ and postgresql://${proxy.address}:${cluster.proxy.postgresPort}`);
}

type LabMachine = Pick<Machine, 'name' | 'roles'>;
type Phase = 'sshd' | 'etcd' | 'patroni' | 'haproxy' | 'agent' | 'observer';
/** The order a machine's processes start in, at `lab up` and when a machine returns. */
const PHASES: Phase[] = ['sshd', 'etcd', 'patroni', 'haproxy', 'agent', 'observer'];

const needsAgent = (m: LabMachine) => m.roles.includes('app') || m.roles.includes('db');

function phaseSpecs(m: LabMachine, phase: Phase): SpawnSpec[] {
  const vigil = (...args: string[]) => [process.execPath, VIGIL_BIN, ...args];
  switch (phase) {
    case 'sshd':
      return m.roles.includes('app') ? [{ name: 'sshd', argv: ['/usr/sbin/sshd', '-D', '-e', '-f', LAB_SSHD_CONFIG] }] : [];
    case 'etcd':
      return m.roles.includes('etcd') ? [{ name: 'etcd', argv: ['etcd', '--config-file', PATHS.etcdConfig] }] : [];
    case 'patroni':
      return m.roles.includes('db') ? [{ name: 'patroni', argv: ['patroni', PATHS.patroniConfig], user: 'postgres' }] : [];
    case 'haproxy':
      return m.roles.includes('proxy') ? [{ name: 'haproxy', argv: ['haproxy', '-W', '-db', '-f', PATHS.haproxyConfig] }] : [];
    case 'agent': {
      if (!needsAgent(m)) return [];
      const lab = [...(m.roles.includes('app') ? ['--lab-services', LAB_SERVICES] : []), ...(m.roles.includes('db') ? ['--lab-database'] : [])];
      return [{ name: 'agent', argv: vigil('agent', '--node', m.name, ...lab) }];
    }
    case 'observer':
      return m.roles.includes('observer') ? [{ name: 'observer', argv: vigil('observer', '--node', m.name) }] : [];
  }
}

/** The application's services in the lab: what the agent starts on the active machine (systemd units elsewhere). */
const LAB_SERVICES = `${ROOTS.etc}/lab-services.json`;
const labServices = () => [
  { name: 'app', argv: [process.execPath, VIGIL_BIN, 'refapp', '--config', PATHS.refappConfig] },
  { name: 'nginx', argv: ['nginx', '-c', PATHS.nginxConfig, '-g', 'daemon off;'] },
];

function startPhase(m: LabMachine, phase: Phase): void {
  for (const spec of phaseSpecs(m, phase)) spawnIn(m.name, spec);
}

/** The lab's cluster CA, kept with the lab's state (as the admin's machine keeps it), and the admin's certificate. */
async function createLabPki(cluster: Cluster): Promise<ClusterCa> {
  const ca = await createClusterCa({ clusterName: cluster.cluster.name });
  const admin = await issueCertificate(ca, { commonName: 'admin', ipAddresses: [BRIDGE_ADDRESS], usage: 'client' });
  await writePki(join(LAB_DIR, 'pki'), { ...caFiles(ca), 'admin.pem': admin.certPem, 'admin.key': admin.keyPem });
  return ca;
}

/** Writes a machine's generated files into its own directories (what its mount namespace shows at the four roots). */
async function installFiles(cluster: Cluster, secrets: Secrets, m: Machine, ca: ClusterCa): Promise<void> {
  const postgres = await userIds(m.name, 'postgres');
  const dirs: [string, number, boolean][] = [
    [dirname(PATHS.pgData), 0o700, true],
    [PATHS.pgSocketDir, 0o775, true],
    [PATHS.etcdData, 0o700, false],
    [PATHS.refappAttachments, 0o755, false],
    ...Object.values(NGINX_DIRS).map((d): [string, number, boolean] => [d, 0o755, false]),
  ];
  for (const [dir, mode, pgOwned] of dirs) {
    const local = ownHostPathOf(m.name, dir);
    await mkdir(local, { recursive: true, mode });
    if (pgOwned) await chown(local, postgres.uid, postgres.gid);
  }
  if (m.roles.includes('proxy')) {
    // What the haproxy unit's ExecStartPre writes on a real machine: a state file with no server.
    await mkdir(dirname(ownHostPathOf(m.name, PATHS.haproxyState)), { recursive: true });
    await writeFile(ownHostPathOf(m.name, PATHS.haproxyState), EMPTY_SERVER_STATE);
  }
  if (m.roles.includes('proxy') && cluster.proxy.tlsBundle) {
    const bundle = ownHostPathOf(m.name, cluster.proxy.tlsBundle);
    await mkdir(dirname(bundle), { recursive: true });
    await createSelfSignedBundle(bundle, `${cluster.cluster.name}.lab`, [m.address]);
    await checkTlsBundle(bundle);
  }
  for (const f of renderMachine(cluster, secrets, m.name)) {
    if (!Object.values(ROOTS).some((r) => f.path.startsWith(`${r}/`))) continue; // e.g. systemd units: not used in the lab
    const local = ownHostPathOf(m.name, f.path);
    await mkdir(dirname(local), { recursive: true });
    await writeFile(local, f.content, { mode: f.mode });
    await chmod(local, f.mode);
    const [user = 'root'] = f.owner.split(':');
    if (user !== 'root') {
      const ids = await userIds(m.name, user);
      await chown(local, ids.uid, ids.gid);
    }
  }
  await installVigilFiles(cluster, m, ca);
}

/**
 * What `vigil apply` will put on a real machine for Vigil's own daemons: the cluster file, the
 * machine's certificate and key with the CA certificate (never the CA key), HAProxy's client
 * bundle on proxy machines, the secrets file on observer machines only.
 */
async function installVigilFiles(cluster: Cluster, m: Machine, ca: ClusterCa): Promise<void> {
  const files = await machinePkiFiles(ca, m, 'both');
  if (m.roles.includes('proxy')) files['haproxy-check.pem'] = pemBundle(files[`${m.name}.pem`]!, files[`${m.name}.key`]!);
  await writePki(ownHostPathOf(m.name, PATHS.pkiDir), files);
  await copyFile(clusterFilePath(), ownHostPathOf(m.name, PATHS.clusterFile));
  if (m.roles.includes('observer')) await copyFile(join(LAB_DIR, 'vigil.secrets.yaml'), ownHostPathOf(m.name, join(ROOTS.etc, 'vigil.secrets.yaml')));
  if (m.roles.includes('app')) await writeFile(ownHostPathOf(m.name, LAB_SERVICES), JSON.stringify(labServices(), null, 2));
}

/** The file-sync receiver, bundled once per lab; every lab machine runs this one file. */
const receiverPath = () => join(LAB_DIR, 'bin', 'vigil-sync-receive.mjs');

/**
 * File sync's SSH trust between the app machines (src/sync/keys.ts): each gets a sync key pair,
 * an sshd host key, the others' host keys pinned, and the others' sync keys allowed to run the
 * receiver only. sshd needs its privilege-separation directory, shared by every namespace.
 */
async function installFileSync(cluster: Cluster): Promise<void> {
  const apps = withRole(cluster, 'app');
  if (!apps.length) return;
  await bundleReceiver(receiverPath());
  if (!existsSync(machineRoot(apps[0]!.name))) await mkdir('/run/sshd', { recursive: true, mode: 0o755 }); // a root filesystem's machines have their own
  const keys = new Map<string, { sync: string; host: string }>();
  for (const m of apps) {
    for (const p of [SYNC_PATHS.key, LAB_HOST_KEY]) await mkdir(dirname(ownHostPathOf(m.name, p)), { recursive: true, mode: 0o700 });
    keys.set(m.name, {
      sync: await createKeyPair(ownHostPathOf(m.name, SYNC_PATHS.key), `vigil-sync@${m.name}`),
      host: await createKeyPair(ownHostPathOf(m.name, LAB_HOST_KEY), `host@${m.name}`),
    });
  }
  const port = cluster.fileSync.sshPort;
  for (const m of apps) {
    const others = apps.filter((o) => o.name !== m.name);
    const authorized = others.map((o) => authorizedKeyLine({ peer: o.name, peerAddress: o.address, publicKey: keys.get(o.name)!.sync, receiverCommand: `${process.execPath} ${receiverPath()}` }));
    const known = others.map((o) => knownHostLine(o.address, port, keys.get(o.name)!.host));
    await writeFile(ownHostPathOf(m.name, SYNC_PATHS.authorizedKeys), `${authorized.join('\n')}\n`, { mode: 0o600 });
    await writeFile(ownHostPathOf(m.name, SYNC_PATHS.knownHosts), `${known.join('\n')}\n`, { mode: 0o644 });
    await writeFile(ownHostPathOf(m.name, LAB_SSHD_CONFIG), labSshdConfig({ address: m.address, port, authorizedKeys: SYNC_PATHS.authorizedKeys }), { mode: 0o600 });
    for (const d of cluster.application.syncDirs) await mkdir(ownHostPathOf(m.name, d), { recursive: true, mode: 0o755 });
  }
}



/** A user's ids as the machine knows them (a release's root filesystem numbers its system users its own way). */
async function userIds(host: string, user: string): Promise<{ uid: number; gid: number }> {
  const passwd = await readFile(hostPathOf(host, '/etc/passwd'), 'utf8');
  const line = passwd.split('\n').find((l) => l.startsWith(`${user}:`));
  if (!line) throw new VigilError('LAB', [problem(`${host}:/etc/passwd`, `has no user ${user}`, 'rebuild the root filesystem (`vigil lab rootfs`) or install the package that creates the user')]);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** What a lab machine on a root filesystem sees of this host, read-only at the same path: node, Vigil's sources and the lab's bundled programs. */
function labReadOnlyPaths(): string[] {
  return [process.execPath, fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, ''), dirname(receiverPath())];
}

/** The newest PostgreSQL major version installed from the distribution's packages. */
async function installedPostgres(): Promise<number> {
  const versions = (await readdir('/usr/lib/postgresql').catch(() => [])).map(Number).filter(Number.isInteger);
  if (!versions.length) throw new VigilError('LAB', [problem('/usr/lib/postgresql', 'PostgreSQL is not installed', 'run `bash scripts/setup.sh`')]);
  return Math.max(...versions);
}

export async function findPrimary(cluster: Cluster): Promise<Machine | undefined> {
  for (const m of withRole(cluster, 'db')) if (await httpOk(`http://${m.address}:${cluster.database.patroniPort}/primary`)) return m;
  return undefined;
}

/** Whether the primary has a streaming synchronous standby: the only machine Patroni will promote in synchronous mode. */
export async function hasSyncStandby(cluster: Cluster, primary: Machine): Promise<true | undefined> {
  const res = await fetch(`http://${primary.address}:${cluster.database.patroniPort}/cluster`, { signal: AbortSignal.timeout(1000) });
  const body = (await res.json()) as { members?: { role: string; state: string }[] };
  return body.members?.some((x) => x.role === 'sync_standby' && ['running', 'streaming'].includes(x.state)) ? true : undefined;
}

async function logTails(hosts: string[]): Promise<string> {
  const out: string[] = [];
  for (const h of hosts) {
    for (const name of ['etcd', 'patroni', 'haproxy', 'app', 'nginx', 'nginx-error']) {
      const text = await readFile(join(hostRoot(h), 'log', `${name}.log`), 'utf8').catch(() => '');
      if (text) out.push(`--- ${h}/${name}.log (last lines)\n${text.split('\n').slice(-8).join('\n')}`);
    }
  }
  return out.join('\n');
}

/** Removes every process, namespace, link, mount and file the lab made, including a crashed run's leftovers. */
export async function labDown(progress: Progress = quiet): Promise<void> {
  const state = await readState().catch(() => undefined);
  const hosts = new Set([...(state?.machines.map((m) => m.name) ?? []), ...(await net.listLabNetns())]);
  for (const h of hosts) {
    await killAll(h);
    await net.removeMachine(h);
    progress(`removed ${h}`);
  }
  await stopMirror();
  await removeLabCgroups();
  await net.removeBridgeAndRunDir();
  await rm(LAB_DIR, { recursive: true, force: true });
  // The empty mount points on this host, only if no lab of any id is left: removing a directory
  // that is a mount point in another mount namespace detaches that mount there (Linux >= 3.18),
  // which would pull Vigil's directories from under a running lab's machines.
  if (!(await net.anyLabNetns())) for (const r of LAB_MOUNT_POINTS) await rmdir(r).catch(() => {}); // only if empty: never another tool's files
  progress('lab down');
}

/** SIGKILL until the machine's namespace holds no process (Patroni may fork PostgreSQL meanwhile); a power cut on a machine that boots. */
async function killAll(host: string): Promise<void> {
  if (isBooted(host)) return powerOff(host);
  for (let i = 0; i < 50; i++) {
    if ((await signalProcesses(host, 'SIGKILL')) === 0) return;
    await sleep(100);
  }
  throw new VigilError('LAB', [problem(host, 'processes survive SIGKILL', 'look for processes stuck in uninterruptible sleep (ps -eo pid,stat,cmd | grep " D")')]);
}

export interface MachineStatus {
  name: string;
  address: string;
  roles: Role[];
  processes: Partial<Record<ProcessName | 'other', number>>;
  pids: LabProcess[];
}

export async function labStatus(): Promise<MachineStatus[]> {
  const state = await requireState();
  return Promise.all(
    state.machines.map(async (m) => {
      const pids = await listProcesses(m.name);
      const processes: MachineStatus['processes'] = {};
      for (const p of pids) processes[p.name] = (processes[p.name] ?? 0) + 1;
      return { ...m, processes, pids };
    }),
  );
}

/** What the lab's machines run on, for `vigil lab status`. */
export async function labPlatform(): Promise<{ release: string; packages?: RootfsPackages; summary: string }> {
  const state = await requireState();
  const release = state.shape.release ?? 'host';
  if (state.packages && release !== 'host') {
    if (!state.bare) return { release, packages: state.packages, summary: `machines: Debian ${RELEASE_INFO[release].debian} (${release}), ${describePackages(state.packages)}` };
    // Bare machines: what apply has installed on them so far (each machine's own dpkg database).
    const installed: RootfsPackages = {};
    for (const m of state.machines) Object.assign(installed, await rootfsVersions(machineRoot(m.name)).catch(() => ({})));
    const what = Object.keys(installed).length ? `installed by vigil apply: ${describePackages(installed)}` : `nothing installed yet; the lab's mirror offers ${describePackages(state.packages)}`;
    return { release, packages: installed, summary: `machines: Debian ${RELEASE_INFO[release].debian} (${release}), booted with systemd; ${what}` };
  }
  return { release: 'host', summary: "machines: this host's packages" };
}

export async function labKill(host: string): Promise<void> {
  machineOf(await requireState(), host);
  await killAll(host);
}

/** Starts a killed machine again, as a machine that returns after a crash. */
export async function labRevive(host: string): Promise<void> {
  const state = await requireState();
  const m = machineOf(state, host);
  await killAll(host); // a revive is a reboot: nothing of the old life survives
  if (isBooted(host)) {
    await bootMachine(host); // systemd starts the enabled units, as a boot does
    await waitBooted(host);
    return;
  }
  for (const phase of PHASES) startPhase(m, phase);
}

/** Until the machine's systemd has finished booting (`systemctl is-system-running --wait`: running, or degraded). */
export async function waitBooted(host: string, timeoutMs = 120_000): Promise<void> {
  await waitFor(
    `${host} to boot`,
    async () => {
      const r = await new LabShell(host).exec(['systemctl', 'is-system-running', '--wait'], { timeoutMs: 30_000 }).catch(() => undefined);
      return r && /^(running|degraded)/.test(r.stdout.trim()) ? true : undefined;
    },
    timeoutMs,
    250,
  );
}

/** Starts one process of a machine again (e.g. an observer killed in the middle of a failover). */
export async function labStart(host: string, proc: Phase): Promise<void> {
  const state = await requireState();
  const m = machineOf(state, host);
  if (state.bare) return (await import('./bare.ts')).startBareUnit(host, proc);
  if (phaseSpecs(m, proc).length === 0) throw new VigilError('USAGE', [problem(host, `${host} does not run ${proc}`, '`vigil lab status` lists what runs where')]);
  if ((await listProcesses(host)).some((p) => p.name === proc)) throw new VigilError('LAB', [problem(host, `${proc} is already running`, `kill it first: \`vigil lab kill ${host} ${proc}\``)]);
  startPhase(m, proc);
}

/** Every app and db machine's agent status, asked with the lab admin's certificate. */
export async function labAgents(): Promise<Map<string, AgentStatus | undefined>> {
  const { cluster } = await openLab();
  const pki = await loadPki(join(LAB_DIR, 'pki'), 'admin');
  const machines = cluster.machines.filter(needsAgent);
  const statuses = await Promise.all(machines.map((m) => agentStatus(pki, m)));
  return new Map(machines.map((m, i) => [m.name, statuses[i]]));
}

/** HAProxy's runtime API of a proxy machine, reached from this host through the machine's directory. */
export function labRuntime(proxyHost: string): HaproxyRuntime {
  return new HaproxyRuntime(hostPathOf(proxyHost, PATHS.haproxySocket));
}

export async function labSignal(host: string, proc: ProcessName, signal: 'SIGSTOP' | 'SIGCONT' | 'SIGKILL'): Promise<number> {
  machineOf(await requireState(), host);
  const n = await signalProcesses(host, signal, proc);
  if (n === 0) throw new VigilError('LAB', [problem(host, `no ${proc} process is running`, '`vigil lab status` lists what runs where')]);
  return n;
}

export async function labCut(host: string, from: string[], oneWay: boolean): Promise<void> {
  const state = await requireState();
  machineOf(state, host);
  const peers = from.length ? from.map((f) => machineOf(state, f)) : state.machines.filter((m) => m.name !== host);
  await net.cutOff(host, peers.map((p) => p.address), oneWay);
}

/** Closes one TCP port of a machine to the others, as a firewall would (net.blockPort). */
export async function labBlock(host: string, port: number): Promise<void> {
  machineOf(await requireState(), host);
  await net.blockPort(host, port);
}

/** Removes every cut and blocked port of one machine. */
export async function labUnblock(host: string): Promise<void> {
  machineOf(await requireState(), host);
  await net.healAll(host);
}

export async function labHeal(): Promise<void> {
  const state = await requireState();
  for (const m of state.machines) await net.healAll(m.name);
}

/**
 * Fills a disk of a machine: `path` (a directory) moves onto a small tmpfs of its own, mounted in
 * the machine's mount namespace with its content copied over, then a ballast file fills it.
 * `labUnfill` removes the ballast; the tmpfs stays until `lab down`. From outside the machine the
 * directory's host path no longer shows what the machine sees: read it with `vigil lab exec`.
 */
export async function labFill(host: string, path: string): Promise<void> {
  machineOf(await requireState(), host);
  const script = [
    'set -e',
    'P="$1"; S="$P.lab-fill-stage"',
    '[ -d "$P" ] || { echo "$P is not a directory on this machine" >&2; exit 2; }',
    'if ! mountpoint -q "$P"; then',
    '  rm -rf "$S"; mkdir -p "$S"; cp -a "$P/." "$S/"',
    '  mount -t tmpfs -o size=64m,mode=755 vigil-lab-fill "$P"',
    '  cp -a "$S/." "$P/"; rm -rf "$S"',
    'fi',
    'dd if=/dev/zero of="$P/.lab-fill" bs=1M 2>/dev/null || true',
    'df -h "$P" | tail -1',
  ].join('\n');
  const r = await new LabShell(host).exec(['sh', '-c', script, 'sh', path], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new VigilError('LAB', [problem(host, `cannot fill ${path}: ${r.stderr.trim()}`, 'name a directory that exists on the machine, e.g. /var/lib/vigil/app')]);
}

export async function labUnfill(host: string, path: string): Promise<void> {
  machineOf(await requireState(), host);
  await new LabShell(host).exec(['rm', '-f', join(path, '.lab-fill')]);
}

/** Runs a command inside a lab machine and returns its output (tests, benchmarks). */
export async function labRun(host: string, argv: string[], input?: string): Promise<ExecResult> {
  machineOf(await requireState(), host);
  return new LabShell(host).exec(argv, { input });
}

/** Runs a command inside a lab machine with this terminal's stdio; returns its exit status. */
export async function labExec(host: string, argv: string[]): Promise<number> {
  machineOf(await requireState(), host);
  const child = spawn('nsenter', [...labEnter(host), ...argv], { stdio: 'inherit' });
  return new Promise((resolve) => child.on('close', (code) => resolve(code ?? 1)));
}
