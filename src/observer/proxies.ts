/**
 * Every proxy machine's HAProxy as the observer reads and fences it (the app backend): the one on
 * its own machine through the runtime socket, every other through that machine's agent
 * (src/agent/api.ts: GET /proxy, POST /proxy/maint, POST /proxy/ready, which an agent grants only
 * while etcd's active record names the server at that epoch). A proxy that cannot be read counts
 * as not fenced: decide fences a machine while any proxy it can read might route to it, and a
 * proxy that comes back is fenced on the first tick that reads it.
 */
import type { Cluster, Machine } from '../config/schema.ts';
import { withRole } from '../config/schema.ts';
import { agentOf } from '../agent/client.ts';
import type { MtlsIdentity } from '../mtls/mtls.ts';
import { APP_BACKEND, POSTGRES_BACKEND } from '../layout/network.ts';
import type { HaproxyRuntime, ServerState } from '../proxy/runtime.ts';

export interface ProxyHandle {
  name: string;
  /** This observer's own machine (its runtime socket). */
  local: boolean;
  servers(timeoutMs: number): Promise<ServerState[]>;
  maint(server: string, epoch: number): Promise<void>;
  ready(server: string, epoch: number): Promise<void>;
  /** UP now, without waiting for HAProxy's next check: the active machine at `epoch`, seen serving by the observer. */
  up(server: string, epoch: number): Promise<void>;
  /** The :5000 backend, for the database release: read, MAINT, and out of MAINT as down until checked. */
  db: { servers(timeoutMs: number): Promise<ServerState[]>; maint(server: string): Promise<void>; ready(server: string): Promise<void> };
}

/** Deadline of a MAINT or READY sent to another machine's agent. */
const WRITE_TIMEOUT_MS = 1000;

export function proxyHandles(cluster: Cluster, self: string, pki: MtlsIdentity, own: HaproxyRuntime | undefined): ProxyHandle[] {
  return withRole(cluster, 'proxy').map((m) => (m.name === self && own ? local(m, own) : remote(m, pki)));
}

function local(m: Machine, runtime: HaproxyRuntime): ProxyHandle {
  return {
    name: m.name,
    local: true,
    servers: () => runtime.servers(APP_BACKEND),
    maint: (server) => runtime.maint(APP_BACKEND, server),
    // Down until its role check passes: taken as UP at once, the newly active machine would get
    // requests before its nginx listens, and HAProxy waits a second before it retries a refused
    // connection (seen in switchovers: 0.6 to 0.8 s of the application's pause, docs/benchmarks.md).
    ready: (server) => runtime.readyWhenChecked(APP_BACKEND, server),
    up: (server) => runtime.healthUp(APP_BACKEND, server),
    db: {
      servers: () => runtime.servers(POSTGRES_BACKEND),
      maint: (server) => runtime.maint(POSTGRES_BACKEND, server),
      ready: (server) => runtime.readyWhenChecked(POSTGRES_BACKEND, server),
    },
  };
}

function remote(m: Machine, pki: MtlsIdentity): ProxyHandle {
  const agent = agentOf(pki, m);
  return {
    name: m.name,
    local: false,
    servers: (timeoutMs) => agent.proxyServers({ timeoutMs }),
    maint: (server, epoch) => agent.proxyMaint(server, epoch, { timeoutMs: WRITE_TIMEOUT_MS }),
    ready: (server, epoch) => agent.proxyReady(server, epoch, { timeoutMs: WRITE_TIMEOUT_MS }),
    up: (server, epoch) => agent.proxyUp(server, epoch, { timeoutMs: WRITE_TIMEOUT_MS }),
    db: {
      servers: (timeoutMs) => agent.proxyServers({ timeoutMs }, 'postgres'),
      maint: (server) => agent.proxyDb('maint', server, { timeoutMs: WRITE_TIMEOUT_MS }),
      ready: (server) => agent.proxyDb('ready', server, { timeoutMs: WRITE_TIMEOUT_MS }),
    },
  };
}
