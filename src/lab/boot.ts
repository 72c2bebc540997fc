/**
 * Lab machines that boot: systemd-nspawn runs a release's bare root filesystem (rootfs.ts) with
 * real systemd as PID 1, joined to the machine's network namespace (net.ts), on an overlay whose
 * upper layer is the machine's own and which is mounted on this host too, so the lab reads and
 * writes the machine's files from outside (paths.ts hostPathOf). `vigil apply` then drives the
 * machine's own systemd, as on a real one.
 *
 * Facts behind the choices (measured here, host without systemd as PID 1, hybrid cgroups):
 * - `--register=no --keep-unit` are needed without a host systemd (no machined, no system bus).
 * - `--private-network` with `--network-namespace-path` keeps our namespace and gives the machine
 *   CAP_NET_ADMIN (nft, the agent's Patroni gate) and a writable /proc/sys/net.
 * - SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1: the machine sees a pure cgroup2 /sys/fs/cgroup.
 * - nspawn is started from a cgroup of its own (one per machine, under `vigil-lab<id>/` of each
 *   hierarchy), so a power cut is one write to cgroup.kill, and every process of the machine is
 *   also in its network namespace (`ip netns pids`), which is how the lab names them.
 * - A machine revived into the cgroups left by cgroup.kill came up degraded (units killed at
 *   start); the subtree is removed before every boot.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { appendFile, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { VigilError, problem } from '../util/errors.ts';
import { UNITS } from '../layout/units.ts';
import { run, sleep } from '../util/exec.ts';
import { netnsPids } from './net.ts';
import { LAB_ID, bootedLeaderPid, hostRoot, machineRoot, netnsPath, nspawnPidFile } from './paths.ts';

/** The machine's console (systemd's boot messages), on this host. */
export const consoleLog = (host: string): string => join(hostRoot(host), 'console.log');

/** The machine's cgroup in each hierarchy this host has: cgroup v2 alone, or hybrid (unified + name=systemd). */
function cgroupDirs(host: string): string[] {
  const group = `vigil-lab${LAB_ID === 0 ? '' : LAB_ID}`;
  if (existsSync('/sys/fs/cgroup/cgroup.controllers')) return [join('/sys/fs/cgroup', group, host)];
  return ['/sys/fs/cgroup/unified', '/sys/fs/cgroup/systemd'].filter((d) => existsSync(d)).map((d) => join(d, group, host));
}

/** The machine's SSH host key (made for each machine before its first boot), as `vigil init` pins it. */
export const SSH_HOST_KEY_PUB = '/etc/ssh/ssh_host_ed25519_key.pub';

/**
 * What makes a machine itself, written through its overlay before the first boot: its host name
 * and SSH host keys of its own (the images have none; rootfs.ts).
 */
export async function prepareMachineIdentity(host: string): Promise<void> {
  const root = machineRoot(host);
  await writeFile(join(root, 'etc', 'hostname'), `${host}\n`);
  await appendFile(join(root, 'etc', 'hosts'), `127.0.1.1\t${host}\n`);
  // RSA's primes take a second on a quiet machine and over 30 s at a load of 30 (a test run beside
  // other labs failed so): a deadline for a hang, not for a slow machine.
  await run('ssh-keygen', ['-A', '-f', root], { timeoutMs: 300_000 });
}

/** The unit of each component `vigil lab start|stop` names, as `vigil apply` installs it. */
export const LAB_UNITS = {
  sshd: 'ssh.service',
  etcd: UNITS.etcd,
  patroni: UNITS.patroni,
  haproxy: UNITS.haproxy,
  keepalived: UNITS.keepalived,
  nginx: UNITS.nginx,
  app: UNITS.refapp,
  analytics: UNITS.refappAnalytics,
  agent: UNITS.agent,
  observer: UNITS.observer,
} as const;
export type LabUnit = keyof typeof LAB_UNITS;

/** `systemctl start|stop UNIT` inside the machine; start does nothing when the unit runs already (Restart= may have brought it back first). */
export async function systemctlUnit(host: string, action: 'start' | 'stop', proc: string): Promise<void> {
  const unit = (LAB_UNITS as Record<string, string>)[proc];
  if (!unit) throw new VigilError('USAGE', [problem(host, `no unit for ${proc}`, `use one of: ${Object.keys(LAB_UNITS).join(', ')}`)]);
  const r = await run('nsenter', [...inMachine(host), 'systemctl', action, unit], { allowFail: true, timeoutMs: 120_000 });
  if (r.code === 0) return;
  const fix = r.code === 5 ? `${unit} is not installed on ${host}: \`vigil apply\` installs it` : `read \`vigil lab exec ${host} -- journalctl -u ${unit}\``;
  throw new VigilError('LAB', [problem(host, `systemctl ${action} ${unit} failed (exit ${r.code}): ${r.stderr.trim()}`, fix)]);
}

/** Boots the machine: systemd-nspawn, detached, in cgroups of its own; returns nspawn's PID. */
export async function bootMachine(host: string): Promise<number> {
  const dirs = cgroupDirs(host);
  if (!dirs.length)
    throw new VigilError('LAB', [
      problem('/sys/fs/cgroup', 'has neither cgroup v2 nor the unified and systemd hierarchies', 'mount cgroup2 on /sys/fs/cgroup'),
    ]);
  for (const d of dirs) await removeCgroup(d);
  const args = [
    '-q',
    '-D',
    machineRoot(host),
    '-M',
    host,
    '--register=no',
    '--keep-unit',
    '--boot',
    `--network-namespace-path=${netnsPath(host)}`,
    '--private-network',
    '--console=read-only',
  ];
  // The shell moves itself into the machine's cgroups, then becomes nspawn.
  const script = 'for d in $VIGIL_CGROUPS; do mkdir -p "$d" && echo $$ > "$d/cgroup.procs"; done; exec systemd-nspawn "$@"';
  const out = openSync(consoleLog(host), 'a');
  try {
    const child = spawn('sh', ['-c', script, 'sh', ...args], {
      detached: true,
      stdio: ['ignore', out, out],
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1', VIGIL_CGROUPS: dirs.join(' ') },
    });
    child.unref();
    if (child.pid === undefined)
      throw new VigilError('LAB', [problem(host, 'systemd-nspawn did not start', 'install systemd-container (scripts/setup.sh does)')]);
    await writeFile(nspawnPidFile(host), String(child.pid));
    return child.pid;
  } finally {
    closeSync(out);
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** nspawn's PID while it runs, else undefined. */
function nspawnPid(host: string): number | undefined {
  try {
    const pid = Number(readFileSync(nspawnPidFile(host), 'utf8'));
    return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The machine's PID 1 (systemd) as this host numbers it, or an error saying it does not run. */
export function leaderPid(host: string): number {
  const pid = bootedLeaderPid(host);
  if (pid === undefined) throw new VigilError('LAB', [problem(host, 'the machine is not running', `start it again: \`vigil lab revive ${host}\``)]);
  return pid;
}

/** The argv prefix that runs a command inside a booted machine (every namespace of its PID 1). */
export function inMachine(host: string): string[] {
  return ['nsenter', '-t', String(leaderPid(host)), '-a', '--'];
}

/**
 * A power cut: every process of the machine (and nspawn) killed at once, then its cgroups
 * removed so it can boot again. Returns when nothing of it is left.
 */
export async function powerOff(host: string): Promise<void> {
  const dirs = cgroupDirs(host);
  for (const d of dirs) if (existsSync(join(d, 'cgroup.kill'))) await writeFile(join(d, 'cgroup.kill'), '1').catch(() => {});
  for (let i = 0; i < 100; i++) {
    const left = [...(await netnsPids(host)), ...(nspawnPid(host) !== undefined ? [nspawnPid(host)!] : [])];
    for (const d of dirs) left.push(...(await cgroupPids(d)));
    if (left.length === 0) break;
    for (const pid of new Set(left)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await sleep(100);
    if (i === 99)
      throw new VigilError('LAB', [
        problem(host, 'processes survive SIGKILL', 'look for processes stuck in uninterruptible sleep (ps -eo pid,stat,cmd | grep " D")'),
      ]);
  }
  for (const d of dirs) await removeCgroup(d);
}

/** Every PID in a cgroup and its descendants. */
async function cgroupPids(dir: string): Promise<number[]> {
  if (!existsSync(dir)) return [];
  const own = (await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '')).split('\n').filter(Boolean).map(Number);
  const subs = (await readdir(dir, { withFileTypes: true }).catch(() => [])).filter((e) => e.isDirectory());
  const nested = await Promise.all(subs.map((e) => cgroupPids(join(dir, e.name))));
  return [...own, ...nested.flat()];
}

/** Removes an empty cgroup subtree, deepest first (a cgroup with processes cannot go: that is an error). */
async function removeCgroup(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  for (const e of await readdir(dir, { withFileTypes: true })) if (e.isDirectory()) await removeCgroup(join(dir, e.name));
  await rmdir(dir);
}

/** Removes the lab's own cgroup parents once no machine is left in them. */
export async function removeLabCgroups(): Promise<void> {
  const group = `vigil-lab${LAB_ID === 0 ? '' : LAB_ID}`;
  for (const base of ['/sys/fs/cgroup', '/sys/fs/cgroup/unified', '/sys/fs/cgroup/systemd']) {
    const d = join(base, group);
    if (existsSync(join(d, 'cgroup.procs'))) await removeCgroup(d).catch(() => {});
  }
}
