/**
 * The database leader release: when the Patroni primary is dead or fenced, the acting observer
 * revokes the etcd lease of Patroni's leader key, so the synchronous standby takes over at once
 * instead of after the rest of the dead leader's ttl (Patroni 3.2 and later never go below 20 s).
 *
 * Why the observer and not the standby's agent: one acting decision-maker (the observer leads
 * under a lease, so two of them never act at once); it already reads every proxy and every
 * member; and the standby's agent would have to judge its own promotion, which Patroni does
 * better (below).
 *
 * What keeps it safe (measured in ../shared/reviews/platform-probe-2026-12-06.md, section 4):
 * - The release only runs when the leader's Patroni has not answered on its REST API for
 *   `failAfterMs`, or has answered for SAID_NOT_PRIMARY_MS that it is no longer primary (while a
 *   Patroni that answers as primary, whatever PostgreSQL's state, is left to Patroni); when every
 *   proxy has it out of the :5000 backend (the observer's own proxy by the MAINT it sets first);
 *   and (synchronous mode) when a synchronous standby named in Patroni's `sync` key answers as a
 *   running replica.
 * - Patroni's own checks still run after it: the standby probes every member's REST API before
 *   it takes the lock and refuses while the old primary still answers as primary; a primary cut
 *   off from etcd cannot drop its synchronous standby, so it cannot acknowledge writes alone.
 * - Only the lease read from the key is revoked, never the key deleted: a new leader's key has a
 *   lease of its own, which a late revoke cannot touch. Each lease is revoked at most once.
 * - Never on Patroni 3.0.0 to 3.0.2, whose leader renews its key with a plain put and could
 *   write it back over the new leader's (src/patroni/versions.ts): there the ttl decides.
 *
 * - Before the release, the old leader's :5000 server is put in MAINT in the observer's own
 *   HAProxy, and it stays there until that member answers as a running replica (or as the running
 *   primary holding the key again). A Patroni that was cut off still believes it leads until its
 *   own ttl runs out, even after it has demoted itself (its REST API keeps answering 200 on
 *   /primary while PostgreSQL waits, in shutdown, for a standby it cannot reach): without MAINT
 *   HAProxy takes it back as soon as its link returns, next to the new primary.
 *
 * - Patroni's failsafe mode is turned off (through the standby, which reaches etcd) together with
 *   the release: a primary cut off from etcd and from the proxies but not from its standby would
 *   otherwise stay primary (its standby accepts its `POST /failsafe` and follows it), where no
 *   client reaches it. Off, the standby refuses it, it demotes, and the standby takes over. It is
 *   turned on again once a primary holds a fresh key (failsafeHolder).
 *
 * This file is the pure decision; db-release-loop.ts reads the inputs and carries it out.
 */
import { PATRONI_LEADER_TXN, overwritesLeaderKey, parsePatroniVersion } from '../patroni/versions.ts';
import type { PatroniLeaderView } from '../etcd/store.ts';

/** A db machine's Patroni as its REST API (`GET /patroni`) showed it this round. */
export interface MemberView {
  name: string;
  /** It answered at all. */
  reached: boolean;
  role?: string;
  state?: string;
  version?: string;
  /**
   * Read only for a leader whose Patroni answers that it is stopping (stoppingLeader): a TCP
   * connection to its PostgreSQL port was refused this round, so its postmaster has exited.
   */
  postgresRefused?: boolean;
}

/** One proxy's :5000 backend: which servers it routes to, or that it could not be read. */
export interface ProxyView {
  name: string;
  read: boolean;
  /** Servers HAProxy has UP (or going down, still routed to). */
  routed: string[];
  error?: string;
}

export interface ReleaseInput {
  nowMs: number;
  /** The proxy this observer fences itself (MAINT on its own HAProxy before it releases): its routing does not hold the release up. */
  ownProxy?: string;
  /** null: etcd could not be read this round. */
  patroni: PatroniLeaderView | null;
  members: MemberView[];
  /** Read only when asked for (`needsProxies`); undefined otherwise. */
  proxies?: ProxyView[];
  synchronous: boolean;
}

export interface ReleaseMemory {
  /** Per member: when it last answered as a running primary, or when it was first seen failing. */
  since: Record<string, { good: boolean; atMs: number }>;
  /** Per member: the Patroni version it last reported (REST API or its member key in etcd). */
  versions: Record<string, string>;
  /** Leases already revoked: never twice. */
  released: string[];
  /**
   * Patroni's failsafe mode may not be as it should (failsafeWanted) and is to be set once a
   * primary holds a fresh key (failsafeHolder): after this observer turned it off for a release,
   * and once at its start (an observer that stopped in between, a cluster made before Vigil set
   * it, or one on Patroni 3.0.0 to 3.0.2 that bootstrapped with it on).
   */
  failsafeToRestore: boolean;
}

export const initialReleaseMemory = (): ReleaseMemory => ({ since: {}, versions: {}, released: [], failsafeToRestore: true });

export type ReleaseVerdict =
  | { kind: 'healthy' }
  | { kind: 'wait'; reason: string }
  /** Everything is known but the proxies: read them and decide again. */
  | { kind: 'needs-proxies'; leader: string }
  | { kind: 'release'; leader: string; lease: string; standby: string; reason: string };

const isPrimaryRole = (role: string | undefined) => role === 'primary' || role === 'master';
const servesAsPrimary = (m: MemberView | undefined) => m?.reached === true && isPrimaryRole(m.role) && m.state === 'running';
/**
 * Patroni answers and still calls its member the primary, whatever PostgreSQL's state (starting,
 * restarting, crashed): Patroni is in charge (a planned restart, or its own failover of a crashed
 * PostgreSQL, `primary_start_timeout: 0` in synchronous mode). Not the observer's to end.
 */
const patroniLeads = (m: MemberView | undefined) => m?.reached === true && isPrimaryRole(m.role);
/**
 * A leader whose Patroni is stopping its PostgreSQL (a graceful demote, or Patroni shutting down)
 * and whose postmaster has exited: the fast shutdown is over (a PostgreSQL that is shutting down
 * still accepts a connection, to refuse it with "the database system is shutting down"; its
 * postmaster exits only once its walsenders have sent the shutdown checkpoint to every connected
 * standby). Patroni polls for that once a second (STOP_POLLING_INTERVAL = 1 in Patroni 4.0) and
 * only then drops its key, 0.8 to 1 s after the end: in a `pair` switchover the largest part of the
 * write pause (docs/benchmarks.md). Patroni would drop the key next, whatever its state: the
 * release only does it sooner.
 */
const stoppedPrimary = (m: MemberView | undefined) => patroniLeads(m) && m?.state === 'stopping' && m.postgresRefused === true;

/**
 * How long a leader whose Patroni answers that it is no longer primary (demoted, replica), while
 * its key still names it, waits for Patroni to drop the key itself: a primary cut off from etcd
 * demotes itself but cannot delete its key.
 */
export const SAID_NOT_PRIMARY_MS = 500;
const healthyReplica = (m: MemberView | undefined) => m?.reached === true && m.role === 'replica' && (m.state === 'running' || m.state === 'streaming');

/** Folds this round's member views into the memory (versions, and since when the leader fails or serves). */
export function remember(memory: ReleaseMemory, input: ReleaseInput): ReleaseMemory {
  const since = { ...memory.since };
  const versions = { ...memory.versions };
  for (const [name, v] of Object.entries(input.patroni?.versions ?? {})) versions[name] = v;
  for (const m of input.members) {
    if (m.version) versions[m.name] = m.version;
    const good = servesAsPrimary(m);
    const prev = since[m.name];
    // Failing counts from the last time it served, not from the first failed look: a silent
    // machine is seen failing only once a check has timed out.
    if (good) since[m.name] = { good: true, atMs: input.nowMs };
    else if (!prev) since[m.name] = { good: false, atMs: input.nowMs };
    else if (prev.good) since[m.name] = { good: false, atMs: prev.atMs };
  }
  return { ...memory, since, versions };
}

export function releaseVerdict(memory: ReleaseMemory, input: ReleaseInput, failAfterMs: number): ReleaseVerdict {
  const p = input.patroni;
  if (!p) return { kind: 'wait', reason: "etcd could not be read: Patroni's leader key is unknown" };
  if (p.paused) return { kind: 'wait', reason: 'Patroni is paused (maintenance mode): it leaves the database alone, and so does the observer' };
  if (!p.leader || !p.lease) return { kind: 'healthy' }; // no leader key: Patroni elects by itself
  const leader = p.leader;
  const view = input.members.find((m) => m.name === leader);
  if (patroniLeads(view) && !stoppedPrimary(view)) return { kind: 'healthy' };
  if (memory.released.includes(p.lease)) return { kind: 'wait', reason: `the leader lease of ${leader} was released; waiting for Patroni to promote` };

  for (const m of input.members) {
    const v = memory.versions[m.name];
    if (!v)
      return { kind: 'wait', reason: `Patroni's version on ${m.name} is not known yet: the leader is released only on Patroni ${PATRONI_LEADER_TXN} or later` };
    if (overwritesLeaderKey(parsePatroniVersion(`patroni ${v}`)))
      return { kind: 'wait', reason: `${m.name} runs Patroni ${v}, which could write its leader key back over a new leader's: Patroni's ttl decides` };
  }
  const since = memory.since[leader];
  const failingMs = since && !since.good ? input.nowMs - since.atMs : 0;
  // No answer: it may be slow, not dead, so failAfterMs; Patroni saying it is not primary: at once,
  // nearly; stopped for good (Patroni stopping, its postmaster gone): nothing left to wait for.
  if (view?.reached) failAfterMs = Math.min(failAfterMs, stoppedPrimary(view) ? 0 : SAID_NOT_PRIMARY_MS);
  if (failingMs < failAfterMs)
    return {
      kind: 'wait',
      reason: `${leader} has not served as primary for ${(failingMs / 1000).toFixed(1)} s (releases after ${(failAfterMs / 1000).toFixed(1)} s)`,
    };

  const others = input.members.filter((m) => m.name !== leader);
  const standby = input.synchronous
    ? p.sync?.leader === leader
      ? others.find((m) => p.sync!.standbys.includes(m.name) && healthyReplica(m))
      : undefined
    : others.find(healthyReplica);
  if (!standby) {
    return {
      kind: 'wait',
      reason: input.synchronous
        ? `no synchronous standby of ${leader} answers as a running replica (sync key: ${p.sync ? JSON.stringify(p.sync) : 'none'})`
        : `no replica answers as running`,
    };
  }
  if (!input.proxies) return { kind: 'needs-proxies', leader };
  for (const px of input.proxies) {
    if (px.name === input.ownProxy) continue; // fenced with MAINT right before the release
    if (!px.read) return { kind: 'wait', reason: `proxy ${px.name} could not be read (${px.error ?? 'no answer'}): it might still route to ${leader}` };
    if (px.routed.includes(leader)) return { kind: 'wait', reason: `proxy ${px.name} still routes :5000 to ${leader}` };
  }
  const what = !view?.reached
    ? 'does not answer on its REST API'
    : stoppedPrimary(view)
      ? `answers as ${view.role ?? '?'} (stopping) and its PostgreSQL port refuses connections (its postmaster has exited)`
      : `answers as ${view.role ?? '?'} (${view.state ?? '?'})`;
  return {
    kind: 'release',
    leader,
    lease: p.lease,
    standby: standby.name,
    reason: `${leader} ${what} for ${(failingMs / 1000).toFixed(1)} s, every proxy has it down, and ${standby.name} is a healthy ${input.synchronous ? 'synchronous standby' : 'replica'}: released ${leader}'s leader lease so ${standby.name} can take over now`,
  };
}

/**
 * The leader whose Patroni is stopping its PostgreSQL (a switchover's graceful demote, Patroni
 * shutting down): its role still primary, its state `stopping`, which Patroni sets once the
 * demote's checkpoint is done, right before the fast shutdown. Its sessions end with that stop;
 * but Patroni answers /primary 200 until the stop is over, so HAProxy keeps the server UP for 1 to
 * 2 s more and sends new connections to a PostgreSQL that refuses them, each retried only after a
 * second (measured in `pair` switchovers: a write pause of 3.3 s instead of 1.5 to 2.3 s,
 * docs/benchmarks.md). Its :5000 server goes to MAINT then; serversToReady brings it back once it
 * answers as a running replica, or as the running primary holding the key again. Not while Patroni
 * is paused, not for a restart (Patroni's state is then `restarting`).
 */
export function stoppingLeader(input: Pick<ReleaseInput, 'patroni' | 'members'>): string | undefined {
  const p = input.patroni;
  if (!p || p.paused || !p.leader) return undefined;
  const m = input.members.find((x) => x.name === p.leader);
  return m?.reached === true && isPrimaryRole(m.role) && m.state === 'stopping' ? p.leader : undefined;
}

/**
 * Whether Patroni's failsafe mode belongs on: not while a member runs Patroni 3.0.0 to 3.0.2, and
 * undefined until every member's version is known. There the agent's Patroni gate closes
 * Patroni's REST port once etcd stops answering, so failsafe cannot ride an outage out (the
 * standby's `POST /failsafe` is refused), and a primary kept up by it meanwhile is one the agent's
 * stale-primary fence then ends when etcd is back with its key expired (seen in
 * test/lab/db-fence.test.ts, `etcd-pause` and `agent-pause` on bookworm). Without failsafe mode
 * that Patroni demotes itself instead, as it did before failsafe mode was set.
 */
export function failsafeWanted(memory: ReleaseMemory, members: MemberView[]): boolean | undefined {
  const versions = members.map((m) => memory.versions[m.name]);
  if (versions.length === 0 || versions.some((v) => v === undefined)) return undefined;
  return !versions.some((v) => overwritesLeaderKey(parsePatroniVersion(`patroni ${v}`)));
}

/**
 * The member through which failsafe mode may be turned on again: the holder of a leader key this
 * observer has not released, answering as a running primary. Never while a release is under way:
 * until the standby holds a key of its own, failsafe mode on again would let it follow the old
 * primary it is to replace (see failure-semantics.md, "etcd out of service: failsafe mode").
 */
export function failsafeHolder(memory: ReleaseMemory, input: ReleaseInput): string | null {
  const p = input.patroni;
  if (!p || p.paused || !p.leader || !p.lease || memory.released.includes(p.lease)) return null;
  const leader = p.leader;
  return servesAsPrimary(input.members.find((m) => m.name === leader)) ? leader : null;
}

/**
 * The :5000 servers in MAINT that may serve again: their member answers as a running replica, or
 * as the running primary that holds the leader key. The observer owns MAINT of :5000 servers (it
 * sets it only on a release), so it finds them again after a restart without remembering them.
 */
export function serversToReady(maint: string[], members: MemberView[], leader: string | null): string[] {
  return maint.filter((name) => {
    const m = members.find((x) => x.name === name);
    return healthyReplica(m) || (name === leader && servesAsPrimary(m));
  });
}
