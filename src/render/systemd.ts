/**
 * systemd units for the components Vigil runs on a machine (a real one, or a lab machine, which
 * boots systemd and gets them from `vigil apply` too).
 *
 * The units, by the machine roles that get them (renderUnits):
 *   vigil-etcd.service      etcd       etcd member; started at boot
 *   vigil-patroni.service   db         Patroni, which runs PostgreSQL; started at boot
 *   vigil-haproxy.service   proxy      HAProxy, the entry point; started at boot
 *   vigil-keepalived.service proxy     keepalived, the floating entry address (proxy.virtualAddress); at boot
 *   vigil-nginx.service     app        nginx in front of the application; NOT started at boot,
 *                                      the agent starts it on the active machine only
 *   vigil-refapp.service    app        the reference application (its own bundle), likewise
 *   vigil-refapp-analytics.service app its analytics service (same bundle, --analytics), where listed; likewise
 *   vigil-agent.service     app, db    `vigil agent --node NAME`; started at boot
 *   vigil-observer.service  observer   `vigil observer --node NAME`; started at boot
 *
 * Common choices: After/Wants network-online.target (etcd and Patroni bind the machine's
 * address, which must be configured first); Restart with a short RestartSec so a crashed
 * component is back within seconds; runtime and state directories created by systemd with the
 * right owner, so the files Vigil renders are all a machine needs.
 *
 * Vigil's own daemons (agent, observer) run Vigil's code from VIGIL_INSTALL: the installer must
 * put both the Node.js binary and the bundled entry point there (see VIGIL_INSTALL in src/layout/units.ts). The
 * reference application runs its own bundle from there too (VIGIL_INSTALL.refapp), which apply
 * installs on the app machines that run it.
 */
import { BINARIES, UNITS, VIGIL_INSTALL, WATCHDOG_DEVICE } from '../layout/units.ts';
import { runsAgent, type Cluster, type Machine } from '../config/schema.ts';
import { dirname } from 'node:path';
import { PATHS, ROOTS } from '../layout/paths.ts';
import { HEADER, type RenderedFile } from './file.ts';
import { EMPTY_SERVER_STATE } from './haproxy.ts';
import { runsKeepalived } from './keepalived.ts';
import { NGINX_DIRS, NGINX_ERROR_LOG } from './nginx.ts';
import { runsRefapp, runsRefappAnalytics } from './refapp.ts';
import { deadmanCommand, deadmanScript } from './deadman.ts';

/** Command lines (argv) of the foreground processes, shared by the units and the lab. */
export const COMMANDS = {
  etcd: [BINARIES.etcd, '--config-file', PATHS.etcdConfig],
  patroni: [BINARIES.patroni, PATHS.patroniConfig],
  /** -Ws: master-worker mode with sd_notify. */
  haproxy: [BINARIES.haproxy, '-Ws', '-f', PATHS.haproxyConfig],
  /** --vrrp: the VRRP process only (no LVS health checker); logs on stderr (the journal), not syslog. */
  keepalived: [
    BINARIES.keepalived,
    '--dont-fork',
    '--vrrp',
    '--log-console',
    '--no-syslog',
    '--log-detail',
    '--use-file',
    PATHS.keepalivedConfig,
    '--pid',
    PATHS.keepalivedPid,
    '--vrrp_pid',
    PATHS.keepalivedVrrpPid,
  ],
  /** -e: nginx opens its error log before reading the config; keep that one under Vigil's logs too. */
  nginx: [BINARIES.nginx, '-c', PATHS.nginxConfig, '-e', NGINX_ERROR_LOG, '-g', 'daemon off;'],
} as const;

/** Vigil's daemons (src/cli/agent.ts). */
export type VigilDaemon = 'agent' | 'observer';

/**
 * Command line (argv) of `vigil agent` or `vigil observer` for one machine, as its unit runs it:
 * the installed Node.js and bundle, the machine's name, and the cluster file's copy on the machine.
 */
export function daemonCommand(daemon: VigilDaemon, node: string): string[] {
  return [VIGIL_INSTALL.node, ...DAEMON_NODE_FLAGS, VIGIL_INSTALL.entry, daemon, '--node', node, '--cluster', PATHS.clusterFile];
}

/**
 * V8's young generation kept at 1 MiB a semi-space (its default grows to 16): the daemons allocate
 * a little every tick, forever, and a large nursery is resident memory that buys them nothing.
 * Measured on the idle lab observer (docs/benchmarks.md, the daemons' footprint): about 30 MiB
 * less resident memory, no CPU difference beyond the run-to-run spread.
 */
const DAEMON_NODE_FLAGS = ['--max-semi-space-size=1'];

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
  return unit(
    'Vigil etcd member (cluster state for Patroni and Vigil)',
    [],
    [
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
    ],
    true,
  );
}

export function patroniUnit(watchdog: 'required' | 'off' = 'off'): string {
  return unit(
    'Vigil Patroni (PostgreSQL high availability)',
    ['After=vigil-etcd.service'],
    [
      'Type=simple',
      'User=postgres',
      'Group=postgres',
      // The unix socket directory; 0700 makes pg_hba's `local ... trust` line reachable by
      // postgres and root only.
      `RuntimeDirectory=${below(PATHS.pgSocketDir, '/run')}`,
      'RuntimeDirectoryMode=0700',
      // Kept when Patroni dies: PostgreSQL outlives it (KillMode=process below) with its socket in
      // there, and the restarted Patroni must reach it. Removed, the socket is gone for good and
      // Patroni waits forever for a PostgreSQL "still starting up" (found by `vigil lab chaos`).
      'RuntimeDirectoryPreserve=yes',
      // Parent of the data directory and the pgpass file, owned by postgres.
      `StateDirectory=${below(dirname(PATHS.pgData), '/var/lib')}`,
      'StateDirectoryMode=0700',
      // Patroni runs as postgres and must open the watchdog device, which the kernel gives root:
      // '+' runs this one command as root; '-': a missing device is Patroni's to report (it then
      // refuses to lead), not a reason to keep it from starting as a replica.
      ...(watchdog === 'required' ? [`ExecStartPre=-+${execLine([BINARIES.chown, 'postgres:postgres', WATCHDOG_DEVICE])}`] : []),
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
    ],
    true,
  );
}

export function haproxyUnit(): string {
  const check = execLine([BINARIES.haproxy, '-c', '-q', '-f', PATHS.haproxyConfig]);
  return unit(
    'Vigil HAProxy (entry point for the app and PostgreSQL)',
    [],
    [
      'Type=notify', // -Ws: the master notifies systemd once the workers listen
      // The stats socket's directory; preserved so a restart of haproxy never removes the
      // directory other Vigil components keep their runtime files under.
      `RuntimeDirectory=${below(ROOTS.run, '/run')}`,
      'RuntimeDirectoryPreserve=yes',
      // A cold start begins from the configuration, never from a state saved before it: a state
      // file with no server in it (HAProxy warns about a missing one).
      `ExecStartPre=${execLine([BINARIES.sh, '-c', `echo ${EMPTY_SERVER_STATE.trim()} > ${PATHS.haproxyState}`])}`,
      `ExecStartPre=${check}`,
      `ExecStart=${execLine(COMMANDS.haproxy)}`,
      // A broken config is refused before the running one is replaced.
      `ExecReload=${check}`,
      // The new worker starts from the servers' current state (load-server-state-from-file):
      // MAINT set by the observer stays, and the active server is UP at once. Best effort ('-'):
      // without it the new worker starts from the configuration and the observer fences again.
      `ExecReload=-${execLine([BINARIES.sh, '-c', `echo 'show servers state' | ${BINARIES.socat} stdio UNIX-CONNECT:${PATHS.haproxySocket} > ${PATHS.haproxyState}.tmp && mv ${PATHS.haproxyState}.tmp ${PATHS.haproxyState}`])}`,
      `ExecReload=${BINARIES.kill} -USR2 $MAINPID`,
      'KillMode=mixed',
      'Restart=always',
      'RestartSec=1s',
      // haproxy exits 143 after SIGTERM.
      'SuccessExitStatus=143',
      'LimitNOFILE=65536',
    ],
    true,
  );
}

/** Proxy machines with a floating entry address: keepalived's VRRP alone (no LVS), checked before every start and reload. */
export function keepalivedUnit(): string {
  const check = execLine([BINARIES.keepalived, '--config-test', '--use-file', PATHS.keepalivedConfig]);
  return unit(
    'Vigil keepalived (holds the floating entry address on one proxy machine whose HAProxy answers)',
    // Ordering only: keepalived must run while HAProxy is down, to give the address away.
    [`After=${UNITS.haproxy}`],
    [
      'Type=notify', // with --dont-fork keepalived notifies systemd once its children run
      // Its pid files live beside HAProxy's socket; preserved, as in the HAProxy unit.
      `RuntimeDirectory=${below(ROOTS.run, '/run')}`,
      'RuntimeDirectoryPreserve=yes',
      `ExecStartPre=${check}`,
      `ExecStart=${execLine(COMMANDS.keepalived)}`,
      // A broken config is refused before the running one is replaced; SIGHUP re-reads it.
      `ExecReload=${check}`,
      `ExecReload=${BINARIES.kill} -HUP $MAINPID`,
      'Restart=always',
      'RestartSec=1s',
    ],
    true,
  );
}

export function nginxUnit(): string {
  const argv = COMMANDS.nginx;
  return unit(
    'Vigil nginx (application web front; the agent runs it on the active node only)',
    [],
    [
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
      // Never started at boot (no [Install] section: a rebooted former master must not serve until
      // the agent has confirmed it is active), and not restarted after a crash: the machine then
      // fails its checks and the observer moves the application to a standby, as the agent does in
      // the lab. A restart in place would hide a crash loop and flap.
      'Restart=no',
    ],
    false,
  );
}

/**
 * What both services of the reference application share. Root, but bound by file modes like any
 * other user: a key file root may not read (mode 000, another owner's 600) is unreadable to it,
 * as it would be to a real application's user. Not restarted in place (see nginxUnit).
 */
const REFAPP_SERVICE_LIMITS = [
  'CapabilityBoundingSet=~CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH',
  'Environment=NODE_ENV=production',
  'KillSignal=SIGTERM',
  'TimeoutStopSec=5s',
  'Restart=no',
];

/** The reference application, as the agent runs it on the active machine of a demo cluster. */
export function refappUnit(): string {
  return unit(
    'Vigil reference application (the agent runs it on the active node only)',
    [],
    [
      'Type=exec',
      `StateDirectory=${below(PATHS.refappAttachments, '/var/lib')}`,
      // The mode apply and file sync's receiver give the directory; without it systemd puts it back to 0755 at every start.
      'StateDirectoryMode=0750',
      `ExecStart=${execLine([VIGIL_INSTALL.node, VIGIL_INSTALL.refapp, '--config', PATHS.refappConfig])}`,
      // SIGHUP: the HTTPS settings read again and the HTTPS port reopened; HTTP keeps serving.
      `ExecReload=${BINARIES.kill} -HUP $MAINPID`,
      ...REFAPP_SERVICE_LIMITS,
    ],
    false,
  );
}

/** The reference application's analytics service (its second one, standing for the seed's cm-analytics), where the cluster file lists it. */
export function refappAnalyticsUnit(): string {
  return unit(
    'Vigil reference application, analytics service (the agent runs it where its placement says)',
    [],
    ['Type=exec', `ExecStart=${execLine([VIGIL_INSTALL.node, VIGIL_INSTALL.refapp, '--config', PATHS.refappConfig, '--analytics'])}`, ...REFAPP_SERVICE_LIMITS],
    false,
  );
}

/**
 * Settings the agent and observer units share.
 *
 * Both run as root for now. The agent has to: it runs `systemctl start|stop` on the
 * application's units, reads the Patroni state and the machine's key. The observer does not need
 * root but reads the secrets file and the machine's key (neither world-readable) and, on the proxy
 * machine, HAProxy's runtime socket. A later hardening step would:
 * - observer: run as a `vigil` user (User=/Group=) that owns /var/log/vigil and may read the
 *   secrets file and its key (group-readable), with HAProxy's stats socket made group-accessible
 *   (`stats socket ... group vigil mode 660`);
 * - agent: keep root or give a `vigil` user a polkit rule allowing start/stop of exactly the
 *   application's units (org.freedesktop.systemd1.manage-units);
 * - both: ProtectSystem=strict with ReadWritePaths=/var/log/vigil, ProtectHome=yes,
 *   PrivateTmp=yes, CapabilityBoundingSet= (empty, for the non-root observer),
 *   RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6, SystemCallFilter=@system-service,
 *   checked with `systemd-analyze security`. Not MemoryDenyWriteExecute=: V8's JIT needs W+X pages.
 *   For the agent the sandbox also applies to what it runs itself (file sync's rsync and ssh).
 */
function daemonService(daemon: VigilDaemon, machine: Machine): string[] {
  return [
    // exec: `systemctl start` fails at once when the node binary is missing, instead of
    // reporting success and then a restart loop (a missing bundle is node's error in the journal).
    'Type=exec',
    'Environment=NODE_ENV=production',
    // glibc gives each thread that allocates (node's main thread, V8's platform and libuv's pool
    // threads) an arena of its own, up to 8 per core, and returns little of them: with two the idle
    // lab observer held 115 MiB instead of 197 in a run by hand, 142 instead of 176 in
    // bench/footprint.ts (docs/benchmarks.md, the daemons' footprint).
    'Environment=MALLOC_ARENA_MAX=2',
    `ExecStart=${execLine(daemonCommand(daemon, machine.name))}`,
    // Compatible with both daemons: root does not need setuid binaries, and systemctl talks to
    // PID 1 over its socket. Children (systemctl, processes the agent starts) inherit it.
    'NoNewPrivileges=yes',
    // The daemons log JSON lines on stdout; tagged with the unit's name, not "node".
    'StandardOutput=journal',
    'StandardError=journal',
    `SyslogIdentifier=vigil-${daemon}`,
    // SIGTERM makes the daemon close its etcd and TLS connections and exit 0; 10 s is plenty,
    // and a hung one is killed rather than holding up a shutdown or an upgrade.
    'TimeoutStopSec=10',
    // An HA daemon must come back whatever its exit status (only `systemctl stop` keeps it down).
    'Restart=always',
    'RestartSec=1s',
  ];
}

/**
 * No start-rate limit: with the default (5 starts in 10 s) a daemon that fails for longer than a
 * few seconds (cluster file being replaced, etcd unreachable at boot) would be given up for
 * good, leaving the machine without HA until an operator notices. It retries every second instead.
 */
const NO_START_LIMIT = 'StartLimitIntervalSec=0';

/** The node agent of an app or db machine. */
export function agentUnit(machine: Machine): string {
  const after = machine.roles.includes('db')
    ? // After, not Requires: the agent reports Patroni's state (and a Patroni that is down) and
      // must keep running when Patroni is stopped or fails; the ordering only makes it start after
      // Patroni at boot and stop before it at shutdown.
      [`After=${UNITS.patroni}`]
    : [];
  return unit(
    "Vigil node agent (reports this machine's state, runs the application on the active machine)",
    [...after, NO_START_LIMIT],
    [
      // root: it runs systemctl on the application's units (see daemonService).
      ...daemonService('agent', machine),
      // Stopping or restarting the agent (an upgrade, a crash) must never take the application
      // down: only the agent's own process is signalled. The application's services are units of
      // their own, outside this cgroup, so the default would spare them too; a file-sync push in
      // flight (rsync over ssh, in this cgroup) is left to finish. A dead or hung agent's
      // application is stopped by the dead-man switch once the agent's lease has run out.
      'KillMode=process',
    ],
    true,
  );
}

/** App machines: the dead-man switch (src/render/deadman.ts), independent of the agent's process. */
export function deadmanUnit(cluster: Cluster): string {
  return unit(
    "Vigil dead-man switch (stops the application when the agent's lease has run out)",
    [NO_START_LIMIT],
    ['Type=exec', `ExecStart=${execLine(deadmanCommand(cluster))}`, 'StandardOutput=journal', 'Restart=always', 'RestartSec=1s'],
    true,
  );
}

/** The observer: watches the app machines, moves the active role, fails over. */
export function observerUnit(machine: Machine): string {
  // The observer's etcd and HAProxy may be on this very machine (the presets' observer); then it
  // starts after them. Wants/Requires are left out: it copes with either being down or remote.
  const after = [...(machine.roles.includes('etcd') ? [`After=${UNITS.etcd}`] : []), ...(machine.roles.includes('proxy') ? [`After=${UNITS.haproxy}`] : [])];
  return unit(
    'Vigil observer (watches the app machines and fails over)',
    [...after, NO_START_LIMIT],
    [
      // root for now (see daemonService for what hardening would change).
      ...daemonService('observer', machine),
      // The event log's file (events.jsonl) lives under /var/log/vigil.
      `LogsDirectory=${below(ROOTS.log, '/var/log')}`,
      // The observer starts no processes: the default KillMode=control-group stops it whole.
    ],
    true,
  );
}

/** The units a machine needs, by its roles. */
export function renderUnits(cluster: Cluster, machine: Machine): RenderedFile[] {
  const out: RenderedFile[] = [];
  const add = (name: string, content: string) =>
    out.push({ machine: machine.name, path: `${PATHS.systemdDir}/${name}`, mode: 0o644, owner: 'root:root', content });
  if (machine.roles.includes('etcd')) add(UNITS.etcd, etcdUnit());
  if (machine.roles.includes('db')) add(UNITS.patroni, patroniUnit(cluster.database.watchdog));
  if (machine.roles.includes('proxy')) add(UNITS.haproxy, haproxyUnit());
  if (runsKeepalived(cluster, machine)) add(UNITS.keepalived, keepalivedUnit());
  if (machine.roles.includes('app')) add(UNITS.nginx, nginxUnit());
  if (runsRefapp(cluster, machine)) add(UNITS.refapp, refappUnit());
  if (runsRefappAnalytics(cluster, machine)) add(UNITS.refappAnalytics, refappAnalyticsUnit());
  if (runsAgent(cluster, machine)) add(UNITS.agent, agentUnit(machine));
  if (machine.roles.includes('app')) {
    add(UNITS.deadman, deadmanUnit(cluster));
    out.push({ machine: machine.name, path: PATHS.deadmanScript, mode: 0o755, owner: 'root:root', content: deadmanScript() });
  }
  if (machine.roles.includes('observer')) add(UNITS.observer, observerUnit(machine));
  return out;
}
