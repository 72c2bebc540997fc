/**
 * How the proxy, the agents and the observer reach the application on an app machine: plain HTTP
 * on `application.port`, or HTTPS on `application.backendTls.port` with the certificate checked
 * against the cluster CA or the operator's CA (the seed's "Configure Backend for HTTPS", verified).
 * One place, so HAProxy's traffic, the agent's health check behind the role endpoint and the
 * observer's deep check follow the same setting.
 */
import type { Cluster } from '../config/schema.ts';
import { PATHS } from './paths.ts';

export interface BackendTls {
  /** CA file on the machine that connects (proxy, observer, app). */
  caFile: string;
  /** false only where the cluster file says `verify: false`. */
  verify: boolean;
}

/** The port nginx serves the application on, on every app machine. */
export const appPort = (cluster: Cluster): number => cluster.application.backendTls?.port ?? cluster.application.port;

/** The TLS settings of the hop from the proxy to the app machines; undefined for plain HTTP. */
export function backendTls(cluster: Cluster): BackendTls | undefined {
  const t = cluster.application.backendTls;
  if (!t) return undefined;
  return { caFile: t.ca === 'cluster' ? `${PATHS.pkiDir}/ca.pem` : PATHS.backendCa, verify: t.verify };
}

/** Where nginx reads its certificate and key on an app machine. */
export function nginxCertPaths(cluster: Cluster): { cert: string; key: string } | undefined {
  const t = cluster.application.backendTls;
  if (!t) return undefined;
  if (t.ca === 'cluster') return { cert: PATHS.nginxTlsCert, key: PATHS.nginxTlsKey };
  return { cert: t.certificate!, key: t.key! };
}

/**
 * The application's health URL on a machine reached at `host`, and the name its certificate must
 * carry (the machine's name: HAProxy's `verifyhost` compares DNS names only, never IP addresses).
 */
export function appHealthTarget(cluster: Cluster, machineName: string, host: string): { url: string; tls?: BackendTls & { servername: string } } {
  const tls = backendTls(cluster);
  const url = `${tls ? 'https' : 'http'}://${host}:${appPort(cluster)}${cluster.application.healthPath}`;
  return { url, ...(tls ? { tls: { ...tls, servername: machineName } } : {}) };
}
