/**
 * Where Vigil's own code, the components' binaries and the systemd units are on a machine: one home
 * for the names the generators, the daemons, apply, doctor and the lab all use.
 */

/** Where the Debian/Ubuntu and RHEL packages install the binaries. */
export const BINARIES = {
  etcd: '/usr/bin/etcd',
  patroni: '/usr/bin/patroni',
  haproxy: '/usr/sbin/haproxy',
  keepalived: '/usr/sbin/keepalived',
  nginx: '/usr/sbin/nginx',
  kill: '/bin/kill',
  chown: '/bin/chown',
  sh: '/bin/sh',
  socat: '/usr/bin/socat',
} as const;

/**
 * Where Vigil's own code is on a machine, for the agent and observer units: the self-contained
 * artifact `vigil apply` installs (src/apply/artifact.ts), so the targets need no npm registry, no
 * internet and no Node.js package of their own:
 * - `node`: the Node.js binary the admin's `vigil` runs on (>= 20.19, package.json `engines`),
 *   copied as it is. Besides glibc (>= 2.28) it links only libstdc++ and libgcc_s, which Debian
 *   12, Ubuntu 22/24 and RHEL 9 have (OpenSSL, ICU, libuv and V8 are built in), so it runs on any
 *   Linux machine of the same architecture (apply checks `uname -m`; docs/artifact.md).
 * - `entry`: Vigil's CLI, agent and observer bundled into one ES module (esbuild,
 *   src/cli/artifact-entry.ts plus its dependencies), runnable as `node /opt/vigil/lib/vigil.mjs
 *   <command> ...` like bin/vigil.js in a checkout, without the lab's and the reference
 *   application's commands.
 * - `receiver`: file sync's receiver, the forced command of the sync keys (src/sync/receive.ts).
 * - `refapp`: the reference application in a bundle of its own (src/refapp/entry.ts), installed
 *   only on the app machines that run it (vigil-refapp.service).
 * /opt/vigil is the FHS place for an add-on package that is not installed by the distribution.
 */
export const VIGIL_INSTALL = {
  dir: '/opt/vigil',
  node: '/opt/vigil/bin/node',
  entry: '/opt/vigil/lib/vigil.mjs',
  receiver: '/opt/vigil/lib/vigil-sync-receive.mjs',
  refapp: '/opt/vigil/lib/vigil-refapp.mjs',
} as const;

export const UNITS = {
  etcd: 'vigil-etcd.service',
  patroni: 'vigil-patroni.service',
  haproxy: 'vigil-haproxy.service',
  /** Proxy machines with `proxy.virtualAddress`: holds the floating entry address on one of them. */
  keepalived: 'vigil-keepalived.service',
  nginx: 'vigil-nginx.service',
  refapp: 'vigil-refapp.service',
  /** The reference application's second service, standing for the seed's cm-analytics (`vigil-refapp --analytics`). */
  refappAnalytics: 'vigil-refapp-analytics.service',
  agent: 'vigil-agent.service',
  /** App machines: stops the application's units when the agent's lease has run out (src/render/deadman.ts). */
  deadman: 'vigil-deadman.service',
  observer: 'vigil-observer.service',
} as const;

/** The watchdog device Patroni opens when `database.watchdog` is `required`. */
export const WATCHDOG_DEVICE = '/dev/watchdog';
