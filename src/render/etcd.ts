/**
 * etcd 3.4 configuration (`etcd --config-file`), one per etcd member.
 *
 * etcd is the one source of truth of the cluster: Patroni's leader lease and Vigil's active-node
 * record live in it. Operations facts that shape this file:
 * - The v2 API is off (`enable-v2: false`); Patroni talks v3 through its `etcd3:` section and
 *   Vigil through the v3 client. Leaving v2 on would let a misconfigured Patroni (`etcd:`
 *   section) build a second, invisible cluster state in the v2 keyspace.
 * - Timers are tuned for a LAN: heartbeat 100 ms, election 1000 ms (etcd's own defaults, made
 *   explicit because failover time depends on them). An etcd leader lost is replaced in about
 *   one election timeout; Patroni's retry_timeout must cover that, which it does by far.
 * - etcd grants no lease shorter than ceil(1.5 x election timeout) = 2 s here; a shorter
 *   Patroni ttl would silently be lengthened (see minLeaseTtlSeconds).
 * - Patroni and Vigil write small keys often; without compaction the revision history grows
 *   until the 2 GiB backend quota is hit and etcd refuses every write (alarm NOSPACE), which
 *   stops every leader from renewing. Periodic compaction keeps one hour of history.
 * - TLS on every port, and a client certificate from the cluster CA required on every port:
 *   clients (Vigil's daemons with their machine's certificate, Patroni with its own, the admin's
 *   CLI with admin.pem, etcdctl with the member's) and peers alike. Anyone else who reaches
 *   :2379 or :2380 is refused at the TLS handshake, before any request is read. The member's
 *   certificate (PATHS.etcdTlsCert, issued by apply) names its address and 127.0.0.1 and serves
 *   as server and client: peers present it to each other, and the JSON gateway presents it when
 *   it forwards a request to the member's own gRPC server.
 */
import { ETCD_CLIENT_PORT, ETCD_PEER_PORT } from '../layout/network.ts';
import type { Cluster, Machine } from '../config/schema.ts';
import { withRole } from '../config/schema.ts';
import { PATHS } from '../layout/paths.ts';
import { yaml11, type RenderedFile } from './file.ts';

export const ETCD_HEARTBEAT_MS = 100;
export const ETCD_ELECTION_MS = 1000;

/** The shortest lease etcd grants with these timers (etcdserver: ceil(3/2 x election)). */
export function minLeaseTtlSeconds(electionMs = ETCD_ELECTION_MS): number {
  return Math.ceil((1.5 * electionMs) / 1000);
}

/** Ports, data dir and TLS files; tests run a real etcd on free loopback ports in a temp dir. */
export interface EtcdOptions {
  clientPort?: number;
  peerPort?: number;
  dataDir?: string;
  /** The member's certificate and key and the CA that clients and peers must be issued by. Default: the machine's (PATHS). */
  tls?: { certFile: string; keyFile: string; caFile: string };
}

/** etcd's cluster token: members started with another token refuse to join this cluster. */
export function etcdClusterToken(cluster: Cluster): string {
  return `vigil-${cluster.cluster.name}`;
}

export function etcdConfig(cluster: Cluster, machine: Machine, opts: EtcdOptions = {}): Record<string, unknown> {
  const clientPort = opts.clientPort ?? ETCD_CLIENT_PORT;
  const peerPort = opts.peerPort ?? ETCD_PEER_PORT;
  const members = withRole(cluster, 'etcd');
  const tls = opts.tls ?? { certFile: PATHS.etcdTlsCert, keyFile: PATHS.etcdTlsKey, caFile: PATHS.clusterCaCert };
  // Loopback too, so local clients (etcdctl, the agent) work while the LAN interface is down.
  const listenClient = [...new Set([machine.address, '127.0.0.1'])].map((a) => `https://${a}:${clientPort}`);
  return {
    name: machine.name,
    'data-dir': opts.dataDir ?? PATHS.etcdData,
    'listen-client-urls': listenClient.join(','),
    'advertise-client-urls': `https://${machine.address}:${clientPort}`,
    'listen-peer-urls': `https://${machine.address}:${peerPort}`,
    'initial-advertise-peer-urls': `https://${machine.address}:${peerPort}`,
    'initial-cluster': members.map((m) => `${m.name}=https://${m.address}:${peerPort}`).join(','),
    // Clients: TLS only, and only with a certificate the cluster CA issued.
    'client-transport-security': {
      'cert-file': tls.certFile,
      'key-file': tls.keyFile,
      'client-cert-auth': true,
      'trusted-ca-file': tls.caFile,
    },
    // Peers: the same, each member presenting its own certificate.
    'peer-transport-security': {
      'cert-file': tls.certFile,
      'key-file': tls.keyFile,
      'client-cert-auth': true,
      'trusted-ca-file': tls.caFile,
    },
    'initial-cluster-token': etcdClusterToken(cluster),
    // Only read when the data dir is empty; a member that already has data ignores it.
    'initial-cluster-state': 'new',
    'enable-v2': false,
    // Kept on only because Patroni needs it: Patroni's etcd3 client speaks the v3 JSON gateway
    // (/v3/...), not gRPC. It is served on the client port, behind the same TLS and client
    // certificate check as gRPC. etcd enables the gateway by default only on the command line;
    // read from a config file the option defaults to off.
    'enable-grpc-gateway': true,
    'heartbeat-interval': ETCD_HEARTBEAT_MS,
    'election-timeout': ETCD_ELECTION_MS,
    'auto-compaction-mode': 'periodic',
    'auto-compaction-retention': '1h',
    // Fewer entries between snapshots: less memory and a faster restart; the write rate is tiny.
    'snapshot-count': 10000,
    // Refuse a member change (add/remove) that would leave the cluster without quorum.
    'strict-reconfig-check': true,
    logger: 'zap',
    'log-outputs': ['stderr'],
  };
}

/**
 * etcdctl's TLS flags for a command run as root on machine `machine`: the cluster CA, and the
 * machine's own certificate and key (every machine has them, src/pki) as the client identity.
 * File paths only: no key material on the command line.
 */
export function etcdctlTlsFlags(machine: string): string[] {
  return [`--cacert=${PATHS.clusterCaCert}`, `--cert=${PATHS.pkiDir}/${machine}.pem`, `--key=${PATHS.pkiDir}/${machine}.key`];
}

export function renderEtcd(cluster: Cluster, machine: Machine, opts: EtcdOptions = {}): RenderedFile {
  return {
    machine: machine.name,
    path: PATHS.etcdConfig,
    mode: 0o644, // no secrets in it
    owner: 'root:root',
    content: yaml11(etcdConfig(cluster, machine, opts)),
  };
}
