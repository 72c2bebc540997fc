/**
 * Prometheus metrics of one Vigil daemon (docs/metrics.md): one prom-client registry per process,
 * Node's default `process_*`/`nodejs_*` metrics unprefixed (so stock Node dashboards work), and
 * `vigil_build_info`. Values are set by the daemon as it works, or read from its memory in a
 * gauge's `collect()`; a scrape never does more than that (no etcd, no SSH).
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { Cluster } from '../config/schema.ts';
import { VIGIL_INSTALL } from '../layout/units.ts';

export type Component = 'agent' | 'observer';

export interface DaemonMetrics {
  registry: Registry;
  component: Component;
}

/** The registry of a daemon, with Node's default metrics and `vigil_build_info{version,component}` = 1. */
export function daemonRegistry(component: Component, version = vigilVersion()): DaemonMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const info = new Gauge({
    name: 'vigil_build_info',
    help: "Vigil's version and which daemon this is; always 1.",
    labelNames: ['version', 'component', 'node_version'],
    registers: [registry],
  });
  info.set({ version, component, node_version: process.versions.node }, 1);
  return { registry, component };
}

/** A certificate a daemon depends on: its PEM text now (null: not there). */
export interface WatchedCertificate {
  /** `ca` (the cluster CA), `machine` (this machine's, for mutual TLS), `proxy` (HAProxy's :443 bundle). */
  certificate: 'ca' | 'machine' | 'proxy';
  pem: () => string | null;
}

/**
 * `vigil_certificate_expiry_timestamp_seconds{certificate}`: when each certificate stops being
 * valid, read when scraped (the files are a few kB; a renewed one shows at once). A certificate
 * that is missing or does not parse is left out: doctor says why.
 */
export function certificateExpiry(m: DaemonMetrics, certs: WatchedCertificate[]): void {
  new Gauge({
    name: 'vigil_certificate_expiry_timestamp_seconds',
    help: "Unix time at which a certificate this daemon uses expires: ca (the cluster CA), machine (its own, for mutual TLS), proxy (HAProxy's :443 bundle, on proxy machines).",
    labelNames: ['certificate'],
    registers: [m.registry],
    collect() {
      this.reset();
      for (const c of certs) {
        try {
          const pem = c.pem();
          if (pem !== null) this.set({ certificate: c.certificate }, Date.parse(new X509Certificate(pem).validTo) / 1000);
        } catch {
          // unreadable or not a certificate: left out
        }
      }
    },
  });
}

/** The certificates a daemon on `machine` depends on. */
export function watchedCertificates(cluster: Cluster, machine: { roles: readonly string[] }, pki: { ca: string; cert: string }): WatchedCertificate[] {
  const certs: WatchedCertificate[] = [
    { certificate: 'ca', pem: () => pki.ca },
    { certificate: 'machine', pem: () => pki.cert },
  ];
  const bundle = cluster.proxy.tlsBundle;
  if (bundle !== undefined && machine.roles.includes('proxy')) certs.push({ certificate: 'proxy', pem: pemFile(bundle) });
  return certs;
}

/** A PEM file's text, or null when it cannot be read. */
export function pemFile(path: string): () => string | null {
  return () => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return null;
    }
  };
}

/**
 * A state set (as HAProxy's `haproxy_server_status{state}`): one series per state, 1 for the
 * current one and 0 for the others, every state always present so a query can say `== 1`.
 */
export function setStates<S extends string>(g: Gauge, states: readonly S[], current: S | null, labels: Record<string, string> = {}): void {
  for (const s of states) g.set({ ...labels, state: s }, s === current ? 1 : 0);
}

/**
 * The installed artifact's version (`/opt/vigil/manifest.json`, `0.1.0+3f2a9c81d0e4`: it names the
 * content); "checkout" when the daemon runs from a checkout rather than the artifact.
 */
function vigilVersion(): string {
  try {
    const v = (JSON.parse(readFileSync(`${VIGIL_INSTALL.dir}/manifest.json`, 'utf8')) as { version?: unknown }).version;
    return typeof v === 'string' ? v : 'unknown';
  } catch {
    return 'checkout';
  }
}
