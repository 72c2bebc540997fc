/**
 * Where Vigil and the components it runs keep their files on a machine. The lab bind-mounts a
 * per-machine directory over each of the four roots, so the same generated configuration runs
 * on a real machine and in a lab namespace.
 */
export const ROOTS = {
  etc: '/etc/vigil',
  data: '/var/lib/vigil',
  log: '/var/log/vigil',
  run: '/run/vigil',
} as const;

export const PATHS = {
  etcdConfig: `${ROOTS.etc}/etcd.yml`,
  etcdData: `${ROOTS.data}/etcd`,
  patroniConfig: `${ROOTS.etc}/patroni.yml`,
  /**
   * etcd machines: the member's certificate (client and peer ports, server and client usage: a
   * peer presents it to the others) and its key, owned by the etcd user (etcd reads them itself).
   */
  etcdTlsCert: `${ROOTS.etc}/tls/etcd.pem`,
  etcdTlsKey: `${ROOTS.etc}/tls/etcd.key`,
  /** db machines: Patroni's client certificate for etcd and its key, owned by the postgres user. */
  patroniEtcdCert: `${ROOTS.etc}/tls/patroni-etcd.pem`,
  patroniEtcdKey: `${ROOTS.etc}/tls/patroni-etcd.key`,
  /**
   * db machines: Patroni's REST API certificate and key, owned by the postgres user. It serves the
   * API over TLS with it, and presents it as its client certificate when it asks another member
   * (the leader race's probe, failsafe mode) and in `patronictl` (src/render/patroni.ts).
   */
  patroniRestCert: `${ROOTS.etc}/tls/patroni-rest.pem`,
  patroniRestKey: `${ROOTS.etc}/tls/patroni-rest.key`,
  pgData: `${ROOTS.data}/postgresql/data`,
  pgSocketDir: `${ROOTS.run}/postgresql`,
  pgPass: `${ROOTS.data}/postgresql/pgpass`,
  haproxyConfig: `${ROOTS.etc}/haproxy.cfg`,
  haproxySocket: `${ROOTS.run}/haproxy.sock`,
  /** Every server's state (UP/DOWN, MAINT), saved before a reload for the new worker to start from. */
  haproxyState: `${ROOTS.run}/haproxy.state`,
  tlsBundle: `${ROOTS.etc}/tls/proxy.pem`,
  /** Proxy machines with a floating entry address: keepalived's configuration (holds the VRRP password) and its HAProxy check. */
  keepalivedConfig: `${ROOTS.etc}/keepalived.conf`,
  keepalivedCheck: `${ROOTS.etc}/keepalived-check.sh`,
  keepalivedPid: `${ROOTS.run}/keepalived.pid`,
  keepalivedVrrpPid: `${ROOTS.run}/keepalived-vrrp.pid`,
  /** Cluster CA certificate and each machine's own certificate and key (src/pki). */
  pkiDir: `${ROOTS.etc}/pki`,
  /** The cluster CA's certificate in pkiDir (src/pki CA_CERT_FILE), on every machine. */
  clusterCaCert: `${ROOTS.etc}/pki/ca.pem`,
  /** The proxy machine's certificate and key in one file: HAProxy's client identity for agent checks. */
  haproxyCheckBundle: `${ROOTS.etc}/pki/haproxy-check.pem`,
  /** A copy of the cluster file on every machine, read by the agent and the observer. */
  clusterFile: `${ROOTS.etc}/vigil.yaml`,
  nginxConfig: `${ROOTS.etc}/nginx.conf`,
  refappConfig: `${ROOTS.etc}/refapp/application.properties`,
  refappAttachments: `${ROOTS.data}/app/attachments`,
  /** The reference application's patch directory: where the lab's air-gap imports go (application.patchDir). */
  refappPatches: `${ROOTS.data}/app/patches`,
  /** The reference application's HTTPS settings (appsettings.json style) and the certificate and key they name. */
  refappSettings: `${ROOTS.etc}/refapp/appsettings.json`,
  refappTlsCert: `${ROOTS.etc}/refapp/tls/refapp.pem`,
  refappTlsKey: `${ROOTS.etc}/refapp/tls/refapp.key`,
  /** App machines, `application.backendTls` with the cluster CA: nginx's certificate and key, issued by apply. */
  nginxTlsCert: `${ROOTS.etc}/tls/nginx.pem`,
  nginxTlsKey: `${ROOTS.etc}/tls/nginx.key`,
  /** `application.backendTls.ca` given as a file: your CA, copied where HAProxy, the agents and the observer read it. */
  backendCa: `${ROOTS.etc}/tls/backend-ca.pem`,
  systemdDir: '/etc/systemd/system',
  /** App machines: the dead-man switch's script (src/render/deadman.ts). */
  deadmanScript: `${ROOTS.etc}/deadman.sh`,
  /** App machines: the boot-clock time (centiseconds of /proc/uptime) until which the agent's lease holds; 0 when it does not serve. */
  serveUntil: `${ROOTS.run}/serve-until`,
  /**
   * App machines: written by `vigil apply` just before it restarts the active machine's agent, so
   * the agent stopping knows the restart is planned and keeps the application up across it
   * (src/agent/restart-grace.ts). Removed once the new agent confirms.
   */
  agentRestartMark: `${ROOTS.run}/agent-restart`,
} as const;
