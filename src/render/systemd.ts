/**
 * systemd units for the components Vigil runs on a real machine. The lab starts the same
 * commands itself (no systemd as PID 1 there), so each unit's command line is also exported.
 *
 * Common choices: After/Wants network-online.target (etcd and Patroni bind the machine's
 * address, which must be configured first); Restart with a short RestartSec so a crashed
 * component is back within seconds; runtime and state directories created by systemd with the
 * right owner, so the files Vigil renders are all a machine needs.
 */
import type { Cluster, Machine } from '../config/schema.ts';
import { dirname } from 'node:path';
import { PATHS, ROOTS } from '../config/paths.ts';
import { HEADER, type RenderedFile } from './file.ts';
import { NGINX_DIRS, NGINX_ERROR_LOG } from './nginx.ts';

/** Where the Debian/Ubuntu and RHEL packages install the binaries. */
export const BINARIES = {
  etcd: '/usr/bin/etcd',
  patroni: '/usr/bin/patroni',
  haproxy: '/usr/sbin/haproxy',
  nginx: '/usr/sbin/nginx',
  kill: '/bin/kill',
} as const;

export const UNITS = {
  etcd: 'vigil-etcd.service',
  patroni: 'vigil-patroni.service',
  haproxy: 'vigil-haproxy.service',
  nginx: 'vigil-nginx.service',
} as const;

/** Command lines (argv) of the foreground processes, shared by the units and the lab. */
export const COMMANDS = {
  etcd: [BINARIES.etcd, '--config-file', PATHS.etcdConfig],
  patroni: [BINARIES.patroni, PATHS.patroniConfig],
  /** -Ws: master-worker mode with sd_notify; the lab uses -W -db (foreground, no notify). */
  haproxy: [BINARIES.haproxy, '-Ws', '-f', PATHS.haproxyConfig],
  /** -e: nginx opens its error log before reading the config; keep that one under Vigil's logs too. */
  nginx: [BINARIES.nginx, '-c', PATHS.nginxConfig, '-e', NGINX_ERROR_LOG, '-g', 'daemon off;'],
} as const;

/** A directory as systemd's RuntimeDirectory= (/run), StateDirectory= (/var/lib), LogsDirectory= (/var/log) want it. */
function below(path: string, root: '/run' | '/var/lib' | '/var/log'): string {
  if (!path.startsWith(`${root}/`)) throw new Error(`${path} is not below ${root}`);
  return path.slice(root.length + 1);
}

/** argv as one systemd command line: words with blanks or quotes are double-quoted. */
function execLine(argv: readonly string[]): string {
  return argv.map((a) => (/[\s"'\\;$%]/.test(a) ? `"${a.replace(/[\\"]/g, '\\$&').replaceAll('%', '%%').replaceAll('$', '$$$$')}"` : a)).join(' ');
}

function unit(description: string, unitLines: string[], service: string[], install: boolean): string {
  const parts = [
    `# ${HEADER}`,
    '[Unit]',
    `Description=${description}`,
    'Wants=network-online.target',
    'After=network-online.target',
    ...unitLines,
    '',
    '[Service]',
    ...service,
  ];
  if (install) parts.push('', '[Install]', 'WantedBy=multi-user.target');
  return parts.join('\n') + '\n';
}

export function etcdUnit(): string {
  return unit('Vigil etcd member (cluster state for Patroni and Vigil)', [], [
    // Not Type=notify: etcd notifies only once the cluster has quorum, so starting the first
    // member of three would block `systemctl start` until the others run. Readiness is checked
    // with `etcdctl endpoint health` instead.
    'Type=exec',
    'User=etcd',
    'Group=etcd',
    `StateDirectory=${below(PATHS.etcdData, '/var/lib')}`,
    'StateDirectoryMode=0700',
    `ExecStart=${execLine(COMMANDS.etcd)}`,
    'Restart=always',
    'RestartSec=1s',
    'LimitNOFILE=65536',
  ], true);
}

export function patroniUnit(): string {
  return unit('Vigil Patroni (PostgreSQL high availability)', ['After=vigil-etcd.service'], [
    'Type=simple',
    'User=postgres',
    'Group=postgres',
    // The unix socket directory; 0700 makes pg_hba's `local ... trust` line reachable by
    // postgres and root only.
    `RuntimeDirectory=${below(PATHS.pgSocketDir, '/run')}`,
    'RuntimeDirectoryMode=0700',
    // Parent of the data directory and the pgpass file, owned by postgres.
    `StateDirectory=${below(dirname(PATHS.pgData), '/var/lib')}`,
    'StateDirectoryMode=0700',
    `ExecStart=${execLine(COMMANDS.patroni)}`,
    // SIGHUP makes Patroni re-read patroni.yml (and rewrite pg_hba.conf) without a restart.
    `ExecReload=${BINARIES.kill} -HUP $MAINPID`,
    // Stop signals go to Patroni only: Patroni shuts PostgreSQL down cleanly (and releases the
    // leader key so a replica takes over at once). systemd signalling the postmaster directly
    // would race Patroni; after a Patroni crash the still-running PostgreSQL is adopted on restart.
    'KillMode=process',
    // Long enough for a checkpoint at shutdown; shorter than an operator's patience.
    'TimeoutSec=60',
    // A crash is restarted quickly (the lease outlives a short outage); a clean stop is the
    // operator's decision and stays stopped.
    'Restart=on-failure',
    'RestartSec=2s',
    'LimitNOFILE=65536',
  ], true);
}

export function haproxyUnit(): string {
  const check = execLine([BINARIES.haproxy, '-c', '-q', '-f', PATHS.haproxyConfig]);
  return unit('Vigil HAProxy (entry point for the app and PostgreSQL)', [], [
    'Type=notify', // -Ws: the master notifies systemd once the workers listen
    // The stats socket's directory; preserved so a restart of haproxy never removes the
    // directory other Vigil components keep their runtime files under.
    `RuntimeDirectory=${below(ROOTS.run, '/run')}`,
    'RuntimeDirectoryPreserve=yes',
    `ExecStartPre=${check}`,
    `ExecStart=${execLine(COMMANDS.haproxy)}`,
    // A broken config is refused before the running one is replaced.
    `ExecReload=${check}`,
    `ExecReload=${BINARIES.kill} -USR2 $MAINPID`,
    'KillMode=mixed',
    'Restart=always',
    'RestartSec=1s',
    // haproxy exits 143 after SIGTERM.
    'SuccessExitStatus=143',
    'LimitNOFILE=65536',
  ], true);
}

export function nginxUnit(): string {
  const argv = COMMANDS.nginx;
  return unit('Vigil nginx (application web front; the agent runs it on the active node only)', [], [
    'Type=exec',
    `RuntimeDirectory=${below(NGINX_DIRS.run, '/run')}`,
    `StateDirectory=${below(NGINX_DIRS.state, '/var/lib')}`,
    `LogsDirectory=${below(NGINX_DIRS.log, '/var/log')}`,
    `ExecStartPre=${execLine([argv[0], '-t', '-q', ...argv.slice(1)])}`,
    `ExecStart=${execLine(argv)}`,
    `ExecReload=${BINARIES.kill} -HUP $MAINPID`,
    // SIGTERM is nginx's fast shutdown: when the agent fences this node it must stop serving
    // now, not after the last slow upload (SIGQUIT would wait for it).
    'KillSignal=SIGTERM',
    'KillMode=mixed',
    'TimeoutStopSec=5s',
    // Restarted after a crash, but never started at boot: no [Install] section, because a
    // rebooted former master must not serve until the agent has confirmed it is active.
    'Restart=on-failure',
    'RestartSec=1s',
  ], false);
}

/** The units a machine needs, by its roles. */
export function renderUnits(_cluster: Cluster, machine: Machine): RenderedFile[] {
  const out: RenderedFile[] = [];
  const add = (name: string, content: string) =>
    out.push({ machine: machine.name, path: `${PATHS.systemdDir}/${name}`, mode: 0o644, owner: 'root:root', content });
  if (machine.roles.includes('etcd')) add(UNITS.etcd, etcdUnit());
  if (machine.roles.includes('db')) add(UNITS.patroni, patroniUnit());
  if (machine.roles.includes('proxy')) add(UNITS.haproxy, haproxyUnit());
  if (machine.roles.includes('app')) add(UNITS.nginx, nginxUnit());
  return out;
}
