/**
 * `vigil lab`: a topology on this one machine, each machine a Debian release's root filesystem
 * booted with systemd in a network namespace of its own (boot.ts), made a cluster by `vigil
 * apply` as real machines are; and the faults tests and benchmarks inject into it.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { applyCluster } from '../apply/apply.ts';
import { loadCluster, loadSecrets } from '../config/load.ts';
import { PATHS } from '../layout/paths.ts';
import { metricsUrl } from '../layout/network.ts';
import { agentMachines, entryAddress, runsAgent, withRole, type Cluster, type Machine, type Role, type Secrets } from '../config/schema.ts';
import { loadPki, caFiles, createClusterCa, issueCertificate, writePki, type ClusterCa, type LoadedPki } from '../pki/ca.ts';
import type { AgentStatus } from '../model/ha.ts';
import { agentOf } from '../agent/client.ts';
import { patroniOf, type PatroniClient } from '../patroni/client.ts';
import { HaproxyRuntime } from '../proxy/runtime.ts';
import { hostPattern } from '../remote/known-hosts.ts';
import { LabShell, labEnter } from './shell.ts';
import type { ExecResult } from '../remote/types.ts';
import { VigilError, problem } from '../util/errors.ts';
import { waitFor } from '../util/exec.ts';
import { SSH_HOST_KEY_PUB, bootMachine, consoleLog, powerOff, prepareMachineIdentity, removeLabCgroups, systemctlUnit, type LabUnit } from './boot.ts';
import { stopMirror } from './mirror.ts';
import * as net from './net.ts';
import { LAB_DIR, bootedLeaderPid, clusterFilePath, hostPathOf, machineRoot } from './paths.ts';
import { DEFAULT_RELEASE, RELEASE_INFO, describePackages, requireRootfs, rootfsVersions, upstreamVersion, type RootfsPackages } from './rootfs.ts';
import { listProcesses, signalProcesses, type LabProcess, type ProcessName } from './procs.ts';
import { machineOf, readState, requireState, writeState, type LabState } from './state.ts';
import { BRIDGE_ADDRESS, LAB_DASHBOARD_USER, LAB_DASHBOARD_VIEWER, labClusterYaml, labSecretsYaml, type LabShape } from './topology.ts';
import { newDashboardPassword } from '../dashboard/users.ts';
import { dashboardUrl } from '../dashboard/serve.ts';

export type Progress = (line: string) => void;
const quiet: Progress = () => {};

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

/**
 * Brings a lab up: machines booted from the release's root filesystem (systemd as PID 1, each on
 * an overlay of its own, boot.ts), then `vigil apply` over each machine's lab shell, exactly as an
 * admin's apply over SSH: the units, files, certificates and Vigil's artifact it installs are what
 * runs. On any failure tears down what it made (or keeps it, `keepOnFailure`), and the error
 * carries the machines' journal tails.
 */
export async function labUp(shape: LabShape, progress: Progress = quiet, opts: { keepOnFailure?: boolean } = {}): Promise<LabHandle> {
  const release = shape.release ?? DEFAULT_RELEASE;
  const lower = requireRootfs(release); // before anything is made
  await claimLabDir();
  const packages = await rootfsVersions(lower);
  shape = {
    ...shape,
    release,
    postgresVersion: shape.postgresVersion ?? RELEASE_INFO[release].postgres,
    patroniVersion: shape.patroniVersion ?? upstreamVersion(packages.patroni),
  };
  await writeFile(clusterFilePath(), labClusterYaml(shape));
  // The dashboard's admin password, given to the lab's user in a file of their own (docs/lab.md); the secrets file holds only its hash.
  const dashboardPassword = newDashboardPassword();
  const viewerPassword = newDashboardPassword();
  await writeFile(dashboardPasswordPath(), `${dashboardPassword}\n`, { mode: 0o600 });
  await writeFile(viewerPasswordPath(), `${viewerPassword}\n`, { mode: 0o600 });
  await writeFile(secretsFilePath(), await labSecretsYaml(dashboardPassword, viewerPassword), { mode: 0o600 });
  const cluster = await loadCluster(clusterFilePath());
  const secrets = await loadSecrets(cluster);
  const state: LabState = {
    version: 1,
    shape,
    packages,
    machines: cluster.machines.map((m) => ({ name: m.name, address: m.address, roles: m.roles })),
    createdAt: new Date().toISOString(),
  };
  await writeState(state);
  try {
    progress(
      `machines: ${cluster.machines.length} booting Debian ${RELEASE_INFO[release].debian} (${release}; ${describePackages(packages)}) with systemd; cluster CA`,
    );
    await createLabPki(cluster);
    await net.createBridge();
    for (const m of cluster.machines) {
      await net.createMachineNet(m.name, m.address);
      await net.mountOverlay(m.name, lower);
      await prepareMachineIdentity(m.name);
      await bootMachine(m.name);
    }
    for (const m of cluster.machines) await waitBooted(m.name);
    await writeKnownHosts(cluster);
    await applyCluster({
      cluster,
      secrets,
      clusterFile: clusterFilePath(),
      pkiDir: labPkiDir(),
      knownHostsFile: knownHostsPath(),
      openShell: async (m) => new LabShell(m.name),
      transport: "through each lab machine's PID 1 (nsenter)",
      dryRun: false,
      progress: (line) => progress(`apply: ${line}`),
    });
    const primary = await waitFor('a Patroni primary', () => findPrimary(cluster), 90_000, 500);
    if (cluster.database.replication === 'synchronous') {
      progress('patroni: waiting for a synchronous standby');
      await waitFor('a synchronous standby', () => hasSyncStandby(cluster, primary), 90_000, 500);
    }
    const entry = entryAddress(cluster)!;
    progress(`ready: http://${entry}:${cluster.proxy.httpPort}/ and postgresql://${entry}:${cluster.proxy.postgresPort}`);
    return { cluster, secrets, state };
  } catch (err) {
    const logs = await journalTails(cluster.machines.map((m) => m.name));
    if (opts.keepOnFailure) progress('lab up failed; the lab is left as it is for inspection (`vigil lab down` removes it)');
    else {
      progress('lab up failed; tearing down what it made');
      await labDown(quiet);
    }
    if (logs) progress(`the machines' journals, last lines:\n${logs}`);
    if (err instanceof VigilError) throw err;
    throw new VigilError(
      'LAB',
      [problem('vigil lab up', (err as Error).message, "read the machines' journals above, fix the cause and run `vigil lab up` again")],
      { cause: err },
    );
  }
}

/** The lab's cluster CA, kept with the lab's state (as the admin's machine keeps it), and the admin's certificate. */
async function createLabPki(cluster: Cluster): Promise<ClusterCa> {
  const ca = await createClusterCa({ clusterName: cluster.cluster.name });
  const admin = await issueCertificate(ca, { commonName: 'admin', ipAddresses: [BRIDGE_ADDRESS], usage: 'client' });
  await writePki(labPkiDir(), { ...caFiles(ca), 'admin.pem': admin.certPem, 'admin.key': admin.keyPem });
  return ca;
}

const labPkiDir = () => join(LAB_DIR, 'pki');

/** The admin's identity of the running lab (ca.pem, admin.pem, admin.key): what the host side presents to etcd and the agents. */
export const labAdminPki = (): Promise<LoadedPki> => loadPki(labPkiDir(), 'admin');
const secretsFilePath = () => join(LAB_DIR, 'vigil.secrets.yaml');
/** The dashboard admin's password (`vigil lab status --json`: dashboardLogin). */
export const dashboardPasswordPath = (): string => join(LAB_DIR, 'dashboard-admin.password');
/** The dashboard viewer's password (`vigil lab status --json`: dashboardViewer). */
export const viewerPasswordPath = (): string => join(LAB_DIR, 'dashboard-viewer.password');
/** The machines' SSH host keys, as `vigil init` pins them: file sync's known_hosts are made from them. */
const knownHostsPath = () => join(LAB_DIR, 'known_hosts');

async function writeKnownHosts(cluster: Cluster): Promise<void> {
  const lines: string[] = [];
  for (const m of cluster.machines) {
    const [type, blob] = (await readFile(join(machineRoot(m.name), SSH_HOST_KEY_PUB), 'utf8')).trim().split(/\s+/);
    lines.push(`${hostPattern(m.address, m.sshPort)} ${type} ${blob}`);
  }
  await writeFile(knownHostsPath(), `${lines.join('\n')}\n`);
}

/** A db machine's Patroni REST API as the lab's admin asks it (HTTPS under the lab's cluster CA). */
export async function labPatroni(cluster: Cluster, m: Pick<Machine, 'address'>): Promise<PatroniClient> {
  return patroniOf(cluster, m, { identity: await labAdminPki() });
}

export async function findPrimary(cluster: Cluster): Promise<Machine | undefined> {
  for (const m of withRole(cluster, 'db')) {
    const patroni = await labPatroni(cluster, m);
    if (await patroni.check('primary', { timeoutMs: 1000 }).catch(() => false)) return m;
  }
  return undefined;
}

/** Whether the primary has a streaming synchronous standby: the only machine Patroni will promote in synchronous mode. */
export async function hasSyncStandby(cluster: Cluster, primary: Machine): Promise<true | undefined> {
  const view = await (await labPatroni(cluster, primary)).cluster({ timeoutMs: 1000 });
  return view.members.some((x) => x.role === 'sync_standby' && ['running', 'streaming'].includes(x.state)) ? true : undefined;
}

/** The last lines of each machine's Vigil units, from its journal. */
async function journalTails(hosts: string[]): Promise<string> {
  const out: string[] = [];
  for (const h of hosts) {
    if (bootedLeaderPid(h) === undefined) continue;
    const r = await new LabShell(h)
      .exec(['journalctl', '-u', 'vigil-*', '-n', '15', '--no-pager', '-o', 'short-precise'], { timeoutMs: 20_000 })
      .catch(() => undefined);
    if (r?.stdout.trim()) out.push(`--- ${h}\n${r.stdout.trim()}`);
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
  await net.removeBridge();
  await rm(LAB_DIR, { recursive: true, force: true });
  progress('lab down');
}

/** A power cut: every process of the machine at once (boot.ts powerOff), and with them any floating address it held. */
async function killAll(host: string, own?: string): Promise<void> {
  await powerOff(host);
  if (own) await net.dropFloatingAddresses(host, own);
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

export interface MetricsTarget {
  machine: string;
  /** Vigil's own daemons, and HAProxy's and Patroni's exporters (docs/metrics.md). */
  daemon: 'agent' | 'observer' | 'haproxy' | 'patroni';
  url: string;
}

/** Every daemon's `/metrics` URL in the lab (none before `vigil apply` wrote the cluster file of a bare lab). */
export async function labMetrics(): Promise<MetricsTarget[]> {
  const cluster = await loadCluster(clusterFilePath()).catch(() => null);
  if (!cluster) return [];
  const out: MetricsTarget[] = [];
  for (const m of cluster.machines) {
    if (cluster.metrics.enabled && runsAgent(cluster, m)) out.push({ machine: m.name, daemon: 'agent', url: metricsUrl(cluster, m, 'agent') });
    if (cluster.metrics.enabled && m.roles.includes('observer')) out.push({ machine: m.name, daemon: 'observer', url: metricsUrl(cluster, m, 'observer') });
    if (m.roles.includes('proxy')) out.push({ machine: m.name, daemon: 'haproxy', url: `http://${m.address}:${cluster.proxy.statsPort}/metrics` });
    if (m.roles.includes('db')) out.push({ machine: m.name, daemon: 'patroni', url: `https://${m.address}:${cluster.database.patroniPort}/metrics` });
  }
  return out;
}

export interface LabDashboard {
  /** The first observer machine's dashboard (every observer serves one). */
  url: string;
  user: string;
  /** The file holding the user's password (mode 600). */
  passwordFile: string;
  /** A user with the viewer role (sees, may not act), and its password's file; null in a lab made before it. */
  viewer: { user: string; passwordFile: string } | null;
}

/** Where the lab's dashboard is and how to log in; null when it is off or before a bare lab's `vigil apply`. */
export async function labDashboard(): Promise<LabDashboard | null> {
  const cluster = await loadCluster(clusterFilePath()).catch(() => null);
  const observer = cluster?.machines.find((m) => m.roles.includes('observer'));
  if (!cluster?.dashboard.enabled || !observer || !existsSync(dashboardPasswordPath())) return null;
  const viewer = existsSync(viewerPasswordPath()) ? { user: LAB_DASHBOARD_VIEWER, passwordFile: viewerPasswordPath() } : null;
  return { url: dashboardUrl(cluster, observer), user: LAB_DASHBOARD_USER, passwordFile: dashboardPasswordPath(), viewer };
}

export interface LabEntry {
  /** The address clients use: the floating one (`proxy.virtualAddress`), else the first proxy machine's. */
  entryPoint: string;
  /** Whether keepalived moves it between the proxy machines. */
  floating: boolean;
  /** The machines whose eth0 holds it now (one, when all is well). */
  holders: string[];
}

/** The entry point and which machine holds it, read from each proxy machine's interface (from this host, so a hung machine answers too). */
export async function labEntry(): Promise<LabEntry | undefined> {
  const { cluster } = await openLab();
  const entryPoint = entryAddress(cluster);
  if (!entryPoint) return undefined;
  const proxies = withRole(cluster, 'proxy');
  const held = await Promise.all(proxies.map(async (m) => (await net.machineAddresses(m.name)).includes(entryPoint)));
  return { entryPoint, floating: cluster.proxy.virtualAddress !== undefined, holders: proxies.filter((_, i) => held[i]).map((m) => m.name) };
}

export interface LabObservers {
  /** The machines with the `observer` role. */
  machines: string[];
  /** The machine whose observer holds the leadership in etcd (the acting one); null when none does, or etcd did not answer (`error`). */
  acting: string | null;
  /** Since when it holds it (etcd's record). */
  since: string | null;
  /** Why `acting` is not known: etcd's error (no majority, unreachable). */
  error?: string;
}

/** The observer machines and which one acts, as etcd's leader key says (a linearizable read, 3 s deadline). */
export async function labObservers(): Promise<LabObservers> {
  // A bare lab before `vigil apply` has no cluster file: no observers to name.
  const cluster = await openLab().then(
    (l) => l.cluster,
    () => undefined,
  );
  const machines = cluster ? withRole(cluster, 'observer').map((m) => m.name) : [];
  if (!cluster || machines.length === 0) return { machines, acting: null, since: null };
  const { openStore, storeTls } = await import('../etcd/store.ts');
  const { etcdEndpoints } = await import('../layout/network.ts');
  let store: Awaited<ReturnType<typeof openStore>> | undefined;
  try {
    store = await openStore({ endpoints: etcdEndpoints(cluster), cluster: cluster.cluster.name, dialTimeoutMs: 3000, tls: storeTls(await labAdminPki()) });
    const leader = await store.currentLeader({ timeoutMs: 3000 });
    return { machines, acting: leader?.host ?? null, since: leader?.since ?? null };
  } catch (err) {
    return { machines, acting: null, since: null, error: (err as Error).message };
  } finally {
    await store?.close().catch(() => undefined);
  }
}

/** What the lab's machines run on, for `vigil lab status`. */
export async function labPlatform(): Promise<{ release: string; packages?: RootfsPackages; summary: string }> {
  const state = await requireState();
  const release = state.shape.release ?? DEFAULT_RELEASE;
  const debian = `machines: Debian ${RELEASE_INFO[release].debian} (${release}), booted with systemd`;
  if (!state.bare) return { release, packages: state.packages, summary: `${debian}; ${describePackages(state.packages ?? {})}` };
  // Bare machines: what apply has installed on them so far (each machine's own dpkg database).
  const installed: RootfsPackages = {};
  for (const m of state.machines) Object.assign(installed, await rootfsVersions(machineRoot(m.name)).catch(() => ({})));
  const what = Object.keys(installed).length
    ? `installed by vigil apply: ${describePackages(installed)}`
    : `nothing installed yet; the lab's mirror offers ${describePackages(state.packages ?? {})}`;
  return { release, packages: installed, summary: `${debian}; ${what}` };
}

export async function labKill(host: string): Promise<void> {
  const m = machineOf(await requireState(), host);
  await killAll(host, m.address);
}

/** Starts a killed machine again, as a machine that returns after a crash. */
export async function labRevive(host: string): Promise<void> {
  const m = machineOf(await requireState(), host);
  await killAll(host, m.address); // a revive is a reboot: nothing of the old life survives
  await bootMachine(host); // systemd starts the enabled units, as a boot does
  await waitBooted(host);
}

/**
 * Until the machine's systemd has finished booting (`systemctl is-system-running --wait`: running,
 * or degraded). Five minutes: seven machines booting at once beside other labs on a loaded 2-core
 * machine took more than two (a lab up that timed out at 120 s, load average 15).
 */
export async function waitBooted(host: string, timeoutMs = 300_000): Promise<void> {
  try {
    await waitFor(
      `${host} to boot`,
      async () => {
        const r = await new LabShell(host).exec(['systemctl', 'is-system-running', '--wait'], { timeoutMs: 30_000 }).catch(() => undefined);
        return r && /^(running|degraded)/.test(r.stdout.trim()) ? true : undefined;
      },
      timeoutMs,
      250,
    );
  } catch (err) {
    throw bootFailure(host, (err as Error).message, await readFile(consoleLog(host), 'utf8').catch(() => ''), { cause: err });
  }
}

/**
 * A machine that did not boot, with the last lines its systemd wrote to the console (the journal
 * of a machine that never booted cannot be read). systemd that cannot create its cgroup inotify
 * watch has run into the host's `fs.inotify.max_user_instances`, shared by every lab's machines.
 */
export function bootFailure(host: string, message: string, consoleText: string, opts?: { cause?: unknown }): VigilError {
  const tail = consoleText.trimEnd().split('\n').slice(-15).join('\n');
  const inotify = /inotify.*Too many open files|Too many open files.*inotify/i.test(consoleText);
  const fix = inotify
    ? `the host ran out of inotify instances (fs.inotify.max_user_instances, ${readInotifyLimit()} here), which every lab machine's systemd uses: stop other labs, or raise it (\`sysctl -w fs.inotify.max_user_instances=1024\`), then run \`vigil lab up\` again`
    : `read ${host}'s console output above (${consoleLog(host)} while the lab is kept with --keep-on-failure), fix the cause and run \`vigil lab up\` again`;
  return new VigilError('LAB', [problem(`vigil lab up: ${host}`, `${message}${tail ? `; its console's last lines:\n${tail}` : ''}`, fix)], opts);
}

function readInotifyLimit(): string {
  try {
    return readFileSync('/proc/sys/fs/inotify/max_user_instances', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/** Starts one component of a machine again (e.g. an observer killed in the middle of a failover): `systemctl start` of its unit. */
export async function labStart(host: string, proc: LabUnit): Promise<void> {
  machineOf(await requireState(), host);
  await systemctlUnit(host, 'start', proc);
}

/** Stops one component of a machine as an operator would (`systemctl stop`): unlike a kill, systemd does not bring it back. */
export async function labStopUnit(host: string, proc: LabUnit): Promise<void> {
  machineOf(await requireState(), host);
  await systemctlUnit(host, 'stop', proc);
}

/** Every agent's status (config/schema.ts runsAgent), asked with the lab admin's certificate. */

/**
 * Every agent's status; undefined where it did not answer within `timeoutMs` (default: the
 * observer's deadline for the same question, CHECK_TIMEOUT_MS). Waiting for a state (a settled
 * cluster, a fault's target) may allow more on a loaded machine.
 */
export async function labAgents(timeoutMs = 600): Promise<Map<string, AgentStatus | undefined>> {
  const { cluster } = await openLab();
  const pki = await loadPki(join(LAB_DIR, 'pki'), 'admin');
  const machines = agentMachines(cluster);
  const statuses = await Promise.all(
    machines.map((m) =>
      agentOf(pki, m)
        .status({ timeoutMs })
        .catch(() => undefined),
    ),
  );
  return new Map(machines.map((m, i) => [m.name, statuses[i]]));
}

/** HAProxy's runtime API of a proxy machine, reached from this host through the machine's directory. */
export function labRuntime(proxyHost: string, timeoutMs?: number): HaproxyRuntime {
  return new HaproxyRuntime(hostPathOf(proxyHost, PATHS.haproxySocket), timeoutMs);
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
  await net.cutOff(
    host,
    peers.map((p) => p.address),
    oneWay,
  );
}

/**
 * Cuts a machine off from the network altogether (net.isolate): every machine, this host (the
 * lab's clients) and ARP, both ways, while everything on it runs on. `labUnblock(host)` or
 * `labHeal()` undoes it.
 */
export async function labIsolate(host: string): Promise<void> {
  machineOf(await requireState(), host);
  await net.isolate(host);
}

/** Closes one TCP port of a machine to the others, as a firewall would (net.blockPort). */
export async function labBlock(host: string, port: number): Promise<void> {
  machineOf(await requireState(), host);
  await net.blockPort(host, port);
}

/**
 * Cuts `host` from one TCP port of `peer` (both ways), or drops what one user's processes on
 * `host` (looked up there) send to `peer`: net.dropOutput. `labUnblock(host)` or `labHeal()` removes it.
 */
export async function labDropOutput(host: string, peer: string, match: { port?: number; user?: string } = {}): Promise<void> {
  const state = await requireState();
  machineOf(state, host);
  const to = machineOf(state, peer);
  let uid: number | undefined;
  if (match.user !== undefined) {
    const id = await labRun(host, ['id', '-u', match.user]);
    uid = Number(id.stdout.trim());
    if (id.code !== 0 || !/^\d+$/.test(id.stdout.trim()))
      throw new VigilError('LAB', [problem(host, `no user ${match.user} on this machine (${id.stderr.trim()})`, 'name a user that exists there')]);
  }
  await net.dropOutput(host, to.address, { ...(match.port === undefined ? {} : { port: match.port }), ...(uid === undefined ? {} : { uid }) });
}

/** Drops `percent` of the packets the machine sends and receives (net.loseRandom); `labUnblock(host)` or `labHeal()` ends it. */
export async function labLoss(host: string, percent: number): Promise<void> {
  machineOf(await requireState(), host);
  await net.loseRandom(host, percent);
}

/** Holds every packet the machine sends and receives for `ms` (net.addLatency); `labUnblock(host)` or `labHeal()` ends it. */
export async function labLatency(host: string, ms: number): Promise<void> {
  machineOf(await requireState(), host);
  await net.addLatency(host, ms);
}

/** Removes every cut, blocked port, packet loss and latency of one machine. */
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
  if (r.code !== 0)
    throw new VigilError('LAB', [
      problem(host, `cannot fill ${path}: ${r.stderr.trim()}`, 'name a directory that exists on the machine, e.g. /var/lib/vigil/app'),
    ]);
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
