/**
 * What a healthy cluster looks like, derived from the cluster file: which machine must reach
 * which port of which other machine, and who owns Vigil's directories with which modes. Both
 * the gathering (what to probe) and the evaluation (what to expect) read these tables.
 */
import { dirname, isAbsolute, join } from 'node:path';
import { PATHS, ROOTS } from '../layout/paths.ts';
import type { Cluster, Machine, Role } from '../config/schema.ts';
import type { RenderedFile } from '../render/file.ts';
import { refappTlsEndpoint, runsRefapp } from '../render/refapp.ts';

export { portRequirements, type Component, type PortRequirement } from '../facts/ports.ts';

export interface PathRule {
  path: string;
  user: string;
  group: string;
  type: 'directory' | 'file';
  /** Permission bits that must be clear (e.g. 0o077: nobody but the owner). */
  forbid: number;
  /** Missing is a finding (otherwise the rule applies only when the path exists). */
  required: boolean;
  /** The fix changes the whole tree (data directories owned by one service user). */
  recursive?: boolean;
  why: string;
}

/** Users the components run as (their units, src/render/systemd.ts; the lab's machines run the same units). */
export const COMPONENT_USERS = { etcd: 'etcd', postgres: 'postgres' } as const;

/** Where the daemons on a machine read the secrets file (beside the cluster file's copy). */
export function machineSecretsPath(cluster: Cluster): string {
  return isAbsolute(cluster.secretsFile) ? cluster.secretsFile : join(dirname(PATHS.clusterFile), cluster.secretsFile);
}

const CONFIG_WHY = "whoever can write here can change what the cluster runs and take the machine's place in it";
const KEY_WHY = 'a private key others can read must be treated as leaked: anyone holding it can act as this machine in the cluster';

/**
 * Ownership and modes of Vigil's directories and files on one machine: the four roots, the PKI,
 * the cluster and secrets files, the data directories of etcd and PostgreSQL (owned by the user
 * the service runs as; PostgreSQL refuses a data directory others can read), and every file the
 * renderers generate for the machine, with the owner and mode they give it.
 */
export function pathRules(cluster: Cluster, machine: Machine, rendered: RenderedFile[]): PathRule[] {
  const has = (r: Role) => machine.roles.includes(r);
  const users = COMPONENT_USERS;
  const pg = users.postgres;
  const rules: PathRule[] = [
    { path: ROOTS.etc, user: 'root', group: 'root', type: 'directory', forbid: 0o022, required: true, why: CONFIG_WHY },
    {
      path: ROOTS.data,
      user: 'root',
      group: 'root',
      type: 'directory',
      forbid: 0o022,
      required: has('etcd') || has('db') || has('app'),
      why: 'it holds the data of etcd, PostgreSQL and the application',
    },
    {
      path: ROOTS.log,
      user: 'root',
      group: 'root',
      type: 'directory',
      forbid: 0o022,
      required: false,
      why: 'others could replace or remove the logs an investigation needs',
    },
    {
      path: ROOTS.run,
      user: 'root',
      group: 'root',
      type: 'directory',
      forbid: 0o022,
      required: false,
      why: "it holds HAProxy's admin socket and the daemons' runtime state",
    },
    { path: PATHS.pkiDir, user: 'root', group: 'root', type: 'directory', forbid: 0o022, required: true, why: CONFIG_WHY },
    // Certificates and keys: a missing one is the certificates check's finding, not repeated here.
    {
      path: `${PATHS.pkiDir}/ca.pem`,
      user: 'root',
      group: 'root',
      type: 'file',
      forbid: 0o022,
      required: false,
      why: 'whoever replaces the CA certificate decides whom this machine trusts',
    },
    { path: `${PATHS.pkiDir}/${machine.name}.pem`, user: 'root', group: 'root', type: 'file', forbid: 0o022, required: false, why: CONFIG_WHY },
    { path: `${PATHS.pkiDir}/${machine.name}.key`, user: 'root', group: 'root', type: 'file', forbid: 0o077, required: false, why: KEY_WHY },
  ];
  if (has('app') || has('db') || has('observer')) {
    rules.push({
      path: PATHS.clusterFile,
      user: 'root',
      group: 'root',
      type: 'file',
      forbid: 0o022,
      required: true,
      why: 'the agent and the observer act on what it says',
    });
  }
  if (has('observer')) {
    rules.push({
      path: machineSecretsPath(cluster),
      user: 'root',
      group: 'root',
      type: 'file',
      forbid: 0o077,
      required: true,
      why: 'it holds every password of the cluster',
    });
  }
  if (has('etcd')) {
    rules.push({
      path: PATHS.etcdData,
      user: users.etcd,
      group: users.etcd,
      type: 'directory',
      forbid: 0o077,
      required: true,
      recursive: true,
      why: `etcd runs as ${users.etcd} and must own its data; it holds every leader lock and the active record`,
    });
    // Issued by apply (etcd asks every client and peer for a cluster-CA certificate: docs/security.md).
    rules.push(
      { path: PATHS.etcdTlsCert, user: users.etcd, group: users.etcd, type: 'file', forbid: 0o022, required: false, why: CONFIG_WHY },
      {
        path: PATHS.etcdTlsKey,
        user: users.etcd,
        group: users.etcd,
        type: 'file',
        forbid: 0o077,
        required: false,
        why: `whoever reads it can pose as this etcd member to its peers and clients; etcd runs as ${users.etcd} and must read it`,
      },
    );
  }
  if (has('db')) {
    const parent = dirname(PATHS.pgData);
    rules.push(
      {
        path: parent,
        user: pg,
        group: pg,
        type: 'directory',
        forbid: 0o077,
        required: true,
        recursive: true,
        why: 'PostgreSQL runs as postgres: a data directory it cannot write stops the database (and a replica cannot be rebuilt)',
      },
      {
        path: PATHS.pgData,
        user: pg,
        group: pg,
        type: 'directory',
        forbid: 0o027,
        required: true,
        recursive: true,
        why: 'PostgreSQL refuses to start on a data directory it does not own or that others can read',
      },
      {
        path: PATHS.pgSocketDir,
        user: pg,
        group: pg,
        type: 'directory',
        // systemd makes it 0700 (vigil-patroni.service): pg_hba trusts local superuser connections through it.
        forbid: 0o077,
        required: false,
        why: 'pg_hba.conf trusts superuser connections through this socket directory: only postgres and root may reach it',
      },
      { path: PATHS.patroniEtcdCert, user: pg, group: pg, type: 'file', forbid: 0o022, required: false, why: CONFIG_WHY },
      {
        path: PATHS.patroniEtcdKey,
        user: pg,
        group: pg,
        type: 'file',
        forbid: 0o077,
        required: false,
        why: "whoever reads it can write Patroni's keys in etcd (its leader lock among them); Patroni runs as postgres and must read it",
      },
      { path: PATHS.patroniRestCert, user: pg, group: pg, type: 'file', forbid: 0o022, required: false, why: CONFIG_WHY },
      {
        path: PATHS.patroniRestKey,
        user: pg,
        group: pg,
        type: 'file',
        forbid: 0o077,
        required: false,
        why: "whoever reads it can pose as this member's REST API, and with the REST password make Patroni switch over or change its configuration; Patroni runs as postgres and must read it",
      },
    );
  }
  if (has('proxy')) {
    rules.push({ path: PATHS.haproxyCheckBundle, user: 'root', group: 'root', type: 'file', forbid: 0o077, required: false, why: KEY_WHY });
    if (cluster.proxy.tlsBundle)
      rules.push({
        path: cluster.proxy.tlsBundle,
        user: 'root',
        group: 'root',
        type: 'file',
        forbid: 0o077,
        required: false,
        why: 'the bundle holds the private key of the site users connect to',
      });
  }
  // The HTTPS certificates apply issues on app machines (src/apply/apply.ts): nginx's towards the
  // proxy (application.backendTls with the cluster CA) and the reference application's own port.
  const appTls: { cert: string; key: string; what: string }[] = [];
  if (has('app') && cluster.application.backendTls?.ca === 'cluster')
    appTls.push({ cert: PATHS.nginxTlsCert, key: PATHS.nginxTlsKey, what: "nginx's HTTPS towards the proxy" });
  if (runsRefapp(cluster, machine) && refappTlsEndpoint(cluster))
    appTls.push({ cert: PATHS.refappTlsCert, key: PATHS.refappTlsKey, what: "the reference application's HTTPS port" });
  for (const t of appTls)
    rules.push(
      { path: t.cert, user: 'root', group: 'root', type: 'file', forbid: 0o022, required: false, why: CONFIG_WHY },
      {
        path: t.key,
        user: 'root',
        group: 'root',
        type: 'file',
        forbid: 0o077,
        required: false,
        why: `whoever reads it can pose as ${t.what} to every client that trusts the cluster CA`,
      },
    );
  for (const f of rendered) {
    if (rules.some((r) => r.path === f.path)) continue;
    const [user = 'root', group = user] = f.owner.split(':');
    rules.push({
      path: f.path,
      user,
      group,
      type: 'file',
      forbid: 0o777 & ~f.mode,
      required: true,
      why: f.mode & 0o077 ? 'the component reads its configuration from it' : 'it holds passwords: only its owner may read it',
    });
  }
  return rules;
}
