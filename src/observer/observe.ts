/**
 * What the observer sees each tick, gathered in parallel with short deadlines: the records in
 * etcd, and for every app machine the observer's own deep check (an HTTP request through nginx
 * and the app to the database), its agent's status, whether it holds the Patroni primary, and
 * its server's state in every proxy's HAProxy (./proxies.ts).
 */
import type { Cluster, Machine } from '../config/schema.ts';
import { withRole } from '../config/schema.ts';
import { agentOf } from '../agent/client.ts';
import type { VigilStore, Versioned } from '../etcd/store.ts';
import { type ActiveRecord, type AgentStatus } from '../model/ha.ts';
import type { LoadedPki } from '../pki/ca.ts';
import type { ServerState } from '../proxy/runtime.ts';
import { patroniOf } from '../patroni/client.ts';
import { appHealthTarget } from '../layout/backend.ts';
import { httpOk } from '../util/net.ts';
import type { NodeObservation, Observation, ProxyState } from './decide.ts';
import type { ProxyHandle } from './proxies.ts';

/** Deadline of each check: a hung application counts as failing after this long. */
export const CHECK_TIMEOUT_MS = 600;

export interface Observed {
  obs: Observation;
  /** The active record with its revision, for the compare-and-swap of an activation. */
  active: Versioned<ActiveRecord> | null;
  agents: Map<string, AgentStatus>;
  /** Each proxy's app backend as read this tick; undefined: that proxy could not be read. */
  proxies: Map<string, ServerState[] | undefined>;
}

export interface ObserveDeps {
  cluster: Cluster;
  store: VigilStore;
  pki: LoadedPki;
  proxies: ProxyHandle[];
  isLeader(): boolean;
}

function proxyState(servers: ServerState[] | undefined, name: string): ProxyState {
  const s = servers?.find((x) => x.server === name);
  if (!s) return 'unknown';
  if (s.admin !== 'ready') return s.admin;
  return s.op === 'up' ? 'ready' : 'down';
}

/** The observer's deep check: the health URL through nginx and the app, over HTTPS with the certificate verified where `application.backendTls` says so. */
function deepCheck(cluster: Cluster, m: Machine, timeoutMs: number): Promise<boolean> {
  const t = appHealthTarget(cluster, m.name, m.address);
  return httpOk(t.url, timeoutMs, 'GET', t.tls);
}

/** Its Patroni answers role primary, state `stopping` (a demote's fast shutdown); false when it answers otherwise or not at all. */
async function patroniStopping(cluster: Cluster, pki: LoadedPki, m: Machine): Promise<boolean> {
  const s = await patroniOf(cluster, m, { identity: pki })
    .status({ timeoutMs: CHECK_TIMEOUT_MS })
    .catch(() => undefined);
  return (s?.role === 'primary' || s?.role === 'master') && s.state === 'stopping';
}

export async function observe(d: ObserveDeps, nowMs: number): Promise<Observed> {
  const { cluster, store } = d;
  const apps = withRole(cluster, 'app');
  const [{ active, maintenance, request }, servers] = await Promise.all([
    store.readObserved(),
    Promise.all(d.proxies.map((p) => p.servers(CHECK_TIMEOUT_MS).catch(() => undefined))),
  ]);
  const agents = new Map<string, AgentStatus>();
  // pair, while a switchover is asked for: each primary's Patroni state, to see the old one stopping (decide.ts, switchoverRequest).
  const switching = request?.kind === 'switchover';
  const nodes = await Promise.all(
    apps.map(async (m): Promise<NodeObservation> => {
      const [deepOk, status, dbPrimary, dbStopping] = await Promise.all([
        deepCheck(cluster, m, CHECK_TIMEOUT_MS),
        // An agent or a Patroni that does not answer counts as unreachable and as not primary.
        agentOf(d.pki, m)
          .status({ timeoutMs: CHECK_TIMEOUT_MS })
          .catch(() => undefined),
        m.roles.includes('db')
          ? patroniOf(cluster, m, { identity: d.pki })
              .check('primary', { timeoutMs: CHECK_TIMEOUT_MS })
              .catch(() => false)
          : Promise.resolve(false),
        switching && m.roles.includes('db') ? patroniStopping(cluster, d.pki, m) : Promise.resolve(undefined),
      ]);
      if (status) agents.set(m.name, status);
      return {
        name: m.name,
        deepOk,
        agentReachable: status !== undefined,
        agentActive: status?.active ?? false,
        agentEpoch: status?.epoch ?? null,
        // A standby runs no application to check: its agent's readiness stands for its health.
        appHealthy: status ? (status.active ? status.appHealthy : status.ready) : false,
        dbPrimary,
        ...(dbStopping ? { dbStopping } : {}),
        ...(status?.waitingFor?.length ? { waitingFor: status.waitingFor } : {}),
        ...(status?.highestEpoch !== undefined ? { highestEpoch: status.highestEpoch } : {}),
        proxyStates: servers.map((s) => proxyState(s, m.name)),
      };
    }),
  );
  const followDb = apps.length > 0 && apps.every((m) => m.roles.includes('db'));
  return {
    obs: { nowMs, isLeader: d.isLeader(), maintenance: maintenance !== null, active: active?.record ?? null, request, followDb, nodes },
    active,
    agents,
    proxies: new Map(d.proxies.map((p, i) => [p.name, servers[i]])),
  };
}
