/**
 * `vigil preflight`: before anything is installed, can these machines take the cluster the
 * cluster file describes? On every machine, through its shell (SSH with the pinned host keys, or
 * the lab): the OS and its version, root or password-less sudo, the package manager, no other
 * program on the ports the cluster will use, every port it will need reachable from the machines
 * that need it (a refused connection is fine: nothing listens yet, but the path is open; a
 * timeout is a firewall), the versions of etcd, PostgreSQL, Patroni and HAProxy that are installed
 * or that the package lists would install, the clock against this one, and free disk. The first step of
 * `vigil apply` (issue 4); read-only.
 */
import type { Cluster, Machine } from '../config/schema.ts';
import { clock, connect } from '../facts/probe.ts';
import { portRequirements } from '../facts/ports.ts';
import { parseSs } from '../facts/parse.ts';
import type { PortProbe, Probe } from '../facts/probe.ts';
import type { RemoteShell } from '../remote/types.ts';
import { runsKeepalived } from '../render/keepalived.ts';
import { parseIpAddr, vrrpInterfaceFindings, type InterfaceAddress } from './preflight-vrrp.ts';
import { UNITS, WATCHDOG_DEVICE } from '../layout/units.ts';
import { leaderKeyFinding, overwritesLeaderKey, parsePatroniVersion } from '../patroni/versions.ts';
import { distroPostgres, packageVersions, upstreamVersion, versionAtLeast, versionNeedsFor, type PackageVersion } from './packages.ts';

/** Debian, Ubuntu and RHEL-family releases Vigil installs on (DESIGN.md: Ubuntu 22/24, RHEL 9.x; Debian 12 in the lab). */
const SUPPORTED: Record<string, (version: number) => boolean> = {
  debian: (v) => v >= 12,
  ubuntu: (v) => v >= 22,
  rhel: (v) => v >= 9,
  rocky: (v) => v >= 9,
  almalinux: (v) => v >= 9,
};
/** Free space Vigil wants under /var/lib before it installs (PostgreSQL and etcd data, file sync). */
export const MIN_FREE_BYTES = 5 * 2 ** 30;
/** Largest clock offset tolerated: well inside the agents' lease (file sync compares wall clocks). */
export const MAX_SKEW_MS = 500;

export interface PreflightFacts {
  machine: string;
  reachable: Probe<true>;
  os?: { id: string; versionId: string; pretty: string } | null;
  root?: { uid: number; sudo: boolean };
  packageManager?: 'apt' | 'dnf' | null;
  /** Ports the cluster needs on this machine that something already listens on. */
  busy?: { port: number; what: string }[];
  ports?: PortProbe[];
  clock?: Probe<{ offsetMs: number; uncertaintyMs: number }>;
  freeBytes?: number | null;
  /** The version-checked packages of this machine's roles (packages.ts versionNeedsFor). */
  versions?: PackageVersion[];
  /** db machines: whether a watchdog device (/dev/watchdog) exists, for database.watchdog. */
  watchdogDevice?: boolean;
  /** Proxy machines with `proxy.virtualAddress`: the machine's IPv4 addresses by interface (null: `ip` failed). */
  interfaces?: InterfaceAddress[] | null;
}

export interface PreflightFinding {
  severity: 'fail' | 'warn';
  machine: string;
  check: string;
  what: string;
  why: string;
  fix: string;
}

const text = async (shell: RemoteShell, argv: string[]) => {
  const r = await shell.exec(argv, { timeoutMs: 10_000 });
  return r.code === 0 ? r.stdout : null;
};

export async function gatherPreflight(shell: RemoteShell, m: Machine, cluster: Cluster): Promise<PreflightFacts> {
  try {
    const alive = await shell.exec(['true'], { timeoutMs: 10_000 });
    if (alive.code !== 0) return { machine: m.name, reachable: { ok: false, error: alive.stderr.trim() || `exit ${alive.code}` } };
  } catch (err) {
    return { machine: m.name, reachable: { ok: false, error: (err as Error).message } };
  }
  const needs = portRequirements(cluster);
  const mine = needs.filter((r) => r.to === m.name);
  const outgoing = needs.filter((r) => r.from.includes(m.name));
  const byName = new Map(cluster.machines.map((x) => [x.name, x]));
  const [osText, uid, sudo, apt, dnf, ss, clk, df, ports, watchdog] = await Promise.all([
    text(shell, ['cat', '/etc/os-release']),
    text(shell, ['id', '-u']),
    shell.exec(['sudo', '-n', 'true'], { timeoutMs: 10_000 }).then((r) => r.code === 0),
    shell.exec(['sh', '-c', 'command -v apt-get'], { timeoutMs: 10_000 }).then((r) => r.code === 0),
    shell.exec(['sh', '-c', 'command -v dnf'], { timeoutMs: 10_000 }).then((r) => r.code === 0),
    text(shell, ['ss', '-Hltn']),
    clock(shell, 10_000),
    text(shell, ['df', '-B1', '--output=avail', '/var/lib']),
    Promise.all(outgoing.map((r) => connect(shell, m.name, byName.get(r.to)!, r.port, 3000))),
    m.roles.includes('db') ? shell.exec(['test', '-e', WATCHDOG_DEVICE], { timeoutMs: 10_000 }).then((r) => r.code === 0) : undefined,
  ]);
  const ipAddr = runsKeepalived(cluster, m) ? await text(shell, ['ip', '-4', '-o', 'addr', 'show']) : undefined;
  const packageManager = apt ? 'apt' : dnf ? 'dnf' : null;
  const versions = packageManager
    ? await packageVersions(
        shell,
        packageManager,
        versionNeedsFor(cluster, m, packageManager).map((n) => n.pkg),
      )
    : [];
  const listeners = ss === null ? [] : parseSs(ss);
  // sshd is expected on its port (file sync uses it); any other listener is in the way, unless
  // it is the component's own Vigil unit running there (an earlier apply of this cluster).
  let taken = mine.filter((r) => r.component !== 'sshd' && listeners.some((l) => l.port === r.port));
  if (taken.length) {
    const units = [...new Set(taken.map((r) => COMPONENT_UNIT[r.component]).filter((u): u is string => u !== undefined))];
    const active = await activeUnits(shell, units);
    taken = taken.filter((r) => !active.has(COMPONENT_UNIT[r.component] ?? ''));
  }
  const busy = taken.map((r) => ({ port: r.port, what: r.what }));
  return {
    machine: m.name,
    reachable: { ok: true, value: true },
    os: osText === null ? null : parseOsRelease(osText),
    root: { uid: Number(uid?.trim() ?? NaN), sudo },
    packageManager,
    versions,
    busy,
    ports,
    clock: clk,
    freeBytes: df === null ? null : Number(df.trim().split('\n').pop()),
    ...(watchdog === undefined ? {} : { watchdogDevice: watchdog }),
    ...(ipAddr === undefined ? {} : { interfaces: ipAddr === null ? null : parseIpAddr(ipAddr) }),
  };
}

/** The unit that runs each component on a machine Vigil installed. */
const COMPONENT_UNIT: Partial<Record<string, string>> = {
  etcd: UNITS.etcd,
  patroni: UNITS.patroni,
  haproxy: UNITS.haproxy,
  agent: UNITS.agent,
  nginx: UNITS.nginx,
};

async function activeUnits(shell: RemoteShell, units: string[]): Promise<Set<string>> {
  if (!units.length) return new Set();
  const r = await shell.exec(['sh', '-c', 'for u in "$@"; do systemctl is-active --quiet "$u" && echo "$u"; done; true', 'vigil-active', ...units], {
    timeoutMs: 30_000,
  });
  return new Set(r.stdout.split('\n').filter(Boolean));
}

export function parseOsRelease(t: string): { id: string; versionId: string; pretty: string } {
  const v = (k: string) => new RegExp(`^${k}="?([^"\\n]*)"?$`, 'm').exec(t)?.[1] ?? '';
  return { id: v('ID'), versionId: v('VERSION_ID'), pretty: v('PRETTY_NAME') || `${v('ID')} ${v('VERSION_ID')}` };
}

/** What is wrong, from the facts of every machine. Pure. */
export function evaluatePreflight(facts: PreflightFacts[], cluster: Cluster): PreflightFinding[] {
  const out: PreflightFinding[] = [];
  const add = (f: PreflightFinding) => out.push(f);
  const needs = portRequirements(cluster);
  const addressOf = new Map(cluster.machines.map((x) => [x.name, x.address]));
  for (const f of facts) {
    const m = f.machine;
    if (!f.reachable.ok) {
      add({
        severity: 'fail',
        machine: m,
        check: 'reachable',
        what: `cannot run a command: ${f.reachable.error}`,
        why: 'nothing can be installed on it',
        fix: 'check that the machine is up and its SSH port open, then run `vigil preflight` again',
      });
      continue;
    }
    if (!f.os)
      add({
        severity: 'fail',
        machine: m,
        check: 'os',
        what: '/etc/os-release is missing',
        why: 'Vigil installs packages for Debian, Ubuntu and RHEL 9 only',
        fix: 'use a supported distribution',
      });
    else {
      const ok = SUPPORTED[f.os.id]?.(Number.parseFloat(f.os.versionId));
      if (!ok)
        add({
          severity: 'fail',
          machine: m,
          check: 'os',
          what: `${f.os.pretty} is not supported`,
          why: 'Vigil installs its packages on Debian 12, Ubuntu 22.04/24.04 and RHEL 9 (and its rebuilds)',
          fix: 'reinstall the machine with a supported release',
        });
    }
    if (f.root && f.root.uid !== 0 && !f.root.sudo)
      add({
        severity: 'fail',
        machine: m,
        check: 'sudo',
        what: 'the SSH user is not root and `sudo -n` asks for a password',
        why: 'installing packages and services needs root',
        fix: 'add `<user> ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d/vigil, or log in as root (`sshUser: root`)',
      });
    if (f.packageManager === null)
      add({
        severity: 'fail',
        machine: m,
        check: 'packages',
        what: 'neither apt-get nor dnf is there',
        why: "Vigil installs PostgreSQL, Patroni, etcd, HAProxy, nginx and rsync with the distribution's package manager",
        fix: 'use a Debian, Ubuntu or RHEL machine',
      });
    if (f.packageManager) {
      const byMachine = cluster.machines.find((x) => x.name === m);
      for (const need of byMachine ? versionNeedsFor(cluster, byMachine, f.packageManager) : []) {
        const v = f.versions?.find((x) => x.pkg === need.pkg);
        const version = v?.installed ?? v?.candidate;
        const update = f.packageManager === 'apt' ? 'apt-get update' : 'dnf makecache';
        if (!version) {
          // The distribution's own PostgreSQL is another major version: say which, and both ways out.
          const shipped = need.pkg.startsWith('postgresql') ? distroPostgres(f.os ?? undefined) : undefined;
          const other = shipped !== undefined && shipped !== cluster.database.postgresVersion;
          add({
            severity: 'warn',
            machine: m,
            check: 'versions',
            what: `${need.pkg} is neither installed nor in the machine's package lists`,
            why: `${need.component} comes from it${other ? `; ${f.os!.pretty} ships PostgreSQL ${shipped}` : ''}; apply refreshes the lists (${update}) when installing fails, and stops if it is still missing`,
            fix: other
              ? `set database.postgresVersion: ${shipped} in vigil.yaml to use ${f.os!.pretty}'s own PostgreSQL, or add ${need.source} (or a local mirror of it) on ${m} for PostgreSQL ${cluster.database.postgresVersion}`
              : `run \`${update}\` on ${m}; if ${need.pkg} is still missing, add ${need.source} (or a local mirror of it)`,
          });
          continue;
        }
        if (need.pkg === 'patroni' && overwritesLeaderKey(parsePatroniVersion(version))) {
          const x = leaderKeyFinding(upstreamVersion(version).join('.'), m);
          add({ severity: 'warn', machine: m, check: 'versions', ...x });
        }
        if (need.min && !versionAtLeast(upstreamVersion(version), upstreamVersion(need.min)))
          add({
            severity: 'fail',
            machine: m,
            check: 'versions',
            what: v?.installed ? `${need.pkg} ${version} is installed` : `the package lists offer ${need.pkg} ${version}`,
            why: `Vigil needs ${need.component} ${need.min} or newer`,
            fix: `add ${need.source} (or a local mirror of it) on ${m}, run \`${update}\`, then run \`vigil apply\` again`,
          });
      }
    }
    if (f.watchdogDevice === false && cluster.database.watchdog === 'required')
      add({
        severity: 'fail',
        machine: m,
        check: 'watchdog',
        what: `database.watchdog is required, but ${m} has no watchdog device (${WATCHDOG_DEVICE})`,
        why: 'Patroni refuses to become primary where it cannot open the watchdog: this machine could never take over',
        fix: `on ${m}: \`modprobe softdog && echo softdog > /etc/modules-load.d/softdog.conf\` (or give the virtual machine a watchdog device); or set database.watchdog: off`,
      });
    const machine = cluster.machines.find((x) => x.name === m);
    if (machine && f.interfaces) for (const v of vrrpInterfaceFindings(cluster, machine, f.interfaces)) add({ ...v, machine: m, check: 'vrrp' });
    if (f.watchdogDevice === true && cluster.database.watchdog === 'off')
      add({
        severity: 'warn',
        machine: m,
        check: 'watchdog',
        what: `${m} has a watchdog device (${WATCHDOG_DEVICE}), but database.watchdog is off`,
        why: 'a primary whose machine hangs is not reset before its lease runs out',
        fix: 'set database.watchdog: required in vigil.yaml',
      });
    for (const b of f.busy ?? [])
      add({
        severity: 'fail',
        machine: m,
        check: 'ports',
        what: `port ${b.port} (${b.what}) is already in use by another program`,
        why: 'the component Vigil installs there could not listen',
        fix: `find it with \`ss -ltnp 'sport = :${b.port}'\` on ${m} and stop it, or change the port in vigil.yaml`,
      });
    for (const p of f.ports ?? []) {
      if (p.outcome === 'open' || p.outcome === 'refused') continue; // refused: the path is open, nothing listens yet
      const need = needs.find((r) => r.to === p.to && r.port === p.port);
      add({
        severity: 'fail',
        machine: m,
        check: 'ports',
        what: `${m} cannot reach ${p.to}:${p.port} (${need?.what ?? 'port'}): ${p.outcome === 'timeout' ? 'no answer (a firewall drops it)' : (p.detail ?? p.outcome)}`,
        why: `${m} needs it once the cluster runs`,
        fix: `open TCP port ${p.port} on ${p.to} for ${m} (firewall-cmd --add-port=${p.port}/tcp --permanent && firewall-cmd --reload, or ufw allow from ${addressOf.get(m) ?? m} to any port ${p.port})`,
      });
    }
    if (f.clock && !f.clock.ok)
      add({
        severity: 'warn',
        machine: m,
        check: 'clock',
        what: `could not read the clock: ${f.clock.error}`,
        why: 'agents and file sync compare times',
        fix: 'check that `date` works there',
      });
    else if (f.clock?.ok && Math.abs(f.clock.value.offsetMs) > MAX_SKEW_MS + f.clock.value.uncertaintyMs)
      add({
        severity: 'fail',
        machine: m,
        check: 'clock',
        what: `its clock is ${Math.round(f.clock.value.offsetMs)} ms off this machine's`,
        why: `file sync's receivers compare wall-clock times within the agents' lease; more than ${MAX_SKEW_MS} ms apart is unsafe`,
        fix: 'run NTP on every machine (chrony or systemd-timesyncd) against the same servers',
      });
    if (f.freeBytes !== undefined && f.freeBytes !== null && f.freeBytes < MIN_FREE_BYTES)
      add({
        severity: 'warn',
        machine: m,
        check: 'disk',
        what: `${(f.freeBytes / 2 ** 30).toFixed(1)} GiB free under /var/lib`,
        why: 'PostgreSQL, etcd and the synced files live there',
        fix: `free space or grow the file system to at least ${MIN_FREE_BYTES / 2 ** 30} GiB free`,
      });
  }
  return out;
}

export function formatPreflight(facts: PreflightFacts[], findings: PreflightFinding[]): string {
  const lines: string[] = [];
  for (const f of facts) {
    const mine = findings.filter((x) => x.machine === f.machine);
    const os = f.os ? f.os.pretty : 'unknown OS';
    const versions = (f.versions ?? []).map((v) => `${v.pkg} ${v.installed ?? (v.candidate ? `${v.candidate} (to install)` : 'unavailable')}`);
    lines.push(
      `${f.machine}: ${f.reachable.ok ? [os, f.packageManager ?? 'no package manager', ...versions, `${(f.ports ?? []).length} port path(s) checked`].join(', ') : 'UNREACHABLE'}`,
    );
    for (const x of mine) lines.push(`  ${x.severity.toUpperCase().padEnd(5)} ${x.check}: ${x.what}\n        why: ${x.why}\n        fix: ${x.fix}`);
  }
  const fails = findings.filter((x) => x.severity === 'fail').length;
  lines.push(
    fails
      ? `preflight: ${fails} problem(s) to fix before installing`
      : `preflight: every machine can take the cluster${findings.length ? ` (${findings.length} warning(s))` : ''}`,
  );
  return lines.join('\n');
}
