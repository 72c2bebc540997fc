/**
 * The observer's database leader release, carried out (the decision is db-release.ts): every
 * RELEASE_TICK_MS it reads Patroni's leader and sync keys and every db member's REST API; only
 * when the leader has failed long enough does it read every proxy's stats too; and only while
 * this observer leads does it revoke the dead leader's lease.
 */
import type { Cluster } from '../config/schema.ts';
import { withRole } from '../config/schema.ts';
import { parseStatsCsv } from '../facts/parse.ts';
import type { Leadership, VigilStore } from '../etcd/store.ts';
import type { EventLog } from '../events/log.ts';
import type { ProxyHandle } from './proxies.ts';
import { POSTGRES_BACKEND } from '../layout/network.ts';
import { patroniOf } from '../patroni/client.ts';
import type { MtlsIdentity } from '../mtls/mtls.ts';
import { tcpRefused } from '../util/net.ts';
import {
  failsafeHolder,
  failsafeWanted,
  initialReleaseMemory,
  releaseVerdict,
  remember,
  serversToReady,
  stoppingLeader,
  type MemberView,
  type ProxyView,
  type ReleaseMemory,
} from './db-release.ts';

type Log = (event: string, fields?: Record<string, unknown>) => void;

export const RELEASE_TICK_MS = 250;
/** Each read's deadline: a silent machine costs this much per round, never more. */
const READ_TIMEOUT_MS = 500;

export interface ReleaseLoopDeps {
  cluster: Cluster;
  /**
   * Every proxy (./proxies.ts). The old leader's :5000 server goes to MAINT on each before the
   * release: on this machine's own HAProxy it must (the verdict does not wait for that proxy's
   * checks), on the others it is tried (the verdict waits until each has the leader down anyway);
   * the MAINT keeps a leader that comes back still answering /primary out until it has rejoined.
   */
  proxies: ProxyHandle[];
  store: VigilStore;
  leadership: Leadership;
  /** `secrets.patroniRestPassword`: turning Patroni's failsafe mode off and on (PATCH /config). */
  patroniPassword: string;
  /** This observer machine's certificate: Patroni's REST API is HTTPS, and a write needs a client certificate. */
  identity: MtlsIdentity;
  events: EventLog;
  /** Called with each stored event, e.g. to send an alert. */
  onEvent?: (e: Awaited<ReturnType<EventLog['append']>>) => void;
  log: Log;
  signal: AbortSignal;
}

export async function runReleaseLoop(d: ReleaseLoopDeps): Promise<void> {
  const { cluster } = d;
  if (cluster.database.failoverBy !== 'observer' || withRole(cluster, 'db').length < 2) return;
  const failAfterMs = cluster.timers.dbFailAfterMs;
  let memory: ReleaseMemory = initialReleaseMemory();
  let lastWait = '';
  while (!d.signal.aborted) {
    const started = performance.now();
    try {
      memory = await round(d, memory, failAfterMs, (reason) => {
        // Logged when it changes, not every round (the seconds in it count up while it waits).
        const gist = reason.replace(/[\d.]+ s\b/g, 'N s');
        if (gist !== lastWait && reason) d.log('db-release-wait', { reason });
        lastWait = gist;
      });
    } catch (err) {
      d.log('db-release-failed', { error: (err as Error).message });
    }
    await new Promise((r) => setTimeout(r, Math.max(0, RELEASE_TICK_MS - (performance.now() - started))));
  }
}

async function round(d: ReleaseLoopDeps, memory: ReleaseMemory, failAfterMs: number, waiting: (reason: string) => void): Promise<ReleaseMemory> {
  const { cluster } = d;
  if (!d.leadership.isLeader()) return memory; // only the acting observer watches: it alone may act
  const [patroni, viewed] = await Promise.all([
    d.store.readPatroniLeader(cluster.cluster.name, READ_TIMEOUT_MS).catch(() => null),
    Promise.all(withRole(cluster, 'db').map((m) => memberView(d, m.name, m.address))),
  ]);
  // A leader that is stopping: has its postmaster exited yet (db-release.ts, stoppedPrimary)?
  const stoppingNow = stoppingLeader({ patroni, members: viewed });
  const members = await Promise.all(
    viewed.map(async (m) => {
      if (m.name !== stoppingNow) return m;
      const address = withRole(cluster, 'db').find((x) => x.name === m.name)!.address;
      return { ...m, postgresRefused: await tcpRefused(address, cluster.database.port, READ_TIMEOUT_MS) };
    }),
  );
  const ownProxy = d.proxies.find((p) => p.local)?.name;
  const input = { nowMs: performance.now(), patroni, members, synchronous: cluster.database.replication === 'synchronous', ...(ownProxy ? { ownProxy } : {}) };
  let next = remember(memory, input);
  await readyAgain(d, members, patroni?.leader ?? null);
  const want = next.failsafeToRestore ? failsafeWanted(next, members) : undefined;
  const holder = want === undefined ? null : failsafeHolder(next, input);
  if (holder) next = { ...next, failsafeToRestore: !(await setFailsafe(d, holder, want!)) };
  const stopping = stoppingLeader(input);
  if (stopping) await outWhileStopping(d, stopping);
  let v = releaseVerdict(next, input, failAfterMs);
  if (v.kind === 'needs-proxies')
    v = releaseVerdict(
      next,
      { ...input, proxies: await Promise.all(withRole(cluster, 'proxy').map((m) => proxyView(cluster, m.name, m.address))) },
      failAfterMs,
    );
  if (v.kind === 'healthy') {
    waiting('');
    return next;
  }
  if (v.kind !== 'release') {
    if (v.kind === 'wait') waiting(v.reason);
    return next;
  }
  // Leadership again right before acting: a deposed observer must not act on its last view.
  if (!d.leadership.isLeader()) return next;
  // Fence first: the old leader out of every proxy's rotation, whatever its checks say later. The
  // verdict counted on it for this machine's own proxy: without that one, no release this round.
  const fenced = await Promise.all(
    d.proxies.map((p) =>
      p.db.maint(v.leader).then(
        () => true,
        (err: Error) => (d.log('db-maint-failed', { node: v.leader, proxy: p.name, error: err.message }), false),
      ),
    ),
  );
  if (d.proxies.some((p, i) => p.local && !fenced[i])) return next;
  // Failsafe mode off through the standby (it reaches etcd), beside the revoke: an old primary cut
  // off from etcd and the proxies but not from its standby then demotes instead of staying primary
  // where no client reaches it. Turned on again once a primary holds a fresh key.
  const standby = withRole(cluster, 'db').find((m) => m.name === v.standby)!;
  const [revoked, failsafeOff] = await Promise.all([
    d.store.revokeLease(v.lease, 2000),
    patroniOf(cluster, standby, { identity: d.identity, password: d.patroniPassword })
      .setFailsafeMode(false, { timeoutMs: 2000 })
      .then(
        () => true,
        (err: Error) => (d.log('db-failsafe-off-failed', { via: v.standby, error: err.message }), false),
      ),
  ]);
  next = { ...next, failsafeToRestore: true };
  d.log('db-leader-released', { leader: v.leader, lease: v.lease, standby: v.standby, revoked, failsafeOff, reason: v.reason });
  const stored = await d.events
    .append({ type: 'db-leader-released', node: v.leader, message: v.reason, details: { lease: v.lease, standby: v.standby, revoked } }, { timeoutMs: 2000 })
    .catch((err: Error) => {
      d.log('event-store-failed', { error: err.message });
      return undefined;
    });
  if (stored) d.onEvent?.(stored);
  return { ...next, released: [...next.released.slice(-20), v.lease] };
}

/** Sets failsafe mode as `want` says through `holder` if it is not; true once it is so (or was). A failure is logged and tried again next round. */
async function setFailsafe(d: ReleaseLoopDeps, holder: string, want: boolean): Promise<boolean> {
  const m = withRole(d.cluster, 'db').find((x) => x.name === holder);
  if (!m) return false;
  const patroni = patroniOf(d.cluster, m, { identity: d.identity, password: d.patroniPassword });
  try {
    if ((await patroni.config({ timeoutMs: READ_TIMEOUT_MS })).failsafeMode === want) return true;
    await patroni.setFailsafeMode(want, { timeoutMs: 2000 });
    d.log(want ? 'db-failsafe-on' : 'db-failsafe-off', {
      via: holder,
      why: want ? 'a primary holds a fresh leader key' : "a member runs Patroni 3.0.0 to 3.0.2 (behind the agent's gate)",
    });
    return true;
  } catch (err) {
    d.log('db-failsafe-set-failed', { via: holder, want, error: (err as Error).message });
    return false;
  }
}

/** On every proxy, takes :5000 servers out of MAINT once their member is a healthy replica (or the primary holding the key again). */
async function readyAgain(d: ReleaseLoopDeps, members: MemberView[], leader: string | null): Promise<void> {
  await Promise.all(
    d.proxies.map(async (p) => {
      const maint = (await p.db.servers(READ_TIMEOUT_MS).catch(() => [])).filter((s) => s.admin === 'maint').map((s) => s.server);
      for (const server of serversToReady(maint, members, leader)) {
        await p.db
          .ready(server)
          .then(() => d.log('db-ready', { node: server, proxy: p.name, why: 'it answers as a healthy member again' }))
          .catch((err: Error) => d.log('db-ready-failed', { node: server, proxy: p.name, error: err.message }));
      }
    }),
  );
}

/** MAINT for the stopping leader's :5000 server on every proxy that still has it out of MAINT (see stoppingLeader). */
async function outWhileStopping(d: ReleaseLoopDeps, leader: string): Promise<void> {
  await Promise.all(
    d.proxies.map(async (p) => {
      const server = (await p.db.servers(READ_TIMEOUT_MS).catch(() => [])).find((s) => s.server === leader);
      if (!server || server.admin === 'maint') return;
      await p.db
        .maint(leader)
        .then(() => d.log('db-maint-stopping', { node: leader, proxy: p.name, why: 'its Patroni is stopping PostgreSQL (role primary, state stopping)' }))
        .catch((err: Error) => d.log('db-maint-failed', { node: leader, proxy: p.name, error: err.message }));
    }),
  );
}

async function memberView(d: ReleaseLoopDeps, name: string, address: string): Promise<MemberView> {
  try {
    const status = await patroniOf(d.cluster, { address }, { identity: d.identity }).status({ timeoutMs: READ_TIMEOUT_MS });
    return { name, reached: true, ...status };
  } catch {
    return { name, reached: false };
  }
}

async function proxyView(cluster: Cluster, name: string, address: string): Promise<ProxyView> {
  const url = `http://${address}:${cluster.proxy.statsPort}/;csv`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(READ_TIMEOUT_MS) });
    if (!res.ok) return { name, read: false, routed: [], error: `${url} answered ${res.status}` };
    const servers = parseStatsCsv(await res.text()).filter((s) => s.backend === POSTGRES_BACKEND);
    return { name, read: true, routed: servers.filter((s) => s.op === 'up' && s.admin !== 'maint').map((s) => s.server) };
  } catch (err) {
    return { name, read: false, routed: [], error: (err as Error).message };
  }
}
