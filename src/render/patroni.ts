/**
 * patroni.yml for each db machine (Patroni 3.0.2, `etcd3:` section).
 *
 * Facts about Patroni behind the choices below:
 * - `bootstrap.dcs` is written into etcd once, by the member that initialises the cluster, and
 *   never read from the file again: changing ttl or synchronous_mode later goes through
 *   `patronictl edit-config` / PATCH /config, not through this file.
 * - Patroni 3.0.2 enforces no minimum for ttl, loop_wait and retry_timeout (its validator only
 *   checks they are integers; config.py just int()s them) and does not enforce the documented
 *   rule loop_wait + 2 * retry_timeout <= ttl. Patroni 3.2.0 and later silently raise values
 *   below ttl 20, loop_wait 1, retry_timeout 3 and adjust values that break the rule, logging
 *   only a warning. timerProblems() checks the rule always and the 3.2 floors when rendering
 *   for 3.2 or later, so the failover time we promise is the one Patroni runs with.
 * - The REST API `authentication` protects only the write endpoints (switchover, restart,
 *   PATCH /config); GET/OPTIONS /primary stay open, which HAProxy's check needs.
 * - `failsafe_mode` is dynamic configuration only (Patroni reads it from etcd's /config, never
 *   from this file's top level): a cluster made before Vigil set it gets it through
 *   `patronictl edit-config`, which `vigil doctor` names.
 * - `bootstrap.users` still exists in 3.0.2 (deprecated in 3.2, removed in 4.0) and only creates
 *   roles, not databases; the app's role and database are created by appDatabaseSql() instead.
 */
import { PATRONI_REST_USER } from '../layout/network.ts';
import type { Cluster, Machine, Secrets } from '../config/schema.ts';
import { withRole } from '../config/schema.ts';
import { PATHS } from '../layout/paths.ts';
import { problem, type Problem } from '../util/errors.ts';
import { minLeaseTtlSeconds } from './etcd.ts';
import { ETCD_CLIENT_PORT } from '../layout/network.ts';
import { yaml11, type RenderedFile } from './file.ts';

/** The Patroni version Vigil is tested with (Debian 12). */
export const PATRONI_DEFAULT_VERSION = '3.0.2';
/** Connections PostgreSQL accepts; HAProxy queues above PROXY_PG_MAXCONN (haproxy.ts) instead. */
export const PG_MAX_CONNECTIONS = 200;

/**
 * Patroni's namespace. Patroni's default `/service/` would put its keys outside the cluster's
 * prefix; under `/vigil/<name>/patroni/` every key of a cluster (Patroni's and Vigil's own) is
 * below `/vigil/<name>/`: one prefix to back up, inspect, grant an etcd role on, or delete.
 * The `patroni/` level keeps Patroni's key names (leader, members/, sync, config, ...) from ever
 * meeting Vigil's. patronictl reads the namespace from patroni.yml, so it needs no flag.
 */
export function patroniNamespace(cluster: Cluster): string {
  return `/vigil/${cluster.cluster.name}/patroni/`;
}

/** Where Patroni keeps this cluster's keys: `<namespace><scope>/` (leader, members/, sync, ...). */
export function patroniKeyPrefix(cluster: Cluster): string {
  return `${patroniNamespace(cluster)}${cluster.cluster.name}/`;
}

/** Debian/Ubuntu layout (postgresql-common). RHEL's PGDG packages use /usr/pgsql-<v>/bin. */
export function postgresBinDir(version: number): string {
  return `/usr/lib/postgresql/${version}/bin`;
}

const versionAtLeast = (v: string, major: number, minor: number): boolean => {
  const [a = 0, b = 0] = v.split('.').map((n) => Number.parseInt(n, 10));
  return a > major || (a === major && b >= minor);
};

/** Patroni 3.2 and later raise ttl below 20, loop_wait below 1 and retry_timeout below 3 (timerProblems). */
export function hasTimerFloors(patroniVersion: string): boolean {
  return versionAtLeast(patroniVersion, 3, 2);
}

/** Problems with the failover timers for a given Patroni version; empty when they are usable. */
export function timerProblems(cluster: Cluster, patroniVersion = PATRONI_DEFAULT_VERSION): Problem[] {
  const t = cluster.timers;
  const where = `${cluster.source} timers`;
  const out: Problem[] = [];
  const sum = t.loopWaitSeconds + 2 * t.retryTimeoutSeconds;
  if (sum > t.ttlSeconds) {
    // The leader renews its lease once per loop and may spend retry_timeout on a failing etcd
    // call twice in a loop; with a shorter ttl its lease expires while it still acts as leader.
    out.push(
      problem(
        where,
        `loopWaitSeconds + 2 x retryTimeoutSeconds = ${sum} exceeds ttlSeconds = ${t.ttlSeconds}: the leader's lease could expire while it is still retrying, and a replica would be promoted next to a live primary`,
        `raise ttlSeconds to at least ${sum}, or lower loopWaitSeconds / retryTimeoutSeconds`,
      ),
    );
  }
  const minTtl = minLeaseTtlSeconds();
  if (t.ttlSeconds < minTtl) {
    out.push(problem(where, `ttlSeconds ${t.ttlSeconds} is shorter than the shortest lease etcd grants (${minTtl} s)`, `set ttlSeconds to ${minTtl} or more`));
  }
  if (hasTimerFloors(patroniVersion)) {
    const floors: ['ttlSeconds' | 'loopWaitSeconds' | 'retryTimeoutSeconds', number, string][] = [
      ['ttlSeconds', 20, 'ttl'],
      ['loopWaitSeconds', 1, 'loop_wait'],
      ['retryTimeoutSeconds', 3, 'retry_timeout'],
    ];
    for (const [key, min, name] of floors) {
      if (t[key] < min) {
        out.push(
          problem(
            `${where}.${key}`,
            `Patroni ${patroniVersion} silently raises ${name} below ${min} to ${min}, so failover would be slower than configured`,
            `set ${key} to ${min} or more (Patroni 3.2+ minimums: ttl 20, loop_wait 1, retry_timeout 3)`,
          ),
        );
      }
    }
  }
  return out;
}

/** A role or database name as pg_hba.conf reads it: quoted unless plainly lower-case. */
function hbaName(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) && name !== 'all' && name !== 'replication' ? name : `"${name.replaceAll('"', '""')}"`;
}

/**
 * pg_hba.conf lines. scram-sha-256 everywhere over TCP (password_encryption is set to scram, so
 * PostgreSQL 13, whose default is md5, stores verifiers that match). Patroni itself connects as
 * the superuser over the unix socket in PATHS.pgSocketDir, and so do `vigil apply` and the lab for
 * the application's role and database (src/apply/appdb.ts); the `local ... trust` line is only
 * reachable through that directory, which systemd creates mode 0700 for postgres (vigil-patroni
 * service), so it admits the postgres OS user and root and nobody else.
 */
export function pgHba(cluster: Cluster): string[] {
  const { superuser, replicationUser, appDatabase, appUser } = cluster.database;
  const su = hbaName(superuser);
  const dbMachines = withRole(cluster, 'db');
  const everyAddress = [...new Set(cluster.machines.map((m) => m.address))];
  return [
    `local all ${su} trust`,
    `host all ${su} 127.0.0.1/32 scram-sha-256`,
    // Streaming replication and pg_basebackup come only from the other db machines.
    ...dbMachines.map((m) => `host replication ${hbaName(replicationUser)} ${m.address}/32 scram-sha-256`),
    // Patroni 3 opens a replication connection to its own PostgreSQL (IDENTIFY_SYSTEM) to learn
    // a replica's timeline; it uses the local address.
    `host replication ${hbaName(replicationUser)} 127.0.0.1/32 scram-sha-256`,
    // pg_rewind of a former primary connects to the new one as the rewind user (the superuser).
    ...dbMachines.map((m) => `host all ${su} ${m.address}/32 scram-sha-256`),
    // The app reaches PostgreSQL through HAProxy, so the source address is the proxy machine's;
    // every machine of the cluster is listed so `vigil doctor` can also connect directly.
    ...everyAddress.map((a) => `host ${hbaName(appDatabase)} ${hbaName(appUser)} ${a}/32 scram-sha-256`),
  ];
}

export function patroniConfig(cluster: Cluster, secrets: Secrets, machine: Machine): Record<string, unknown> {
  const db = cluster.database;
  const t = cluster.timers;
  const synchronous = db.replication === 'synchronous';
  const hba = pgHba(cluster);
  return {
    scope: cluster.cluster.name,
    namespace: patroniNamespace(cluster),
    name: machine.name,
    log: { level: 'INFO' }, // stderr: journald on a real machine, the lab's log file otherwise
    // The REST API over TLS with the machine's certificate from the cluster CA (issued by apply,
    // naming the machine's address and name). Reads (health checks, status) need TLS only; a write
    // (POST, PATCH, PUT, DELETE: switchover, restart, config) needs both a client certificate the
    // cluster CA issued (`verify_client: optional`) and the REST password. A client without a
    // certificate, or with another CA's, is refused a write with 403 before its password counts.
    restapi: {
      listen: `${machine.address}:${db.patroniPort}`,
      connect_address: `${machine.address}:${db.patroniPort}`,
      certfile: PATHS.patroniRestCert,
      keyfile: PATHS.patroniRestKey,
      cafile: PATHS.clusterCaCert,
      verify_client: 'optional',
      authentication: { username: PATRONI_REST_USER, password: secrets.patroniRestPassword },
    },
    // What Patroni presents and trusts when it asks another member's REST API (a replica's probe
    // of the old leader before it promotes, the leader's POST /failsafe) and what `patronictl`
    // uses: its own certificate, and the cluster CA only. Patroni reads its client certificate
    // from here, not from `restapi`.
    ctl: {
      certfile: PATHS.patroniRestCert,
      keyfile: PATHS.patroniRestKey,
      cacert: PATHS.clusterCaCert,
    },
    // etcd accepts TLS with a client certificate from the cluster CA only (src/render/etcd.ts).
    // Patroni's own certificate and key, readable by the postgres user only (issued by apply).
    etcd3: {
      protocol: 'https',
      hosts: withRole(cluster, 'etcd').map((m) => `${m.address}:${ETCD_CLIENT_PORT}`),
      cacert: PATHS.clusterCaCert,
      cert: PATHS.patroniEtcdCert,
      key: PATHS.patroniEtcdKey,
    },
    bootstrap: {
      dcs: {
        ttl: t.ttlSeconds,
        loop_wait: t.loopWaitSeconds,
        retry_timeout: t.retryTimeoutSeconds,
        maximum_lag_on_failover: db.maximumLagOnFailoverBytes,
        // When PostgreSQL crashes under a live Patroni: in synchronous mode the sync standby has
        // every acknowledged commit, so fail over at once (0); in asynchronous mode first try a
        // local restart for one ttl (it loses nothing), then fail over (may lose up to the lag).
        primary_start_timeout: synchronous ? 0 : t.ttlSeconds,
        synchronous_mode: synchronous,
        // Not strict: with two db machines, strict mode stops all writes while the only replica
        // is down. Non-strict still loses no acknowledged write on failover: Patroni promotes
        // only a member recorded in the /sync key, and when the replica drops out the primary
        // removes it from /sync before it commits without it, so a stale replica is never
        // promoted automatically. The price is availability: while the replica is catching up
        // the primary has no failover candidate (the status shows this).
        synchronous_mode_strict: false,
        // DCS failsafe mode (Patroni 3.0.0 and later): when the leader cannot update its key
        // because etcd is down, hung or without quorum, the primary stays primary as long as every
        // member named in Patroni's /failsafe key accepts its POST /failsafe within the loop, and
        // demotes the moment one does not. A replica that accepted one takes no part in a leader
        // race for a ttl. So an etcd outage no longer takes the database down while every db
        // machine is healthy, and no member can be promoted while it lasts (that needs etcd). A
        // primary cut off from a replica as well as from etcd still demotes, as without it
        // (docs/failure-semantics.md, "etcd down, hung or without quorum").
        failsafe_mode: true,
        postgresql: {
          use_pg_rewind: true,
          // Slots keep the WAL a replica still needs, so a briefly absent replica resumes
          // without a new base backup; max_slot_wal_keep_size caps what a dead one can pin.
          use_slots: true,
          parameters: {
            wal_level: 'replica',
            hot_standby: 'on',
            // Required by pg_rewind unless the cluster has data checksums; set for both.
            wal_log_hints: 'on',
            max_wal_senders: 10,
            max_replication_slots: 10,
            max_slot_wal_keep_size: '8GB',
            max_connections: PG_MAX_CONNECTIONS,
            password_encryption: 'scram-sha-256',
          },
        },
      },
      initdb: [{ encoding: 'UTF8' }, { locale: 'C.UTF-8' }, 'data-checksums'],
      // Patroni 3.0.2's --validate-config requires bootstrap.pg_hba whenever bootstrap exists;
      // postgresql.pg_hba below is what Patroni writes on every start anyway.
      pg_hba: hba,
    },
    postgresql: {
      listen: `${machine.address},127.0.0.1:${db.port}`,
      connect_address: `${machine.address}:${db.port}`,
      data_dir: PATHS.pgData,
      bin_dir: postgresBinDir(db.postgresVersion),
      pgpass: PATHS.pgPass,
      use_unix_socket: true,
      authentication: {
        superuser: { username: db.superuser, password: secrets.postgresPassword },
        replication: { username: db.replicationUser, password: secrets.replicationPassword },
        // No separate rewind secret exists; the superuser does it (Patroni then creates no role).
        rewind: { username: db.superuser, password: secrets.postgresPassword },
      },
      parameters: { unix_socket_directories: PATHS.pgSocketDir },
      pg_hba: hba,
      // pg_basebackup (a new or re-synced replica) asks the primary for a checkpoint first; the
      // default, spread, paces it over checkpoint_completion_target x checkpoint_timeout (4.5 min)
      // whenever buffers are dirty: seen holding a fresh lab's standby for over 90 s on a loaded
      // machine. A fast one costs the primary one burst of writes.
      basebackup: [{ checkpoint: 'fast' }],
    },
    // A hung primary whose lease runs out is reset by the watchdog before a replica is promoted.
    // Explicit (database.watchdog): 'automatic' would quietly run without a device. The stale
    // primary that a missing watchdog leaves is the agent's fence's (src/agent/db-fence.ts).
    watchdog: { mode: db.watchdog },
  };
}

export function renderPatroni(cluster: Cluster, secrets: Secrets, machine: Machine): RenderedFile {
  return {
    machine: machine.name,
    path: PATHS.patroniConfig,
    mode: 0o600, // holds the superuser, replication and REST passwords
    owner: 'postgres:postgres',
    content: yaml11(patroniConfig(cluster, secrets, machine)),
  };
}
