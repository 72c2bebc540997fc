/**
 * Who must reach which port of which machine, by role: what preflight checks before installing
 * and doctor checks on a running cluster.
 */
import { runsAgent, withRole, type Cluster, type Role } from '../config/schema.ts';
import { AGENT_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT } from '../layout/network.ts';
import { appPort } from '../layout/backend.ts';

/** The component that listens on a port: what to start when nothing does. */
export type Component = 'etcd' | 'patroni' | 'haproxy' | 'agent' | 'nginx' | 'sshd';

export interface PortRequirement {
  to: string;
  port: number;
  /** What the port is, for messages: "etcd client API". */
  what: string;
  component: Component;
  /** Machines that must reach it; null is the admin's shell (where doctor runs). */
  from: (string | null)[];
  /** Only the active app machine listens here (nginx); the standbys must not. */
  activeOnly?: boolean;
}

/**
 * Who must reach what, per role (ports from src/layout/network.ts and the cluster file):
 * - etcd client port from every machine that talks to etcd (Patroni, agents, observers, the
 *   admin) and the peer port between members;
 * - PostgreSQL and Patroni's REST API between db machines (replication, pg_rewind, leader race)
 *   and from the proxy (HAProxy's checks and connections); Patroni's API also from observers
 *   (switchover) and the admin;
 * - the proxy's PostgreSQL port from the app machines (the application's database), its
 *   HTTP(S) ports from the admin, its stats page from the admin and the observers (the database
 *   release reads every proxy's routing);
 * - the agent API from the proxy (HAProxy's role check) and the observers, and from the admin; on
 *   a proxy machine with an agent (config/schema.ts runsAgent), from the observers and the admin,
 *   and that agent reaches etcd;
 * - the application port (nginx) of the active app machine from the proxy and the observers;
 * - file sync's SSH port between app machines.
 */
export function portRequirements(cluster: Cluster): PortRequirement[] {
  const names = (role: Role) => withRole(cluster, role).map((m) => m.name);
  const proxyAgents = withRole(cluster, 'proxy')
    .filter((m) => runsAgent(cluster, m))
    .map((m) => m.name);
  const [etcd, db, app, proxy, observer] = [names('etcd'), names('db'), names('app'), names('proxy'), names('observer')];
  const out: PortRequirement[] = [];
  const add = (to: string, port: number, what: string, component: Component, from: (string | null)[], activeOnly = false) => {
    const sources = [...new Set(from)].filter((f) => f !== to);
    if (sources.length === 0) return;
    const same = out.find((r) => r.to === to && r.port === port);
    if (same) same.from = [...new Set([...same.from, ...sources])];
    else out.push({ to, port, what, component, from: sources, ...(activeOnly ? { activeOnly } : {}) });
  };
  for (const m of etcd) {
    add(m, ETCD_CLIENT_PORT, 'etcd client API', 'etcd', [...etcd, ...db, ...app, ...proxyAgents, ...observer, null]);
    if (etcd.length > 1) add(m, ETCD_PEER_PORT, 'etcd peer port', 'etcd', etcd);
  }
  for (const m of db) {
    add(m, cluster.database.port, 'PostgreSQL', 'patroni', [...db, ...proxy]);
    add(m, cluster.database.patroniPort, 'Patroni REST API', 'patroni', [...db, ...proxy, ...observer, null]);
    add(m, AGENT_PORT, 'agent API', 'agent', [null]);
  }
  for (const m of proxy) {
    add(m, cluster.proxy.postgresPort, 'PostgreSQL primary through HAProxy', 'haproxy', [...app, null]);
    add(m, cluster.proxy.httpPort, 'the application through HAProxy (HTTP)', 'haproxy', [null]);
    if (cluster.proxy.tlsBundle) add(m, cluster.proxy.httpsPort, 'the application through HAProxy (HTTPS)', 'haproxy', [null]);
    add(m, cluster.proxy.statsPort, 'HAProxy stats page', 'haproxy', [...observer, null]);
    if (proxyAgents.includes(m)) add(m, AGENT_PORT, 'agent API', 'agent', [...observer, null]);
  }
  for (const m of app) {
    add(m, AGENT_PORT, 'agent API', 'agent', [...proxy, ...observer, null]);
    add(m, appPort(cluster), `the application (nginx${cluster.application.backendTls ? ', HTTPS' : ''})`, 'nginx', [...proxy, ...observer], true);
    add(m, cluster.fileSync.sshPort, 'SSH for file sync', 'sshd', app);
  }
  return out;
}
