/**
 * What the admin's shell sees of the cluster, as `vigil status` does: etcd's health, members and
 * leader over its HTTP API (TLS, with the admin's certificate), Vigil's records in etcd, Patroni's view of the database cluster,
 * HAProxy's server states from its stats page, and every agent's status with the admin's
 * certificate. Each request has a short deadline: a dead machine makes a finding, not a hang.
 */
import { connect as tcpConnect } from 'node:net';
import { agentMachines, withRole, type Cluster, type Machine } from '../config/schema.ts';
import { openStore, storeTls } from '../etcd/store.ts';
import { mtlsFetch } from '../mtls/mtls.ts';
import { agentOf } from '../agent/client.ts';
import { patroniOf, type PatroniCluster } from '../patroni/client.ts';
import { loadPki, type LoadedPki } from '../pki/ca.ts';
import { ETCD_CLIENT_PORT, etcdEndpoints } from '../layout/network.ts';
import { portRequirements } from './expect.ts';
import { parseStatsCsv } from '../facts/parse.ts';
import {
  failed,
  got,
  type ClusterFacts,
  type EtcdMemberFacts,
  type PatroniFacts,
  type PatroniMember,
  type PortOutcome,
  type PortProbe,
  type Probe,
} from './types.ts';

export interface ClusterGatherOptions {
  cluster: Cluster;
  /**
   * Whose certificate asks etcd and the agents: the admin's (ca.pem, admin.pem and admin.key in
   * `pkiDir`), or an identity already loaded (an observer running doctor from the dashboard).
   */
  pkiDir?: string;
  identity?: LoadedPki;
  /** Deadline of each request. */
  timeoutMs: number;
  connectTimeoutMs: number;
}

const errorText = (err: unknown): string => {
  if (!(err instanceof Error)) return String(err);
  // fetch hides the reason (ECONNREFUSED, timeout) in its cause.
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
  // Errors with a fix (VigilError, StoreError) carry it on later lines; the finding has its own.
  // The etcd client's "(last error: ...)" repeats gRPC's internals after the reason.
  return err.name === 'TimeoutError' ? 'no answer in time' : `${err.message}${cause}`.split('\n')[0]!.replace(/ \(last error: .*$/, '');
};

/** A request to etcd's HTTP side (over TLS, with the admin's certificate: etcd asks every client for one). */
async function etcdJson<T>(url: string, admin: Probe<LoadedPki>, timeoutMs: number, post = false): Promise<Probe<T>> {
  if (!admin.ok) return failed(`the admin's certificate (etcd asks for one): ${admin.error}`);
  try {
    const res = await mtlsFetch(url, { ...admin.value, timeoutMs, ...(post ? { json: {} } : {}) });
    if (res.status < 200 || res.status > 299) return failed(`${url} answered ${res.status}: ${res.text.slice(0, 200)}`);
    return got(res.json<T>());
  } catch (err) {
    return failed(errorText(err));
  }
}

/** etcd's v3 JSON gateway (enabled in the generated etcd.yml for Patroni) and its /health. */
async function etcdMember(m: Machine, admin: Probe<LoadedPki>, timeoutMs: number): Promise<EtcdMemberFacts> {
  const endpoint = `https://${m.address}:${ETCD_CLIENT_PORT}`;
  const [health, status] = await Promise.all([
    etcdJson<{ health?: string; reason?: string }>(`${endpoint}/health`, admin, timeoutMs),
    etcdJson<{ header?: { member_id?: string }; leader?: string; dbSize?: string }>(`${endpoint}/v3/maintenance/status`, admin, timeoutMs, true),
  ]);
  return {
    machine: m.name,
    endpoint,
    health: health.ok ? got({ healthy: health.value.health === 'true', ...(health.value.reason ? { reason: health.value.reason } : {}) }) : health,
    status: status.ok
      ? got({ leader: status.value.leader ?? '0', memberId: status.value.header?.member_id ?? '', dbSizeBytes: Number(status.value.dbSize ?? 0) })
      : status,
  };
}

async function etcdMembers(cluster: Cluster, admin: Probe<LoadedPki>, timeoutMs: number): Promise<Probe<string[]>> {
  let last: Probe<string[]> = failed('no etcd member');
  for (const m of withRole(cluster, 'etcd')) {
    const r = await etcdJson<{ members?: { name?: string }[] }>(`https://${m.address}:${ETCD_CLIENT_PORT}/v3/cluster/member/list`, admin, timeoutMs, true);
    if (r.ok) return got((r.value.members ?? []).map((x) => x.name ?? ''));
    last = failed(`${m.name}: ${r.error}`);
  }
  return last;
}

async function vigilState(cluster: Cluster, admin: Probe<LoadedPki>, timeoutMs: number): Promise<ClusterFacts['state']> {
  if (!admin.ok) return failed(`the admin's certificate (etcd asks for one): ${admin.error}`);
  let store;
  try {
    store = await openStore({
      endpoints: etcdEndpoints(cluster),
      cluster: cluster.cluster.name,
      dialTimeoutMs: timeoutMs,
      callTimeoutMs: timeoutMs,
      tls: storeTls(admin.value),
    });
  } catch (err) {
    return failed(`etcd does not answer: ${errorText(err)}`);
  }
  try {
    const [active, observerLeader, maintenance, airgap] = await Promise.all([
      store.getActive(),
      store.currentLeader(),
      store.getMaintenance(),
      cluster.application.patchDir ? store.getAirgap() : null,
    ]);
    return got({ active: active?.record ?? null, observerLeader, maintenance, airgap: airgap?.record ?? null });
  } catch (err) {
    return failed(errorText(err));
  } finally {
    await store.close().catch(() => {});
  }
}

/** A call's value, or what went wrong as a finding's text. */
const probe = <T>(p: Promise<T>): Promise<Probe<T>> => p.then(got, (err: unknown) => failed(errorText(err)));

/** Patroni's view from the first db machine that answers, and which ones answered at all. */
async function patroni(
  cluster: Cluster,
  admin: Probe<LoadedPki>,
  timeoutMs: number,
): Promise<{ facts: Probe<PatroniFacts>; answered: Record<string, boolean> }> {
  const dbs = withRole(cluster, 'db');
  // Patroni's REST API is HTTPS under the cluster CA: without the admin certificate nothing can be asked.
  if (!admin.ok) return { facts: failed(`Patroni's REST API not asked: ${admin.error}`), answered: Object.fromEntries(dbs.map((m) => [m.name, false])) };
  const identity = admin.value;
  const answers: Probe<PatroniCluster>[] = await Promise.all(dbs.map((m) => probe(patroniOf(cluster, m, { identity }).cluster({ timeoutMs }))));
  const answered = Object.fromEntries(dbs.map((m, i) => [m.name, answers[i]!.ok]));
  const i = answers.findIndex((a) => a.ok);
  const first = answers[i];
  if (!first?.ok) {
    const why = dbs
      .map((m, j) => {
        const a = answers[j]!;
        return `${m.name}: ${a.ok ? 'answered' : a.error}`;
      })
      .join('; ');
    return { facts: failed(dbs.length ? `no Patroni REST API answers (${why})` : 'no db machine'), answered };
  }
  const from = dbs[i]!;
  const body = first.value;
  const config = await probe(patroniOf(cluster, from, { identity }).config({ timeoutMs }));
  const members: PatroniMember[] = body.members.map((x) => ({
    name: x.name,
    role: x.role,
    state: x.state,
    lagBytes: typeof x.lag === 'number' ? x.lag : null,
    ...(typeof x.lag === 'string' ? { lagUnknown: true } : {}),
  }));
  return {
    facts: got({
      from: from.name,
      members,
      paused: body.paused,
      synchronousMode: config.ok ? config.value.synchronousMode : null,
      failsafeMode: config.ok ? config.value.failsafeMode : null,
    }),
    answered,
  };
}

async function haproxyServers(cluster: Cluster, m: Machine, timeoutMs: number): Promise<ClusterFacts['haproxy'][number]> {
  const url = `http://${m.address}:${cluster.proxy.statsPort}/;csv`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return { machine: m.name, servers: failed(`${url} answered ${res.status}`) };
    return { machine: m.name, servers: got(parseStatsCsv(await res.text())) };
  } catch (err) {
    return { machine: m.name, servers: failed(errorText(err)) };
  }
}

/** A TCP connection from here (the admin's shell). */
export function connectFromHere(address: string, port: number, timeoutMs: number): Promise<{ outcome: PortOutcome; detail?: string }> {
  return new Promise((resolve) => {
    const sock = tcpConnect({ host: address, port });
    const done = (r: { outcome: PortOutcome; detail?: string }) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ outcome: 'timeout' }), timeoutMs);
    sock.once('connect', () => done({ outcome: 'open' }));
    sock.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') done({ outcome: 'refused' });
      else if (err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH') done({ outcome: 'unreachable' });
      else done({ outcome: 'error', detail: err.message });
    });
  });
}

async function adminPorts(cluster: Cluster, connectTimeoutMs: number): Promise<PortProbe[]> {
  const byName = new Map(cluster.machines.map((m) => [m.name, m]));
  const wanted = portRequirements(cluster).filter((r) => r.from.includes(null));
  return Promise.all(
    wanted.map(async (r) => ({ from: null, to: r.to, port: r.port, ...(await connectFromHere(byName.get(r.to)!.address, r.port, connectTimeoutMs)) })),
  );
}

export async function gatherCluster(o: ClusterGatherOptions): Promise<ClusterFacts> {
  const { cluster, timeoutMs } = o;
  const withAgent = agentMachines(cluster);
  const adminPki: Probe<LoadedPki> = o.identity
    ? got(o.identity)
    : o.pkiDir !== undefined
      ? await loadPki(o.pkiDir, 'admin').then(got, (err: unknown) => failed(errorText(err)))
      : failed('no certificate given (pkiDir or identity): this is a bug in the caller');
  const [etcd, members, state, db, haproxy, agents, ports] = await Promise.all([
    Promise.all(withRole(cluster, 'etcd').map((m) => etcdMember(m, adminPki, timeoutMs))),
    etcdMembers(cluster, adminPki, timeoutMs),
    vigilState(cluster, adminPki, timeoutMs),
    patroni(cluster, adminPki, timeoutMs),
    Promise.all(withRole(cluster, 'proxy').map((m) => haproxyServers(cluster, m, timeoutMs))),
    adminPki.ok
      ? Promise.all(
          withAgent.map(async (m) => ({
            machine: m.name,
            status: await agentOf(adminPki.value, m)
              .status({ timeoutMs })
              .catch(() => null),
          })),
        )
      : Promise.resolve([]),
    adminPorts(cluster, o.connectTimeoutMs),
  ]);
  return {
    etcd,
    etcdMembers: members,
    state,
    patroni: db.facts,
    patroniAnswered: db.answered,
    haproxy,
    adminPki: adminPki.ok ? got({ caPem: adminPki.value.ca }) : adminPki,
    agents,
    adminPorts: ports,
  };
}
