/**
 * Ports, endpoints and names on the wire: one home for what the generators write into the
 * components' configurations and what the daemons, apply, doctor and the lab connect to.
 */
import { withRole, type Cluster } from '../config/schema.ts';

export const ETCD_CLIENT_PORT = 2379;

export const ETCD_PEER_PORT = 2380;

/**
 * Client endpoints of every etcd member (`https://ADDR:2379`), for Patroni, Vigil and etcdctl.
 * etcd accepts TLS only, with a client certificate from the cluster CA (src/render/etcd.ts).
 */
export function etcdEndpoints(cluster: Cluster, clientPort = ETCD_CLIENT_PORT): string[] {
  return withRole(cluster, 'etcd').map((m) => `https://${m.address}:${clientPort}`);
}

/** The backend of the application's servers, one per app machine, named as the machine (the runtime API addresses them as `app/<machine>`). */
export const APP_BACKEND = 'app';

/** The :5000 section, one server per database machine, named as the machine. */
export const POSTGRES_BACKEND = 'postgres';

/** User name for Patroni's REST API write actions (password: secrets.patroniRestPassword). */
export const PATRONI_REST_USER = 'vigil';

/** Port of `vigil agent`'s HTTPS API (mutual TLS) on every app and db machine. */
export const AGENT_PORT = 7710;

/** Port the reference application listens on behind nginx, on loopback of each app machine. */
export const REFAPP_PORT = 8080;

/**
 * Port of the reference application's activation endpoint (docs/application-contract.md), on
 * loopback and apart from REFAPP_PORT: nginx does not proxy it, so no user can reach it.
 */
export const REFAPP_CONTROL_PORT = 8081;

/**
 * Port of the reference application's analytics service (its second service, standing for the
 * seed's `cm-analytics`: `vigil-refapp --analytics`), on loopback: its health check and report.
 */
export const REFAPP_ANALYTICS_PORT = 8082;

/** Port of the reference application's own HTTPS endpoint in the lab (application.tlsEndpoints), on loopback like REFAPP_PORT. */
export const REFAPP_HTTPS_PORT = 8443;

/** The address a daemon's `/metrics` listens on, as `metrics.listen` says (src/config/schema.ts). */
export function metricsHost(cluster: Cluster, machine: { address: string }): string {
  const l = cluster.metrics.listen;
  return l === 'machine' ? machine.address : l === 'loopback' ? '127.0.0.1' : l === 'any' ? '0.0.0.0' : l;
}

/** Where Prometheus scrapes a daemon's metrics, reached from another machine (`any`: the machine's own address). */
export function metricsUrl(cluster: Cluster, machine: { address: string }, daemon: 'agent' | 'observer'): string {
  const host = metricsHost(cluster, machine);
  const reach = host === '0.0.0.0' ? machine.address : host;
  const port = daemon === 'agent' ? cluster.metrics.agentPort : cluster.metrics.observerPort;
  return `${cluster.metrics.auth === 'mtls' ? 'https' : 'http'}://${reach}:${port}/metrics`;
}
